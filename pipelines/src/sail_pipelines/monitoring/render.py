"""`sail monitor`'s report as people read it: reports/monitor.md, and plots of served against
training distributions for the features named in a breach."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from sail_pipelines.contract.schema import Schema
from sail_pipelines.monitoring.logs import Traffic
from sail_pipelines.monitoring.monitor import NUMBERS, as_numbers

COLUMNS = ("psi", "ks", "p_value", "share_change", "out_of_range", "missing")


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
        "| feature | PSI | KS | p-value | share change | out of range | missing |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in report["features"].items():
        cells = [_cell(s.get(k)) for k in COLUMNS]
        shown = (
            " | ".join(cells) if s.get("logged", True) else "not logged (`log: false`) | | | | |"
        )
        lines.append(f"| {name} | {shown} |")
    if report["predictions"]:
        lines += [
            "",
            f"Predictions: PSI {_cell(report['predictions'].get('psi'))} against the model's "
            "predictions on the training split.",
        ]
    if report.get("outliers"):
        o = report["outliers"]
        lines += [
            "",
            f"Outliers: {o['share']:.1%} of {o['rows']} served records flagged by the detector, "
            f"against {o['training_share']:.1%} of the training split.",
        ]
    unproven = [c for c in report.get("checks", []) if not c["breach"]]
    if unproven:
        lines += ["", "Past a limit, but within what a window of this size shows by chance:", ""]
        lines += [f"- {c['line']}" for c in unproven]
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
        if column.type in NUMBERS:
            ax.hist(
                [as_numbers(column, train[column.name].dropna()), as_numbers(column, served)],
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
        ax.set_title(column.name + (" (days since 1970)" if column.type == "datetime" else ""))
        ax.legend()
        path = out / f"{column.name}.png"
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths
