"""PNG plots for the metric report: confusion matrix and ROC, or residuals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: CI machines and containers have no display
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay  # noqa: E402

from sail_pipelines.files import write_atomic  # noqa: E402


def _save(fig: Any, path: Path) -> None:
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight"))
    plt.close(fig)


def classification(
    out: Path, title: str, y_true: Any, predictions: Any, probabilities: Any, classes: list[Any]
) -> list[Path]:
    paths = []
    fig, ax = plt.subplots(figsize=(4, 4))
    ConfusionMatrixDisplay.from_predictions(
        y_true, predictions, labels=classes, ax=ax, colorbar=False
    )
    ax.set_title(f"{title}: confusion matrix")
    paths.append(out / "confusion_matrix.png")
    _save(fig, paths[-1])
    if probabilities is not None and len(classes) == 2:
        fig, ax = plt.subplots(figsize=(4, 4))
        RocCurveDisplay.from_predictions(
            y_true, probabilities[:, 1], pos_label=classes[1], ax=ax, name=title
        )
        ax.set_title(f"{title}: ROC")
        paths.append(out / "roc.png")
        _save(fig, paths[-1])
    return paths


def regression(out: Path, title: str, y_true: Any, predictions: Any) -> list[Path]:
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(predictions, y_true - predictions, s=10, alpha=0.7)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (actual - predicted)")
    ax.set_title(f"{title}: residuals")
    path = out / "residuals.png"
    _save(fig, path)
    return [path]
