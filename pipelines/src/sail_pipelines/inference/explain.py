"""Why a prediction: each record's output as a base value plus one contribution per source column.

Training writes the explainer's background into every candidate bundle (`background`): a seeded
sample of the training split in STL space and, for each STL output feature, the source column it
came from (one-hot groups and a date's calendar features go back to their column). The file is
signed like every bundle file, so a tampered background is refused before anything is read, and
nothing is fitted at serving: the explainer is built from the verified model and background on
the first request that asks for an explanation (`explainer`), so predictions that do not ask never
pay for it. A compiled bundle's requests take their STL output from its signed ONNX graph once it
agreed with scikit-learn's STL (`_graph_stl`), a millisecond instead of about ten.

- Linear models (scikit-learn's linear models, also as the last step of a Pipeline): the exact
  interventional Shapley values, coefficient x (value - background mean), in the space of the
  model's `decision_function` (log-odds for a logistic regression) or its prediction
  (regression). This is what SHAP's `LinearExplainer` computes, without importing shap.
- Tree ensembles (scikit-learn's forests, gradient boosting, histogram gradient boosting and
  decision trees, LightGBM, XGBoost): SHAP's `TreeExplainer`, tree-path-dependent, in the
  model's raw output space: class probability for scikit-learn's forests and trees, log-odds
  for gradient boosting, the predicted value for regression. The base value is the model's
  average output over the rows it was trained on (the trees' own node counts). Interventional
  SHAP on the background was off the model's output by about 1e-4 for scikit-learn's forests;
  the path-dependent values add up to it to 1e-13, and are faster.
- Anything else, or a tree model whose SHAP conversion does not add up to the model's own output
  (checked on the background when the explainer is built): a 422 saying the model has no
  explainer, so an explanation that is served adds up to the model's output.

A multi-output model (several classes) is explained for the predicted class; a single-output
binary classifier for its positive class (the second), which each explanation names.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from sail_pipelines.contract.schema import Schema, plain
from sail_pipelines.errors import SailError
from sail_pipelines.integrity.bundle import BACKGROUND, ONNX_MODEL, LoadedBundle

BACKGROUND_ROWS = 100
TOLERANCE = 1e-6  # base + contributions against the model's own output, on the background
TREE_MODULES = (
    "sklearn.ensemble._forest",
    "sklearn.ensemble._gb",
    "sklearn.ensemble._hist_gradient_boosting",
    "sklearn.tree",
    "lightgbm",
    "xgboost",
)


# The inference image's switch (`sail package` sets it from params.yaml's serving.explanations):
# "false" in an image built without what explanations need. Unset elsewhere (`sail serve` on a
# host explains wherever the libraries are installed).
SWITCH = "SAIL_EXPLANATIONS"
OFF = (
    "explanations are off in this image: set serving.explanations: true in params.yaml and "
    "package again"
)


def switched_off() -> bool:
    """True in an inference image packaged with serving.explanations off."""
    return os.environ.get(SWITCH, "").lower() == "false"


class Unexplainable(SailError):
    """This bundle's model cannot be explained here (a 422 when a request asks for it)."""


def background(sources: list[str], transformed: np.ndarray, seed: int) -> bytes:
    """The signed background file: a seeded sample of up to BACKGROUND_ROWS training rows in STL
    space, with the source column of each STL output feature."""
    rng = np.random.default_rng(seed)
    rows = transformed[rng.choice(len(transformed), min(BACKGROUND_ROWS, len(transformed)), False)]
    return json.dumps({"sources": sources, "rows": np.asarray(rows, float).tolist()}).encode()


def source_columns(transformer: Any, schema: Schema, width: int) -> list[str]:
    """Each STL output feature's source column, from the output names (`colour_red`,
    `date_month`); an output whose name says nothing keeps its own name (or `feature_<i>`)."""
    from sail_pipelines.contract.stl import source_fields

    fields = source_fields(transformer, schema)
    try:
        names = [str(n) for n in transformer.get_feature_names_out()]
    except (AttributeError, ValueError, TypeError):
        names = []
    if len(fields) != width or len(names) != width:
        return [f"feature_{i}" for i in range(width)]
    return [field or name for field, name in zip(fields, names, strict=True)]


