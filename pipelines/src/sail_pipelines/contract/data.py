"""Reading the project's CSV files with one set of rules, so every step sees the same frame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sail_pipelines.errors import SailError


def read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SailError(f"no data file at {path}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SailError(f"{path} is not a readable CSV: {str(exc).splitlines()[0]}") from None
    if frame.empty:
        raise SailError(f"{path} has no rows")
    return frame
