"""PNG plots for the metric report: confusion matrix and ROC, or residuals; the winner's
importance per source column."""

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


def importance(out: Path, found: dict[str, Any]) -> Path:
    """Permutation importance per source column with its 95% interval (left) and the mean
    |contribution| (right, when the model has an explainer), largest first."""
    permuted = found["permutation"]
    order = sorted(permuted, key=lambda c: permuted[c]["mean"])
    mean_abs = found["contributions"].get("mean_abs")
    fig, axes = plt.subplots(
        1,
        2 if mean_abs else 1,
        figsize=(9 if mean_abs else 5, 1 + 0.35 * len(order)),
        squeeze=False,
    )
    means = [permuted[c]["mean"] for c in order]
    errors = [
        [m - permuted[c]["low"] for c, m in zip(order, means, strict=True)],
        [permuted[c]["high"] - m for c, m in zip(order, means, strict=True)],
    ]
    axes[0][0].barh(order, means, xerr=errors, color="#3d6fd8", capsize=3)
    axes[0][0].axvline(0, color="grey", linewidth=1)
    axes[0][0].set_xlabel(
        f"loss of {found['metric']} when shuffled ({found['repeats']} repeats, 95%)"
    )
    axes[0][0].set_title(f"{found['candidate']}: permutation importance")
    if mean_abs:
        axes[0][1].barh(order, [mean_abs.get(c, 0.0) for c in order], color="#c2410c")
        axes[0][1].set_xlabel(f"mean |contribution| ({found['contributions']['space']})")
        axes[0][1].set_title("mean absolute contribution")
    path = out / "importance.png"
    _save(fig, path)
    return path
