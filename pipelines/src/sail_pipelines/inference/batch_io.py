"""`sail predict` where pandas is not installed: the compiled inference image leaves it out (it
would be a fifth of the image, and serving never imports it), so there a batch file goes through
the API's own path instead of predict.py's frames.

The file is read in chunks: CSV with the csv module, Parquet only where pyarrow is installed.
Each cell becomes the value a JSON client would send for its column (by the schema's type, with
pandas' missing-value markers read as null), each row is checked as a request record is, and
the checked columns meet the training limits and the model exactly as `/predict`'s do. The output
has the columns predict.py writes: every input cell as read, `prediction`, one
`probability_<class>` per class, `out_of_range`, and `outlier_score` and `outlier` when the
bundle carries an outlier detector.
"""

from __future__ import annotations

import csv
import json
import time
import uuid
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping

from sail_pipelines.contract.ranges import beyond, refuses
from sail_pipelines.contract.schema import Column, RecordError, Schema, check_record, parse_bool
from sail_pipelines.contract.stl import NonFiniteFeatures
from sail_pipelines.errors import SailError
from sail_pipelines.files import write_atomic
from sail_pipelines.inference import explain, outliers, prediction_log
from sail_pipelines.inference.requests import records_to_columns
from sail_pipelines.integrity.bundle import LoadedBundle, load_bundle
from sail_pipelines.integrity.signing import VerifyKey

CHUNK_ROWS = 10_000
FORMATS = ("csv", "json", "parquet")
PARQUET = (".parquet", ".pq")
# pandas.read_csv's default missing-value markers: a file reads alike with and without pandas.
MISSING = frozenset(
    "|#N/A|#N/A N/A|#NA|-1.#IND|-1.#QNAN|-NaN|-nan|1.#IND|1.#QNAN|<NA>|N/A|NA|NULL|NaN|None|"
    "n/a|nan|null".split("|")
)
Row = tuple[int, dict[str, Any]]  # (line or row number, the cells as read)


def _number(text: str) -> Any:
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text  # check_value names the field and what it expected


def cell(column: Column | None, value: Any) -> Any:
    """A cell as a JSON client sends it: text read from a CSV file typed by its column (any other
    column: a number if it reads as one), a Parquet value as it is; missing as None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if not isinstance(value, str):
        return value.isoformat() if hasattr(value, "isoformat") else value
    if value in MISSING:
        return None
    if column is None or column.type in ("float", "int"):
        return _number(value)
    if column.type == "bool":
        try:
            return parse_bool(value)
        except ValueError:
            return value
    if column.type == "category" and not all(isinstance(v, str) for v in column.values or ()):
        return _number(value)
    return value  # datetime, text, a category of strings


def _csv_rows(path: Path) -> Iterator[tuple[list[str], Row]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            return
        for line, cells in enumerate(reader, start=2):
            if len(cells) != len(header):
                raise SailError(
                    f"{path} is not a readable CSV file: line {line} has {len(cells)} fields, "
                    f"the header {len(header)}"
                )
            yield header, (line, dict(zip(header, cells, strict=True)))


def _parquet_rows(path: Path, rows: int) -> Iterator[tuple[list[str], Row]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise SailError(
            f"reading {path.name} needs pyarrow, which is not installed here: send the batch as CSV"
        ) from exc
    source = pq.ParquetFile(path)
    header = source.schema_arrow.names
    number = 1
    for batch in source.iter_batches(batch_size=rows):
        for record in batch.to_pylist():
            yield header, (number, record)
            number += 1


def chunks(path: Path, rows: int) -> Iterator[tuple[list[str], list[Row]]]:
    """(header, rows) of at most `rows` rows, each numbered as predict.py numbers them."""
    if not path.is_file():
        raise SailError(f"no data file at {path}")
    read = _parquet_rows(path, rows) if path.suffix.lower() in PARQUET else _csv_rows(path)
    header: list[str] = []
    chunk: list[Row] = []
    seen = 0
    try:
        for header, row in read:
            chunk.append(row)
            seen += 1
            if len(chunk) == rows:
                yield header, chunk
                chunk = []
    except (csv.Error, UnicodeDecodeError, OSError) as exc:
        raise SailError(f"{path} is not a readable file: {exc}") from exc
    if chunk:
        yield header, chunk
    if not seen:
        raise SailError(f"{path} has no rows")


def score(
    bundle: LoadedBundle, header: list[str], rows: list[Row], unit: str
) -> tuple[list[dict[str, Any]], list[Any], Mapping[str, list[Any]]]:
    """The output rows (input cells, prediction, probabilities, out_of_range), the values
    beyond the training limits, and the checked columns (for the prediction log)."""
    schema: Schema = bundle.schema
    missing = [n for n in schema.feature_names if n not in header]
    if missing:
        raise SailError(f"input is missing {len(missing)} column(s): {', '.join(missing[:5])}")
    typed = {c.name: c for c in schema.columns}
    records = []
    for number, cells in rows:
        record = {n: cell(typed[n], cells[n]) for n in schema.feature_names}
        try:
            records.append(check_record(schema, record))
        except RecordError as exc:
            raise SailError(f"{unit} {number}: {exc.message}") from exc
    columns = records_to_columns(schema, records)
    strays = beyond(columns, bundle.limits)
    if strays and refuses(bundle.metadata):
        raise SailError(f"{unit} {rows[strays[0].record][0]}: {strays[0].message()}")
    try:
        (predictions, probabilities), found = outliers.predict(bundle, columns)
    except NonFiniteFeatures as exc:
        shown = ", ".join(f"{unit} {rows[i][0]}" for i in exc.rows[:5])
        raise SailError(f"{shown}: {exc}") from exc
    refused = outliers.refusal(bundle.metadata, found, False)
    if refused:
        raise SailError(f"{unit} {rows[refused[0]][0]}: {refused[1]}")
    flags = found.outputs() if found is not None else {}
    # ONNX Runtime answers in float32: widened, as the API's JSON carries them
    labels = predictions.astype("float64") if predictions.dtype.kind == "f" else predictions
    flagged: dict[int, list[str]] = {}
    for stray in strays:
        flagged.setdefault(stray.record, []).append(stray.field)
    share_names = [f"probability_{c}" for c in bundle.classes]
    shares = None if probabilities is None else probabilities.astype("float64").tolist()
    out = []
    for i, ((_, cells), label) in enumerate(zip(rows, labels.tolist(), strict=True)):
        row = {name: cells[name] for name in header}
        row["prediction"] = label
        if shares is not None:
            row.update(zip(share_names, shares[i], strict=True))
        row["out_of_range"] = ";".join(flagged.get(i, []))
        row.update({name: values[i] for name, values in flags.items()})
        out.append(row)
    return out, strays, columns


def _output(name: str) -> bool:
    return name in ("prediction", "out_of_range", *outliers.FIELDS) or name.startswith(
        "probability_"
    )


def _write(fmt: str, fh: IO[Any], bundle: LoadedBundle, scored: Iterator[list[dict]]) -> int:
    count = 0
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise SailError(
                "writing Parquet needs pyarrow, which is not installed here: write CSV or JSON"
            ) from exc
        writer = None
        for rows in scored:
            table = pa.Table.from_pylist(rows)
            writer = writer or pq.ParquetWriter(fh, table.schema)
            writer.write_table(table.cast(writer.schema))
            count += len(rows)
        if writer is not None:
            writer.close()
        return count
    if fmt == "csv":
        out = None
        for rows in scored:
            out = out or csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
            if count == 0:
                out.writeheader()
            out.writerows(rows)
            count += len(rows)
        return count
    version = (bundle.metadata.get("registry") or {}).get("version")
    fh.write(json.dumps({"bundle_id": bundle.bundle_id, "model_version": version})[:-1])
    fh.write(', "records": [')
    typed = {c.name: c for c in bundle.schema.columns}
    for rows in scored:
        for row in rows:
            record = {k: v if _output(k) else cell(typed.get(k), v) for k, v in row.items()}
            fh.write(("\n" if count == 0 else ",\n") + json.dumps(record))
            count += 1
    fh.write("\n]}\n")
    return count


def output_format(dest: Path, fmt: str | None) -> str:
    """--format, else the output file's suffix; one line when it is neither of FORMATS."""
    fmt = fmt or {".pq": "parquet"}.get(dest.suffix.lower(), dest.suffix.lstrip(".").lower())
    if fmt not in FORMATS:
        raise SailError(
            f"output format must be one of {', '.join(FORMATS)} "
            f"(from --format or the file suffix), got {fmt!r}"
        )
    return fmt


