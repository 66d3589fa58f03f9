"""A small signed bundle as the gate accepts one (registry entry, gate metrics, training profile,
holdout.json), served compiled: what the try-it page, /openapi.json and /docs are tested on.
test_protocols.py builds its plainer bundle from the same frame() and transformer()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sail_pipelines.contract.schema import Column, Schema
from sail_pipelines.inference import explain, onnx
from sail_pipelines.integrity.bundle import (
    BACKGROUND,
    HOLDOUT,
    MODEL,
    ONNX_MODEL,
    TRANSFORMER,
    dump_object,
    write_bundle,
)
from sail_pipelines.integrity.signing import HmacKey

KEY = HmacKey(b"try-it-key")
SCHEMA = Schema(
    target=Column("label", "category", values=("no", "yes")),
    features=(
        Column("x1", "float"),
        Column("x2", "float"),
        Column("n", "int"),
        Column("color", "category", values=("a", "b")),
    ),
    ignored=(Column("customer_id", "text", role="ignore"),),
)
MODEL_NAME, VERSION = "churn", "7"


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(rng.normal(size=(rows, 2)), columns=["x1", "x2"])
    data["n"] = rng.integers(0, 5, size=rows)
    data["color"] = rng.choice(["a", "b"], size=rows)
    return data


def transformer(train: pd.DataFrame) -> ColumnTransformer:
    """Scaled numbers and a one-hot colour, fitted on the training rows."""
    return ColumnTransformer(
        [
            ("numbers", StandardScaler(), ["x1", "x2", "n"]),
            ("color", OneHotEncoder(handle_unknown="ignore"), ["color"]),
        ]
    ).fit(train)


def build(
    dest: Path, task: str = "classification", runtime: str = "onnx", background: bool = True
) -> Path:
    """A classifier of 'no'/'yes', or (task="regression") a Ridge with test rmse and mae;
    served by ONNX Runtime, or by scikit-learn (runtime="sklearn"); without the explainer's
    background (`background=False`), as a bundle trained before explanations."""
    classification = task == "classification"
    train = frame(150, 3)
    score = train.x1 - train.x2 + train.n / 4 + (train.color == "a")
    target = np.where(score > 0.8, "yes", "no") if classification else score * 10
    fitted = transformer(train)
    model = (LogisticRegression() if classification else Ridge()).fit(
        fitted.transform(train), target
    )
    profile = {
        c: {
            "null_rate": 0.0,
            "min": float(train[c].min()),
            "max": float(train[c].max()),
            "mean": float(train[c].mean()),
            "std": float(train[c].std(ddof=0)),
        }
        for c in ("x1", "x2", "n")
    }
    holdout = frame(20, 4)
    rows = json.loads(holdout.to_json(orient="records"))
    records = [{"customer_id": f"c{i}", **r} for i, r in enumerate(rows)]
    metrics = (
        {"accuracy": 0.91, "f1": 0.88, "roc_auc": 0.95}
        if classification
        else {"rmse": 0.42, "mae": 0.31, "r2": 0.97}
    )
    schema = (
        SCHEMA
        if classification
        else Schema(Column("score", "float"), SCHEMA.features, SCHEMA.ignored)
    )
    metadata = {
        "task": task,
        "schema": schema.to_dict(),
        "name": "logreg" if classification else "ridge",
        **({"classes": ["no", "yes"], "probabilities": True} if classification else {}),
        "data_hash": "5ca1ab1e" * 8,
        "git_commit": "c0ffee",
        "created_at": "2026-11-30T06:00:00+00:00",
        "training_profile": {"rows": 150, "columns": profile},
        "evaluation": {"metrics": metrics, "primary_metric": "f1" if classification else "rmse"},
        "registry": {"model": MODEL_NAME, "version": VERSION},
        "model_card": "runs:/0123456789abcdef/model_card",
        "inference": {
            "runtime": runtime,
            "reason": None if runtime == "onnx" else "chosen by the test",
        },
    }
    files = {
        MODEL: dump_object(model),
        TRANSFORMER: dump_object(fitted),
        ONNX_MODEL: onnx.convert(fitted, model, schema, classification=classification),
        HOLDOUT: json.dumps(
            {
                "records": records,
                "predictions": model.predict(fitted.transform(holdout)).tolist(),
            }
        ).encode(),
    }
    if background:
        sources = explain.source_columns(fitted, schema, 5)
        files[BACKGROUND] = explain.background(sources, fitted.transform(train), 42)
    write_bundle(dest, files, metadata, KEY)
    return dest