@dataclass(frozen=True)
class Explainer:
    """A built explainer: `values(x)` gives contributions [rows, features, outputs], the base
    values [outputs] and the model's outputs [rows, outputs] it adds up to."""

    method: str  # "linear" or "tree"
    space: str  # "log-odds", "probability" or "value"
    sources: list[str]
    classes: list[Any]
    values: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]

    def explain(self, transformed: np.ndarray) -> list[dict[str, Any]]:
        """One explanation per row: contributions per source column (schema order), the base
        value, the output they add up to, its space and (classification) the class explained."""
        with np.errstate(over="ignore", invalid="ignore"):  # the server refuses non-finite ones
            contributions, base, outputs = self.values(np.asarray(transformed, float))
        columns = list(dict.fromkeys(self.sources))
        groups = np.zeros((len(self.sources), len(columns)))
        for i, source in enumerate(self.sources):
            groups[i, columns.index(source)] = 1.0
        explained = []
        for row in range(len(contributions)):
            k = int(np.argmax(outputs[row])) if outputs.shape[1] > 1 else 0
            summed = contributions[row, :, k] @ groups
            item: dict[str, Any] = {
                "contributions": dict(zip(columns, summed.tolist(), strict=True)),
                "base_value": float(base[k]),
                "output": float(outputs[row, k]),
                "space": self.space,
                "method": self.method,
            }
            if self.classes:
                item["class"] = self.classes[k if outputs.shape[1] > 1 else -1]
            explained.append(item)
        return explained


def _final(model: Any, rows: np.ndarray) -> tuple[Any, Callable[[np.ndarray], np.ndarray]]:
    """The estimator to explain and what feeds it: a Pipeline's last step after its other steps,
    which must keep one column per STL feature (a scaler) for the sources to hold."""
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline):
        return model, lambda x: x
    head = model[:-1]
    if np.asarray(head.transform(rows[:1])).shape[1] != rows.shape[1]:
        raise Unexplainable(
            "this model has no explainer: its Pipeline changes the number of features before "
            "the estimator, so contributions cannot be traced back to the source columns"
        )
    return model[-1], lambda x: np.asarray(head.transform(x), float)


