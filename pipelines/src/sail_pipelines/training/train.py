"""`sail train`: fit the Shared Transformation Layer once, then every candidate on its output.

Each candidate becomes its own signed bundle holding the fitted STL, the model and the
metadata that says where it came from. Training never sees the test split.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from sklearn.base import clone

from sail_pipelines.clients import containers
from sail_pipelines.config import Candidate, Params, ProjectPaths, Settings
from sail_pipelines.contract import ranges, stl
from sail_pipelines.contract.data import read_csv
from sail_pipelines.contract.schema import Schema, load_schema, plain
from sail_pipelines.contract.validate import profile_frame
from sail_pipelines.errors import SailError
from sail_pipelines.inference import explain, onnx
from sail_pipelines.integrity.bundle import (
    BACKGROUND,
    MODEL,
    ONNX_MODEL,
    TRANSFORMER,
    dump_object,
    write_bundle,
)
from sail_pipelines.integrity.signing import SignKey
from sail_pipelines.provenance import Provenance, file_md5, library_versions, project_versions
from sail_pipelines.training import outliers, search


def _with_params(candidate: Candidate, params: dict[str, Any]) -> Any:
    """A search trial's estimator: the candidate with the trial's params in place of its own."""
    return make_estimator(candidate.model_copy(update={"params": params}))


def make_estimator(candidate: Candidate) -> Any:
    module_name, _, class_name = candidate.estimator.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SailError(
            f"candidate '{candidate.name}': cannot import estimator {candidate.estimator!r}"
        ) from exc
    try:
        return cls(**candidate.params)
    except TypeError as exc:
        raise SailError(
            f"candidate '{candidate.name}': bad params for {candidate.estimator}: {exc}"
        ) from exc


def fit_candidate(candidate: Candidate, transformed: Any, target: pd.Series) -> Any:
    model = make_estimator(candidate)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(transformed, target)
    except (ValueError, TypeError) as exc:
        raise SailError(
            f"candidate '{candidate.name}' failed to train: {str(exc).splitlines()[0]}"
        ) from exc
    return model


def compile_candidate(
    params: Params, schema: Schema, transformer: Any, model: Any, detector: outliers.Trained
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The candidate's ONNX graph, if it converts, with the outlier detector's score as one more
    output, and what metadata says about its runtime. The metric step checks the graph against
    scikit-learn before it may serve."""
    if not params.compiled.enabled:
        reason = "the compiled path is off (params.yaml compiled.enabled)"
        return {}, {"runtime": "sklearn", "reason": reason}
    try:
        graph = onnx.convert(transformer, model, schema, params.task == "classification")
    except onnx.ConversionFailed as exc:
        return {}, {"runtime": "sklearn", "reason": f"no compiled model: {exc}"}
    graphs = {ONNX_MODEL: graph}
    unattached = detector.attach(graphs)  # the compiled path scores outliers in the same run
    if unattached:
        return {}, {"runtime": "sklearn", "reason": unattached}
    return graphs, {"runtime": "onnx", "reason": None}


def select(params: Params, names: list[str] | None) -> list[Candidate]:
    if not names:
        return list(params.candidates)
    known = {c.name: c for c in params.candidates}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SailError(
            f"unknown candidate(s) {', '.join(unknown)}; params.yaml lists {', '.join(known)}"
        )
    return [known[n] for n in names]


def _fit_stl(transformer: Any, schema: Schema, features: pd.DataFrame, target: Any) -> Any:
    """Fit the STL on the training split and return what it makes of it, one line on failure."""
    try:
        transformer.fit(features, target)
    except (ValueError, TypeError) as exc:
        raise SailError(
            f"the transformation layer failed to fit: {str(exc).splitlines()[0]}"
        ) from exc
    try:
        return stl.transform(transformer, schema, features)
    except stl.NonFiniteFeatures as exc:
        lines = ", ".join(str(i + 2) for i in exc.rows[:5])
        raise SailError(
            f"training data: {exc.field or 'a column'} becomes non-finite in the transformation "
            f"layer (data/split/train.csv line(s) {lines}): clip or drop such values in the STL"
        ) from exc


