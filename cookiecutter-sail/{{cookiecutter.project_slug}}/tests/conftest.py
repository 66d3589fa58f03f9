"""Shared fixtures: everything is read from the project files, as the pipeline reads them."""

from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sail_pipelines.config import parse_params
from sail_pipelines.contract import stl
from sail_pipelines.contract.data import read_table
from sail_pipelines.contract.schema import load_schema

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def raw_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture(scope="session")
def params(raw_params):
    return parse_params(raw_params)


@pytest.fixture(scope="session")
def schema():
    return load_schema(ROOT / "contracts" / "schema.yaml")


@pytest.fixture(scope="session")
def data(params) -> pd.DataFrame:
    return read_table(ROOT / params.raw_data)  # CSV or Parquet, as the pipeline reads it


@pytest.fixture(scope="session")
def columns(schema) -> dict[str, list[str]]:
    """The STL's arguments, derived from the contract as the train step derives them."""
    return stl.arguments(schema)


@pytest.fixture(scope="session")
def build_transformer(params):
    module_name, _, function = params.transform.partition(":")
    return getattr(importlib.import_module(module_name), function)


@pytest.fixture(scope="session")
def features(data, schema) -> pd.DataFrame:
    """The labelled rows' features, in the dtypes the train step hands the STL."""
    return schema.prepare(data[data[schema.target.name].notna()])
