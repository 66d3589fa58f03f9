"""`sail validate`: the data contract, checked before anything trains on the data.

Three layers, as the SAIL paper suggests: the schema (columns, types, categories, nulls),
ranges against the reference profile with a margin, and first-derivative limits, i.e.
how far each column's statistics moved since the last data that passed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from sail_pipelines.config import Params, ProjectPaths, ValidationConfig
from sail_pipelines.contract.data import read_table
from sail_pipelines.contract.schema import (
    Column,
    Schema,
    column_problems,
    examples,
    load_schema,
    plain,
)
from sail_pipelines.errors import SailError
from sail_pipelines.files import read_json, write_json
from sail_pipelines.provenance import dvc_recorded_md5, file_md5

MAX_SHARES = 50  # category values whose share the profile keeps


@dataclass(frozen=True)
class Outcome:
    problems: list[str]
    profile: dict[str, Any]


def profile_frame(schema: Schema, frame: pd.DataFrame, data_hash: str) -> dict[str, Any]:
    """Per-column statistics that later runs (and served traffic) are compared against: numbers
    get their range, mean and spread; categories and booleans their value shares."""
    columns: dict[str, Any] = {}
    for column in (*schema.features, schema.target):
        values = frame[column.name]
        stats: dict[str, Any] = {"null_rate": float(values.isna().mean())}
        if column.type in ("float", "int"):
            numeric = pd.to_numeric(values, errors="coerce")
            with np.errstate(all="ignore"):
                stats.update(
                    min=float(numeric.min()),
                    max=float(numeric.max()),
                    mean=float(numeric.mean()),
                    std=float(numeric.std(ddof=0)),
                )
        elif column.type in ("category", "bool"):
            shares = values.dropna().map(plain).astype(str).value_counts(normalize=True)
            stats["shares"] = {str(k): float(v) for k, v in shares.head(MAX_SHARES).items()}
        columns[column.name] = stats
    return {
        "data_hash": data_hash,
        "rows": int(len(frame)),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "columns": columns,
    }


def _check_column(column: Column, values: pd.Series, config: ValidationConfig) -> list[str]:
    """The schema's rules, plus the null-rate limit that only applies to a whole data set."""
    problems = column_problems(column, values)
    rate = float(values.isna().mean())
    if column.nullable and rate > config.max_null_rate:
        problems.append(f"{column.name}: null rate {rate:.3f} exceeds {config.max_null_rate}")
    return problems


def _check_against(
    schema: Schema,
    frame: pd.DataFrame,
    reference: dict[str, Any],
    last: dict[str, Any],
    config: ValidationConfig,
) -> list[str]:
    """Ranges with a margin against the reference, and sudden moves against the last accepted
    data."""
    problems = []
    for column in (*schema.features, schema.target):
        if column.type not in ("float", "int") or "min" not in reference["columns"].get(
            column.name, {}
        ):
            continue
        ref = reference["columns"][column.name]
        values = pd.to_numeric(frame[column.name], errors="coerce")
        margin = config.range_margin * (ref["max"] - ref["min"])
        low, high = ref["min"] - margin, ref["max"] + margin
        below, above = values[values < low], values[values > high]
        if len(below):
            problems.append(
                f"{column.name}: value(s) below the reference minimum {ref['min']:g} - margin "
                f"({low:g}): {examples(below)}"
            )
        if len(above):
            problems.append(
                f"{column.name}: value(s) above the reference maximum {ref['max']:g} + margin "
                f"({high:g}): {examples(above)}"
            )
        prev = last["columns"].get(column.name)
        if not prev or not prev.get("std"):
            continue
        mean, std = float(values.mean()), float(values.std(ddof=0))
        shift = abs(mean - prev["mean"]) / prev["std"]
        if shift > config.max_mean_shift:
            problems.append(
                f"{column.name}: mean moved from {prev['mean']:g} to {mean:g}, {shift:.2f} std "
                f"since the last accepted data (limit {config.max_mean_shift})"
            )
        ratio = max(std / prev["std"], prev["std"] / std) if std > 0 else float("inf")
        if ratio > config.max_std_ratio:
            problems.append(
                f"{column.name}: std changed from {prev['std']:g} to {std:g} (ratio {ratio:.2f}, "
                f"limit {config.max_std_ratio})"
            )
    return problems


