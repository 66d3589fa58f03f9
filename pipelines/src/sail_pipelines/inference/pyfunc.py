"""The accepted bundle as an MLflow model (pyfunc flavour), so MLflow's own tools can use it:
`mlflow.pyfunc.load_model("models:/<name>@champion")`, `mlflow models serve`, `spark_udf`.

MLflow loads it through `loader_module` (this module's `_load_pyfunc`), not by unpickling a
Python object, and the loader's first step is the bundle's signature check: a tampered model
raises before anything in it is deserialized. The key comes from the environment, as for
every sail command (SAIL_SIGNING_KEY, or SAIL_ALLOW_DEV_KEY=1 for the development key).
The pyfunc returns what MLflow's scikit-learn flavour returns: labels, or predicted values.
"""

from __future__ import annotations

import sys
import tempfile
from importlib import metadata as distributions
from pathlib import Path
from typing import Any

from sail_pipelines.contract.schema import Schema, check_frame
from sail_pipelines.errors import SailError
from sail_pipelines.inference import model
from sail_pipelines.integrity.bundle import LoadedBundle, load_bundle
from sail_pipelines.integrity.signing import VerifyKey

ARTIFACT = "accepted_bundle"  # run artifact path of the model: the registered version's source
MLMODEL = "MLmodel"
# What the model needs besides sail-pipelines, by the runtime that serves it.
RUNTIME_REQUIREMENTS = {
    "onnx": ("onnxruntime", "numpy"),
    "sklearn": ("scikit-learn", "pandas", "numpy", "joblib"),
}


def _spec(column: Any) -> str:
    """MLflow's column type for a feature."""
    if column.type == "float":
        return "double"
    if column.type == "int":  # MLflow's advice: an integer column that may be null is a double
        return "double" if column.nullable else "long"
    if column.type == "bool":
        return "boolean"
    if column.type in ("datetime", "text"):
        return "string"  # ISO 8601 for dates, as the API takes them
    if all(isinstance(v, str) for v in column.values or ()):
        return "string"
    return "double" if any(isinstance(v, float) for v in column.values or ()) else "long"


def signature(schema: Schema, task: str, classes: list[Any]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec
    from mlflow.types.schema import Schema as MlflowSchema

    inputs = MlflowSchema(
        [ColSpec(_spec(c), c.name, required=not c.nullable) for c in schema.features]
    )
    if task != "classification":
        output = "double"
    else:
        output = "string" if any(isinstance(c, str) for c in classes) else "long"
    return ModelSignature(inputs=inputs, outputs=MlflowSchema([ColSpec(output)]))


def requirements(runtime: str) -> list[str]:
    """Pinned to the versions that made the bundle (sail-pipelines itself comes from your index)."""
    names = ("sail-pipelines", "mlflow", *RUNTIME_REQUIREMENTS[runtime])
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={distributions.version(name)}")
        except distributions.PackageNotFoundError:
            pins.append(name)
    return pins


def save(bundle: LoadedBundle, dest: Path, example: list[dict[str, Any]]) -> None:
    """Write the verified bundle as an MLflow model directory (MLmodel, signature, input
    example, requirements; the bundle itself under data/)."""
    import mlflow.pyfunc

    schema = bundle.schema
    mlflow.pyfunc.save_model(
        path=str(dest),
        loader_module=__name__,
        data_path=str(bundle.path),
        signature=signature(schema, bundle.metadata["task"], bundle.classes),
        input_example=_complete_rows(example, schema),
        pip_requirements=requirements(bundle.runtime),
    )


def _complete_rows(example: list[dict[str, Any]], schema: Schema) -> Any:
    """Up to 5 example records without a null feature, in the signature's dtypes (MLflow checks
    the example against the signature: a null in a boolean or integer column, or JSON's 1065 in
    a double column, fails there); None when no record is complete."""
    import pandas as pd

    names = schema.feature_names
    complete = [r for r in example if all(r.get(n) is not None for n in names)][:5]
    if not complete:
        return None
    frame = pd.DataFrame(complete, columns=names)
    dtypes = {"double": float, "long": "int64", "boolean": bool}
    return frame.astype({c.name: dtypes[_spec(c)] for c in schema.features if _spec(c) in dtypes})


def bundle_dir(model_dir: Path) -> Path:
    """The signed bundle inside a downloaded model: the pyfunc flavour's data path. Versions
    registered before the bundle became an MLflow model are the bundle itself."""
    import yaml

    mlmodel = model_dir / MLMODEL
    if not mlmodel.is_file():
        return model_dir
    try:
        data = yaml.safe_load(mlmodel.read_text())["flavors"]["python_function"]["data"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise SailError(f"{mlmodel} names no python_function data path") from exc
    return model_dir / data


def serve_command(model_uri: str, port: int, workers: int) -> list[str]:
    """`mlflow models serve` of a model in this Python, on 127.0.0.1 (--env-manager local: the
    model needs only sail): the parity test and the serving benchmark start it alike."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        str(workers),
    ]


def download_bundle(client: Any, run_id: str, key: VerifyKey) -> LoadedBundle:
    """A registered run's accepted bundle, its signature checked before anything in it is
    deserialized (BundleRejected otherwise); MLflow's own errors pass through to the caller."""
    with tempfile.TemporaryDirectory() as scratch:
        client.download_artifacts(run_id, ARTIFACT, scratch)
        return load_bundle(bundle_dir(Path(scratch) / ARTIFACT), key)


class SailPyfunc:
    """What `mlflow.pyfunc.load_model` wraps: checked DataFrame in, labels or values out."""

    def __init__(self, bundle: LoadedBundle):
        self.bundle = bundle
        self.schema = bundle.schema

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            features = check_frame(self.schema, frame)
        except SailError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc
        predictions, _ = model.predict(self.bundle, features)
        return predictions


def _load_pyfunc(data_path: str) -> SailPyfunc:
    """MLflow's entry point: verify the bundle's signature, then load it."""
    from sail_pipelines.config import ProjectPaths, Settings
    from sail_pipelines.integrity.signing import verify_key

    key = verify_key(Settings.from_env(ProjectPaths(Path.cwd())))
    return SailPyfunc(load_bundle(Path(data_path), key))
