"""The compiled inference path: a candidate's fitted STL and model as one ONNX graph.

skl2onnx converts them at training; ONNX Runtime runs the graph when serving, in microseconds
where a pandas frame through scikit-learn takes milliseconds. The graph takes float32 (ONNX
Runtime has no double Imputer): one matrix for every number column, in schema order, and one
string tensor per category column, in which a null travels as "". Whatever skl2onnx or ONNX
Runtime cannot take raises ConversionFailed with the reason, and scikit-learn serves instead.
The metric step compares the graph with scikit-learn (`agreement`) before it is ever served.

Serving imports only numpy and onnxruntime from here; skl2onnx is imported when converting.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from sail_pipelines.config import CompiledConfig
from sail_pipelines.contract.schema import Schema
from sail_pipelines.errors import SailError

NUMERIC = "sail.numeric"  # the graph input holding every number column
NULL_STRING = ""  # a null category, in a string tensor (which has no null)
Columns = Mapping[str, Sequence[Any]]  # feature name -> its values, one per row (None for null)
Prediction = tuple[np.ndarray, "np.ndarray | None"]  # labels or values, class probabilities


class ConversionFailed(SailError):
    """This candidate cannot take the compiled path; the message says why."""


def _float32_exact(value: Any) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and float(np.float32(value)) == value


def input_kinds(schema: Schema) -> dict[str, str]:
    """'number' or 'string' per feature: the graph input each one travels in. A category of
    numbers (say 1 and 2) travels as a number, which its one-hot encoder compares exactly."""
    kinds = {}
    for column in schema.features:
        values = column.values or ()
        if column.type in ("float", "int", "bool"):  # a bool travels as 0/1, as the STL takes it
            kinds[column.name] = "number"
        elif column.type == "category" and all(isinstance(v, str) for v in values):
            if NULL_STRING in values:
                raise ConversionFailed(
                    f"category '{column.name}' allows \"\", which the compiled path uses for null"
                )
            kinds[column.name] = "string"
        elif column.type == "category" and all(_float32_exact(v) for v in values):
            kinds[column.name] = "number"
        else:
            raise ConversionFailed(
                f"feature '{column.name}' ({column.type}, values {list(values)[:3]}) has no "
                "compiled input: only numbers, string categories and float32-exact number "
                "categories do"
            )
    return kinds


def convert(transformer: Any, model: Any, schema: Schema, classification: bool) -> bytes:
    """The fitted STL and model as one ONNX graph, checked to load in ONNX Runtime."""
    kinds = input_kinds(schema)
    try:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType, StringTensorType
        from sklearn.pipeline import Pipeline
    except ImportError as exc:
        raise ConversionFailed(f"the converter is not installed ({exc.name})") from exc
    _patch_tree_flags()
    _register_sail_transformers()
    types = {"number": FloatTensorType([None, 1]), "string": StringTensorType([None, 1])}
    pipeline = Pipeline([("stl", _string_nulls(transformer)), ("model", model)])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = convert_sklearn(
                pipeline,
                initial_types=[(n, types[k]) for n, k in kinds.items()],
                options={id(model): {"zipmap": False}} if classification else None,
            )
    except Exception as exc:  # noqa: BLE001 - skl2onnx raises many types for what it cannot convert
        raise ConversionFailed(f"skl2onnx cannot convert it: {_first_line(exc)}") from exc
    # skl2onnx renames inputs to safe identifiers ("mean radius" -> "mean_radius"), in order.
    onnx_names = dict(zip(kinds, (i.name for i in graph.graph.input), strict=True))
    data = _one_number_input(
        graph, [onnx_names[n] for n, k in kinds.items() if k == "number"]
    ).SerializeToString()
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


def _string_nulls(transformer: Any) -> Any:
    """A copy whose string imputers look for "" (how a null category reaches the graph) instead
    of NaN: skl2onnx converts an imputer of strings only when its missing value is a string."""
    from sklearn.impute import SimpleImputer

    clone = copy.deepcopy(transformer)
    for step in _fitted_steps(clone):
        if (
            isinstance(step, SimpleImputer)
            and getattr(step, "statistics_", np.array([])).dtype == object
        ):
            step.missing_values = NULL_STRING
    return clone


def _fitted_steps(estimator: Any) -> list[Any]:
    """The estimator and every fitted one inside it (column transformers, pipelines, unions)."""
    inner = [t for _, t, *_ in getattr(estimator, "transformers_", [])]
    inner += [s for _, s in getattr(estimator, "steps", [])]
    inner += [t for _, t in getattr(estimator, "transformer_list", [])]
    return [estimator] + [s for t in inner if not isinstance(t, str) for s in _fitted_steps(t)]


def _register_sail_transformers() -> None:
    """Teach skl2onnx sail-pipelines' own STL steps. OutlierClipper is a per-column Max then Min
    (its bounds narrowed to float32's range); CalendarFeatures has no converter, since date
    columns never take the compiled path (`input_kinds`)."""
    from skl2onnx import update_registered_converter
    from skl2onnx.algebra.onnx_ops import OnnxMax, OnnxMin

    from sail_pipelines.contract.transformers import OutlierClipper

    def shape(operator: Any) -> None:
        operator.outputs[0].type = operator.inputs[0].type.__class__(operator.inputs[0].type.shape)

    def convert(scope: Any, operator: Any, container: Any) -> None:
        clipper, version = operator.raw_operator, container.target_opset
        span = np.finfo(np.float32)
        lower = np.clip(clipper.lower_, span.min, span.max).astype(np.float32).reshape(1, -1)
        upper = np.clip(clipper.upper_, span.min, span.max).astype(np.float32).reshape(1, -1)
        above = OnnxMax(operator.inputs[0], lower, op_version=version)
        OnnxMin(above, upper, op_version=version, output_names=operator.outputs[:1]).add_to(
            scope, container
        )

    update_registered_converter(OutlierClipper, "SailOutlierClipper", shape, convert)


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


def _one_number_input(graph: Any, numbers: list[str]) -> Any:
    """Feed every number column through one [rows, columns] input split inside the graph:
    ONNX Runtime pays per input, so one matrix beats thirty one-column tensors (3x on one row)."""
    from onnx import TensorProto, helper

    if not numbers:
        return graph
    opset = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    attributes: dict[str, Any] = {"axis": 1}
    if opset >= 18:
        attributes["num_outputs"] = len(numbers)
    split = helper.make_node("Split", [NUMERIC], numbers, name="sail_split_numbers", **attributes)
    kept = [i for i in graph.graph.input if i.name not in numbers]
    del graph.graph.input[:]
    graph.graph.input.extend(
        [helper.make_tensor_value_info(NUMERIC, TensorProto.FLOAT, [None, len(numbers)]), *kept]
    )
    graph.graph.node.insert(0, split)
    return graph


def session(data: bytes) -> Any:
    """One ONNX Runtime session on one thread: the server runs one worker per CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


class CompiledModel:
    """The ONNX graph of a bundle, fed straight from checked columns (no pandas)."""

    def __init__(self, data: bytes, schema: Schema, probabilities: bool):
        self.kinds = input_kinds(schema)
        self.numbers = [n for n, k in self.kinds.items() if k == "number"]
        self.strings = [n for n, k in self.kinds.items() if k == "string"]
        self.probabilities = probabilities
        self.session = session(data)
        self.outputs = [o.name for o in self.session.get_outputs()]
        # The string inputs keep their order in the graph, under skl2onnx's safe names.
        graph_strings = [i.name for i in self.session.get_inputs() if i.name != NUMERIC]
        self.string_inputs = dict(zip(self.strings, graph_strings, strict=True))

    def feed(self, columns: Columns) -> dict[str, np.ndarray]:
        feed: dict[str, np.ndarray] = {}
        if self.numbers:  # None becomes NaN, which the graph's imputers fill
            feed[NUMERIC] = np.array([columns[n] for n in self.numbers], dtype=np.float32).T.copy()
        for name in self.strings:
            values = [NULL_STRING if v is None or v != v else str(v) for v in columns[name]]
            feed[self.string_inputs[name]] = np.array(values, dtype=object).reshape(-1, 1)
        return feed

    def predict(self, columns: Columns) -> Prediction:
        outputs = self.session.run(self.outputs, self.feed(columns))
        if len(outputs) == 1:  # a regressor: one [rows, 1] output
            return outputs[0].ravel(), None
        labels = outputs[0]
        # ONNX Runtime's int64 is numpy's longlong, which pandas does not count as int (Spark UDFs
        # of MLflow select columns by it)
        if labels.dtype.kind == "i":
            labels = labels.astype(np.int64)
        return labels, outputs[1] if self.probabilities else None


def agreement(
    expected: Prediction, served: Prediction, config: CompiledConfig, classification: bool
) -> tuple[str | None, dict[str, Any]]:
    """How far the compiled predictions are from scikit-learn's: (why to refuse them or None,
    the figures)."""
    (want, want_p), (got, got_p) = expected, served
    rows = len(want)
    if not classification:
        spread = max(float(np.std(want)), 1e-12)  # differences in units of the predictions' spread
        gap = float(np.max(np.abs(np.asarray(got, float) - want), initial=0.0)) / spread
        figures: dict[str, Any] = {"rows": rows, "max_value_diff": gap}
        if gap > config.max_value_diff:
            return (
                f"predictions differ by up to {gap:.3g} "
                f"standard deviations (allowed {config.max_value_diff:g})",
                figures,
            )
        return None, figures
    mismatches = int(np.sum(np.asarray(want, dtype=object) != np.asarray(got, dtype=object)))
    figures = {"rows": rows, "label_mismatches": mismatches}
    if mismatches > config.max_label_mismatches:
        return (
            f"{mismatches} of {rows} labels differ (allowed {config.max_label_mismatches})",
            figures,
        )
    if want_p is not None:
        gap = float(np.max(np.abs(np.asarray(got_p, float) - want_p), initial=0.0))
        figures["max_probability_diff"] = gap
        if gap > config.max_probability_diff:
            return (
                f"class probabilities differ by up to {gap:.3g} "
                f"(allowed {config.max_probability_diff:g})",
                figures,
            )
    return None, figures
