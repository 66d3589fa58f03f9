"""`sail split`: a seeded, deterministic train/test split, so the test set is fixed per data
version.

Rows without a label cannot train or score a model, so they are dropped here (validation has
already counted them against validation.max_missing_target).
"""

from __future__ import annotations

import functools

from sklearn.model_selection import train_test_split

from sail_pipelines.config import Params, ProjectPaths
from sail_pipelines.contract.data import read_table
from sail_pipelines.errors import SailError
from sail_pipelines.files import write_atomic


def run(paths: ProjectPaths, params: Params) -> dict[str, int]:
    frame = read_table(paths.root / params.raw_data)
    if params.target not in frame.columns:
        raise SailError(f"target column '{params.target}' is not in {params.raw_data}")
    labelled = frame[frame[params.target].notna()]
    stratify = labelled[params.target] if params.split.stratify else None
    try:
        train, test = train_test_split(
            labelled,
            test_size=params.split.test_size,
            random_state=params.split.seed,
            stratify=stratify,
        )
    except ValueError as exc:
        raise SailError(f"cannot split {params.raw_data}: {exc}") from exc
    for part, path in ((train, paths.train_csv), (test, paths.test_csv)):
        write_atomic(path, functools.partial(part.to_csv, index=False))
    return {
        "train_rows": len(train),
        "test_rows": len(test),
        "dropped_without_label": len(frame) - len(labelled),
    }
