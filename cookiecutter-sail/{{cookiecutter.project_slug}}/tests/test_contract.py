"""The project's data meets contracts/schema.yaml, the contract training and serving share."""

from __future__ import annotations

import pandas as pd

from sail_pipelines.contract.schema import check_frame, column_problems


def test_columns_match_the_schema(data, schema, params):
    assert schema.target.name == params.target
    required = set(schema.feature_names) | {schema.target.name}
    known = required | {c.name for c in schema.ignored}
    assert required <= set(data.columns), f"missing: {sorted(required - set(data.columns))}"
    assert set(data.columns) <= known, f"not in the schema: {sorted(set(data.columns) - known)}"


def test_every_value_fits_its_column_type(data, schema):
    check_frame(schema, data)  # raises naming the line and column of the first bad values
    for column in schema.features:
        if not column.nullable:
            assert data[column.name].notna().all(), f"{column.name} has missing values"
        if column.type in ("float", "int"):
            assert pd.api.types.is_numeric_dtype(data[column.name]), column.name


def test_target_fits_the_schema(data, schema, params):
    target = data[schema.target.name]
    labelled = target.dropna()
    assert len(target) - len(labelled) <= params.validation.max_missing_target * len(target)
    assert column_problems(schema.target, labelled) == []
    if params.task == "classification":
        assert labelled.nunique() >= 2, "classification needs at least two classes in the data"
        assert set(labelled.unique()) <= set(schema.target.values)
    else:
        assert pd.api.types.is_numeric_dtype(labelled)


def test_enough_rows(data, schema, params):
    assert data[schema.target.name].notna().sum() >= params.validation.min_rows
