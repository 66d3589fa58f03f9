"""The compiled inference path: a candidate's fitted STL and model as one ONNX graph.

skl2onnx converts them at training (`inference/onnx_convert.py`); ONNX Runtime runs the graph
when serving, in microseconds where a pandas frame through scikit-learn takes milliseconds.
Every column type of the schema has its way in (`input_kinds`): numbers and booleans (0/1) are
columns of one float64 matrix; a date is its calendar features (`contract.calendar`, the very
function the STL's CalendarFeatures calls), computed here and fed as columns of that matrix; a
category is a string tensor of its own (numbers as their text, `category_text`), in which a null
travels as `null_token`. Ignored and text columns are not features: they never reach the graph.
Whatever skl2onnx or ONNX Runtime cannot take raises ConversionFailed with the reason, and
scikit-learn serves instead. The metric step compares the graph with scikit-learn
(`agreement`) before it is ever served.

Serving imports only numpy and onnxruntime from here: no pandas, no scikit-learn, no skl2onnx.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from sail_pipelines.contract.calendar import PARTS, calendar
from sail_pipelines.contract.schema import Schema
from sail_pipelines.errors import SailError

if TYPE_CHECKING:  # serving loads no pydantic
    from sail_pipelines.config import CompiledConfig

NUMERIC = "sail.numeric"  # the graph input holding every number column
INPUTS = "sail.inputs"  # the graph's metadata: what each column of its inputs holds
HOUR = "hour"
CALENDAR = (*PARTS, HOUR)  # the columns of `calendar()`, the hour last (only with times)
Columns = Mapping[str, Sequence[Any]]  # feature name -> its values, one per row (None for null)
Prediction = tuple[np.ndarray, "np.ndarray | None"]  # labels or values, class probabilities
Layout = list[tuple[str, "str | None"]]  # the number matrix's columns: (feature, calendar part)
# The graph's outlier score (`inference/onnx_forest.py`), [rows, 1], when training attached one.
SCORE = "outlier_score"


class ConversionFailed(SailError):
    """This candidate cannot take the compiled path; the message says why."""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def input_kinds(schema: Schema) -> dict[str, str]:
    """How each feature reaches the graph: 'number' (a column of the float64 matrix: floats, ints
    and booleans as 0/1), 'calendar' (a date: its calendar features, columns of that matrix) or
    'string' (a category, of strings or of numbers: skl2onnx's one-hot encoder compares strings
    exactly, and numbers only as 64-bit integers, so numbers travel as their text)."""
    kinds = {}
    for column in schema.features:
        values = column.values or ()
        if column.type in ("float", "int", "bool"):
            kinds[column.name] = "number"
        elif column.type == "datetime":
            kinds[column.name] = "calendar"
        elif column.type == "category" and (
            all(isinstance(v, str) for v in values) or all(_number(v) for v in values)
        ):
            kinds[column.name] = "string"
        else:
            raise ConversionFailed(
                f"feature '{column.name}' ({column.type}, values {list(values)[:3]}) has no "
                "compiled input: a category's values must be all strings or all numbers"
            )
    return kinds


def category_text(value: Any) -> Any:
    """A category of numbers as the graph compares it: 2 and 2.0 alike as "2", 1.5 as "1.5"."""
    if not _number(value):
        return value
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def _legacy_inputs(schema: Schema) -> tuple[Layout, list[str]]:
    """What a graph built before its inputs were recorded takes: float32 numbers (categories of
    numbers among them) in schema order, and the categories of strings."""
    numbers: Layout = []
    strings = []
    for column in schema.features:
        listed = column.values or ()
        if column.type == "category" and all(isinstance(v, str) for v in listed):
            strings.append(column.name)
        else:
            numbers.append((column.name, None))
    return numbers, strings


def null_token(schema: Schema) -> str:
    """How a null category travels in a string tensor (which has no null): "", or when a category
    lists "" as a value, a run of NUL characters longer than any value lists."""
    runs = [
        len(v)
        for c in schema.features
        if c.type == "category"
        for v in c.values or ()
        if isinstance(v, str) and v == "\x00" * len(v)
    ]
    return "\x00" * (max(runs) + 1) if runs else ""


def convert(transformer: Any, model: Any, schema: Schema, classification: bool) -> bytes:
    """The fitted STL and model as one ONNX graph, checked to load in ONNX Runtime."""
    from sail_pipelines.inference.onnx_convert import convert_graph

    return convert_graph(transformer, model, schema, classification)


def session(data: bytes) -> Any:
    """One ONNX Runtime session on one thread: the server runs one worker per CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


