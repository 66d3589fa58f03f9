"""`sail monitor`: served traffic against the training data of the accepted model.

Per feature: drift (PSI on the training split's quantile bins, and the Kolmogorov-Smirnov
statistic for numbers; PSI and a chi-square test on the training shares for categories), the
share of values outside the training range and the share of nulls; for the model's answers, the
drift of the predictions from the training target; and a first-derivative check, PSI between
consecutive time windows, which catches a sudden change that a slow average would hide. Each
limit is in params.yaml's `monitoring:`; every breach is one line and a non-zero exit. The
report goes to reports/monitor.json and reports/monitor.md, with plots of served against
training distributions for the features that drifted.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sail_pipelines.config import MonitoringConfig, Params, ProjectPaths
from sail_pipelines.contract.ranges import training_ranges
from sail_pipelines.contract.schema import Schema
from sail_pipelines.errors import SailError
from sail_pipelines.files import write_atomic, write_json
from sail_pipelines.monitoring.logs import Traffic

EPSILON = 1e-4  # stands in for an empty bin's share, so PSI stays finite


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.clip(expected / max(expected.sum(), EPSILON), EPSILON, None)
    a = np.clip(actual / max(actual.sum(), EPSILON), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (ties merged), open at both ends."""
    return np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))


def binned(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(
        np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1
    ).astype(float)


def numeric_drift(reference: np.ndarray, served: np.ndarray, bins: int) -> dict[str, Any]:
    from scipy.stats import ks_2samp

    edges = quantile_edges(reference, bins)
    ks = ks_2samp(reference, served)
    return {
        "psi": psi(binned(reference, edges), binned(served, edges)),
        "ks": float(ks.statistic),
        "p_value": float(ks.pvalue),
    }


def category_drift(shares: Mapping[str, float], served: Sequence[Any]) -> dict[str, Any]:
    """PSI and chi-square against the training shares; values never seen in training pool in one
    bin."""
    from scipy.stats import chisquare

    names = list(shares)
    counts = pd.Series([str(v) for v in served]).value_counts()
    unseen = float(counts.drop(names, errors="ignore").sum())
    actual = np.array([float(counts.get(n, 0)) for n in names] + [unseen])
    expected = np.array([shares[n] for n in names] + [max(0.0, 1 - sum(shares.values()))])
    expected_counts = np.clip(expected, EPSILON, None)
    expected_counts = expected_counts / expected_counts.sum() * actual.sum()
    return {
        "psi": psi(expected, actual),
        "p_value": float(chisquare(actual, expected_counts).pvalue),
        "unseen": int(actual[-1]),
    }


def _feature(
    column: Any,
    reference: pd.Series | None,
    shares: Mapping[str, float] | None,
    served: list[Any],
    limits: tuple[float, float] | None,
    config: MonitoringConfig,
) -> dict[str, Any]:
    present = [v for v in served if v is not None]
    result: dict[str, Any] = {
        "rows": len(served),
        "missing": 1 - len(present) / len(served) if served else 0.0,
    }
    if not present:
        return result
    if column.type in ("float", "int") and reference is not None:
        values = np.asarray(present, dtype=float)
        result.update(numeric_drift(reference.to_numpy(dtype=float), values, config.bins))
        if limits is not None:
            result["out_of_range"] = float(np.mean((values < limits[0]) | (values > limits[1])))
    elif shares:
        result.update(category_drift(shares, present))
    return result


def _breaches(name: str, stats: Mapping[str, Any], config: MonitoringConfig) -> list[str]:
    lines = []
    if stats.get("psi", 0) > config.max_psi:
        lines.append(
            f"{name}: drift PSI {stats['psi']:.3f} above monitoring.max_psi {config.max_psi}"
        )
    if stats.get("ks", 0) > config.max_ks and stats.get("p_value", 1) < config.min_p_value:
        lines.append(
            f"{name}: drift KS {stats['ks']:.3f} above monitoring.max_ks {config.max_ks} "
            f"(p = {stats['p_value']:.2g})"
        )
    if stats.get("out_of_range", 0) > config.max_out_of_range:
        lines.append(
            f"{name}: {stats['out_of_range']:.1%} of served values outside the training range, "
            f"above monitoring.max_out_of_range {config.max_out_of_range:.1%}"
        )
    if stats.get("missing", 0) > config.max_missing:
        lines.append(
            f"{name}: {stats['missing']:.1%} of served values missing, above "
            f"monitoring.max_missing {config.max_missing:.1%}"
        )
    return lines


def _windows(times: list[str], hours: float) -> np.ndarray:
    """The window number of every record, counted from the first record's."""
    stamps = pd.to_datetime(pd.Series(times), utc=True, format="ISO8601")
    return ((stamps - stamps.min()).dt.total_seconds() // (hours * 3600)).to_numpy(dtype=int)


def sudden_changes(
    schema: Schema, traffic: Traffic, train: pd.DataFrame, config: MonitoringConfig
) -> list[dict[str, Any]]:
    """PSI of each feature between consecutive windows holding at least min_rows records each."""
    windows = _windows(traffic.times, config.window_hours)
    filled = [w for w in np.unique(windows) if np.sum(windows == w) >= config.min_rows]
    changes = []
    for before, after in itertools.pairwise(filled):
        for column in schema.features:
            served = traffic.inputs.get(column.name)
            if served is None:
                continue
            values = pd.Series(served, dtype=object)
            a, b = values[windows == before].dropna(), values[windows == after].dropna()
            if len(a) < config.min_rows or len(b) < config.min_rows:
                continue
            if column.type in ("float", "int") and column.name in train:
                edges = quantile_edges(
                    train[column.name].dropna().to_numpy(dtype=float), config.bins
                )
                value = psi(
                    binned(a.to_numpy(dtype=float), edges), binned(b.to_numpy(dtype=float), edges)
                )
            else:
                names = sorted(set(map(str, a)) | set(map(str, b)))
                ca, cb = a.astype(str).value_counts(), b.astype(str).value_counts()
                value = psi(
                    np.array([ca.get(n, 0) for n in names], float),
                    np.array([cb.get(n, 0) for n in names], float),
                )
            changes.append(
                {
                    "feature": column.name,
                    "from_window": int(before),
                    "to_window": int(after),
                    "psi": value,
                }
            )
    return changes


def compare(
    schema: Schema,
    metadata: Mapping[str, Any],
    train: pd.DataFrame,
    traffic: Traffic,
    config: MonitoringConfig,
) -> dict[str, Any]:
    """The whole comparison as a JSON-ready report; `breaches` lists one line per limit crossed."""
    profile = (metadata.get("training_profile") or {}).get("columns", {})
    ranges = training_ranges(schema, metadata)
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
        "breaches": [],
    }
    if traffic.rows < config.min_rows:
        report["note"] = (
            f"{traffic.rows} served rows, fewer than monitoring.min_rows {config.min_rows}: "
            "not judged"
        )
        return report
    for column in schema.features:
        if column.name not in traffic.inputs:
            # `log: false`, or not a feature then
            report["features"][column.name] = {"logged": False}
            continue
        reference = train[column.name].dropna() if column.name in train else None
        stats = _feature(
            column,
            reference,
            (profile.get(column.name) or {}).get("shares"),
            traffic.inputs[column.name],
            ranges.get(column.name),
            config,
        )
        report["features"][column.name] = stats
        report["breaches"] += _breaches(column.name, stats, config)
    target = schema.target
    if metadata.get("task") == "classification":
        shares = (profile.get(target.name) or {}).get("shares") or {}
        stats = category_drift(shares, traffic.predictions) if shares else {}
    else:
        stats = numeric_drift(
            train[target.name].dropna().to_numpy(dtype=float),
            np.asarray(traffic.predictions, dtype=float),
            config.bins,
        )
        # predictions are not the target: only their mix counts
        stats.pop("ks")
        stats.pop("p_value")
    report["predictions"] = stats
    if stats.get("psi", 0) > config.max_psi:
        report["breaches"].append(
            f"predictions: drift PSI {stats['psi']:.3f} above monitoring.max_psi {config.max_psi}"
        )
    for change in sudden_changes(schema, traffic, train, config):
        report["sudden_changes"].append(change)
        if change["psi"] > config.max_window_psi:
            report["breaches"].append(
                f"{change['feature']}: sudden change, PSI {change['psi']:.3f} between windows "
                f"{change['from_window']} and {change['to_window']} ({config.window_hours:g} h "
                f"each), above monitoring.max_window_psi {config.max_window_psi}"
            )
    return report


def markdown(report: Mapping[str, Any], plots: Sequence[Path]) -> str:
    lines = [
        "# Monitoring report",
        "",
        f"{report['rows']} served rows in {report['requests']} logged requests "
        f"({report['refused']} refused), {report['first']} to {report['last']}; bundles "
        f"{', '.join(report['bundles'])}.",
        "",
    ]
    if report.get("note"):
        lines += [report["note"], ""]
    lines += (
        ["## Verdict", ""]
        + ([f"- {b}" for b in report["breaches"]] or ["Every limit holds."])
        + [""]
    )
    lines += [
        "## Features",
        "",
        "| feature | PSI | KS | p-value | out of range | missing |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in report["features"].items():
        cells = [_cell(s.get(k)) for k in ("psi", "ks", "p_value", "out_of_range", "missing")]
        shown = " | ".join(cells) if s.get("logged", True) else "not logged (`log: false`) | | | |"
        lines.append(f"| {name} | {shown} |")
    if report["predictions"]:
        lines += [
            "",
            f"Predictions: PSI {_cell(report['predictions'].get('psi'))} against the training "
            "target.",
        ]
    if report["sudden_changes"]:
        worst = max(report["sudden_changes"], key=lambda c: c["psi"])
        lines += [
            "",
            f"Largest change between consecutive windows: {worst['feature']}, "
            f"PSI {worst['psi']:.3f}.",
        ]
    if report.get("live"):
        lines += ["", "## Live metrics (joined ground truth)", ""]
        lines += [f"- {k}: {_cell(v)}" for k, v in report["live"].items()]
    lines += [""] + [f"![{p.stem}]({p.parent.name}/{p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if math.isfinite(value) else str(value)
    return "" if value is None else str(value)


def plot_drifted(
    out: Path, schema: Schema, train: pd.DataFrame, traffic: Traffic, report: Mapping[str, Any]
) -> list[Path]:
    """Served against training distribution, for each feature named in a breach."""
    drifted = [
        c
        for c in schema.features
        if any(b.startswith(f"{c.name}:") for b in report["breaches"])
        and c.name in traffic.inputs
        and c.name in train
    ]
    if not drifted:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for column in drifted:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        served = pd.Series(traffic.inputs[column.name]).dropna()
        if column.type in ("float", "int"):
            ax.hist(
                [train[column.name].dropna().astype(float), served.astype(float)],
                bins=30,
                density=True,
                label=["training", "served"],
            )
        else:
            shares = pd.DataFrame(
                {
                    "training": train[column.name].astype(str).value_counts(normalize=True),
                    "served": served.astype(str).value_counts(normalize=True),
                }
            ).fillna(0)
            shares.plot.bar(ax=ax)
        ax.set_title(column.name)
        ax.legend()
        path = out / f"{column.name}.png"
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


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


def write(paths: ProjectPaths, report: dict[str, Any], plots: Sequence[Path]) -> None:
    paths.reports.mkdir(parents=True, exist_ok=True)
    write_json(paths.reports / "monitor.json", report)
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
    schema = bundle.schema
    train = training_data(paths, schema, train_source)
    report = compare(schema, bundle.metadata, train, traffic, params.monitoring)
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
