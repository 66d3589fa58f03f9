"""Typed view of a project's params.yaml and of the environment that overrides defaults.

Every step takes these objects instead of reading files or os.environ itself, so the
steps stay pure functions and the tests can build configs directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import SailError

TASKS = ("classification", "regression")

# Direction of every metric the evaluate step computes: True when higher is better.
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "f1": True,
    "accuracy": True,
    "precision": True,
    "recall": True,
    "mcc": True,
    "rmse": False,
    "mae": False,
    "r2": True,
}
METRICS_BY_TASK = {
    "classification": ("roc_auc", "f1", "accuracy", "precision", "recall", "mcc"),
    "regression": ("rmse", "mae", "r2"),
}


@dataclass(frozen=True)
class Candidate:
    name: str
    estimator: str  # dotted path of a scikit-learn compatible class
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Threshold:
    metric: str
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class GateConfig:
    primary_metric: str
    thresholds: tuple[Threshold, ...]
    tolerance: float
    registered_model: str


@dataclass(frozen=True)
class SplitConfig:
    test_size: float
    seed: int
    stratify: bool


@dataclass(frozen=True)
class ValidationConfig:
    range_margin: float  # fraction of the reference range a value may exceed min/max by
    max_null_rate: float  # absolute null rate allowed per column
    max_mean_shift: float  # change of a column mean since the last accepted data, in reference std units
    max_std_ratio: float  # change of a column std since the last accepted data, as a ratio
    min_rows: int


@dataclass(frozen=True)
class Params:
    task: str
    raw_data: str
    target: str
    transform: str  # "module:function" building the Shared Transformation Layer
    split: SplitConfig
    candidates: tuple[Candidate, ...]
    gate: GateConfig
    validation: ValidationConfig


@dataclass(frozen=True)
class ProjectPaths:
    """Where every step reads and writes inside a generated project."""

    root: Path

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def schema(self) -> Path:
        return self.root / "contracts" / "schema.yaml"

    @property
    def profile(self) -> Path:
        return self.root / "contracts" / "profile.json"

    @property
    def split_dir(self) -> Path:
        return self.root / "data" / "split"

    @property
    def train_csv(self) -> Path:
        return self.split_dir / "train.csv"

    @property
    def test_csv(self) -> Path:
        return self.split_dir / "test.csv"

    @property
    def candidates_dir(self) -> Path:
        return self.root / "models" / "candidates"

    @property
    def accepted_dir(self) -> Path:
        return self.root / "models" / "accepted"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def validation_report(self) -> Path:
        return self.reports / "validation.json"

    @property
    def evaluation_report(self) -> Path:
        return self.reports / "evaluation.json"

    @property
    def metrics(self) -> Path:
        return self.reports / "metrics.json"

    @property
    def plots(self) -> Path:
        return self.reports / "plots"

    @property
    def gate_report(self) -> Path:
        return self.reports / "gate.json"

    @property
    def src(self) -> Path:
        return self.root / "src"


@dataclass(frozen=True)
class Settings:
    """What the environment decides: embedded defaults unless a variable points at team infrastructure."""

    tracking_uri: str
    artifact_location: str | None
    signing_key: bytes | None
    allow_dev_key: bool
    dvc_remote_url: str | None
    registry: str | None  # image registry prefix, e.g. 127.0.0.1:5000; None keeps images local
    base_image: str | None  # BASE_IMAGE build argument; None keeps the Dockerfile's default

    @classmethod
    def from_env(cls, paths: ProjectPaths, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        local_store = paths.root / ".mlflow"
        tracking_uri = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{local_store / 'mlflow.db'}"
        # Only the embedded SQLite store needs us to choose where artifacts go.
        artifact_location = None if env.get("MLFLOW_TRACKING_URI") else (local_store / "artifacts").as_uri()
        key = env.get("SAIL_SIGNING_KEY")
        return cls(
            tracking_uri=tracking_uri,
            artifact_location=artifact_location,
            signing_key=key.encode() if key else None,
            allow_dev_key=env.get("SAIL_ALLOW_DEV_KEY", "").lower() in ("1", "true", "yes"),
            dvc_remote_url=env.get("SAIL_DVC_REMOTE_URL") or None,
            registry=env.get("SAIL_REGISTRY") or None,
            base_image=env.get("SAIL_BASE_IMAGE") or None,
        )


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise SailError(f"params.yaml: missing '{where}{key}'")
    return mapping[key]


def _number(value: Any, where: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SailError(f"params.yaml: '{where}' must be a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise SailError(f"params.yaml: '{where}' = {value} is outside [{low}, {high}]")
    return float(value)


def parse_params(raw: Mapping[str, Any]) -> Params:
    """Check params.yaml as a whole, so a typo fails before any work starts."""
    if not isinstance(raw, Mapping):
        raise SailError("params.yaml: expected a mapping at the top level")
    task = _require(raw, "task", "")
    if task not in TASKS:
        raise SailError(f"params.yaml: 'task' must be one of {', '.join(TASKS)}, got {task!r}")
    data = _require(raw, "data", "")
    split = _require(raw, "split", "")
    test_size = _number(_require(split, "test_size", "split."), "split.test_size", 0.05, 0.9)
    seed = _require(split, "seed", "split.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SailError(f"params.yaml: 'split.seed' must be an integer, got {seed!r}")

    raw_candidates = _require(raw, "candidates", "")
    if not isinstance(raw_candidates, list) or not raw_candidates:
        raise SailError("params.yaml: 'candidates' must be a non-empty list")
    candidates = []
    for i, c in enumerate(raw_candidates):
        name = _require(c, "name", f"candidates[{i}].")
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise SailError(f"params.yaml: candidates[{i}].name {name!r} must be letters, digits, '-' or '_'")
        hyper = c.get("params") or {}
        if not isinstance(hyper, Mapping):
            raise SailError(f"params.yaml: candidates[{i}].params must be a mapping")
        candidates.append(Candidate(name, str(_require(c, "estimator", f"candidates[{i}].")), dict(hyper)))
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise SailError(f"params.yaml: candidate names must be unique, got {names}")

    gate = _require(raw, "gate", "")
    allowed = METRICS_BY_TASK[task]
    primary = _require(gate, "primary_metric", "gate.")
    if primary not in allowed:
        raise SailError(f"params.yaml: gate.primary_metric {primary!r} is not one of {', '.join(allowed)}")
    thresholds = []
    for metric, bounds in (gate.get("thresholds") or {}).items():
        if metric not in allowed:
            raise SailError(f"params.yaml: gate.thresholds.{metric} is not a {task} metric ({', '.join(allowed)})")
        if not isinstance(bounds, Mapping) or not set(bounds) <= {"min", "max"} or not bounds:
            raise SailError(f"params.yaml: gate.thresholds.{metric} must be a mapping with 'min' and/or 'max'")
        thresholds.append(
            Threshold(
                metric,
                _number(bounds["min"], f"gate.thresholds.{metric}.min") if "min" in bounds else None,
                _number(bounds["max"], f"gate.thresholds.{metric}.max") if "max" in bounds else None,
            )
        )
    validation = raw.get("validation") or {}
    return Params(
        task=task,
        raw_data=str(_require(data, "raw", "data.")),
        target=str(_require(data, "target", "data.")),
        transform=str(_require(raw, "transform", "")),
        split=SplitConfig(test_size, seed, bool(split.get("stratify", task == "classification"))),
        candidates=tuple(candidates),
        gate=GateConfig(
            primary_metric=primary,
            thresholds=tuple(thresholds),
            tolerance=_number(gate.get("tolerance", 0.0), "gate.tolerance", 0.0, 1.0),
            registered_model=str(_require(gate, "registered_model", "gate.")),
        ),
        validation=ValidationConfig(
            range_margin=_number(validation.get("range_margin", 0.1), "validation.range_margin", 0.0),
            max_null_rate=_number(validation.get("max_null_rate", 0.05), "validation.max_null_rate", 0.0, 1.0),
            max_mean_shift=_number(validation.get("max_mean_shift", 0.5), "validation.max_mean_shift", 0.0),
            max_std_ratio=_number(validation.get("max_std_ratio", 2.0), "validation.max_std_ratio", 1.0),
            min_rows=int(_number(validation.get("min_rows", 50), "validation.min_rows", 1)),
        ),
    )


def yaml_problem(exc: yaml.YAMLError) -> str:
    """'line N: problem' from a YAML error, instead of its multi-line dump."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}: {problem}" if mark else problem


def load_params(paths: ProjectPaths) -> Params:
    if not paths.params.is_file():
        raise SailError(f"no params.yaml in {paths.root}: run sail inside a generated project or pass --project")
    try:
        raw = yaml.safe_load(paths.params.read_text())
    except yaml.YAMLError as exc:
        raise SailError(f"params.yaml is not valid YAML: {yaml_problem(exc)}") from None
    return parse_params(raw)
