"""What the tests of the prediction log's readers (monitor, feedback) start from: a generated
project whose accepted bundle is a small classifier signed in place (no `sail run`), and traffic
to it through the real Flask app (in process) with the prediction log on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sail_pipelines.contract.schema import Schema
from sail_pipelines.contract.validate import profile_frame
from sail_pipelines.inference.prediction_log import LogSettings
from sail_pipelines.inference.serve import create_app
from sail_pipelines.integrity.bundle import (
    MODEL,
    TRANSFORMER,
    dump_object,
    load_bundle,
    write_bundle,
)
from sail_pipelines.integrity.signing import VerifyKey


def accept_classifier(
    project: Path, train: pd.DataFrame, schema: Schema, classes: list[Any], signer: Any
) -> Path:
    """Writes `train` (columns x1, income, color and label) as the project's training split and
    signs a logistic regression on it into models/accepted, with the training profile the
    monitor compares against."""
    (project / "data" / "split").mkdir(parents=True, exist_ok=True)
    train.to_csv(project / "data" / "split" / "train.csv", index=False)
    features = train[schema.feature_names]
    transformer = ColumnTransformer(
        [
            ("n", StandardScaler(), ["x1", "income"]),
            ("c", OneHotEncoder(handle_unknown="ignore"), ["color"]),
        ]
    ).fit(features)
    model = LogisticRegression().fit(transformer.transform(features), train["label"])
    metadata = {
        "task": "classification",
        "schema": schema.to_dict(),
        "name": "m",
        "classes": classes,
        "probabilities": True,
        "registry": {"model": "m", "version": "1"},
        "training_profile": profile_frame(schema, train, "h"),
        "inference": {"runtime": "sklearn"},
    }
    write_bundle(
        project / "models" / "accepted",
        {MODEL: dump_object(model), TRANSFORMER: dump_object(transformer)},
        metadata,
        signer,
    )
    return project


def post_logged(
    project: Path, verify_key: VerifyKey, log: Path, records: list[dict], per_request: int
) -> list[str]:
    """Posts `records` to the project's accepted model, `per_request` rows a request (one row as
    a bare object), with the prediction log written to `log`; returns the request ids."""
    client = create_app(
        load_bundle(project / "models" / "accepted", verify_key),
        log_settings=LogSettings(str(log)),
    ).test_client()
    ids = []
    for start in range(0, len(records), per_request):
        chunk = records[start : start + per_request]
        response = client.post("/predict", json=chunk if per_request > 1 else chunk[0])
        assert response.status_code == 200, response.get_json()
        ids.append(response.get_json()["request_id"])
    return ids
