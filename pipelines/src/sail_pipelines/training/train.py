"""`sail train`: fit the Shared Transformation Layer once, then every candidate on its output.

Each candidate becomes its own signed bundle holding the fitted STL, the model and the
metadata that says where it came from. Training never sees the test split.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import warnings
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from sklearn.base import clone

from sail_pipelines.config import Candidate, Params, ProjectPaths, Settings
from sail_pipelines.contract import stl
from sail_pipelines.contract.data import read_csv
from sail_pipelines.contract.schema import Schema, load_schema
from sail_pipelines.contract.validate import profile_frame
from sail_pipelines.delivery import containers
from sail_pipelines.errors import SailError
from sail_pipelines.integrity.bundle import MODEL, TRANSFORMER, dump_object, write_bundle
from sail_pipelines.integrity.signing import SigningKey
from sail_pipelines.provenance import Provenance, file_md5, library_versions
from sail_pipelines.training import search


def make_estimator(candidate: Candidate) -> Any:
    module_name, _, class_name = candidate.estimator.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise SailError(f"candidate '{candidate.name}': cannot import estimator {candidate.estimator!r}") from None
    try:
        return cls(**candidate.params)
    except TypeError as exc:
        raise SailError(f"candidate '{candidate.name}': bad params for {candidate.estimator}: {exc}") from None


def fit_candidate(candidate: Candidate, transformed: Any, target: pd.Series) -> Any:
    model = make_estimator(candidate)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(transformed, target)
    except (ValueError, TypeError) as exc:
        raise SailError(f"candidate '{candidate.name}' failed to train: {str(exc).splitlines()[0]}") from None
    return model


def select(params: Params, names: list[str] | None) -> list[Candidate]:
    if not names:
        return list(params.candidates)
    known = {c.name: c for c in params.candidates}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SailError(f"unknown candidate(s) {', '.join(unknown)}; params.yaml lists {', '.join(known)}")
    return [known[n] for n in names]


def run(paths: ProjectPaths, params: Params, key: SigningKey, origin: Provenance,
        names: list[str] | None = None, search_storage: str | None = None) -> list[Path]:
    chosen = select(params, names)
    for candidate in chosen:  # a bad estimator, params or search space stops before any fitting
        estimator = make_estimator(candidate)
        if candidate.search is not None:
            search.check_space(candidate.name, candidate.search, estimator)
    schema: Schema = load_schema(paths.schema)
    train = read_csv(paths.train_csv)
    features, target = train[schema.feature_names], train[schema.target.name]
    transformer = stl.build(params.transform, schema, paths.src)
    # A shared search study is keyed by the training rows and the unfitted STL, among others.
    inputs = hashlib.sha256(file_md5(paths.train_csv).encode() + dump_object(transformer))
    try:
        transformer.fit(features, target)
    except (ValueError, TypeError) as exc:
        raise SailError(f"the transformation layer failed to fit: {str(exc).splitlines()[0]}") from None
    transformed = transformer.transform(features)
    common = {
        "format": 1,
        "task": params.task,
        "target": schema.target.name,
        "schema": schema.to_dict(),
        "transform": params.transform,
        "data_hash": origin.data_hash,
        "train_hash": file_md5(paths.train_csv),
        "git_commit": origin.git_commit,
        "git_dirty": origin.git_dirty,
        "training_profile": profile_frame(schema, train, file_md5(paths.train_csv)),
        "library_versions": library_versions(),
        "signing": {"algorithm": "HMAC-SHA256", "key_id": key.key_id, "dev_key": key.dev},
    }
    transformer_bytes = dump_object(transformer)
    written = []
    for candidate in chosen:
        fitted_params, searched = candidate.params, None
        if candidate.search is not None:  # on the training split only, as the fit below
            problem = search.Problem(features, target, params.task, lambda: clone(transformer),
                                     lambda p: make_estimator(replace(candidate, params=p)))
            outcome = search.run(candidate.name, candidate.search, candidate.params, problem,
                                 inputs.hexdigest(), search_storage)
            fitted_params, searched = outcome.params, outcome.summary
        model = fit_candidate(replace(candidate, params=fitted_params), transformed, target)
        metadata = {
            **common,
            "name": candidate.name,
            "estimator": candidate.estimator,
            "params": fitted_params,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **({"search": searched} if searched else {}),
        }
        dest = paths.candidates_dir / candidate.name
        write_bundle(dest, {MODEL: dump_object(model), TRANSFORMER: transformer_bytes}, metadata, key)
        written.append(dest)
    return written


def in_containers(paths: ProjectPaths, params: Params, settings: Settings, names: list[str] | None,
                  say: Callable[[str], None]) -> dict[str, dict[str, str]]:
    """Each candidate in its own training container, all at once; the host supplies the provenance
    the containers cannot compute (they see neither the raw data nor .git). Returns when each ran."""
    from sail_pipelines.delivery.build import recorded

    chosen = select(params, names)
    image = recorded(paths)["train"]
    origin = Provenance.of(paths.root, paths.root / params.raw_data)
    env = containers.step_env(os.environ, {**containers.team_env(settings), **origin.to_env()})
    steps = {c.name: ["train", "--candidate", c.name] for c in chosen}
    return containers.run_steps(containers.docker_client(), image, steps, containers.train_mounts(paths), env, paths, say)
