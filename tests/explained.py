"""A signed bundle trained in-process on a synthetic table whose target depends on `x` only, with
a number that does not matter (`noise`), a one-hot category (`colour`) and a date (`day`):
what the explanation and importance tests check known answers, grouping and trust on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sail_pipelines.contract.schema import Column, Schema
from sail_pipelines.contract.transformers import CalendarFeatures
from sail_pipelines.inference import explain, onnx
from sail_pipelines.integrity.bundle import (
    BACKGROUND,
    MODEL,
    ONNX_MODEL,
    TRANSFORMER,
    dump_object,
    write_bundle,
)
from sail_pipelines.integrity.signing import HmacKey

KEY = HmacKey(b"explain-key")
FEATURES = (
    Column("x", "float"),
    Column("noise", "float"),
    Column("colour", "category", values=("red", "green", "blue")),
    Column("day", "datetime"),
)


def schema(task: str) -> Schema:
    target = (
        Column("label", "category", values=("no", "yes"))
        if task == "classification"
        else Column("y", "float")
    )
    return Schema(target=target, features=FEATURES)


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 700, rows), unit="D")
    return pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "noise": rng.normal(size=rows),
            "colour": rng.choice(["red", "green", "blue"], rows),
            "day": days.strftime("%Y-%m-%d"),
        }
    )


def target(data: pd.DataFrame, task: str) -> Any:
    return np.where(data.x > 0, "yes", "no") if task == "classification" else 3.0 * data.x


def stl() -> ColumnTransformer:
    """The template's STL, in short: scaled numbers, a one-hot colour, a date's calendar parts."""
    dates = Pipeline([("calendar", CalendarFeatures()), ("scale", StandardScaler())])
    return ColumnTransformer(
        [
            (
                "numbers",
                Pipeline([("fill", SimpleImputer()), ("scale", StandardScaler())]),
                ["x", "noise"],
            ),
            ("colour", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["colour"]),
            ("dates", dates, ["day"]),
        ],
        verbose_feature_names_out=False,
    )


def build(
    dest: Path, estimator: Any, task: str, background: bool = True, compiled: bool = False
) -> Path:
    """`estimator` fitted on 400 synthetic rows through the STL, signed at `dest`; with
    `compiled`, served by its ONNX graph (benchmarks/explain.py)."""
    the_schema = schema(task)
    train = frame(400, 1)
    transformer = stl().fit(train)
    transformed = transformer.transform(train)
    model = estimator.fit(transformed, target(train, task))
    metadata: dict[str, Any] = {
        "task": task,
        "schema": the_schema.to_dict(),
        "name": type(estimator).__name__,
        "inference": {"runtime": "onnx" if compiled else "sklearn"},
        "training_profile": {"rows": 400, "columns": {}},
    }
    if task == "classification":
        metadata.update(classes=["no", "yes"], probabilities=hasattr(model, "predict_proba"))
    files = {MODEL: dump_object(model), TRANSFORMER: dump_object(transformer)}
    if compiled:
        files[ONNX_MODEL] = onnx.convert(transformer, model, the_schema, task == "classification")
    if background:
        sources = explain.source_columns(transformer, the_schema, transformed.shape[1])
        files[BACKGROUND] = explain.background(sources, transformed, 42)
    write_bundle(dest, files, metadata, KEY)
    return dest
