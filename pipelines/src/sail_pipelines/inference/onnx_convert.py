"""Converting a fitted STL and model into the ONNX graph `inference/onnx.py` serves (training only:
this is where skl2onnx and scikit-learn come in).

The graph computes in float64, as scikit-learn does: a float32 scaler is off by a few units in the
last place, enough to send a value sitting next to a forest's split the other way. Models that
cast their input to float32 themselves (scikit-learn's decision trees and their ensembles) get
the same cast in the graph. Dates do not enter the graph: the column transformer's branch that
starts with CalendarFeatures takes their calendar features, computed by the request decoder,
as number columns instead.
"""

from __future__ import annotations

import copy
import json
import warnings
from typing import Any

import numpy as np

from sail_pipelines.contract.schema import Schema
from sail_pipelines.inference.onnx import (
    CALENDAR,
    INPUTS,
    NUMERIC,
    ConversionFailed,
    Layout,
    category_text,
    input_kinds,
    null_token,
    session,
)


def convert_graph(
    transformer: Any, model: Any | None, schema: Schema, classification: bool
) -> bytes:
    """The fitted STL and model as one ONNX graph, checked to load in ONNX Runtime; without a
    model, the STL alone (its float64 output: what the outlier graph builds on)."""
    kinds = input_kinds(schema)
    try:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
        from skl2onnx.sklapi import CastTransformer
        from sklearn.pipeline import Pipeline
    except ImportError as exc:
        raise ConversionFailed(f"the converter is not installed ({exc.name})") from exc
    _patch_tree_flags()
    _register_converters()
    numbered = {  # categories of numbers, which travel as their text
        c.name
        for c in schema.features
        if c.type == "category" and not all(isinstance(v, str) for v in c.values or ())
    }
    stl = _with_nulls(_categories_as_text(copy.deepcopy(transformer), numbered), null_token(schema))
    layout: Layout = [(n, None) for n, k in kinds.items() if k == "number"]
    inputs = {n: n for n, _ in layout}  # graph input name -> the feature it comes from
    for name, part, graph_name in _calendar_inputs(stl, set(schema.feature_names)):
        layout.append((name, part))
        inputs[graph_name] = name
    steps = [("stl", stl)] + ([("model", model)] if model is not None else [])
    if model is not None and _casts_to_float32(model):
        steps.insert(1, ("float32", CastTransformer(dtype=np.float32)))
    strings = [n for n, k in kinds.items() if k == "string"]
    initial = [(n, DoubleTensorType([None, 1])) for n in inputs]
    initial += [(n, StringTensorType([None, 1])) for n in strings]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = convert_sklearn(
                Pipeline(steps),
                initial_types=initial,
                options={id(model): {"zipmap": False}}
                if classification and model is not None
                else None,
            )
    except Exception as exc:  # noqa: BLE001 - skl2onnx raises many types for what it cannot convert
        raise ConversionFailed(f"skl2onnx cannot convert it: {_first_line(exc)}") from exc
    # skl2onnx renames inputs to safe identifiers ("mean radius" -> "mean_radius"), in order.
    onnx_names = [i.name for i in graph.graph.input]
    if len(onnx_names) != len(initial):
        raise ConversionFailed("the graph does not take every feature the schema lists")
    _one_number_input(graph, onnx_names[: len(inputs)])
    graph.metadata_props.add(key=INPUTS, value=json.dumps({"numbers": layout, "strings": strings}))
    data = graph.SerializeToString()
    try:
        session(data)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors have no common base class
        raise ConversionFailed(
            f"ONNX Runtime refuses the converted graph: {_first_line(exc)}"
        ) from exc
    return data


def _first_line(exc: Exception) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 200 else text[:197] + "..."


def _fitted_steps(estimator: Any) -> list[Any]:
    """The estimator and every fitted one inside it (column transformers, pipelines, unions)."""
    inner = [t for _, t, *_ in getattr(estimator, "transformers_", [])]
    inner += [s for _, s in getattr(estimator, "steps", [])]
    inner += [t for _, t in getattr(estimator, "transformer_list", [])]
    return [estimator] + [s for t in inner if not isinstance(t, str) for s in _fitted_steps(t)]


