"""params.yaml is complete and every name in it resolves, so a typo fails here, not mid-pipeline."""

from __future__ import annotations

import importlib
import inspect

from sklearn.base import is_classifier, is_regressor


def test_params_parse_and_point_at_existing_files(params, root):
    assert (root / params.raw_data).is_file()
    assert params.gate.registered_model
    assert params.split.stratify == (params.task == "classification")


def test_every_candidate_estimator_imports_and_accepts_its_params(params):
    check = is_classifier if params.task == "classification" else is_regressor
    for candidate in params.candidates:
        module_name, _, class_name = candidate.estimator.rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name)
        assert inspect.isclass(cls), candidate.estimator
        estimator = cls(**candidate.params)
        assert check(estimator), f"{candidate.name}: {candidate.estimator} does not fit task {params.task}"
        for key, value in candidate.params.items():
            assert estimator.get_params()[key] == value
        if candidate.search:  # every searched parameter is one the estimator takes
            assert {d.name for d in candidate.search.space} <= set(estimator.get_params()), candidate.name


def test_transform_points_at_the_shared_transformation_layer(build_transformer, params):
    assert callable(build_transformer)
    assert list(inspect.signature(build_transformer).parameters)[:2] == ["numeric", "categorical"]


def test_primary_metric_has_a_threshold(params):
    assert params.gate.primary_metric in {t.metric for t in params.gate.thresholds}
