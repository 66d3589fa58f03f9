"""The checks of `sail monitor`, each a measured effect and its p-value (a `Finding`): per
feature the share of nulls, drift and the share outside the training range; the drift of the
predictions; and PSI between consecutive time windows (`sudden_changes`)."""

from __future__ import annotations

import itertools
from typing import Any, Mapping

import numpy as np
import pandas as pd

from sail_pipelines.config import MonitoringConfig
from sail_pipelines.contract.schema import Column, Schema
from sail_pipelines.monitoring.baselines import NUMBERS, Baseline, as_numbers
from sail_pipelines.monitoring.logs import Traffic
from sail_pipelines.monitoring.stats import (
    MIN_EXPECTED,
    Finding,
    binned,
    category_drift,
    excess,
    homogeneity,
    label,
    numeric_drift,
    psi,
    quantile_edges,
)


def feature(
    column: Column, base: Baseline, served: list[Any], config: MonitoringConfig
) -> tuple[dict[str, Any], list[Finding]]:
    """One feature's figures for the report, and its findings."""
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
        findings += _numeric_findings(name, base, values, result, config)
    elif name in base.labels:
        result.update(category_drift(base.labels[name], present))
        findings += _category_findings(name, result, config)
    return result, findings


def _numeric_findings(
    name: str,
    base: Baseline,
    values: np.ndarray,
    result: dict[str, Any],
    config: MonitoringConfig,
) -> list[Finding]:
    """Drift (PSI, KS) and the share outside the training range; adds their figures to
    `result`."""
    result.update(numeric_drift(base.numbers[name], values, base.edges[name]))
    findings = [
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
    return findings


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


def outlier_share(
    metadata: Mapping[str, Any], flags: list[Any], config: MonitoringConfig
) -> tuple[dict[str, Any], list[Finding]]:
    """The share of served records the detector flagged, against the training split's share
    (Fisher's exact test, as for values out of range); nothing without a detector or flags."""
    trained = metadata.get("outliers") or {}
    known = [bool(f) for f in flags if f is not None]
    if not trained or not known:
        return {}, []
    hits, rows = sum(known), len(known)
    base_hits, base_rows = int(trained["training_outliers"]), int(trained["training_rows"])
    effect, p = excess(hits, rows, base_hits, base_rows)
    stats = {"rows": rows, "share": hits / rows, "training_share": base_hits / max(base_rows, 1)}
    line = (
        f"outliers: {stats['share']:.1%} of served records flagged against "
        f"{stats['training_share']:.1%} of the training split, more than "
        f"monitoring.max_outlier_share {config.max_outlier_share:.1%} above it"
    )
    return stats, [Finding("outliers", "outlier_share", effect, config.max_outlier_share, p, line)]


def predictions(base: Baseline, served: list[Any], config: MonitoringConfig) -> dict[str, Any]:
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
