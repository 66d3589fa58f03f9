"""The outlier detector (whitened PCA, then scikit-learn's IsolationForest) as ONNX nodes after the
STL's graph, attached to the model's graph as one more output, `outlier_score`, for the compiled
path (training only: the graph is built once and signed). One graph, one ONNX Runtime run per
request: a second session would cost as much again as the model's own.

skl2onnx converts an IsolationForest too, but its graph takes ~1.4 ms a run on one row; here the
forest is one ai.onnx.ml TreeEnsembleRegressor whose leaves hold each tree's path length (the
leaf's depth plus the c(n) correction for the rows left in it), scaled so that their sum is
E[h(x)] / c(max_samples); the score is 2 ** -that, as `-IsolationForest.score_samples` gives it.
The forest compares float32 values, as scikit-learn does; each float64 threshold becomes the
largest float32 not above it, so `x <= threshold` comes out the same for every float32 x.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sail_pipelines.contract.schema import Schema
from sail_pipelines.inference.onnx import SCORE, ConversionFailed, session

PREFIX = "sail_outliers/"  # the detector's own names inside the model's graph
EULER_GAMMA = 0.5772156649015329


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the average path length of an unsuccessful search in a binary tree of n rows, as
    scikit-learn's IsolationForest adds it for the rows left in a leaf."""
    n = np.asarray(n, dtype=float)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + EULER_GAMMA) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _float32_below(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 not above each threshold: x32 <= t exactly when x32 <= that."""
    rounded = thresholds.astype(np.float32)
    above = rounded.astype(np.float64) > thresholds
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def forest_attributes(forest: Any, n_features: int) -> dict[str, Any]:
    """The fitted IsolationForest as TreeEnsembleRegressor attributes."""
    scale = len(forest.estimators_) * float(average_path_length(np.array([forest.max_samples_]))[0])
    attrs: dict[str, list[Any]] = {k: [] for k in ("ids", "nodes", "features", "values", "modes")}
    attrs.update(true=[], false=[], target_trees=[], target_nodes=[], weights=[])
    for t, (tree, features) in enumerate(
        zip(forest.estimators_, forest.estimators_features_, strict=True)
    ):
        inner = tree.tree_
        left, right = inner.children_left, inner.children_right
        depth = np.zeros(inner.node_count)
        for node in range(inner.node_count):  # children come after their parent
            if left[node] >= 0:
                depth[left[node]] = depth[right[node]] = depth[node] + 1
        leaf = left < 0
        mapped = np.asarray(features)[inner.feature] if len(features) != n_features else None
        feature = np.where(leaf, 0, inner.feature if mapped is None else mapped)
        path = (depth + average_path_length(inner.n_node_samples)) / scale
        attrs["ids"] += [t] * inner.node_count
        attrs["nodes"] += list(range(inner.node_count))
        attrs["features"] += feature.astype(int).tolist()
        attrs["values"] += np.where(leaf, 0, _float32_below(inner.threshold)).tolist()
        attrs["modes"] += ["LEAF" if x else "BRANCH_LEQ" for x in leaf]
        attrs["true"] += np.where(leaf, 0, left).tolist()
        attrs["false"] += np.where(leaf, 0, right).tolist()
        at = np.flatnonzero(leaf)
        attrs["target_trees"] += [t] * len(at)
        attrs["target_nodes"] += at.tolist()
        attrs["weights"] += path[at].tolist()
    return {
        "n_targets": 1,
        "aggregate_function": "SUM",
        "post_transform": "NONE",
        "nodes_treeids": attrs["ids"],
        "nodes_nodeids": attrs["nodes"],
        "nodes_featureids": attrs["features"],
        "nodes_values": attrs["values"],
        "nodes_modes": attrs["modes"],
        "nodes_truenodeids": attrs["true"],
        "nodes_falsenodeids": attrs["false"],
        "target_treeids": attrs["target_trees"],
        "target_nodeids": attrs["target_nodes"],
        "target_ids": [0] * len(attrs["target_nodes"]),
        "target_weights": attrs["weights"],
    }


def detector_nodes(detector: Any, stl_output: str) -> tuple[list[Any], list[Any]]:
    """Nodes and initializers from the STL's float64 output to SCORE: a float32 round trip (the
    rows the detector was fitted on), PCA as scikit-learn computes it, then the forest."""
    from onnx import TensorProto, helper, numpy_helper

    pca, forest = detector.named_steps["pca"], detector.named_steps["forest"]
    scale = np.sqrt(pca.explained_variance_)
    scale[scale < np.finfo(scale.dtype).eps] = np.finfo(scale.dtype).eps
    constants = {
        "sail_o_axes": pca.components_.T.astype(np.float64),
        "sail_o_mean": (pca.mean_ @ pca.components_.T).reshape(1, -1).astype(np.float64),
        "sail_o_scale": scale.reshape(1, -1).astype(np.float64),
        "sail_o_ln2": np.array([-math.log(2.0)], dtype=np.float32),
    }
    initializers = [numpy_helper.from_array(v, k) for k, v in constants.items()]
    node = helper.make_node
    nodes = [
        node("Cast", [stl_output], ["sail_o_f32"], to=TensorProto.FLOAT),
        node("Cast", ["sail_o_f32"], ["sail_o_f64"], to=TensorProto.DOUBLE),
        node("MatMul", ["sail_o_f64", "sail_o_axes"], ["sail_o_projected"]),
        node("Sub", ["sail_o_projected", "sail_o_mean"], ["sail_o_centred"]),
        node("Div", ["sail_o_centred", "sail_o_scale"], ["sail_o_whitened"]),
        node("Cast", ["sail_o_whitened"], ["sail_o_rows"], to=TensorProto.FLOAT),
        node(
            "TreeEnsembleRegressor",
            ["sail_o_rows"],
            ["sail_o_path"],
            domain="ai.onnx.ml",
            **forest_attributes(forest, pca.n_components_),
        ),
        node("Mul", ["sail_o_path", "sail_o_ln2"], ["sail_o_exponent"]),
        node("Exp", ["sail_o_exponent"], [SCORE]),
    ]
    return nodes, initializers


def convert(transformer: Any, detector: Any, schema: Schema) -> bytes:
    """The fitted STL (the graph the model's takes, same inputs) and the detector as one ONNX
    graph with one output, SCORE; checked to load in ONNX Runtime."""
    from onnx import TensorProto, helper, load_model_from_string

    from sail_pipelines.inference.onnx_convert import convert_graph

    graph = load_model_from_string(convert_graph(transformer, None, schema, False))
    stl_output = graph.graph.output[0].name
    nodes, initializers = detector_nodes(detector, stl_output)
    graph.graph.node.extend(nodes)
    graph.graph.initializer.extend(initializers)
    del graph.graph.output[:]
    graph.graph.output.append(helper.make_tensor_value_info(SCORE, TensorProto.FLOAT, [None, 1]))
    _with_ml_opset(graph)
    return _checked(graph)


def _with_ml_opset(graph: Any) -> None:
    from onnx import helper

    ml = [o for o in graph.opset_import if o.domain == "ai.onnx.ml"]
    if not ml:
        graph.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    elif ml[0].version > 3:  # TreeEnsembleRegressor left the ai.onnx.ml opset at 5
        raise ConversionFailed(f"the graph uses ai.onnx.ml opset {ml[0].version}")


def _checked(graph: Any) -> bytes:
    data = graph.SerializeToString()
    try:
        session(data)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors have no common base class
        raise ConversionFailed(f"ONNX Runtime refuses the outlier graph: {exc}") from exc
    return data


def attach(model_graph: bytes, detector_graph: bytes) -> bytes:
    """The model's graph with the detector's (`convert`, built on the same inputs) inside it, its
    names prefixed, and SCORE as one more output."""
    from onnx import load_model_from_string

    model, detector = (load_model_from_string(g) for g in (model_graph, detector_graph))
    inputs = {i.name for i in model.graph.input}
    if inputs != {i.name for i in detector.graph.input}:
        raise ConversionFailed("the outlier graph does not take the model graph's inputs")

    def renamed(name: str) -> str:
        return name if name in inputs or name == SCORE or not name else PREFIX + name

    for i, node in enumerate(detector.graph.node):
        node.name = f"{PREFIX}{node.name or i}"
        node.input[:] = [renamed(n) for n in node.input]
        node.output[:] = [renamed(n) for n in node.output]
    for initializer in detector.graph.initializer:
        initializer.name = renamed(initializer.name)
    model.graph.node.extend(detector.graph.node)
    model.graph.initializer.extend(detector.graph.initializer)
    model.graph.output.extend(detector.graph.output)
    _with_ml_opset(model)
    return _checked(model)
