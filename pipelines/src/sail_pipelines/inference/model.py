"""Predictions from a verified bundle, by the runtime that serves it.

The integrity layer only verifies and reads a bundle (`LoadedBundle`); running its model is the
inference side's job. A compiled bundle runs its ONNX graph (`inference/onnx.py`) from plain
columns, importing neither pandas nor scikit-learn; otherwise the fitted Shared Transformation
Layer and model run through scikit-learn, one prediction at a time per process.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from sail_pipelines.inference.onnx import Columns, CompiledModel, Prediction
from sail_pipelines.integrity.bundle import ONNX_MODEL, BundleRejected, LoadedBundle

if TYPE_CHECKING:
    import pandas as pd

# One ONNX Runtime session per bundle, made on first use: in each server worker after the fork
# (a session made before it leaves the child hanging at exit), dropped with the bundle.
_COMPILED: weakref.WeakKeyDictionary[LoadedBundle, CompiledModel] = weakref.WeakKeyDictionary()
_COMPILING = threading.Lock()

# One scikit-learn prediction at a time per process. Its joblib wrapper runs every tree of a
# forest inside `warnings.catch_warnings()` + `resetwarnings()`, which change the process-wide
# filter list: concurrent threads see it empty (scikit-learn then warns on each call) and can
# leave it emptied for good. The GIL serializes that Python work anyway.
SKLEARN = threading.Lock()


def compiled(bundle: LoadedBundle) -> CompiledModel:
    """The bundle's ONNX graph in an ONNX Runtime session, made once per bundle."""
    with _COMPILING:
        session = _COMPILED.get(bundle)
        if session is None:
            if ONNX_MODEL not in bundle.files:
                raise BundleRejected(f"bundle {bundle.path} carries no {ONNX_MODEL}")
            probabilities = bool(bundle.metadata.get("probabilities", True))
            session = CompiledModel(bundle.files[ONNX_MODEL], bundle.schema, probabilities)
            _COMPILED[bundle] = session
    return session


def predict(
    bundle: LoadedBundle, columns: Columns | pd.DataFrame, runtime: str | None = None
) -> Prediction:
    """Predictions (and class probabilities) through the fitted Shared Transformation Layer,
    by the runtime that serves this bundle unless another is named. Takes checked columns
    (a request's) or a frame (a batch file's). Raises NonFiniteFeatures, naming the field,
    when scikit-learn's STL turns a row into something the model cannot score."""
    if (runtime or bundle.runtime) == "onnx":
        if hasattr(columns, "columns"):  # a frame: numbers as floats, missing values as NaN
            columns = bundle.schema.prepare(columns)
        return compiled(bundle).predict(columns)
    return _sklearn_predict(bundle, columns)


def _sklearn_predict(bundle: LoadedBundle, columns: Columns) -> Prediction:
    import pandas as pd

    from sail_pipelines.contract import stl

    schema = bundle.schema
    frame = pd.DataFrame({name: columns[name] for name in schema.feature_names})
    model = bundle.model
    with SKLEARN:
        # The dtypes training gave the STL, however the rows arrived (JSON 1 and 1.0 alike).
        transformed = stl.transform(bundle.transformer, schema, schema.prepare(frame))
        probabilities = None
        if bundle.metadata["task"] == "classification" and hasattr(model, "predict_proba"):
            probabilities = model.predict_proba(transformed)
        if probabilities is not None and _predicts_by_argmax(model):
            # what its predict() computes from a second predict_proba: every tree again
            predictions = model.classes_.take(probabilities.argmax(axis=1), axis=0)
        else:
            predictions = model.predict(transformed)
    return predictions, probabilities


def serve_single_threaded(bundle: LoadedBundle) -> None:
    """n_jobs=1 wherever the fitted STL or model has it: a server predicts a few rows per
    request with a worker per CPU, where a joblib pool per request costs more than it saves."""
    for fitted in (bundle.transformer, bundle.model):
        if hasattr(fitted, "get_params"):
            params = fitted.get_params(deep=True)
            fitted.set_params(**{k: 1 for k in params if k.rpartition("__")[2] == "n_jobs"})


def _predicts_by_argmax(model: Any) -> bool:
    """A single-output forest, whose predict() is the argmax of its predict_proba()."""
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    return isinstance(model, (RandomForestClassifier, ExtraTreesClassifier)) and (
        getattr(model, "n_outputs_", 1) == 1
    )
