"""The shipped data meets contracts/schema.yaml, the contract training and serving share."""

from __future__ import annotations

import pandas as pd
from sail_pipelines.contract.schema import check_frame


def test_columns_match_the_schema(data, schema, params):
    assert schema.target.name == params.target
    expected = set(schema.feature_names) | {schema.target.name}
    assert set(data.columns) == expected, (
        f"missing: {sorted(expected - set(data.columns))}, extra: {sorted(set(data.columns) - expected)}"
    )


def test_every_value_fits_its_column_type(data, schema):
    check_frame(schema, data)  # raises naming the first bad row and column
    for column in schema.features:
        values = data[column.name]
        if not column.nullable:
            assert values.notna().all(), f"{column.name} has missing values"
        present = values.dropna()
        if column.type == "float":
            assert pd.api.types.is_numeric_dtype(values), column.name
        elif column.type == "int":
            assert pd.api.types.is_numeric_dtype(values), column.name
            assert (present == present.round()).all(), f"{column.name} has non-integer values"
        else:
            assert set(present.unique()) <= set(column.values), f"{column.name} has unknown categories"


def test_target_fits_the_schema(data, schema, params):
    target = data[schema.target.name]
    assert target.notna().all()
    assert pd.api.types.is_numeric_dtype(target)
    if schema.target.values is not None:
        assert set(target.unique()) <= set(schema.target.values)
    if params.task == "classification":
        assert target.nunique() == 2, "classification needs both classes in the data"


def test_enough_rows(data, params):
    assert len(data) >= params.validation.min_rows
