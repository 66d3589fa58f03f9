"""`sail monitor`: served traffic against the training data of the accepted model.

Per feature: drift (PSI on the training split's quantile bins and the Kolmogorov-Smirnov
statistic for numbers and dates, dates as days; PSI and the largest change of one category's
share for categories), the share of values outside the training range and the share of nulls
against the split's own; the drift of the predictions from the model's predictions on the
split; and a first-derivative check, PSI between consecutive time windows, which catches a
sudden change that a slow average would hide. Each rule's effect is held to its limit in
params.yaml's `monitoring:`, and a breach also needs evidence: a p-value, Holm-corrected over
every check of the run, below `min_p_value` (stats.py). Every breach is one line and a non-zero
exit; the report goes to reports/monitor.json and reports/monitor.md (render.py). The checks
are in checks.py, the training split they compare with in baselines.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Mapping, Sequence

import pandas as pd

from sail_pipelines.config import MonitoringConfig, Params, ProjectPaths
from sail_pipelines.contract.schema import Schema
from sail_pipelines.errors import SailError
from sail_pipelines.files import write_atomic, write_json
from sail_pipelines.monitoring import checks
from sail_pipelines.monitoring.baselines import NUMBERS, Baseline, as_numbers, baseline
from sail_pipelines.monitoring.logs import Traffic
from sail_pipelines.monitoring.stats import Finding, judge

__all__ = ["NUMBERS", "Baseline", "as_numbers", "baseline", "compare", "run"]


def _empty_report(traffic: Traffic, config: MonitoringConfig) -> dict[str, Any]:
    """The report before any check: what was served, and the limits it is held to."""
    return {
        "rows": traffic.rows,
        "requests": traffic.requests,
        "refused": traffic.refused,
        "bundles": sorted(traffic.bundles),
        "first": min(traffic.times, default=None),
        "last": max(traffic.times, default=None),
        "limits": config.model_dump(),
        "features": {},
        "predictions": {},
        "outliers": {},
        "sudden_changes": [],
        "checks": [],
        "breaches": [],
    }


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
    report = _empty_report(traffic, config)
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
        stats, found = checks.feature(column, base, traffic.inputs[column.name], config)
        report["features"][column.name] = stats
        findings += found
    report["predictions"] = stats = checks.predictions(base, traffic.predictions, config)
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
    report["outliers"], found = checks.outlier_share(metadata, traffic.outliers, config)
    findings += found
    for change in checks.sudden_changes(schema, traffic, base, config):
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
    from sail_pipelines.inference import model

    try:
        return model.predict(bundle, train[bundle.schema.feature_names])[0]
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