def _common_metadata(
    paths: ProjectPaths,
    params: Params,
    schema: Schema,
    train: pd.DataFrame,
    origin: Provenance,
    key: SignKey,
) -> dict[str, Any]:
    """What every candidate's bundle records about the data, code, libraries and key."""
    return {
        "format": 1,
        "task": params.task,
        "target": schema.target.name,
        "schema": schema.to_dict(),
        "transform": params.transform,
        "data_hash": origin.data_hash,
        "train_hash": file_md5(paths.train_csv),
        "git_commit": origin.git_commit,
        "git_dirty": origin.git_dirty,
        "training_profile": ranges.with_limits(
            schema, train, profile_frame(schema, train, file_md5(paths.train_csv))
        ),
        "library_versions": library_versions(),
        "project_dependencies": project_versions(paths.pyproject),
        "signing": {"algorithm": key.algorithm, "key_id": key.key_id, "dev_key": key.dev},
        # What serving does with a value beyond the training range (validation.range_margin wide).
        "serving": {
            "out_of_range": params.serving.out_of_range,
            "range_margin": params.validation.range_margin,
            "outliers": params.serving.outliers,  # what serving does with a record flagged
        },
    }


def _searched(
    candidate: Candidate, problem: search.Problem, inputs: str, storage: str | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The candidate's parameters after its search (on the training split only, as its fit),
    with the search's summary; as given, without a `search:` block."""
    if candidate.search is None:
        return candidate.params, None
    outcome = search.run(
        candidate.name, candidate.search, candidate.params, problem, inputs, storage
    )
    return outcome.params, outcome.summary


def run(
    paths: ProjectPaths,
    params: Params,
    key: SignKey,
    origin: Provenance,
    names: list[str] | None = None,
    search_storage: str | None = None,
) -> list[Path]:
    chosen = select(params, names)
    for candidate in chosen:  # a bad estimator, params or search space stops before any fitting
        estimator = make_estimator(candidate)
        if candidate.search is not None:
            search.check_space(candidate.name, candidate.search, estimator)
    schema: Schema = load_schema(paths.schema)
    train = read_csv(paths.train_csv)
    features, target = schema.prepare(train), train[schema.target.name]
    transformer = stl.build(params.transform, schema, paths.src)
    # A shared search study is keyed by the training rows and the unfitted STL, among others.
    inputs = hashlib.sha256(file_md5(paths.train_csv).encode() + dump_object(transformer))
    transformed = _fit_stl(transformer, schema, features, target)
    detector = outliers.train(transformed, transformer, schema, params)
    common = _common_metadata(paths, params, schema, train, origin, key)
    common["outliers"] = detector.metadata
    transformer_bytes = dump_object(transformer)
    sources = explain.source_columns(transformer, schema, transformed.shape[1])
    background = explain.background(sources, transformed, params.split.seed)
    written = []
    for candidate in chosen:
        problem = search.Problem(
            features,
            target,
            params.task,
            lambda: clone(transformer),
            functools.partial(_with_params, candidate),
        )
        fitted_params, searched = _searched(candidate, problem, inputs.hexdigest(), search_storage)
        model = fit_candidate(
            candidate.model_copy(update={"params": fitted_params}), transformed, target
        )
        compiled, inference = compile_candidate(params, schema, transformer, model, detector)
        metadata = {
            **common,
            "name": candidate.name,
            "estimator": candidate.estimator,
            "params": fitted_params,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "inference": inference,
            **({"search": searched} if searched else {}),
        }
        if params.task == "classification":
            metadata["classes"] = [plain(c) for c in getattr(model, "classes_", [])]
            metadata["probabilities"] = hasattr(model, "predict_proba")
        dest = paths.candidates_dir / candidate.name
        files = {MODEL: dump_object(model), TRANSFORMER: transformer_bytes, **detector.files}
        files.update(compiled)
        files[BACKGROUND] = background  # signed like every file: the explainer's, fixed here
        write_bundle(dest, files, metadata, key)
        written.append(dest)
    return written


def in_containers(
    paths: ProjectPaths,
    params: Params,
    settings: Settings,
    names: list[str] | None,
    say: Callable[[str], None],
) -> dict[str, dict[str, str]]:
    """Each candidate in its own training container, all at once; the host supplies the provenance
    the containers cannot compute (they see neither the raw data nor .git). Returns when each
    ran."""
    from sail_pipelines.clients.build import recorded

    chosen = select(params, names)
    image = recorded(paths)["train"]
    origin = Provenance.of(paths.root, paths.root / params.raw_data)
    env = containers.step_env(os.environ, {**containers.team_env(settings), **origin.to_env()})
    steps = {c.name: ["train", "--candidate", c.name] for c in chosen}
    return containers.run_steps(
        containers.docker_client(), image, steps, containers.train_mounts(paths), env, paths, say
    )