def _with_nulls(stl: Any, null: str) -> Any:
    """The copied STL's imputers of strings, told that a null reaches them as `null`: skl2onnx
    converts an imputer of strings only when its missing value is a string."""
    from sklearn.impute import SimpleImputer

    for step in _fitted_steps(stl):
        statistics = getattr(step, "statistics_", None)
        if (
            isinstance(step, SimpleImputer)
            and statistics is not None
            and all(isinstance(v, str) for v in statistics)
        ):
            step.missing_values = null
    return stl


def _categories_as_text(stl: Any, names: set[str]) -> Any:
    """In the copied STL, the categories of numbers (`names`) as the graph compares them, in
    their text (`category_text`): in the statistics of the imputers and the categories of the
    one-hot encoders of each column transformer branch that takes them (steps that keep columns
    in place, as imputers do)."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    for step in _fitted_steps(stl):
        for _, estimator, columns in getattr(step, "transformers_", []):
            at = [j for j, c in enumerate(np.ravel(columns)) if str(c) in names]
            if not at or isinstance(estimator, str):
                continue
            for inner in _fitted_steps(estimator):
                if isinstance(inner, SimpleImputer):
                    inner.statistics_ = inner.statistics_.astype(object)
                    for j in at:
                        inner.statistics_[j] = category_text(inner.statistics_[j])
                elif isinstance(inner, OneHotEncoder):
                    for j in at:
                        texts = [category_text(v) for v in inner.categories_[j]]
                        inner.categories_[j] = np.array(texts, dtype=object)
    return stl


def _calendar_inputs(stl: Any, taken: set[str]) -> list[tuple[str, str, str]]:
    """Turn each column transformer's branch that starts with CalendarFeatures into one that takes
    the calendar features as number columns (the decoder computes them), and name those graph
    inputs: (feature, part, input name) in the order of CalendarFeatures' output."""
    from sklearn.pipeline import Pipeline

    from sail_pipelines.contract.transformers import CalendarFeatures

    found = []
    for step in _fitted_steps(stl):
        for i, (branch, estimator, _) in enumerate(getattr(step, "transformers_", [])):
            steps = estimator.steps if isinstance(estimator, Pipeline) else [(branch, estimator)]
            calendar = steps[0][1]
            if not isinstance(calendar, CalendarFeatures) or not hasattr(calendar, "with_hour_"):
                continue  # another branch, or one on no column (never fitted)
            names = []
            for name, hour in zip(calendar.feature_names_in_, calendar.with_hour_, strict=True):
                for part in CALENDAR[: len(CALENDAR) - 1 + hour]:
                    graph_name = f"{name}_{part}"
                    while graph_name in taken:
                        graph_name += "_"
                    taken.add(graph_name)
                    found.append((str(name), part, graph_name))
                    names.append(graph_name)
            rest = Pipeline(steps[1:]) if len(steps) > 1 else "passthrough"
            step.transformers_[i] = (branch, rest, names)
    if any(
        isinstance(s, CalendarFeatures) and hasattr(s, "with_hour_") for s in _fitted_steps(stl)
    ):
        raise ConversionFailed(
            "CalendarFeatures is used other than as the first step of a column transformer's "
            "branch, where the compiled path feeds the calendar features it computes"
        )
    return found


def _casts_to_float32(model: Any) -> bool:
    """Tree models take float32 in the graph: skl2onnx's tree ensembles (ONNX-ML opset 1) hold
    float32 thresholds. scikit-learn's decision trees, and the forests and boosting made of them,
    compare a float32 copy of their input too, and skl2onnx moves their thresholds so that the
    comparisons come out the same; histogram gradient boosting compares float64, so a value
    within a float32 step of a split may go the other way (the metric step's check catches it)."""
    estimators = np.ravel(np.asarray(getattr(model, "estimators_", []), dtype=object))
    trees = len(estimators) > 0 and all(hasattr(e, "tree_") for e in estimators)
    return trees or hasattr(model, "tree_") or hasattr(model, "_predictors")


