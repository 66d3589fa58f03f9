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

from sail_pipelines.contract import stl


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
    """Serving transforms one request at a time; it must match what training computed in bulk:
    for a hundred rows across the data, every row with missing values among the first ones, and
    a row per feature with that feature missing (imputed from training)."""
    transformer = build_transformer(**columns).fit(features)
    rows = features.sample(n=min(100, len(features)), random_state=0)
    incomplete = features[features.isna().any(axis=1)].head(20)
    gaps = []
    for i, name in enumerate(features.columns):
        gap = features.iloc[[i % len(features)]].copy()
        gap[name] = np.nan
        gaps.append(gap)
    batch = pd.concat([rows, incomplete, *gaps], ignore_index=True)
    together = transformer.transform(batch)
    assert together.shape[0] == len(batch)
    assert not np.isnan(together).any()
    for i in range(len(batch)):
        alone = transformer.transform(batch.iloc[[i]])
        np.testing.assert_allclose(alone[0], together[i], rtol=0, atol=1e-12)


def far_from_training(features: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """Every feature moved far from its training distribution, still valid input: numbers scaled
    and offset, each category set to its rarest training value, dates ten years later."""
    moved = features.copy()
    for name in columns["numeric"]:
        moved[name] = features[name] * -0.5 + 5
    for name in columns["categorical"]:
        counts = features[name].value_counts()
        if len(counts):
            moved[name] = counts.index[-1]
    for name in columns["datetime"]:
        when = pd.to_datetime(features[name], utc=True, errors="coerce", format="ISO8601")
        later = (when + pd.DateOffset(years=10)).dt.strftime("%Y-%m-%dT%H:%M:%S")
        moved[name] = later.astype(object).where(when.notna(), np.nan)
    return moved


def test_transform_never_refits(build_transformer, columns, features):
    """Transforming other data leaves the fitted state alone, for every kind of column the schema
    has: the moved rows transform differently (so a refit would show), yet the fitted STL's state
    and its output for the training rows stay the same."""
    transformer = build_transformer(**columns).fit(features)
    fitted_state = joblib.hash(transformer)
    before = transformer.transform(features)
    moved = far_from_training(features, columns)
    varied = [c for c in features.columns if features[c].nunique() > 1]
    unmoved = [c for c in varied if moved[c].equals(features[c])]
    assert not unmoved, f"could not move {unmoved} away from the training data"
    assert not np.array_equal(transformer.transform(moved), before)
    transformer.transform(moved.iloc[[0]])
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


def never_seen(known: list) -> object:
    """A value of the column's kind outside the values it was trained on."""
    if known and all(isinstance(v, (int, float)) for v in known):
        return max(known) + 1
    return "never seen in training"


def test_unseen_category_at_serving_does_not_fail(build_transformer, columns, features, schema):
    """Each category column of the schema, given a value outside its training values in a real
    row: that column encodes as all zeros (one shared "other" bucket), every other output stays."""
    if not columns["categorical"]:
        pytest.skip("the schema has no category column")
    transformer = build_transformer(**columns).fit(features)
    sources = np.array(stl.source_fields(transformer, schema), dtype=object)
    row = features.iloc[[0]]
    seen = transformer.transform(row)[0]
    for name in columns["categorical"]:
        known = list(columns["categories"].get(name) or features[name].dropna().unique())
        changed = row.copy()
        changed[name] = never_seen(known)
        out = transformer.transform(changed)[0]
        own = sources == name
        assert own.any(), f"no output of the transformation layer comes from {name}"
        assert not out[own].any(), f"{name}={changed[name].iloc[0]!r} is not all zeros"
        np.testing.assert_array_equal(out[~own], seen[~own])
