"""`sail monitor`: served traffic against the training data of the accepted model.

Per feature: drift (PSI on the training split's quantile bins and the Kolmogorov-Smirnov
statistic for numbers and dates, dates as days; PSI and the largest change of one category's
share for categories), the share of values outside the training range and the share of nulls
against the split's own; the drift of the predictions from the model's predictions on the
split; and a first-derivative check, PSI between consecutive time windows, which catches a
sudden change that a slow average would hide. Each rule's effect is held to its limit in
params.yaml's `monitoring:`, and a breach also needs evidence: a p-value, Holm-corrected over
every check of the run, below `min_p_value` (stats.py). Every breach is one line and a non-zero
exit; the report goes to reports/monitor.json and reports/monitor.md (render.py).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sail_pipelines.config import MonitoringConfig, Params, ProjectPaths
from sail_pipelines.contract.ranges import training_ranges
from sail_pipelines.contract.schema import Column, Schema
from sail_pipelines.errors import SailError
from sail_pipelines.files import write_atomic, write_json
from sail_pipelines.monitoring.logs import Traffic
from sail_pipelines.monitoring.stats import (
    MIN_EXPECTED,
    Finding,
    binned,
    category_drift,
    excess,
    homogeneity,
    judge,
    label,
    numeric_drift,
    psi,
    quantile_edges,
)

NUMBERS = ("float", "int", "datetime")  # compared as numbers: dates as days since 1970
EPOCH = pd.Timestamp(0, tz="UTC")


@dataclass(frozen=True)
class Baseline:
    """What every window is compared with, computed once from the training split: each
    feature's present values (numbers and dates as floats, categories as text), its bins, nulls
    and range, and the predictions the model makes on the split."""

    rows: int
    numbers: dict[str, np.ndarray]
    edges: dict[str, np.ndarray]
    labels: dict[str, pd.Series]
    missing: dict[str, int]
    ranges: dict[str, tuple[float, float]]
    outside: dict[str, int]
    predictions: np.ndarray | pd.Series
    classification: bool


def as_numbers(column: Column, values: Any) -> np.ndarray:
    """Numbers as floats, dates as days since 1970 (UTC), so both get bins, KS and a range."""
    if column.type == "datetime":
        stamps = pd.to_datetime(
            pd.Series(values, dtype=object), utc=True, format="ISO8601", errors="coerce"
        )
        return ((stamps - EPOCH) / pd.Timedelta(days=1)).to_numpy(dtype=float)
    return np.asarray(values, dtype=float)


def baseline(
    schema: Schema,
    metadata: Mapping[str, Any],
    train: pd.DataFrame,
    config: MonitoringConfig,
    predictions: Sequence[Any] | None = None,
) -> Baseline:
    """The training split prepared once; `predictions` are the model's on it (the training
    target stands in without them)."""
    ranges = training_ranges(schema, metadata)
    margin = float((metadata.get("serving") or {}).get("range_margin", 0.1))
    base = Baseline(len(train), {}, {}, {}, {}, {}, {}, np.array([]), False)
    for column in schema.features:
        if column.name not in train:
            continue
        values = train[column.name]
        base.missing[column.name] = int(values.isna().sum())
        present = values.dropna()
        if column.type in NUMBERS:
            numbers = as_numbers(column, present.to_numpy())
            numbers = numbers[np.isfinite(numbers)]
            base.numbers[column.name] = numbers
            base.edges[column.name] = quantile_edges(numbers, config.bins)
            if column.type == "datetime" and len(numbers):
                low, high = float(numbers.min()), float(numbers.max())
                ranges[column.name] = (low - margin * (high - low), high + margin * (high - low))
            if column.name in ranges:
                low, high = ranges[column.name]
                base.ranges[column.name] = (low, high)
                base.outside[column.name] = int(np.sum((numbers < low) | (numbers > high)))
        else:
            base.labels[column.name] = present.map(label)
    target = train[schema.target.name].dropna()
    classification = metadata.get("task") == "classification"
    reference = target if predictions is None else pd.Series(list(predictions)).dropna()
    return replace(
        base,
        predictions=reference.map(label) if classification else reference.to_numpy(dtype=float),
        classification=classification,
    )


def _feature(
    column: Column, base: Baseline, served: list[Any], config: MonitoringConfig
) -> tuple[dict[str, Any], list[Finding]]:
    name, rows = column.name, len(served)
    present = [v for v in served if v is not None]
    trained = base.missing.get(name, 0) / max(base.rows, 1)
    result: dict[str, Any] = {"rows": rows, "missing": 1 - len(present) / rows if rows else 0.0}
    result["missing_training"] = trained
    effect, p = excess(rows - len(present), rows, base.missing.get(name, 0), base.rows)
    findings = [
        Finding(
            name,
            "missing",
            effect,
            config.max_missing,
            p,
            f"{name}: {result['missing']:.1%} of served values missing against {trained:.1%} "
            f"in training, more than monitoring.max_missing {config.max_missing:.1%} above it",
        )
    ]
    if not present:
        return result, findings
    values = as_numbers(column, present) if name in base.numbers else np.array([])
    values = values[np.isfinite(values)]
    if len(values) and len(base.numbers[name]):
        result.update(numeric_drift(base.numbers[name], values, base.edges[name]))
        findings += [
            Finding(
                name,
                "psi",
                result["psi"],
                config.max_psi,
                result["psi_p_value"],
                f"{name}: drift PSI {result['psi']:.3f} above monitoring.max_psi {config.max_psi}",
            ),
            Finding(
                name,
                "ks",
                result["ks"],
                config.max_ks,
                result["p_value"],
                f"{name}: drift KS {result['ks']:.3f} above monitoring.max_ks {config.max_ks}",
            ),
        ]
        if name in base.ranges:
            low, high = base.ranges[name]
            hits = int(np.sum((values < low) | (values > high)))
            result["out_of_range"] = hits / len(values)
            effect, p = excess(hits, len(values), base.outside[name], len(base.numbers[name]))
            findings.append(
                Finding(
                    name,
                    "out_of_range",
                    effect,
                    config.max_out_of_range,
                    p,
                    f"{name}: {result['out_of_range']:.1%} of served values outside the training "
                    f"range, above monitoring.max_out_of_range {config.max_out_of_range:.1%}",
                )
            )
    elif name in base.labels:
        result.update(category_drift(base.labels[name], present))
        findings += _category_findings(name, result, config)
    return result, findings


def _category_findings(
    name: str, stats: Mapping[str, Any], config: MonitoringConfig
) -> list[Finding]:
    change = stats["share_change"]
    return [
        Finding(
            name,
            "psi",
            stats["psi"],
            config.max_psi,
            stats["p_value"],
            f"{name}: drift PSI {stats['psi']:.3f} above monitoring.max_psi {config.max_psi}",
            "chi-square",
        ),
        Finding(
            name,
            "share",
            abs(change),
            config.max_share_change,
            stats["share_p_value"],
            f"{name}: the share of {stats['share_of']!r} moved {change:+.1%} from training, "
            f"more than monitoring.max_share_change {config.max_share_change:.1%}",
        ),
    ]


def _predictions(base: Baseline, served: list[Any], config: MonitoringConfig) -> dict[str, Any]:
    if base.classification:
        return category_drift(base.predictions, served)
    values = np.asarray(served, dtype=float)
    reference = np.asarray(base.predictions, dtype=float)
    stats = numeric_drift(reference, values, quantile_edges(reference, config.bins))
    return {"psi": stats["psi"], "p_value": stats["psi_p_value"]}


def _windows(times: list[str], hours: float) -> np.ndarray:
    """The window number of every record, counted from the first record's."""
    stamps = pd.to_datetime(pd.Series(times), utc=True, format="ISO8601")
    return ((stamps - stamps.min()).dt.total_seconds() // (hours * 3600)).to_numpy(dtype=int)


def _counts(column: Column, base: Baseline, a: pd.Series, b: pd.Series) -> np.ndarray:
    """Two windows' values over one set of bins: the training split's for numbers and dates,
    else the categories of both, those seen fewer than 2 * MIN_EXPECTED times pooled."""
    if column.name in base.edges:
        edges = base.edges[column.name]
        return np.vstack([binned(as_numbers(column, s.to_numpy()), edges) for s in (a, b)])
    both = pd.concat([a, b]).map(label).value_counts()
    kept = both.index[both >= 2 * MIN_EXPECTED]
    rows = []
    for s in (a, b):
        inside = s.map(label).value_counts().reindex(kept).fillna(0).to_numpy(dtype=float)
        rows.append(np.append(inside, len(s) - inside.sum()))
    return np.vstack(rows)


def sudden_changes(
    schema: Schema, traffic: Traffic, base: Baseline, config: MonitoringConfig
) -> list[dict[str, Any]]:
    """PSI of each feature between consecutive windows holding at least min_rows records each,
    with the chi-square p-value that the two windows share one distribution."""
    windows = _windows(traffic.times, config.window_hours)
    filled = [w for w in np.unique(windows) if np.sum(windows == w) >= config.min_rows]
    changes = []
    for before, after in itertools.pairwise(filled):
        for column in schema.features:
            served = traffic.inputs.get(column.name)
            if served is None or (column.name not in base.edges and column.type in NUMBERS):
                continue
            values = pd.Series(served, dtype=object)
            a, b = values[windows == before].dropna(), values[windows == after].dropna()
            if len(a) < config.min_rows or len(b) < config.min_rows:
                continue
            counts = _counts(column, base, a, b)
            changes.append(
                {
                    "feature": column.name,
                    "from_window": int(before),
                    "to_window": int(after),
                    "psi": psi(counts[0], counts[1]),
                    "p_value": homogeneity(counts[0], counts[1]),
                }
            )
    return changes


def compare(
    schema: Schema,
    metadata: Mapping[str, Any],
    train: pd.DataFrame,
    traffic: Traffic,
    config: MonitoringConfig,
    base: Baseline | None = None,
) -> dict[str, Any]:
    """The whole comparison as a JSON-ready report; `breaches` lists one line per rule whose
    effect crosses its limit with a Holm-adjusted p-value below min_p_value. `base` is
    `baseline(...)` when the caller already has it."""
    report: dict[str, Any] = {
        "rows": traffic.rows,
        "requests": traffic.requests,
        "refused": traffic.refused,
        "bundles": sorted(traffic.bundles),
        "first": min(traffic.times, default=None),
        "last": max(traffic.times, default=None),
        "limits": asdict(config),
        "features": {},
        "predictions": {},
        "sudden_changes": [],
        "checks": [],
        "breaches": [],
    }
    if traffic.rows < config.min_rows:
        report["note"] = (
            f"{traffic.rows} served rows, fewer than monitoring.min_rows {config.min_rows}: "
            "not judged"
        )
        return report
    base = base or baseline(schema, metadata, train, config)
    findings: list[Finding] = []
    for column in schema.features:
        if column.name not in traffic.inputs:
            # `log: false`, or not a feature then
            report["features"][column.name] = {"logged": False}
            continue
        stats, found = _feature(column, base, traffic.inputs[column.name], config)
        report["features"][column.name] = stats
        findings += found
    report["predictions"] = stats = _predictions(base, traffic.predictions, config)
    findings.append(
        Finding(
            "predictions",
            "psi",
            stats["psi"],
            config.max_psi,
            stats["p_value"],
            f"predictions: drift PSI {stats['psi']:.3f} above monitoring.max_psi {config.max_psi}",
        )
    )
    for change in sudden_changes(schema, traffic, base, config):
        report["sudden_changes"].append(change)
        findings.append(
            Finding(
                change["feature"],
                "window",
                change["psi"],
                config.max_window_psi,
                change["p_value"],
                f"{change['feature']}: sudden change, PSI {change['psi']:.3f} between windows "
                f"{change['from_window']} and {change['to_window']} ({config.window_hours:g} h "
                f"each), above monitoring.max_window_psi {config.max_window_psi}",
            )
        )
    judged = judge(findings, config.min_p_value)
    report["checks"] = [j for j in judged if j["effect"] > j["limit"]]
    report["checks_total"] = len(judged)
    report["breaches"] = [j["line"] for j in judged if j["breach"]]
    return report


def training_data(
    paths: ProjectPaths, schema: Schema, source: Path | IO[bytes] | None = None
) -> pd.DataFrame:
    """The training split: `source` (the champion's, see reference.py) or data/split/train.csv."""
    if source is None and not paths.train_csv.is_file():
        raise SailError(
            f"{paths.train_csv} is missing: the monitor compares with the training split "
            "(dvc pull, or sail split)"
        )
    return pd.read_csv(
        paths.train_csv if source is None else source,
        usecols=lambda c: c in {*schema.feature_names, schema.target.name},
    )


def reference_predictions(bundle: Any, train: pd.DataFrame) -> Any:
    """The model's predictions on its training split: what served predictions are compared
    with (the target's mix is not what a model predicts). None when the split cannot be scored,
    and the target stands in."""
    from sail_pipelines.contract import stl

    try:
        return bundle.predict(train[bundle.schema.feature_names])[0]
    except stl.NonFiniteFeatures:
        return None


def write(paths: ProjectPaths, report: dict[str, Any], plots: Sequence[Path]) -> None:
    paths.reports.mkdir(parents=True, exist_ok=True)
    write_json(paths.reports / "monitor.json", report)
    from sail_pipelines.monitoring.render import markdown

    text = markdown(report, plots)
    write_atomic(paths.reports / "monitor.md", lambda tmp: tmp.write_text(text))


def run(
    paths: ProjectPaths,
    params: Params,
    bundle: Any,
    traffic: Traffic,
    live: dict[str, Any] | None = None,
    train_source: Path | IO[bytes] | None = None,
) -> dict[str, Any]:
    from sail_pipelines.monitoring.render import plot_drifted

    schema = bundle.schema
    train = training_data(paths, schema, train_source)
    base = baseline(
        schema, bundle.metadata, train, params.monitoring, reference_predictions(bundle, train)
    )
    report = compare(schema, bundle.metadata, train, traffic, params.monitoring, base)
    report["bundle_id"] = bundle.bundle_id
    if live:
        report["live"] = live.pop("metrics")
        report["breaches"] += live.pop("breaches")
        report["joined"] = live
    plots = plot_drifted(paths.reports / "monitor", schema, train, traffic, report)
    write(paths, report, plots)
    if report["breaches"]:
        raise SailError(
            f"{len(report['breaches'])} monitoring limit(s) breached (reports/monitor.md):\n  "
            + "\n  ".join(report["breaches"])
        )
    return {k: report[k] for k in ("rows", "requests", "refused", "bundle_id")} | {"breaches": 0}
