"""The outlier detector, fitted at training on the training split's STL output (the rows the
model learns from, in float32 as the tree models see them) and signed into every bundle.

Whitened principal axes first, then scikit-learn's IsolationForest (100 trees of 256 rows,
seeded): a forest splits one axis at a time, so a row unlike the joint distribution but inside
every per-feature range (an anti-correlated pair of correlated features) only stands out to it
once the axes are decorrelated and on one scale. The score is `-score_samples` (higher = more
outlying, in (0, 1]); the threshold is `serving.outlier_quantile` of the training split's scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sail_pipelines.config import Params
from sail_pipelines.contract.schema import Schema
from sail_pipelines.inference import onnx_forest
from sail_pipelines.inference.onnx import ConversionFailed
from sail_pipelines.integrity.bundle import ONNX_MODEL, OUTLIERS, dump_object

TREES = 100
MAX_SAMPLES = 256
MIN_VARIANCE = 1e-9  # principal axes with less of the largest one's variance are dropped
DETECTOR = "IsolationForest (100 trees, 256 rows each) on the whitened principal axes of the STL"


def rows(transformed: Any) -> np.ndarray:
    """What the detector takes: the STL's output as float32 (the trees' own cast), in float64."""
    dense = transformed.toarray() if hasattr(transformed, "toarray") else transformed
    return np.asarray(dense, dtype=np.float32).astype(np.float64)


def fit(transformed: Any, seed: int) -> Any:
    """PCA (whitened, without the axes of no variance) then IsolationForest, as one pipeline:
    `-pipeline.score_samples(rows(x))` is the outlier score."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.pipeline import Pipeline

    x = rows(transformed)
    variances = PCA(svd_solver="full").fit(x).explained_variance_
    kept = max(1, int(np.sum(variances > MIN_VARIANCE * max(float(variances.max()), 1e-300))))
    forest = IsolationForest(
        n_estimators=TREES, max_samples=min(MAX_SAMPLES, len(x)), random_state=seed
    )
    detector = Pipeline(
        [("pca", PCA(n_components=kept, whiten=True, svd_solver="full")), ("forest", forest)]
    )
    return detector.fit(x)


def scores(detector: Any, transformed: Any) -> np.ndarray:
    return -detector.score_samples(rows(transformed))


def fitted(
    transformed: Any, quantile: float, seed: int
) -> tuple[Any, dict[str, bytes], dict[str, Any]]:
    """The detector, its joblib file and what metadata says of it: the threshold at the training
    split's `quantile` (serving.outlier_quantile) and the share (and count) of that split above
    it, which `sail monitor` compares served traffic with."""
    detector = fit(transformed, seed)
    training = scores(detector, transformed)
    threshold = float(np.quantile(training, quantile))
    flagged = int(np.sum(training > threshold))
    metadata = {
        "detector": DETECTOR,
        "components": int(detector.named_steps["pca"].n_components_),
        "quantile": quantile,
        "threshold": threshold,
        "training_rows": len(training),
        "training_outliers": flagged,
        "training_share": flagged / len(training),
    }
    return detector, {OUTLIERS: dump_object(detector)}, metadata


@dataclass(frozen=True)
class Trained:
    """The detector as training writes it: its files, its metadata, and its ONNX graph (which
    `attach` puts into each candidate's), or why there is none."""

    files: dict[str, bytes]
    metadata: dict[str, Any]
    graph: bytes | None
    why: str | None

    def attach(self, graphs: dict[str, bytes]) -> str | None:
        """Put the detector into the candidate's compiled graph (`graphs`, changed in place); why
        the candidate cannot take the compiled path when it cannot, else None."""
        if not graphs:
            return None
        try:
            if self.graph is None:
                raise ConversionFailed(self.why or "the outlier detector has no graph")
            graphs[ONNX_MODEL] = onnx_forest.attach(graphs[ONNX_MODEL], self.graph)
        except ConversionFailed as exc:
            return f"no compiled model: {exc}"
        return None


def train(transformed: Any, transformer: Any, schema: Schema, params: Params) -> Trained:
    """Fit the detector on the training split's STL output, and convert it when the compiled
    path is on."""
    detector, files, metadata = fitted(
        transformed, params.serving.outlier_quantile, params.split.seed
    )
    graph, why = None, None
    if params.compiled.enabled:
        try:
            graph = onnx_forest.convert(transformer, detector, schema)
        except ConversionFailed as exc:
            why = f"the outlier detector does not convert: {exc}"
    return Trained(files, metadata, graph, why)
