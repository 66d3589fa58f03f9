"""Reading data files with one set of rules, so every step sees the same frame.

A user's own file (raw data, a batch to score) may be CSV or Parquet. Its frame is indexed by
where each row stands in the file, so a message can say "line 12" for the twelfth line of a CSV
(the header is line 1) or "row 11" for a Parquet file.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from sail_pipelines.contract.schema import Schema
from sail_pipelines.errors import SailError

PARQUET = (".parquet", ".pq")


def kind(path: Path) -> str:
    """Parquet by its suffix; anything else is read as CSV."""
    return "parquet" if path.suffix.lower() in PARQUET else "csv"


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """A missing pyarrow, or a file pandas cannot read, becomes one line naming the file."""
    try:
        yield
    except ImportError as exc:
        raise SailError(
            f"reading Parquet needs pyarrow ({exc.name} is missing): pip install pyarrow"
        ) from exc
    except (
        ValueError,
        OSError,
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
    ) as exc:
        raise SailError(
            f"{path} is not a readable {kind(path).upper()} file: "
            f"{(str(exc).splitlines() or [type(exc).__name__])[0]}"
        ) from exc


def _numbered(frame: pd.DataFrame, first: int, unit: str) -> pd.DataFrame:
    frame.index = pd.RangeIndex(first, first + len(frame), name=unit)
    return frame


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as a frame indexed by file line (CSV) or 1-based row (Parquet)."""
    if not path.is_file():
        raise SailError(f"no data file at {path}")
    with _reading(path):
        if kind(path) == "csv":
            frame = _numbered(pd.read_csv(path), 2, "line")
        else:
            frame = _numbered(pd.read_parquet(path), 1, "row")
    if frame.empty:
        raise SailError(f"{path} has no rows")
    return frame


def text_columns(schema: Schema) -> dict[str, type]:
    """The columns a CSV must be read as text, whatever their cells look like: dates, text and
    categories of strings. A batch whose `precip` column happens to hold only digits must reach
    the model as the strings it was trained on ("0", not 0.0), and an id keeps its zeros."""
    return {
        c.name: str
        for c in schema.columns
        if c.type in ("datetime", "text")
        or (c.type == "category" and all(isinstance(v, str) for v in c.values or ()))
    }


def iter_table(path: Path, rows: int, schema: Schema | None = None) -> Iterator[pd.DataFrame]:
    """The file in chunks of at most `rows` rows, numbered as read_table numbers them, so a batch
    of any size is scored in bounded memory; with a schema, its text columns read as text."""
    if not path.is_file():
        raise SailError(f"no data file at {path}")
    first = 2 if kind(path) == "csv" else 1
    unit = "line" if first == 2 else "row"
    with _reading(path):
        if kind(path) == "csv":
            dtype = text_columns(schema) if schema else None
            chunks: Iterator[pd.DataFrame] = pd.read_csv(path, chunksize=rows, dtype=dtype)
        else:
            import pyarrow.parquet as pq

            batches = pq.ParquetFile(path).iter_batches(batch_size=rows)
            chunks = (batch.to_pandas() for batch in batches)
        seen = 0
        for chunk in chunks:
            yield _numbered(chunk, first + seen, unit)
            seen += len(chunk)
    if seen == 0:
        raise SailError(f"{path} has no rows")


def read_csv(path: Path) -> pd.DataFrame:
    """The split files the pipeline itself writes (always CSV)."""
    if not path.is_file():
        raise SailError(f"no data file at {path}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SailError(f"{path} is not a readable CSV: {str(exc).splitlines()[0]}") from exc
    if frame.empty:
        raise SailError(f"{path} has no rows")
    return frame


def json_value(value: Any) -> Any:
    """A cell as JSON carries it: numpy scalars as Python ones, NaN and NaT as null."""
    if value is None or value is pd.NaT:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON objects, with missing values as null (never NaN, which JSON lacks)."""
    return [
        {str(k): json_value(v) for k, v in row.items()} for row in frame.to_dict(orient="records")
    ]
