"""The champion the gate compares against: the version holding the `champion` alias, its
verified accepted bundle re-scored on the new test split, and both models on its signed
holdout (minus the rows the candidate trained on)."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_numeric_dtype

from sail_pipelines.clients import tracking
from sail_pipelines.config import GateConfig, ProjectPaths, Settings
from sail_pipelines.contract.data import read_csv
from sail_pipelines.errors import SailError
from sail_pipelines.evaluation.bootstrap import Outputs
from sail_pipelines.evaluation.evaluate import predict
from sail_pipelines.evaluation.evidence import compare, point, too_few
from sail_pipelines.inference import pyfunc
from sail_pipelines.integrity.bundle import HOLDOUT, BundleRejected, LoadedBundle
from sail_pipelines.integrity.signing import VerifyKey
from sail_pipelines.provenance import file_md5

# In accepted bundles beside holdout.json: labelled test rows, the next gate's second yardstick.
HOLDOUT_CSV = "holdout.csv"


def fetch_champion(
    client: Any, run_id: str, schema: dict[str, Any], key: VerifyKey
) -> tuple[LoadedBundle | None, dict[str, float], str]:
    """The champion's verified accepted bundle (None when it cannot be fetched, is refused, or
    expects other features), the metrics it was accepted with, and where those came from."""
    from mlflow.exceptions import MlflowException

    recorded = client.get_run(run_id).data.metrics
    try:
        champion = pyfunc.download_bundle(client, run_id, key)
    except (MlflowException, OSError) as exc:
        return None, recorded, f"recorded (its bundle could not be fetched: {exc})"
    except BundleRejected as exc:
        return None, recorded, f"recorded (its bundle was refused: {exc})"
    if champion.metadata["schema"] != schema:
        return None, recorded, "recorded (it was trained on other features)"
    signed = (champion.metadata.get("evaluation") or {}).get("metrics") or recorded
    return champion, signed, "rescored on this test set"


def champion_history(client: Any, model: str, metric: str, last: int = 10) -> list[dict[str, Any]]:
    """The metric each champion was accepted with, oldest first, for the report's chart: the
    versions the audit trail's promotions and rollbacks made champion (read, not verified: a chart
    decides nothing; promote and rollback verify it), else only today's champion."""
    from mlflow.exceptions import MlflowException

    try:
        line = [json.loads(text).get("to") for _, text in tracking.audit_tags(client, model)]
        current = tracking.version_by_alias(client, model, tracking.CHAMPION)
        line = [str(v) for v in line if v] or ([str(current.version)] if current else [])
        history = []
        for number in line[-last:]:
            run_id = client.get_model_version(model, number).run_id
            history.append(
                {"version": number, "value": client.get_run(run_id).data.metrics.get(metric)}
            )
        return history
    except (MlflowException, OSError, ValueError, AttributeError):
        return []


def seen_in(rows: pd.DataFrame, train: pd.DataFrame, features: list[str]) -> np.ndarray:
    """Which rows have exactly the features of some training row: the candidate trained on them."""

    def keys(frame: pd.DataFrame) -> pd.Series:
        plain_columns = {
            c: frame[c].astype(float) if is_numeric_dtype(frame[c]) else frame[c].astype(str)
            for c in features
        }
        return pd.util.hash_pandas_object(pd.DataFrame(plain_columns), index=False)

    return keys(rows).isin(set(keys(train))).to_numpy()


def short_of_evidence(gate: GateConfig, task: str, y_true: Any, classes: list[Any]) -> str | None:
    return too_few(
        y_true,
        task,
        classes,
        gate.min_test_rows,
        gate.min_rows_per_class,
        "gate.min_test_rows",
        "gate.min_rows_per_class",
    )


def holdout_comparison(
    gate: GateConfig, champion: LoadedBundle, candidate: LoadedBundle, train: pd.DataFrame
) -> dict[str, Any]:
    """Both models on the champion's signed holdout, on the rows the candidate never trained on;
    and the champion on all of it, against what it scored there when it was accepted."""
    if HOLDOUT_CSV not in champion.files:
        return {
            "judged": False,
            "reason": "its bundle carries no labelled holdout (accepted before the gate kept one)",
        }
    labelled = pd.read_csv(io.BytesIO(champion.files[HOLDOUT_CSV]))
    target, task = champion.metadata["target"], champion.metadata["task"]
    everything = predict(champion, labelled)
    seen = seen_in(labelled, train, candidate.schema.feature_names)
    unseen = labelled[~seen]
    result: dict[str, Any] = {
        "rows": int(len(labelled)),
        "unseen_rows": int(len(unseen)),
        "recorded": json.loads(champion.files[HOLDOUT]).get("labelled", {}).get("metrics", {}),
        "champion_all_rows": point(task, labelled[target], everything),
    }
    short = short_of_evidence(gate, task, unseen[target], candidate.classes)
    if short:
        reason = (
            f"{int(seen.sum())} of its {len(labelled)} rows are in the candidate's training split; "
            f"the rest has {short}"
        )
        return {**result, "judged": False, "reason": reason}
    judged = compare(
        task,
        unseen[target],
        predict(candidate, unseen),
        everything.subset(np.flatnonzero(~seen)),
        gate.bootstrap,
    )
    return {**result, **judged, "rows": int(len(labelled)), "judged": True, "reason": None}


def read_champion(
    settings: Settings,
    client: Any,
    key: VerifyKey,
    gate: GateConfig,
    candidate: LoadedBundle,
    test: pd.DataFrame,
    paths: ProjectPaths,
) -> tuple[dict[str, Any] | None, Outputs | None]:
    """The champion as gate.json records it (None without one), and its outputs on the test
    split (None when it could not be re-scored)."""
    with tracking.reachable(settings, "reading the champion"):
        version = tracking.version_by_alias(client, gate.registered_model, tracking.CHAMPION)
        if version is None:
            return None, None
        bundle, recorded, source = fetch_champion(
            client, version.run_id, candidate.metadata["schema"], key
        )
        history = champion_history(client, gate.registered_model, gate.primary_metric)
    entry: dict[str, Any] = {
        "version": str(version.version),
        "run_id": version.run_id,
        "metrics_source": source,
        "recorded": recorded,
        "rescored": bundle is not None,
        "history": history,
    }
    if bundle is None:
        return {**entry, "metrics": recorded}, None
    outputs = predict(bundle, test)
    entry["metrics"] = point(bundle.metadata["task"], test[bundle.metadata["target"]], outputs)
    entry["holdout"] = holdout_comparison(
        gate, bundle, candidate, _training_split(paths, candidate)
    )
    return entry, outputs


def _training_split(paths: ProjectPaths, candidate: LoadedBundle) -> pd.DataFrame:
    trained_on = candidate.metadata.get("train_hash")
    if not paths.train_csv.is_file() or file_md5(paths.train_csv) != trained_on:
        raise SailError(
            "data/split/train.csv is missing or is not the split the candidate trained on: the "
            "gate needs it to leave the candidate's training rows out of the champion's holdout"
        )
    return read_csv(paths.train_csv)
