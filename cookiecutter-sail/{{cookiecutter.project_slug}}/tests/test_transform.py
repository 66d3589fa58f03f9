"""The Shared Transformation Layer behaves the same at training and at serving time."""

from __future__ import annotations

import pickle
import pickletools

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted


def test_builds_an_unfitted_scikit_learn_transformer(build_transformer, columns):
    transformer = build_transformer(**columns)
    assert isinstance(transformer, ColumnTransformer)
    with pytest.raises(NotFittedError):
        check_is_fitted(transformer)
    for _, step, _ in transformer.transformers:
        for estimator in getattr(step, "named_steps", {"": step}).values():
            assert type(estimator).__module__.startswith(("sklearn.", "sail_pipelines.")), type(
                estimator
            )


def test_is_deterministic(build_transformer, columns, features):
    first = build_transformer(**columns).fit(features)
    second = build_transformer(**columns).fit(features)
    out = first.transform(features)
    np.testing.assert_array_equal(out, second.transform(features))
    np.testing.assert_array_equal(out, first.transform(features))
    assert list(first.get_feature_names_out()) == list(second.get_feature_names_out())


def test_one_row_alone_equals_the_same_row_in_a_batch(build_transformer, columns, features):
    """Serving transforms one request at a time; it must match what training computed in bulk."""
    transformer = build_transformer(**columns).fit(features)
    rows = features.iloc[[0, 1, len(features) // 2, len(features) - 1]].copy()
    gap = rows.iloc[[0]].copy()
    # imputed from training
    gap[(columns["numeric"] + columns["categorical"] + columns["datetime"])[0]] = np.nan
    batch = pd.concat([rows, gap], ignore_index=True)
    together = transformer.transform(batch)
    assert together.shape[0] == len(batch)
    assert not np.isnan(together).any()
    for i in range(len(batch)):
        alone = transformer.transform(batch.iloc[[i]])
        np.testing.assert_allclose(alone[0], together[i], rtol=0, atol=1e-12)


def test_transform_never_refits(build_transformer, columns, features):
    transformer = build_transformer(**columns).fit(features)
    fitted_state = joblib.hash(transformer)
    before = transformer.transform(features)
    shifted = features.copy()
    if columns["numeric"]:
        # very different (and finite) data
        shifted[columns["numeric"]] = shifted[columns["numeric"]] * -0.5 + 5
    transformer.transform(shifted)
    transformer.transform(shifted.iloc[[0]])
    assert joblib.hash(transformer) == fitted_state
    np.testing.assert_array_equal(transformer.transform(features), before)


def test_fitted_transformer_loads_without_this_project(
    build_transformer, columns, features, params
):
    """The bundle stores the fitted STL; unpickling it must need scikit-learn and sail-pipelines
    (installed wherever a bundle is loaded), never this package."""
    transformer = build_transformer(**columns).fit(features)
    own_package = params.transform.split(".")[0]
    modules = {
        arg.split(" ")[0].split(".")[0]
        for op, arg, _ in pickletools.genops(pickle.dumps(transformer, protocol=2))
        if op.name == "GLOBAL"
    }
    assert own_package not in modules and "__main__" not in modules, modules
    assert "sklearn" in modules


def test_unseen_category_at_serving_does_not_fail(build_transformer):
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, np.nan], "colour": ["red", "blue", "red", None]})
    transformer = build_transformer(numeric=["x"], categorical=["colour"]).fit(train)
    out = transformer.transform(pd.DataFrame({"x": [2.0], "colour": ["green"]}))
    names = list(transformer.get_feature_names_out())
    assert names == ["x", "colour_blue", "colour_red"]
    assert out[0, 1:].tolist() == [0.0, 0.0]