def runner() -> Callable[..., dict[str, Any]]:
    """predict.run where pandas is installed (the host, a scikit-learn model's image), else this
    module's run (the compiled inference image)."""
    try:
        from sail_pipelines.inference import predict
    except ImportError as exc:
        if exc.name != "pandas":
            raise
        return run
    return predict.run


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
    """predict.run's contract: score `source` into `dest`, written whole or not at all."""
    if explained:
        raise SailError(
            explain.OFF
            if explain.switched_off()
            else "--explain needs pandas and scikit-learn (the model as fitted), which this "
            "environment lacks (a compiled model's image): run it where sail-pipelines[explain] "
            "is installed"
        )
    fmt = output_format(dest, fmt)
    bundle = load_bundle(bundle_dir, key)
    plog = prediction_log.for_bundle(log_settings or prediction_log.LogSettings(), bundle)
    unit = "row" if source.suffix.lower() in PARQUET else "line"
    classes = [str(c) for c in bundle.classes]

    def scored() -> Iterator[list[dict[str, Any]]]:
        for header, rows in chunks(source, chunk_rows):
            started = time.perf_counter()
            out, strays, columns = score(bundle, header, rows, unit)
            if plog.wanted():
                answer: dict[str, Any] = {"prediction": [r["prediction"] for r in out]}
                if f"probability_{classes[0] if classes else ''}" in out[0]:
                    answer["probabilities"] = {
                        c: [r[f"probability_{c}"] for r in out] for c in classes
                    }
                answer.update({f: [r[f] for r in out] for f in outliers.FIELDS if f in out[0]})
                elapsed = time.perf_counter() - started
                plog.write(uuid.uuid4().hex, "batch", 200, elapsed, columns, answer, strays)
            yield out

    written = 0

    def write(tmp: Path) -> None:
        nonlocal written
        with tmp.open("wb") if fmt == "parquet" else tmp.open("w", newline="") as fh:
            written = _write(fmt, fh, bundle, scored())

    write_atomic(dest, write)
    return {"rows": written, "output": str(dest), "bundle_id": bundle.bundle_id}
