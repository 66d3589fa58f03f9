"""Metrics per value of chosen category columns (`gate.slices.columns` in params.yaml).

An overall metric can hide a group the model serves badly. Each slice of the test split is
measured like the whole split, candidate and champion on the same rows with paired
intervals; a slice with too few rows (or rows of a class) is marked as too small and carries
no numbers, so no rule can pass or fail on noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sail_pipelines.config import BootstrapConfig, SliceConfig
from sail_pipelines.contract.schema import plain
from sail_pipelines.errors import SailError
from sail_pipelines.evaluation.bootstrap import Outputs
from sail_pipelines.evaluation.evidence import compare, too_few

MAX_VALUES = 50  # more distinct values than this is not a category column


def measure(
    config: SliceConfig,
    bootstrap: BootstrapConfig,
    task: str,
    classes: list[Any],
    test: pd.DataFrame,
    target: str,
    candidate: Outputs,
    champion: Outputs | None,
) -> list[dict[str, Any]]:
    """One entry per (column, value) of the test split, in column order then value order."""
    missing = [c for c in config.columns if c not in test.columns]
    if missing:
        raise SailError(
            f"params.yaml: gate.slices.columns names {', '.join(map(repr, missing))}, "
            "not a column of data/split/test.csv"
        )
    y_true = test[target].to_numpy()
    entries = []
    for column in config.columns:
        codes, values = pd.factorize(test[column], sort=True, use_na_sentinel=False)
        if len(values) > MAX_VALUES:
            raise SailError(
                f"params.yaml: gate.slices column {column!r} has {len(values)} distinct values "
                f"in the test split; slices need a category column (at most {MAX_VALUES} values)"
            )
        for code, value in enumerate(values):
            rows = np.flatnonzero(codes == code)
            small = too_few(
                y_true[rows],
                task,
                classes,
                config.min_rows,
                config.min_rows_per_class,
                "gate.slices.min_rows",
                "gate.slices.min_rows_per_class",
            )
            entry: dict[str, Any] = {
                "column": column,
                "value": None if pd.isna(value) else plain(value),
                "rows": int(len(rows)),
                "judged": small is None,
                "reason": None if small is None else f"too small to judge: {small}",
            }
            if small is None:
                entry.update(
                    compare(
                        task,
                        y_true[rows],
                        candidate.subset(rows),
                        None if champion is None else champion.subset(rows),
                        bootstrap,
                    )
                )
            entries.append(entry)
    return entries


def label(entry: dict[str, Any]) -> str:
    """'sex=2', as the rules and the report name a slice."""
    return f"{entry['column']}={'(missing)' if entry['value'] is None else entry['value']}"
