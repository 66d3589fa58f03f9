"""`sail feedback`: ground truth that arrives late, joined to the predictions that were served.

A labels file (CSV: request_id, label, and `record`, the position in a request of many records)
is checked and kept in data/feedback/labels.csv, merged with earlier ones (a later label for the
same record wins). `sail monitor` then joins it to the logged traffic and scores the model on the
joined rows with the test step's own metrics, against the gate's thresholds. With
--append-to-training the rows this file labels anew (a new record, or a changed label), as logged
plus their label, are appended to the raw data, which then takes the usual path: `dvc add`,
`sail validate`, a new run and the gate. A label sent again is not appended again; a corrected
one is appended beside the row appended before, which stays until removed by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sail_pipelines import model_metrics as metrics
from sail_pipelines.config import Params, ProjectPaths
from sail_pipelines.contract.schema import Schema
from sail_pipelines.errors import SailError
from sail_pipelines.monitoring.logs import Traffic

KEY = ["request_id", "record"]


def labels_path(paths: ProjectPaths) -> Path:
    return paths.root / "data" / "feedback" / "labels.csv"


def read_labels(source: Path) -> pd.DataFrame:
    """request_id, record (0 when absent) and label; anything else is one line naming the
    problem."""
    try:
        frame = pd.read_csv(source, dtype={"request_id": str, "label": str})
    except FileNotFoundError as exc:
        raise SailError(f"{source}: no such labels file") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SailError(f"{source}: not a readable CSV file ({str(exc).splitlines()[0]})") from exc
    missing = [c for c in ("request_id", "label") if c not in frame]
    if missing:
        raise SailError(
            f"{source}: needs the columns request_id and label (missing: {', '.join(missing)})"
        )
    if "record" not in frame:
        frame["record"] = 0
    record = pd.to_numeric(frame["record"], errors="coerce")
    bad = frame.index[
        frame["request_id"].isna() | frame["label"].isna() | record.isna() | (record < 0)
    ]
    if len(bad):
        raise SailError(
            f"{source}: line {bad[0] + 2}: request_id, label and record (a whole number from 0) "
            "must all be set"
        )
    frame["record"] = record.astype(int)
    return frame[[*KEY, "label"]]


def merge_labels(paths: ProjectPaths, new: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Earlier labels plus the new ones, the newest label of each record kept, written back; and
    the new file's labels that the store did not hold yet (new records or changed labels)."""
    path = labels_path(paths)
    new = new.drop_duplicates(KEY, keep="last")
    earlier = read_labels(path) if path.is_file() else new.iloc[:0]
    merged = pd.concat([earlier, new]).drop_duplicates(KEY, keep="last")
    path.parent.mkdir(parents=True, exist_ok=True)
    merged.to_csv(path, index=False)
    held = new.merge(earlier, on=[*KEY, "label"], how="left", indicator=True)["_merge"]
    return merged, new[(held == "left_only").to_numpy()]


def traffic_frame(traffic: Traffic) -> pd.DataFrame:
    """One row per served record with its key, inputs and answer."""
    frame = pd.DataFrame(
        {
            "request_id": traffic.request_ids,
            "record": traffic.positions,
            "prediction": traffic.predictions,
            **traffic.inputs,
        }
    )
    for cls, values in traffic.probabilities.items():
        frame[f"probability_{cls}"] = values
    return frame


def join(traffic: Traffic, labels: pd.DataFrame) -> pd.DataFrame:
    return traffic_frame(traffic).merge(labels, on=KEY, how="inner")


def _typed(values: pd.Series, like: list[Any]) -> np.ndarray:
    """Labels read as text, typed like the model's classes (or as numbers for regression)."""
    if like and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in like):
        return pd.to_numeric(values, errors="coerce").to_numpy()
    return values.to_numpy(dtype=object)


def live_metrics(joined: pd.DataFrame, metadata: dict[str, Any], params: Params) -> dict[str, Any]:
    """The test step's metrics on the joined rows, and a line per gate threshold they miss."""
    if metadata.get("task") == "classification":
        classes = list(metadata.get("classes") or [])
        y_true = _typed(joined["label"], classes)
        predictions = _typed(joined["prediction"].astype(str), classes)
        columns = [f"probability_{c}" for c in classes]
        probabilities = (
            joined[columns].to_numpy(dtype=float) if all(c in joined for c in columns) else None
        )
        scores = metrics.classification(y_true, predictions, probabilities, classes)
        scores = {k: v for k, v in scores.items() if k not in ("classes", "confusion_matrix")}
    else:
        scores = metrics.regression(
            pd.to_numeric(joined["label"], errors="coerce").to_numpy(),
            joined["prediction"].to_numpy(dtype=float),
        )
    breaches = []
    for threshold in params.gate.thresholds:
        value = scores.get(threshold.metric)
        if value is None or value != value:
            continue
        if threshold.minimum is not None and value < threshold.minimum:
            breaches.append(
                f"live {threshold.metric} {value:.4f} on {len(joined)} labelled rows is below the "
                f"gate threshold {threshold.minimum}"
            )
        if threshold.maximum is not None and value > threshold.maximum:
            breaches.append(
                f"live {threshold.metric} {value:.4f} on {len(joined)} labelled rows is above the "
                f"gate threshold {threshold.maximum}"
            )
    return {"metrics": scores, "breaches": breaches, "rows": len(joined)}


def append_to_training(
    paths: ProjectPaths, params: Params, schema: Schema, joined: pd.DataFrame
) -> int:
    """The joined rows, as logged plus their label, appended to the raw CSV; columns the log never
    holds (`log: false`, ignored ones) stay empty, for `sail validate` to judge."""
    raw = paths.root / params.raw_data
    if raw.suffix.lower() != ".csv":
        raise SailError(
            f"--append-to-training appends to a CSV raw data file; {params.raw_data} is not one"
        )
    header = list(pd.read_csv(raw, nrows=0).columns)
    rows = joined.rename(columns={"label": schema.target.name}).reindex(columns=header)
    rows.to_csv(raw, mode="a", header=False, index=False)
    return len(rows)


def run(
    paths: ProjectPaths,
    params: Params,
    bundle: Any,
    source: Path,
    traffic: Traffic,
    append: bool = False,
) -> dict[str, Any]:
    labels, fresh = merge_labels(paths, read_labels(source))
    joined = join(traffic, labels)
    stored = str(labels_path(paths).relative_to(paths.root))
    result = {"labels": len(labels), "joined": len(joined), "stored": stored}
    if append:
        if joined.empty:
            raise SailError(
                "no label matches a logged prediction: nothing to append to the training data"
            )
        result["appended"] = append_to_training(paths, params, bundle.schema, join(traffic, fresh))
        result["next"] = f"dvc add {params.raw_data} && sail validate"
    return result
