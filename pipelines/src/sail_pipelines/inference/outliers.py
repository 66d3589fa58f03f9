"""Outlier scores at serving: the detector training fitted on the STL's output
(`training/outliers.py`), run on the rows the model sees.

A compiled bundle's graph answers `outlier_score` beside the prediction, in the same ONNX Runtime
run (no pandas, no scikit-learn); otherwise the fitted STL and the detector's pipeline run
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
from sail_pipelines.inference.onnx import Columns, Prediction
from sail_pipelines.integrity.bundle import OUTLIERS, LoadedBundle

if TYPE_CHECKING:
    import pandas as pd

FIELDS = ("outlier_score", "outlier")  # in every answer, batch output and prediction-log line
DECIMALS = 6
_LOADING = threading.Lock()


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
        values = (self.scores.astype(float).tolist(), self.flags.tolist())
        return dict(zip(FIELDS, values, strict=True))


def described(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """What /metadata says of the detector (None: the bundle has none)."""
    found = metadata.get("outliers")
    if not found:
        return None
    action = (metadata.get("serving") or {}).get("outliers", "flag")
    keys = ("detector", "quantile", "threshold", "training_share")
    return {**{k: found.get(k) for k in keys}, "action": action}


def refusal(
    metadata: Mapping[str, Any], found: Outliers | None, many: bool
) -> tuple[int, str] | None:
    """The first outlier and why it is refused, when the bundle refuses outliers
    (serving.outliers: refuse) and the request or chunk holds one; else None."""
    if found is None or (metadata.get("serving") or {}).get("outliers") != "refuse":
        return None
    first = found.first()
    return None if first is None else (first, found.message(first, many))


def predict(
    bundle: LoadedBundle, columns: Columns | pd.DataFrame
) -> tuple[Prediction, Outliers | None]:
    """`model.predict`'s answer and the records' outlier scores and flags (None when the bundle
    carries no detector): from one run of the compiled graph when it serves, else from the
    fitted STL, model and detector through scikit-learn."""
    found = bundle.metadata.get("outliers")
    scores = None
    if bundle.runtime == "onnx":
        if hasattr(columns, "columns"):  # a frame: numbers as floats, missing values as NaN
            columns = bundle.schema.prepare(columns)
        prediction, scores = model.compiled(bundle).run(columns)
    else:
        prediction = model.predict(bundle, columns)
    if not found or OUTLIERS not in bundle.files:
        return prediction, None
    if scores is None:  # scikit-learn serves (or a graph without the score)
        scores = _sklearn_scores(bundle, columns)
    threshold = float(found["threshold"])
    # six decimals: the same number from every path (ONNX Runtime's is float32), and short JSON
    scores = np.round(scores.astype(np.float64), DECIMALS)
    return prediction, Outliers(scores, scores > threshold, threshold)


def _sklearn_scores(bundle: LoadedBundle, columns: Columns) -> np.ndarray:
    import pandas as pd

    from sail_pipelines.contract import stl

    schema = bundle.schema
    frame = pd.DataFrame({name: columns[name] for name in schema.feature_names})
    detector = _detector(bundle)
    with model.SKLEARN:
        transformed = stl.transform(bundle.transformer, schema, schema.prepare(frame))
        rows = np.asarray(transformed, dtype=np.float32).astype(np.float64)
        return -detector.score_samples(rows)


_DETECTORS: weakref.WeakKeyDictionary[LoadedBundle, Any] = weakref.WeakKeyDictionary()


def _detector(bundle: LoadedBundle) -> Any:
    """The unpickled detector (from the verified bytes), once per bundle."""
    with _LOADING:
        found = _DETECTORS.get(bundle)
        if found is None:
            import io

            import joblib

            found = _DETECTORS[bundle] = joblib.load(io.BytesIO(bundle.files[OUTLIERS]))
    return found