def _register_converters() -> None:
    """Teach skl2onnx sail-pipelines' own STL step and float64 imputers. OutlierClipper is a
    per-column Max then Min. ONNX Runtime has no float64 Imputer: a float64 SimpleImputer becomes
    Where(IsNaN(x), statistics, x)."""
    from skl2onnx import update_registered_converter
    from skl2onnx.algebra.onnx_ops import OnnxIsNaN, OnnxMax, OnnxMin, OnnxWhere
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes
    from sklearn.impute import SimpleImputer

    from sail_pipelines.contract.transformers import OutlierClipper

    def dtype(operator: Any) -> Any:
        double = isinstance(operator.inputs[0].type, DoubleTensorType)
        return np.float64 if double else np.float32

    def same_shape(operator: Any) -> None:
        operator.outputs[0].type = operator.inputs[0].type.__class__(operator.inputs[0].type.shape)

    def clipper(scope: Any, operator: Any, container: Any) -> None:
        fitted, version, kind = operator.raw_operator, container.target_opset, dtype(operator)
        span = np.finfo(kind)
        lower = np.clip(fitted.lower_, span.min, span.max).astype(kind).reshape(1, -1)
        upper = np.clip(fitted.upper_, span.min, span.max).astype(kind).reshape(1, -1)
        above = OnnxMax(operator.inputs[0], lower, op_version=version)
        OnnxMin(above, upper, op_version=version, output_names=operator.outputs[:1]).add_to(
            scope, container
        )

    def imputer(scope: Any, operator: Any, container: Any) -> None:
        fitted = operator.raw_operator
        if dtype(operator) is np.float32 or len(operator.inputs) != 1:
            return convert_sklearn_imputer(scope, operator, container)
        missing = fitted.missing_values
        if not (isinstance(missing, float) and np.isnan(missing)):
            raise RuntimeError(f"a float64 imputer of missing value {missing!r}")
        version, values = container.target_opset, operator.inputs[0]
        fill = np.asarray(fitted.statistics_, dtype=np.float64).reshape(1, -1)
        OnnxWhere(
            OnnxIsNaN(values, op_version=version),
            fill,
            values,
            op_version=version,
            output_names=operator.outputs[:1],
        ).add_to(scope, container)

    update_registered_converter(OutlierClipper, "SailOutlierClipper", same_shape, clipper)
    update_registered_converter(
        SimpleImputer, "SklearnSimpleImputer", calculate_sklearn_imputer_output_shapes, imputer
    )


def _patch_tree_flags() -> None:
    """skl2onnx 1.20 passes a Python bool for the missing-value flag of leaves (histogram gradient
    boosting), which protobuf 5+ refuses in an INTS attribute; hand it an int instead."""
    from skl2onnx.common import tree_ensemble

    add_node = tree_ensemble.add_node
    if getattr(add_node, "sail_int_flags", False):
        return

    def with_int_flags(*args: Any, **kwargs: Any) -> Any:
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(
                kwargs["nodes_missing_value_tracks_true"]
            )
        return add_node(*args, **kwargs)

    with_int_flags.sail_int_flags = True  # type: ignore[attr-defined]
    tree_ensemble.add_node = with_int_flags


def _one_number_input(graph: Any, numbers: list[str]) -> None:
    """Feed every number column through one [rows, columns] input split inside the graph:
    ONNX Runtime pays per input, so one matrix beats thirty one-column tensors (3x on one row)."""
    from onnx import TensorProto, helper

    if not numbers:
        return
    opset = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    attributes: dict[str, Any] = {"axis": 1}
    if opset >= 18:
        attributes["num_outputs"] = len(numbers)
    split = helper.make_node("Split", [NUMERIC], numbers, name="sail_split_numbers", **attributes)
    kept = [i for i in graph.graph.input if i.name not in numbers]
    del graph.graph.input[:]
    graph.graph.input.extend(
        [helper.make_tensor_value_info(NUMERIC, TensorProto.DOUBLE, [None, len(numbers)]), *kept]
    )
    graph.graph.node.insert(0, split)