def check(
    params: Params,
    schema: Schema,
    frame: pd.DataFrame,
    data_hash: str,
    stored: dict[str, Any] | None,
) -> Outcome:
    """Pure check of one frame against the schema and the stored profile (None on a first run).
    Rows without a label are not an error up to validation.max_missing_target: `sail split` drops
    them. Ignored columns may be present or not."""
    expected = [*schema.feature_names, schema.target.name]
    missing = [c for c in expected if c not in frame.columns]
    known = {*expected, *(c.name for c in schema.ignored)}
    unexpected = [c for c in frame.columns if c not in known]
    problems = []
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    if unexpected:
        problems.append(
            f"unexpected column(s) not in contracts/schema.yaml: {', '.join(map(str, unexpected))} "
            "(add them there, with role: ignore to keep them out of the model)"
        )
    if problems:
        return Outcome(problems, {})
    labelled = frame[frame[schema.target.name].notna()]
    unlabelled = len(frame) - len(labelled)
    if unlabelled / len(frame) > params.validation.max_missing_target:
        problems.append(
            f"{schema.target.name}: {unlabelled} of {len(frame)} rows have no label "
            f"({unlabelled / len(frame):.1%}), above validation.max_missing_target "
            f"{params.validation.max_missing_target:.1%}"
        )
    if len(labelled) < params.validation.min_rows:
        problems.append(
            f"only {len(labelled)} labelled rows, at least {params.validation.min_rows} required"
        )
    for column in schema.features:
        problems += _check_column(column, frame[column.name], params.validation)
    problems += column_problems(schema.target, labelled[schema.target.name])
    if params.task == "classification" and labelled[schema.target.name].nunique() < 2:
        problems.append(f"{schema.target.name}: a classification target needs at least two classes")
    if not problems and stored:
        problems += _check_against(
            schema, labelled, stored["reference"], stored["last"], params.validation
        )
    return Outcome(problems, profile_frame(schema, labelled, data_hash) if not problems else {})


def run(paths: ProjectPaths, params: Params, baseline: bool = False) -> dict[str, Any]:
    """Validate the raw data, write the report, and roll the profile forward when the data
    passes."""
    schema = load_schema(paths.schema)
    data_path = paths.root / params.raw_data
    frame = read_table(data_path)
    data_hash = file_md5(data_path)
    problems = []
    recorded = dvc_recorded_md5(data_path)
    if recorded and recorded != data_hash:
        problems.append(
            f"{params.raw_data} changed since it was tracked (md5 {data_hash} != {recorded}): run "
            f"`dvc add {params.raw_data}`"
        )
    stored = None if baseline or not paths.profile.is_file() else read_json(paths.profile)
    outcome = check(params, schema, frame, data_hash, stored)
    problems += outcome.problems
    report = {
        "passed": not problems,
        "data": params.raw_data,
        "data_hash": data_hash,
        "rows": int(len(frame)),
        "rows_without_label": int(frame[schema.target.name].isna().sum())
        if schema.target.name in frame
        else None,
        "columns": len(frame.columns),
        "problems": problems,
        "baseline_created": stored is None and not problems,
    }
    write_json(paths.validation_report, report)
    if problems:
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        raise SailError(
            f"data validation failed with {len(problems)} problem(s), listed above and in "
            f"{paths.validation_report.relative_to(paths.root)}"
        )
    if stored is None:
        write_json(paths.profile, {"reference": outcome.profile, "last": outcome.profile})
    elif stored["last"].get("data_hash") != data_hash:
        write_json(paths.profile, {"reference": stored["reference"], "last": outcome.profile})
    return report
