"""Outlier scores at serving: the detector training fitted on the STL's output
(`training/outliers.py`), run on the rows the model sees.

A compiled bundle runs the detector's ONNX graph (the STL and the detector, fed as the model's
graph is: no pandas, no scikit-learn); otherwise the fitted STL and the detector's pipeline run
through scikit-learn. Both give the same score (higher = more outlying); a record is an outlier
when its score is above the threshold the bundle's metadata holds. A bundle trained before the
detector existed has none: its answers carry no outlier fields.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from sail_pipelines.inference import model
from sail_pipelines.inference.onnx import Columns, CompiledModel
from sail_pipelines.integrity.bundle import OUTLIERS, OUTLIERS_ONNX, LoadedBundle

if TYPE_CHECKING:
    import pandas as pd

FIELDS = ("outlier_score", "outlier")  # in every answer, batch output and prediction-log line
_COMPILED: weakref.WeakKeyDictionary[LoadedBundle, CompiledModel] = weakref.WeakKeyDictionary()
_COMPILING = threading.Lock()


@dataclass(frozen=True)
class Outliers:
    """Each record's score and whether it is above the threshold."""

    scores: np.ndarray
    flags: np.ndarray
    threshold: float

    def first(self) -> int | None:
        flagged = np.flatnonzero(self.flags)
        return int(flagged[0]) if len(flagged) else None

    def message(self, record: int, many: bool) -> str:
        where = f"record {record} is" if many else "the record is"
        return (
            f"{where} an outlier: its outlier score {self.scores[record]:.4f} is above the "
            f"threshold {self.threshold:.4f} (serving.outliers: refuse)"
        )

    def outputs(self) -> dict[str, list[Any]]:
        """The answer's fields, one value per record."""
        return dict(zip(FIELDS, (self.scores.astype(float).tolist(), self.flags.tolist())))


def described(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """What /metadata says of the detector (None: the bundle has none)."""
    found = metadata.get("outliers")
    if not found:
        return None
    action = (metadata.get("serving") or {}).get("outliers", "flag")
    keys = ("detector", "quantile", "threshold", "training_share")
    return {**{k: found.get(k) for k in keys}, "action": action}


def refuses(metadata: Mapping[str, Any]) -> bool:
    """Whether a bundle refuses outliers (serving.outliers: refuse)."""
    return (metadata.get("serving") or {}).get("outliers") == "refuse"


def _compiled(bundle: LoadedBundle) -> CompiledModel:
    with _COMPILING:
        session = _COMPILED.get(bundle)
        if session is None:
            session = CompiledModel(bundle.files[OUTLIERS_ONNX], bundle.schema, False)
            _COMPILED[bundle] = session
    return session


def score(bundle: LoadedBundle, columns: Columns | pd.DataFrame) -> Outliers | None:
    """The records' outlier scores and flags, by the runtime that serves the bundle's model;
    None when the bundle carries no detector."""
    found = bundle.metadata.get("outliers")
    if not found or OUTLIERS not in bundle.files:
        return None
    if bundle.runtime == "onnx" and OUTLIERS_ONNX in bundle.files:
        if hasattr(columns, "columns"):  # a frame: numbers as floats, missing values as NaN
            columns = bundle.schema.prepare(columns)
        session = _compiled(bundle)
        scores = session.session.run(None, session.feed(columns))[0].ravel().astype(np.float64)
    else:
        scores = _sklearn_scores(bundle, columns)
    threshold = float(found["threshold"])
    return Outliers(scores, scores > threshold, threshold)


def _sklearn_scores(bundle: LoadedBundle, columns: Columns) -> np.ndarray:
    import pandas as pd

    from sail_pipelines.contract import stl

    schema = bundle.schema
    frame = pd.DataFrame({name: columns[name] for name in schema.feature_names})
    detector = _detector(bundle)
    with model.SKLEARN:
        transformed = stl.transform(bundle.transformer, schema, schema.prepare(frame))
        rows = np.asarray(transformed, dtype=np.float32).astype(np.float64)
        # float32 like ONNX Runtime's answer, so every path gives the same number
        return (-detector.score_samples(rows)).astype(np.float32).astype(np.float64)


_DETECTORS: weakref.WeakKeyDictionary[LoadedBundle, Any] = weakref.WeakKeyDictionary()


def _detector(bundle: LoadedBundle) -> Any:
    """The unpickled detector (from the verified bytes), once per bundle."""
    with _COMPILING:
        found = _DETECTORS.get(bundle)
        if found is None:
            import io

            import joblib

            found = _DETECTORS[bundle] = joblib.load(io.BytesIO(bundle.files[OUTLIERS]))
    return found
