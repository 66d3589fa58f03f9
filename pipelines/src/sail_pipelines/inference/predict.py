"""`sail predict`: batch inference through the same verified bundle and STL as the API.

The CSV is read with the csv module and every cell is checked by the schema's own
`check_value`, as an API value is: the inference image of a compiled model has no pandas.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from sail_pipelines.contract.schema import (
    Column,
    RecordError,
    Schema,
    check_value,
    parse_schema,
    plain,
)
from sail_pipelines.errors import SailError
from sail_pipelines.files import write_atomic
from sail_pipelines.integrity.bundle import LoadedBundle, load_bundle
from sail_pipelines.integrity.signing import SigningKey

FORMATS = ("csv", "json")
SHOWN = 5  # problems shown per column


def read_rows(source: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of a CSV file, each row as long as the header."""
    if not source.is_file():
        raise SailError(f"no data file at {source}")
    try:
        with open(source, newline="", encoding="utf-8") as fh:
            lines = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SailError(f"{source} is not a readable CSV: {str(exc).splitlines()[0]}") from None
    if not lines or not lines[0]:
        raise SailError(f"{source} is not a readable CSV: no header row")
    header, rows = lines[0], [r for r in lines[1:] if r]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise SailError(
                f"{source} is not a readable CSV: "
                f"row {i} has {len(row)} fields, the header {len(header)}"
            )
    if not rows:
        raise SailError(f"{source} has no rows")
    return header, rows


def parse_cell(column: Column, text: str) -> Any:
    """A CSV cell as the JSON value an API request would carry ('' is null)."""
    if text == "":
        return None
    if column.type in ("float", "int"):
        for number in (int, float):
            try:
                return number(text)
            except ValueError:
                pass
        return text  # check_value names it as not a number
    matches = [v for v in column.values or () if str(v) == text]
    return matches[0] if matches else text


def checked_columns(
    schema: Schema, header: list[str], rows: list[list[str]]
) -> dict[str, list[Any]]:
    """One list of checked values per feature, or one SailError listing the problems by column."""
    missing = [n for n in schema.feature_names if n not in header]
    if missing:
        shown = ", ".join(missing[:SHOWN]) + (" ..." if len(missing) > SHOWN else "")
        raise SailError(f"input is missing {len(missing)} column(s): {shown}")
    columns, problems = {}, []
    for column in schema.features:
        at = header.index(column.name)
        values, bad = [], []
        for i, row in enumerate(rows):
            try:
                values.append(check_value(column, parse_cell(column, row[at])))
            except RecordError as exc:
                bad.append(f"row {i}: {exc.message}")
        if bad:
            more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
            problems.append(f"{column.name}: {'; '.join(bad[:SHOWN])}{more}")
        columns[column.name] = values
    if problems:
        raise SailError("input breaks the schema: " + " | ".join(problems))
    return columns


def _typed(text: str) -> Any:
    """A column the schema does not know, for JSON output: a number when it reads as one."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text if text != "" else None


def predict_rows(
    bundle: LoadedBundle, header: list[str], rows: list[list[str]]
) -> tuple[list[str], list[list[Any]]]:
    """Input columns plus `prediction` (and one `probability_<class>` per class), row by row."""
    schema = parse_schema(bundle.metadata["schema"])
    columns = checked_columns(schema, header, rows)
    predictions, probabilities = bundle.predict(columns)
    out_header = [*header, "prediction"]
    if probabilities is not None:
        out_header += [f"probability_{c}" for c in bundle.classes]
    kinds = {c.name: c for c in schema.features}
    out = []
    for i, row in enumerate(rows):
        values = [columns[h][i] if h in kinds else _typed(row[j]) for j, h in enumerate(header)]
        values.append(plain(predictions[i]))
        if probabilities is not None:
            values += probabilities[i].tolist()
        out.append(values)
    return out_header, out


def run(
    bundle_dir: Path, key: SigningKey, source: Path, dest: Path, fmt: str | None = None
) -> dict[str, Any]:
    fmt = fmt or dest.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise SailError(
            f"output format must be one of {', '.join(FORMATS)} "
            f"(from --format or the file suffix), got {fmt!r}"
        )
    bundle = load_bundle(bundle_dir, key)
    header, rows = predict_rows(bundle, *read_rows(source))
    if fmt == "csv":

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                writer.writerows(["" if v is None else v for v in row] for row in rows)

        write_atomic(dest, write)
    else:
        payload = {
            "bundle_id": bundle.bundle_id,
            "model_version": bundle.metadata.get("registry", {}).get("version"),
            "records": [dict(zip(header, row)) for row in rows],
        }
        write_atomic(dest, lambda tmp: tmp.write_text(json.dumps(payload, indent=2)))
    return {"rows": len(rows), "output": str(dest), "bundle_id": bundle.bundle_id}
