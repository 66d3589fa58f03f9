"""params.yaml is complete and every name in it resolves, so a typo fails here, not mid-pipeline."""

from __future__ import annotations

import importlib
import inspect
import warnings

import pytest
from sklearn.base import is_classifier, is_regressor


def test_params_parse_and_point_at_existing_files(params, root):
    assert (root / params.raw_data).is_file()
    assert params.gate.registered_model
    assert params.split.stratify == (params.task == "classification")


def test_every_candidate_fits_a_few_rows(params, build_transformer, columns, data, features):
    """scikit-learn checks parameter values only in fit(), so each candidate is fitted here, on a
    few rows through the STL: a bad value (max_depth: deep) fails now, not mid-pipeline."""
    check = is_classifier if params.task == "classification" else is_regressor
    if params.task == "classification":
        rows = data.groupby(params.target).head(10)  # every class, a few rows each
    else:
        rows = data.head(30)
    transformed = build_transformer(**columns).fit_transform(features.loc[rows.index])
    for candidate in params.candidates:
        module_name, _, class_name = candidate.estimator.rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name)
        assert inspect.isclass(cls), candidate.estimator
        estimator = cls(**candidate.params)
        assert check(estimator), f"{candidate.name}: {candidate.estimator} is not for {params.task}"
        if candidate.search:  # every searched parameter is one the estimator takes
            assert {d.name for d in candidate.search.space} <= set(estimator.get_params()), (
                candidate.name
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a few rows: convergence warnings are expected
                estimator.fit(transformed, rows[params.target])
        except (ValueError, TypeError) as exc:
            pytest.fail(f"{candidate.name}: {str(exc).splitlines()[0]}")


def test_transform_points_at_the_shared_transformation_layer(build_transformer, params):
    assert callable(build_transformer)
    assert list(inspect.signature(build_transformer).parameters)[:2] == ["numeric", "categorical"]


def test_primary_metric_has_a_threshold(params):
    assert params.gate.primary_metric in {t.metric for t in params.gate.thresholds}
