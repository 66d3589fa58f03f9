"""`sail predict`: batch inference through the same verified bundle and STL as the API.

The input (CSV or Parquet) is read and scored in chunks, so a file of any length runs in bounded
memory; the output (CSV, JSON or Parquet) is written as it goes into a temporary file that only
replaces the destination once every row has been scored. Every input column comes back, ignored
ones included, so the rows can be joined back to their source.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import pandas as pd

from sail_pipelines.contract.data import iter_table, json_records
from sail_pipelines.contract.ranges import Beyond, beyond, refuses
from sail_pipelines.contract.schema import check_frame, where
from sail_pipelines.contract.stl import NonFiniteFeatures
from sail_pipelines.errors import SailError
from sail_pipelines.inference import explain, outliers, prediction_log
from sail_pipelines.inference.batch_io import output_format
from sail_pipelines.integrity.bundle import LoadedBundle, load_bundle
from sail_pipelines.integrity.signing import VerifyKey

CHUNK_ROWS = 50_000


def predict_frame(bundle: LoadedBundle, frame: pd.DataFrame) -> pd.DataFrame:
    """Input columns (the target and ignored ones included) plus `prediction` (and one
    `probability_<class>` per class), `out_of_range`: the features beyond the training
    limits (numbers, dates, categories), by serving.out_of_range's rule, and `outlier_score` and
    `outlier` (serving.outliers' rule) when the bundle carries an outlier detector."""
    return score_frame(bundle, frame)[0]


def score_frame(bundle: LoadedBundle, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Beyond]]:
    """`predict_frame`'s frame, and the values it flags (for the prediction log)."""
    schema = bundle.schema
    features = check_frame(schema, frame)
    prepared = schema.prepare(features)
    strays = beyond(
        {name: prepared[name].tolist() for name in schema.feature_names},
        bundle.limits,
    )
    if strays and refuses(bundle.metadata):
        first = strays[0]
        raise SailError(f"{where(frame.index[first.record], frame)}: {first.message()}")
    try:
        (predictions, probabilities), found = outliers.predict(bundle, features)
    except NonFiniteFeatures as exc:
        shown = ", ".join(where(frame.index[i], frame) for i in exc.rows[:5])
        raise SailError(f"{shown}: {exc}") from exc
    refused = outliers.refusal(bundle.metadata, found, False)
    if refused:
        raise SailError(f"{where(frame.index[refused[0]], frame)}: {refused[1]}")
    out = frame.copy()
    # ONNX Runtime answers in float32: widen to float64, so the file holds the very numbers the
    # API returns (a float32 written as text is rounded to 7 digits).
    out["prediction"] = (
        predictions.astype("float64") if predictions.dtype.kind == "f" else predictions
    )
    if probabilities is not None:
        for i, cls in enumerate(bundle.classes):
            out[f"probability_{cls}"] = probabilities[:, i].astype("float64")
    flagged: dict[int, list[str]] = {}
    for stray in strays:
        flagged.setdefault(stray.record, []).append(stray.field)
    out["out_of_range"] = [";".join(flagged.get(i, [])) for i in range(len(out))]
    if found is not None:
        out["outlier_score"], out["outlier"] = found.scores, found.flags
    return out, strays


def log_batch(
    plog: prediction_log.PredictionLog,
    bundle: LoadedBundle,
    chunk: pd.DataFrame,
    scored: pd.DataFrame,
    strays: list[Beyond],
    seconds: float,
) -> None:
    """One prediction-log line per scored chunk, as the API writes one per request."""
    columns = {name: json_column(chunk[name]) for name in plog.logged}
    outputs: dict[str, Any] = {"prediction": json_column(scored["prediction"])}
    probabilities = {
        str(c): scored[f"probability_{c}"].tolist()
        for c in bundle.classes
        if f"probability_{c}" in scored
    }
    if probabilities:
        outputs["probabilities"] = probabilities
    outputs.update({f: json_column(scored[f]) for f in outliers.FIELDS if f in scored})
    plog.write(uuid.uuid4().hex, "batch", 200, seconds, columns, outputs, strays)


def json_column(values: pd.Series) -> list[Any]:
    """Plain JSON values, nulls as None (not NaN, which is no JSON)."""
    return [None if v is None or v != v else v for v in values.astype(object).tolist()]


class _Writer:
    """Appends scored chunks to one open file in the chosen format."""

    def __init__(self, fmt: str, fh: IO[Any], bundle: LoadedBundle):
        self.fmt, self.fh, self.bundle, self.rows = fmt, fh, bundle, 0
        self.parquet: Any = None  # a pyarrow ParquetWriter once the first chunk is in

    def write(self, chunk: pd.DataFrame) -> None:
        if self.fmt == "csv":
            chunk.to_csv(self.fh, index=False, header=self.rows == 0)
        elif self.fmt == "json":
            head = json.dumps(
                {
                    "bundle_id": self.bundle.bundle_id,
                    "model_version": (self.bundle.metadata.get("registry") or {}).get("version"),
                }
            )
            for record in json_records(chunk):
                self.fh.write(
                    (head[:-1] + ', "records": [\n' if self.rows == 0 else ",\n")
                    + json.dumps(record)
                )
                self.rows += 1
            return
        else:
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError as exc:
                raise SailError(
                    f"writing Parquet needs pyarrow ({exc.name} is missing): pip install pyarrow, "
                    "or write CSV or JSON"
                ) from exc

            table = pa.Table.from_pandas(chunk, preserve_index=False)
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.fh, table.schema)
            self.parquet.write_table(table.cast(self.parquet.schema))
        self.rows += len(chunk)

    def close(self) -> None:
        if self.fmt == "json":
            self.fh.write(
                "\n]}\n"
                if self.rows
                else json.dumps({"bundle_id": self.bundle.bundle_id, "records": []})
            )
        if self.parquet is not None:
            self.parquet.close()


def run(
    bundle_dir: Path,
    key: VerifyKey,
    source: Path,
    dest: Path,
    fmt: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    log_settings: prediction_log.LogSettings | None = None,
    explained: bool = False,
) -> dict[str, Any]:
    """`explained` (`--explain`): each row's explanation too (`explain.batch_columns`)."""
    fmt = output_format(dest, fmt)
    bundle = load_bundle(bundle_dir, key)
    if explained:
        explain.explainer(bundle)  # one line before any row when the model has no explainer
    plog = prediction_log.for_bundle(log_settings or prediction_log.LogSettings(), bundle)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with ExitStack() as stack:
            opened = os.fdopen(fd, "wb") if fmt == "parquet" else os.fdopen(fd, "w", newline="")
            fh: IO[Any] = stack.enter_context(opened)
            writer = _Writer(fmt, fh, bundle)
            for chunk in iter_table(source, chunk_rows, bundle.schema):
                started = time.perf_counter()
                scored, strays = score_frame(bundle, chunk)
                if explained:
                    scored = scored.assign(**explain.batch_columns(bundle, chunk))
                writer.write(scored)
                if plog.wanted():
                    log_batch(plog, bundle, chunk, scored, strays, time.perf_counter() - started)
            writer.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {"rows": writer.rows, "output": str(dest), "bundle_id": bundle.bundle_id}
