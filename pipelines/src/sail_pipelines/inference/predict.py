"""`sail predict`: batch inference through the same verified bundle and STL as the API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from sail_pipelines.contract.data import read_csv
from sail_pipelines.contract.schema import check_frame, parse_schema
from sail_pipelines.errors import SailError
from sail_pipelines.files import write_atomic
from sail_pipelines.integrity.bundle import load_bundle
from sail_pipelines.integrity.signing import VerifyKey

FORMATS = ("csv", "json")


def predict_frame(bundle: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """Input columns plus `prediction` (and one `probability_<class>` per class)."""
    features = check_frame(parse_schema(bundle.metadata["schema"]), frame)
    predictions, probabilities = bundle.predict(features)
    out = frame.copy()
    out["prediction"] = predictions
    if probabilities is not None:
        for i, cls in enumerate(bundle.classes):
            out[f"probability_{cls}"] = probabilities[:, i]
    return out


def run(bundle_dir: Path, key: VerifyKey, source: Path, dest: Path, fmt: str | None = None) -> dict[str, Any]:
    fmt = fmt or dest.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise SailError(f"output format must be one of {', '.join(FORMATS)} (from --format or the file suffix), got {fmt!r}")
    bundle = load_bundle(bundle_dir, key)
    result = predict_frame(bundle, read_csv(source))
    if fmt == "csv":
        write_atomic(dest, lambda tmp: result.to_csv(tmp, index=False))
    else:
        payload = {
            "bundle_id": bundle.bundle_id,
            "model_version": bundle.metadata.get("registry", {}).get("version"),
            "records": json.loads(result.to_json(orient="records")),
        }
        write_atomic(dest, lambda tmp: tmp.write_text(json.dumps(payload, indent=2)))
    return {"rows": len(result), "output": str(dest), "bundle_id": bundle.bundle_id}