def _linear(estimator: Any, rows: np.ndarray, classes: list[Any]) -> Explainer | None:
    from sklearn.linear_model._base import LinearClassifierMixin, LinearModel

    if not isinstance(estimator, (LinearModel, LinearClassifierMixin)):
        return None
    coef = np.atleast_2d(np.asarray(estimator.coef_, float))  # [outputs, features]
    intercept = np.broadcast_to(np.asarray(estimator.intercept_, float), (coef.shape[0],))
    mean = rows.mean(axis=0)
    base = intercept + coef @ mean

    def values(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        contributions = (x - mean)[:, :, None] * coef.T[None, :, :]
        return contributions, base, x @ coef.T + intercept

    space = "log-odds" if classes else "value"
    return Explainer("linear", space, [], classes, values)


def _raw_output(estimator: Any, x: np.ndarray) -> np.ndarray:
    """The model's own output in the space it is explained in, [rows, outputs]."""
    if type(estimator).__module__.startswith("lightgbm") and hasattr(estimator, "classes_"):
        out = estimator.predict(x, raw_score=True)
    elif hasattr(estimator, "decision_function") and hasattr(estimator, "classes_"):
        out = estimator.decision_function(x)
    elif hasattr(estimator, "predict_proba"):
        out = estimator.predict_proba(x)
    else:
        out = estimator.predict(x)
    out = np.asarray(out, float)
    return out.reshape(len(x), -1)


def _tree(estimator: Any, rows: np.ndarray, classes: list[Any]) -> Explainer | None:
    if not type(estimator).__module__.startswith(TREE_MODULES):
        return None
    try:
        import shap
    except ImportError as exc:
        raise Unexplainable(
            "explanations of tree models need shap, which this environment lacks: install "
            "sail-pipelines[explain] (the images get it with serving.explanations: true)"
        ) from exc
    try:  # path-dependent: exact for each tree's own splits (interventional was off by ~1e-4)
        tree = shap.TreeExplainer(estimator, feature_perturbation="tree_path_dependent")
    except Exception as exc:  # shap raises bare Exceptions for models it cannot convert
        raise Unexplainable(f"this model has no explainer: {str(exc).splitlines()[0]}") from exc

    def values(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        shapley = np.asarray(tree.shap_values(x, check_additivity=False), float)
        shapley = shapley.reshape(len(x), x.shape[1], -1)
        base = np.atleast_1d(np.asarray(tree.expected_value, float))
        # base + contributions: exact for path-dependent SHAP (checked against the model's own
        # output when built), and it spares a second pass of every tree per request
        return shapley, base, shapley.sum(axis=1) + base

    probability = hasattr(estimator, "predict_proba") and not hasattr(
        estimator, "decision_function"
    )
    lightgbm = type(estimator).__module__.startswith("lightgbm")
    space = (
        "value" if not classes else "probability" if probability and not lightgbm else "log-odds"
    )
    return Explainer("tree", space, [], classes, values)


def build(bundle: LoadedBundle) -> Explainer:
    """The bundle's explainer, from its verified model and background; Unexplainable when there
    is none, and when it does not add up to the model's output on the background."""
    if switched_off():
        raise Unexplainable(OFF)
    if BACKGROUND not in bundle.files:
        raise Unexplainable(
            "this bundle carries no explainer background (it was trained before explanations "
            "existed): retrain it to explain"
        )
    try:
        model = bundle.model
        import sklearn  # noqa: F401  (the STL runs through it)
    except ImportError as exc:
        raise Unexplainable(
            "explanations need scikit-learn and pandas (the model as fitted), which this server "
            "lacks (a compiled model's image): serve with sail-pipelines[explain] installed"
        ) from exc
    stored = json.loads(bundle.files[BACKGROUND])
    rows = np.asarray(stored["rows"], float)
    estimator, feed = _final(model, rows)
    fed = feed(rows)
    classes = bundle.classes if bundle.metadata.get("task") == "classification" else []
    made = _linear(estimator, fed, classes) or _tree(estimator, fed, classes)
    if made is None:
        raise Unexplainable(
            f"this model has no explainer: {type(estimator).__name__} is neither a linear model "
            "nor a tree ensemble"
        )
    explainer = Explainer(
        made.method,
        made.space,
        list(stored["sources"]),
        [plain(c) for c in classes],
        lambda x: made.values(feed(x)),
    )
    _check_additive(explainer, rows[:20], _raw_output(estimator, fed[:20]), estimator)
    return explainer


def _check_additive(explainer: Explainer, rows: np.ndarray, own: np.ndarray, model: Any) -> None:
    """Base + contributions against the model's own output, on background rows."""
    contributions, base, outputs = explainer.values(rows)
    error = np.abs(contributions.sum(axis=1) + base - own).max()
    name = type(model).__name__
    scale = max(1.0, float(np.abs(outputs).max()))
    if not error <= TOLERANCE * scale:
        raise Unexplainable(
            f"this model has no explainer: SHAP's explanation of {name} does not add up to the "
            f"model's own output (off by {error:.2g})"
        )


_BUILT: weakref.WeakKeyDictionary[LoadedBundle, Explainer | Unexplainable] = (
    weakref.WeakKeyDictionary()
)
_BUILDING = threading.Lock()


def explainer(bundle: LoadedBundle) -> Explainer:
    """The bundle's explainer, built on first use and kept (as is the reason it cannot be)."""
    with _BUILDING:
        made = _BUILT.get(bundle)
        if made is None:
            try:
                made = build(bundle)
            except Unexplainable as exc:
                made = exc
            _BUILT[bundle] = made
    if isinstance(made, Unexplainable):
        raise made
    return made


def explain(bundle: LoadedBundle, columns: Any) -> list[dict[str, Any]]:
    """Explanations of checked columns (a request's) or a frame (a batch chunk), through the
    bundle's fitted STL, one scikit-learn call at a time per process as predictions are; a
    request's through the compiled graph's STL once it agreed with scikit-learn's (`_graph_stl`)."""
    import pandas as pd

    from sail_pipelines.contract import stl
    from sail_pipelines.inference.model import SKLEARN

    made = explainer(bundle)
    request = not hasattr(columns, "columns")
    graph = _GRAPH_STL.get(bundle) if request else None
    if graph is not None:
        return made.explain(graph(columns))
    schema = bundle.schema
    frame = pd.DataFrame({name: list(columns[name]) for name in schema.feature_names})
    with SKLEARN:
        transformed = stl.transform(bundle.transformer, schema, schema.prepare(frame))
    if request and bundle not in _GRAPH_STL:  # the first: does the graph's STL give the same?
        _GRAPH_STL[bundle] = _graph_stl(bundle, columns, transformed)
    return made.explain(transformed)


STL_OUTPUT = "transformed_column"  # skl2onnx's name for a ColumnTransformer's output
_GRAPH_STL: weakref.WeakKeyDictionary[LoadedBundle, Callable[[Any], np.ndarray] | None] = (
    weakref.WeakKeyDictionary()
)


def _graph_stl(
    bundle: LoadedBundle, columns: Any, expected: np.ndarray
) -> Callable[[Any], np.ndarray] | None:
    """The compiled graph's STL output (its ColumnTransformer's, fetched from a second session of
    the signed graph) as a function of checked columns: a millisecond where scikit-learn's STL
    takes about ten. Kept only if it gives the numbers scikit-learn's STL gave on the first
    request (to 1e-9); None otherwise, or for a bundle that scikit-learn serves."""
    if bundle.runtime != "onnx":
        return None
    try:
        import onnx

        from sail_pipelines.inference.model import compiled
        from sail_pipelines.inference.onnx import session

        graph = onnx.load_from_string(bundle.files[ONNX_MODEL])
        if not any(STL_OUTPUT in node.output for node in graph.graph.node):
            return None
        value = onnx.helper.make_tensor_value_info(STL_OUTPUT, onnx.TensorProto.DOUBLE, None)
        graph.graph.output.append(value)
        stl_session, feeder = session(graph.SerializeToString()), compiled(bundle)

        def transform(checked: Any) -> np.ndarray:
            return np.asarray(stl_session.run([STL_OUTPUT], feeder.feed(checked))[0], float)

        same = np.allclose(transform(columns), expected, rtol=1e-9, atol=1e-9)
    except Exception:  # noqa: BLE001 - any trouble with the graph: scikit-learn's STL explains
        return None
    return transform if same else None


def batch_columns(bundle: LoadedBundle, frame: Any) -> dict[str, list[Any]]:
    """A batch chunk's explanations as flat output columns: `contribution_<column>` per source
    column, then `explanation_base_value`, `explanation_output`, `explanation_space` (and
    `explanation_class`), so CSV, JSON and Parquet hold them alike."""
    items = explain(bundle, frame)
    sources = list(dict.fromkeys(explainer(bundle).sources))
    out: dict[str, list[Any]] = {
        f"contribution_{c}": [item["contributions"][c] for item in items] for c in sources
    }
    for field in ("base_value", "output", "space", "class"):
        if items and field in items[0]:
            out[f"explanation_{field}"] = [item[field] for item in items]
    return out