class _Numbers:
    """Fills the number matrix from checked columns, in the layout the graph was built with."""

    def __init__(self, layout: Layout, dtype: Any):
        self.width, self.dtype = len(layout), dtype
        plain = [(i, name) for i, (name, part) in enumerate(layout) if part is None]
        self.plain = [name for _, name in plain]
        self.plain_at = [i for i, _ in plain]
        self.dates = []  # (feature, with the hour, matrix columns, calendar() columns)
        for name in dict.fromkeys(n for n, part in layout if part):
            at = [i for i, (n, part) in enumerate(layout) if n == name and part]
            parts = [CALENDAR.index(layout[i][1]) for i in at]
            self.dates.append((name, CALENDAR.index(HOUR) in parts, at, parts))

    def matrix(self, columns: Columns, rows: int) -> np.ndarray:
        out = np.empty((rows, self.width), dtype=self.dtype)
        if self.plain:  # None becomes NaN, which the graph's imputers fill
            values = [columns[n] for n in self.plain]
            out[:, self.plain_at] = np.array(values, dtype=np.float64).T
        for name, hour, at, parts in self.dates:
            out[:, at] = calendar(columns[name], hour)[:, parts]
        return out


class CompiledModel:
    """The ONNX graph of a bundle, fed straight from checked columns (no pandas)."""

    def __init__(self, data: bytes, schema: Schema, probabilities: bool):
        self.probabilities = probabilities
        self.first = schema.feature_names[0]  # any feature: how many rows came
        self.session = session(data)
        names = [o.name for o in self.session.get_outputs()]
        self.outputs = [name for name in names if name != SCORE]
        self.scored = SCORE in names
        recorded = self.session.get_modelmeta().custom_metadata_map.get(INPUTS)
        if recorded:
            inputs = json.loads(recorded)
            layout = [(name, part) for name, part in inputs["numbers"]]
            strings = inputs["strings"]
        else:
            layout, strings = _legacy_inputs(schema)
        graph = {i.name: i.type for i in self.session.get_inputs()}
        dtype = np.float64 if "double" in graph.get(NUMERIC, "") else np.float32
        self.numbers = _Numbers(layout, dtype) if layout else None
        # The string inputs keep their order in the graph, under skl2onnx's safe names.
        graph_strings = [name for name in graph if name != NUMERIC]
        self.string_inputs = dict(zip(strings, graph_strings, strict=True))
        numbers = {c.name for c in schema.features if any(map(_number, c.values or ()))}
        self.texts = {n: category_text if n in numbers else str for n in strings}
        self.null = null_token(schema)

    def feed(self, columns: Columns) -> dict[str, np.ndarray]:
        feed: dict[str, np.ndarray] = {}
        if self.numbers:
            feed[NUMERIC] = self.numbers.matrix(columns, len(columns[self.first]))
        null, clash = self.null, self.null + "\x00"  # a value equal to the null's stand-in
        for name, graph_name in self.string_inputs.items():
            text = self.texts[name]
            values = [
                null if v is None or v != v else clash if v == null else text(v)
                for v in columns[name]
            ]
            feed[graph_name] = np.array(values, dtype=object).reshape(-1, 1)
        return feed

    def predict(self, columns: Columns) -> Prediction:
        return self.run(columns)[0]

    def run(self, columns: Columns) -> tuple[Prediction, np.ndarray | None]:
        """The prediction and, when the graph has one, each row's outlier score, in one run."""
        wanted = self.outputs + [SCORE] if self.scored else self.outputs
        outputs = self.session.run(wanted, self.feed(columns))
        scores = outputs.pop().ravel() if self.scored else None
        return self._prediction(outputs), scores

    def _prediction(self, outputs: list[np.ndarray]) -> Prediction:
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
