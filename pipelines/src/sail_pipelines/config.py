"""Typed view of a project's params.yaml and of the environment that overrides defaults.

Every step takes these objects instead of reading files or os.environ itself, so the
steps stay pure functions and the tests can build configs directly.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import yaml

from sail_pipelines.errors import SailError

TASKS = ("classification", "regression")
# Bundle signatures: a key pair (the default) or one shared secret.
SIGNING_SCHEMES = ("ed25519", "hmac-sha256")
SEARCH_KINDS = ("int", "float", "choice")

# Direction of every metric the evaluate step computes: True when higher is better.
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "f1": True,
    "accuracy": True,
    "precision": True,
    "recall": True,
    "mcc": True,
    "balanced_accuracy": True,
    "f1_weighted": True,
    "precision_weighted": True,
    "recall_weighted": True,
    "rmse": False,
    "mae": False,
    "r2": True,
}
METRICS_BY_TASK = {
    # f1, precision and recall are for the positive class when binary, macro averages otherwise.
    "classification": (
        "roc_auc",
        "f1",
        "accuracy",
        "precision",
        "recall",
        "mcc",
        "balanced_accuracy",
        "f1_weighted",
        "precision_weighted",
        "recall_weighted",
    ),
    "regression": ("rmse", "mae", "r2"),
}


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: an int or float range (log-scaled or not), or a list of choices."""

    name: str
    kind: str  # one of SEARCH_KINDS
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SearchConfig:
    """A candidate's hyperparameter search, run on the training split (training/search.py)."""

    space: tuple[Dimension, ...]
    metric: str  # defaults to gate.primary_metric
    trials: int | None  # budget: trials and/or seconds, whichever ends first
    timeout: float | None
    folds: int
    seed: int


@dataclass(frozen=True)
class Candidate:
    name: str
    estimator: str  # dotted path of a scikit-learn compatible class
    params: dict[str, Any] = field(default_factory=dict)
    search: SearchConfig | None = None  # searched values replace the fixed params of the same name


@dataclass(frozen=True)
class Threshold:
    metric: str
    minimum: float | None = None
    maximum: float | None = None


REGRESSION_RULES = ("confidence", "point")


@dataclass(frozen=True)
class BootstrapConfig:
    """Paired bootstrap behind every interval the gate reports: seeded, so a verdict repeats."""

    level: float = 0.95
    resamples: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class SliceConfig:
    """Metrics per value of category columns: always in the report; the rules are optional."""

    columns: tuple[str, ...] = ()
    min_rows: int = 30  # a smaller slice is reported as too small, never judged
    min_rows_per_class: int = 5
    thresholds: tuple[Threshold, ...] = ()  # every judged slice must meet these
    no_regression: bool = False  # no judged slice may regress against the champion's same slice


@dataclass(frozen=True)
class GateConfig:
    primary_metric: str
    thresholds: tuple[Threshold, ...]
    tolerance: float
    registered_model: str
    # "confidence": a regression fails only when the whole interval of the difference lies beyond
    # the tolerance; "point": when the point estimate does (noise included).
    regression_rule: str = "point"
    bootstrap: BootstrapConfig = BootstrapConfig()
    min_test_rows: int = 50  # below these the gate refuses to judge
    min_rows_per_class: int = 10
    suspicious_drop: float | None = 0.1  # None: no suspicious-test-data rule
    holdout_rows: int = 10_000  # labelled test rows the accepted bundle keeps for the next gate
    slices: SliceConfig = SliceConfig()


@dataclass(frozen=True)
class SplitConfig:
    test_size: float
    seed: int
    stratify: bool


@dataclass(frozen=True)
class ValidationConfig:
    range_margin: float  # fraction of the reference range a value may exceed min/max by
    max_null_rate: float  # absolute null rate allowed per column
    max_mean_shift: (
        float  # change of a column mean since the last accepted data, in reference std units
    )
    max_std_ratio: float  # change of a column std since the last accepted data, as a ratio
    min_rows: int
    max_missing_target: float = 0.2  # share of rows without a label that are dropped before failing


OUT_OF_RANGE = ("flag", "refuse")


@dataclass(frozen=True)
class ServingConfig:
    """How the API and batch treat a value beyond the training range (plus validation.range_margin):
    "flag" answers and names it, "refuse" answers 422. It travels in the bundle's metadata."""

    out_of_range: str = "flag"


@dataclass(frozen=True)
class CompiledConfig:
    """The compiled (ONNX Runtime) path and how closely it must agree with scikit-learn."""

    enabled: bool = True
    max_probability_diff: float = 0.02  # largest difference of a class probability
    max_value_diff: float = 0.02  # regression: largest difference, in std devs of the predictions
    max_label_mismatches: int = 0  # rows whose predicted class may differ


@dataclass(frozen=True)
class MonitoringConfig:
    """Limits `sail monitor` holds served traffic to, against the accepted bundle's training
    data."""

    max_psi: float = 0.2  # population stability index of a feature (or of the predictions)
    max_ks: float = 0.2  # Kolmogorov-Smirnov statistic of a numeric feature
    min_p_value: float = 0.001  # KS / chi-square p-value below which a shift counts as real
    max_out_of_range: float = 0.05  # share of a feature's served values beyond the training range
    max_missing: float = 0.05  # share of a feature's served values that are null
    max_window_psi: float = 0.25  # PSI between two consecutive windows: a sudden change
    window_hours: float = 24.0  # length of those windows
    min_rows: int = 100  # fewer rows than this (in all, or in a window) are not judged
    bins: int = 10  # quantile bins of the training data for numeric PSI


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
    serving: ServingConfig = ServingConfig()
    signing_scheme: str = SIGNING_SCHEMES[0]  # how bundles are signed (integrity/signing.py)
    compiled: CompiledConfig = CompiledConfig()
    monitoring: MonitoringConfig = MonitoringConfig()


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

    @property
    def pyproject(self) -> Path:
        return self.root / "pyproject.toml"


TEAM_FILE = "infrastructure.yaml"

# Every key of the team file and the environment variables that override it (the first one set
# wins). The generated infrastructure.yaml documents the same mapping in its comments.
TEAM_KEYS: dict[str, tuple[str, ...]] = {
    "aws.region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "aws.profile": ("AWS_PROFILE",),
    "aws.role_arn": ("SAIL_AWS_ROLE_ARN",),
    "aws.endpoint_url": ("SAIL_S3_ENDPOINT_URL",),
    "dvc.remote_url": ("SAIL_DVC_REMOTE_URL",),
    "mlflow.tracking_uri": ("MLFLOW_TRACKING_URI",),
    "registry.url": ("SAIL_REGISTRY",),
    "registry.username": ("SAIL_REGISTRY_USERNAME",),
    "registry.base_image": ("SAIL_BASE_IMAGE",),
    "retry.attempts": ("SAIL_RETRY_ATTEMPTS",),
    "retry.backoff_seconds": ("SAIL_RETRY_BACKOFF_SECONDS",),
}
# Keys people reach for that must stay in the environment (the file is committed), and where
# each section's secrets come from instead.
SECRET_NAMES = {
    "password",
    "secret",
    "token",
    "api_key",
    "access_key",
    "access_key_id",
    "secret_access_key",
    "aws_access_key_id",
    "aws_secret_access_key",
    "session_token",
    "signing_key",
    "audit_key",
    "private_key",
}
SECRET_ENV = {
    "aws": "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)",
    "dvc": "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)",
    "mlflow": "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN",
    "registry": "SAIL_REGISTRY_PASSWORD",
}

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
_REGISTRY = re.compile(rf"^{_HOST}(?::\d{{1,5}})?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_BUCKET = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}[a-z0-9]$")
_NAME = re.compile(r"^[\w.@+=,-]{1,128}$")


@dataclass(frozen=True)
class AwsSettings:
    """Who sail is on AWS (or an S3-compatible store): all None means boto3's own defaults."""

    region: str | None = None
    profile: str | None = None
    role_arn: str | None = None  # assumed through STS before any S3 or ECR call
    endpoint_url: str | None = None  # S3-compatible store (MinIO, Ceph, moto); also its STS

    @property
    def configured(self) -> bool:
        return any((self.region, self.profile, self.role_arn, self.endpoint_url))


@dataclass(frozen=True)
class RetryPolicy:
    """How often a push to team storage is tried, waiting backoff_seconds * 2**n between tries."""

    attempts: int = 4
    backoff_seconds: float = 2.0


@dataclass(frozen=True)
class Settings:
    """What the environment decides: embedded defaults unless the project's infrastructure.yaml or a
    variable points at team infrastructure. Secrets come from the environment only and stay out of
    repr."""

    tracking_uri: str
    artifact_location: str | None
    signing_key: bytes | None = field(repr=False)
    allow_dev_key: bool
    dvc_remote_url: str | None
    registry: str | None  # image registry prefix, e.g. 127.0.0.1:5000; None keeps images local
    base_image: str | None  # BASE_IMAGE build argument; None keeps the Dockerfile's default
    aws: AwsSettings = AwsSettings()
    registry_username: str | None = None
    registry_password: str | None = field(default=None, repr=False)
    retry: RetryPolicy = RetryPolicy()
    verify_key: str | None = None  # public key text: not a secret, but only the environment sets it
    audit_key: str | None = field(default=None, repr=False)
    audit_verify_key: str | None = None
    # (team key, where its value came from), for `sail doctor`
    origins: tuple[tuple[str, str], ...] = ()
    # SAIL_SEARCH_STORAGE: an Optuna RDB URL the workers of one search share (may hold a password)
    search_storage: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        """Without the secrets (repr=False fields) and without user:password in URIs."""
        shown = ((f.name, getattr(self, f.name)) for f in fields(self) if f.repr)
        items = (f"{n}={redact(v)!r}" if isinstance(v, str) else f"{n}={v!r}" for n, v in shown)
        return f"Settings({', '.join(items)})"

    def team_env(self) -> dict[str, str]:
        """The configured team values as the variables that set them: a step container sees the
        environment, not infrastructure.yaml. No secrets: those are passed as they came."""
        values = {
            "mlflow.tracking_uri": None if self.artifact_location else self.tracking_uri,
            "dvc.remote_url": self.dvc_remote_url,
            "registry.url": self.registry,
            "registry.username": self.registry_username,
            "registry.base_image": self.base_image,
            "aws.region": self.aws.region,
            "aws.profile": self.aws.profile,
            "aws.role_arn": self.aws.role_arn,
            "aws.endpoint_url": self.aws.endpoint_url,
            "retry.attempts": self.retry.attempts
            if "retry.attempts" in dict(self.origins)
            else None,
            "retry.backoff_seconds": self.retry.backoff_seconds
            if "retry.backoff_seconds" in dict(self.origins)
            else None,
        }
        return {TEAM_KEYS[key][0]: str(value) for key, value in values.items() if value is not None}

    @property
    def team_mode(self) -> bool:
        """True when any shared service (AWS, DVC remote, MLflow server, registry) is configured."""
        return any(
            key.split(".")[0] in ("aws", "dvc", "mlflow") or key.startswith("registry.u")
            for key, _ in self.origins
        )

    @classmethod
    def from_env(cls, paths: ProjectPaths, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        values, origins = team_values(paths.root / TEAM_FILE, env)
        local_store = paths.root / ".mlflow"
        tracking_uri = values.get("mlflow.tracking_uri")
        key = env.get("SAIL_SIGNING_KEY")
        return cls(
            tracking_uri=tracking_uri or f"sqlite:///{local_store / 'mlflow.db'}",
            # Only the embedded SQLite store needs us to choose where artifacts go.
            artifact_location=None if tracking_uri else (local_store / "artifacts").as_uri(),
            signing_key=key.encode() if key else None,
            allow_dev_key=env.get("SAIL_ALLOW_DEV_KEY", "").lower() in ("1", "true", "yes"),
            dvc_remote_url=values.get("dvc.remote_url"),
            registry=values.get("registry.url"),
            base_image=values.get("registry.base_image"),
            aws=AwsSettings(
                region=values.get("aws.region"),
                profile=values.get("aws.profile"),
                role_arn=values.get("aws.role_arn"),
                endpoint_url=values.get("aws.endpoint_url"),
            ),
            registry_username=values.get("registry.username"),
            registry_password=env.get("SAIL_REGISTRY_PASSWORD") or None,
            verify_key=env.get("SAIL_VERIFY_KEY") or None,
            audit_key=env.get("SAIL_AUDIT_KEY") or None,
            audit_verify_key=env.get("SAIL_AUDIT_VERIFY_KEY") or None,
            retry=RetryPolicy(
                attempts=values.get("retry.attempts", RetryPolicy.attempts),
                backoff_seconds=values.get("retry.backoff_seconds", RetryPolicy.backoff_seconds),
            ),
            origins=tuple(sorted(origins.items())),
            search_storage=env.get("SAIL_SEARCH_STORAGE", "").strip() or None,
        )


def team_values(path: Path, env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The team settings that are set, from the file overlaid by the environment, checked; and
    where each came from. A missing file is the embedded mode, not an error."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if path.is_file():
        for key, value in load_team_file(path).items():
            values[key], origins[key] = value, path.name
    for key, names in TEAM_KEYS.items():
        name = next((n for n in names if env.get(n, "").strip()), None)
        if name is not None:
            values[key], origins[key] = _team_value(key, env[name].strip(), name), name
    return values, origins


def load_team_file(path: Path) -> dict[str, Any]:
    """Parse and check infrastructure.yaml as a whole: unknown keys, wrong types and secrets are
    refused."""
    name = path.name
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SailError(f"{name} is not valid YAML: {yaml_problem(exc)}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SailError(
            f"{name}: expected a mapping of sections ({', '.join(_sections())}) at the top level"
        )
    values: dict[str, Any] = {}
    for section, body in raw.items():
        if section in SECRET_NAMES:
            raise SailError(_secret_message(name, str(section)))
        if section not in _sections():
            raise SailError(
                f"{name}: unknown section {section!r} (known: {', '.join(_sections())})"
            )
        if body is None:
            continue
        if not isinstance(body, Mapping):
            raise SailError(
                f"{name}: '{section}' must be a mapping of keys, got {redact(str(body))!r}"
            )
        for key, value in body.items():
            full = f"{section}.{key}"
            if str(key) in SECRET_NAMES:
                raise SailError(_secret_message(name, full))
            if full not in TEAM_KEYS:
                known = [k.split(".", 1)[1] for k in TEAM_KEYS if k.startswith(f"{section}.")]
                raise SailError(
                    f"{name}: unknown key '{full}' (known in {section}: {', '.join(known)})"
                )
            if value is None or value == "":
                continue
            values[full] = _team_value(full, value, f"{name}: {full}", in_file=True)
    return values


def redact(text: str) -> str:
    """Drop user:password@ from a URI (or a registry reference) before it reaches a message."""
    return re.sub(r"(^|//)[^/@\s]*@", r"\1***@", text)


def _sections() -> list[str]:
    return list(dict.fromkeys(k.split(".", 1)[0] for k in TEAM_KEYS))


def _secret_message(name: str, key: str) -> str:
    section, _, leaf = key.rpartition(".")
    named = {"signing_key": "SAIL_SIGNING_KEY", "audit_key": "SAIL_AUDIT_KEY"}
    env = named.get(leaf) or SECRET_ENV.get(section, "the matching environment variable")
    return (
        f"{name}: '{key}' is a secret and never goes in this committed file: set {env} in the "
        "environment"
    )


def _team_value(key: str, value: Any, where: str, in_file: bool = False) -> Any:
    """One checked value; `where` names the file key or the variable in the message."""
    if key == "retry.attempts":
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 20:
            raise SailError(f"{where} must be a whole number from 1 to 20, got {value!r}")
        return value
    if key == "retry.backoff_seconds":
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            number = None
        if (
            isinstance(number, bool)
            or not isinstance(number, (int, float))
            or not 0 <= number <= 300
        ):
            raise SailError(f"{where} must be a number of seconds from 0 to 300, got {value!r}")
        return float(number)
    if not isinstance(value, str):
        raise SailError(f"{where} must be a string, got {type(value).__name__} {value!r}")
    value = value.strip()
    problem = _CHECKS[key](value, in_file)
    if problem:
        raise SailError(f"{where}: {problem}, got {redact(value)!r}")
    return (
        value.rstrip("/")
        if key in ("aws.endpoint_url", "mlflow.tracking_uri", "registry.url")
        else value
    )


def _check_remote(value: str, in_file: bool) -> str | None:
    if "://" not in value:
        return None  # a local folder, like the embedded remote
    parts = urlsplit(value)
    if parts.scheme != "s3":
        return "a DVC remote must be s3://bucket/path or a local folder"
    if not parts.netloc:
        return "an s3:// url needs a bucket: s3://bucket/path"
    if "@" in parts.netloc or ":" in parts.netloc:
        return (
            "an s3:// url takes no credentials or port (credentials come from the environment, "
            "endpoints from aws.endpoint_url)"
        )
    if not _BUCKET.match(parts.netloc):
        return f"{parts.netloc!r} is not a valid S3 bucket name"
    return None


def _check_http(value: str, what: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{what} must be an http(s)://host[:port] URL"
    if parts.username or parts.password:
        return f"{what} takes no user:password (credentials come from the environment)"
    try:
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        return f"{what} has a bad port"
    return None


def _check_tracking(value: str, in_file: bool) -> str | None:
    parts = urlsplit(value)
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            return "an http(s) tracking URI needs a host: http(s)://host[:port]"
        if in_file and (parts.username or parts.password):
            return (
                "a tracking URI in this committed file takes no user:password: "
                "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment"
            )
        return None
    if not parts.scheme:
        return (
            "the tracking URI needs a scheme: http(s)://host[:port], or sqlite:///path for a "
            "local store"
        )
    return None


def _check_registry(value: str, in_file: bool) -> str | None:
    if "://" in value:
        return (
            "write the registry without a scheme, as host[:port][/namespace] (e.g. 127.0.0.1:5000)"
        )
    if "@" in value:
        return (
            "the registry takes no credentials: set SAIL_REGISTRY_USERNAME and "
            "SAIL_REGISTRY_PASSWORD"
        )
    if not _REGISTRY.match(value.rstrip("/")):
        return "the registry must be host[:port][/namespace] with a lowercase namespace"
    return None


_CHECKS = {
    "aws.region": lambda v, _: (
        None if _REGION.match(v) else "not an AWS region name such as eu-west-1"
    ),
    "aws.profile": lambda v, _: None if _NAME.match(v) else "not an AWS profile name",
    "aws.role_arn": lambda v, _: (
        None
        if _ROLE_ARN.match(v)
        else "not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)"
    ),
    "aws.endpoint_url": lambda v, _: _check_http(v, "the S3 endpoint"),
    "dvc.remote_url": _check_remote,
    "mlflow.tracking_uri": _check_tracking,
    "registry.url": _check_registry,
    "registry.username": lambda v, _: (
        None if _NAME.match(v) else "not a user name (letters, digits, . @ + = , - _)"
    ),
    "registry.base_image": lambda v, _: (
        None if v and not any(c.isspace() for c in v) else "not an image reference"
    ),
}


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


def _refused(where: str, problem: str) -> SailError:
    return SailError(f"params.yaml: '{where}' {problem}")


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dimension(name: str, body: Any, where: str) -> Dimension:
    """One entry of a search space: {type: int|float, low, high, log} or {type: choice, values}."""
    if not isinstance(body, Mapping):
        raise _refused(where, "must be {type: int|float, low, high, log} or {type: choice, values}")
    kind = body.get("type")
    if kind not in SEARCH_KINDS:
        raise _refused(where, f"has unknown distribution {kind!r} (known: int, float, choice)")
    allowed = {"type", "values"} if kind == "choice" else {"type", "low", "high", "log"}
    if set(body) - allowed:
        raise _refused(where, f"takes only {', '.join(sorted(allowed))} for type {kind}")
    if kind == "choice":
        values = body.get("values")
        if (
            not isinstance(values, list)
            or not values
            or not all(v is None or isinstance(v, (str, int, float)) for v in values)
        ):
            raise _refused(f"{where}.values", "must be a non-empty list of plain values")
        return Dimension(name, kind, choices=tuple(values))
    low = _number(_require(body, "low", f"{where}."), f"{where}.low")
    high = _number(_require(body, "high", f"{where}."), f"{where}.high")
    log = body.get("log", False)
    if kind == "int" and not (_is_whole(body["low"]) and _is_whole(body["high"])):
        raise _refused(where, "is an int range: low and high must be whole numbers")
    if low > high:
        raise _refused(where, f"has low {body['low']} > high {body['high']}")
    if not isinstance(log, bool) or (log and low <= 0):
        raise _refused(f"{where}.log", "must be true or false, and true needs low > 0")
    return Dimension(name, kind, low, high, log)


def _search(body: Any, where: str, task: str, seed: int, gate: Any) -> SearchConfig | None:
    """A candidate's `search:` block, checked whole: a bad space or budget fails before training."""
    if body is None:
        return None
    known = ("space", "trials", "timeout", "metric", "folds", "seed")
    if not isinstance(body, Mapping) or set(body) - set(known):
        raise _refused(where, f"must be a mapping of {', '.join(known)}")
    space = _require(body, "space", f"{where}.")
    if not isinstance(space, Mapping) or not space:
        raise _refused(f"{where}.space", "must map parameter names to distributions")
    dimensions = tuple(_dimension(str(n), d, f"{where}.space.{n}") for n, d in space.items())
    if "trials" not in body and "timeout" not in body:
        raise _refused(where, "needs a budget: 'trials' and/or 'timeout' (seconds)")
    trials, timeout = body.get("trials"), body.get("timeout")
    if trials is not None and (not _is_whole(trials) or trials < 1):
        raise _refused(f"{where}.trials", f"must be a whole number of at least 1, got {trials!r}")
    if timeout is not None and _number(timeout, f"{where}.timeout") <= 0:
        raise _refused(f"{where}.timeout", f"must be a number of seconds above 0, got {timeout!r}")
    folds = body.get("folds", 5)
    if not _is_whole(folds) or not 2 <= folds <= 20:
        raise _refused(f"{where}.folds", f"must be a whole number from 2 to 20, got {folds!r}")
    # Unset, it is the gate's primary metric (which the gate's own check validates).
    metric = body.get("metric", gate.get("primary_metric") if isinstance(gate, Mapping) else None)
    if "metric" in body and metric not in METRICS_BY_TASK[task]:
        allowed = ", ".join(METRICS_BY_TASK[task])
        raise _refused(f"{where}.metric", f"{metric!r} is not one of {allowed}")
    search_seed = body.get("seed", seed)
    if not _is_whole(search_seed):
        raise _refused(f"{where}.seed", f"must be an integer, got {search_seed!r}")
    timeout = None if timeout is None else float(timeout)
    return SearchConfig(dimensions, metric, trials, timeout, folds, search_seed)


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
            raise SailError(
                f"params.yaml: candidates[{i}].name {name!r} must be letters, digits, '-' or '_'"
            )
        hyper = c.get("params") or {}
        if not isinstance(hyper, Mapping):
            raise SailError(f"params.yaml: candidates[{i}].params must be a mapping")
        search = _search(c.get("search"), f"candidates[{i}].search", task, seed, raw.get("gate"))
        estimator = str(_require(c, "estimator", f"candidates[{i}]."))
        candidates.append(Candidate(name, estimator, dict(hyper), search))
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise SailError(f"params.yaml: candidate names must be unique, got {names}")

    gate = _require(raw, "gate", "")
    allowed = METRICS_BY_TASK[task]
    primary = _require(gate, "primary_metric", "gate.")
    if primary not in allowed:
        raise SailError(
            f"params.yaml: gate.primary_metric {primary!r} is not one of {', '.join(allowed)}"
        )
    thresholds = _thresholds(gate.get("thresholds"), "gate.thresholds", task)
    validation = raw.get("validation") or {}
    serving = raw.get("serving") or {}
    if not isinstance(serving, Mapping) or not set(serving) <= {"out_of_range"}:
        raise SailError("params.yaml: 'serving' takes one key, out_of_range (flag or refuse)")
    out_of_range = serving.get("out_of_range", "flag")
    if out_of_range not in OUT_OF_RANGE:
        raise SailError(
            f"params.yaml: serving.out_of_range must be one of {', '.join(OUT_OF_RANGE)}, got "
            f"{out_of_range!r}"
        )
    signing = raw.get("signing") or {}
    scheme = signing.get("scheme", SIGNING_SCHEMES[0]) if isinstance(signing, Mapping) else None
    if scheme not in SIGNING_SCHEMES:
        raise SailError(
            f"params.yaml: 'signing.scheme' must be one of {', '.join(SIGNING_SCHEMES)}, "
            f"got {scheme!r}"
        )
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
            **_gate_settings(gate, task),
        ),
        validation=ValidationConfig(
            range_margin=_number(
                validation.get("range_margin", 0.1), "validation.range_margin", 0.0
            ),
            max_null_rate=_number(
                validation.get("max_null_rate", 0.05), "validation.max_null_rate", 0.0, 1.0
            ),
            max_mean_shift=_number(
                validation.get("max_mean_shift", 0.5), "validation.max_mean_shift", 0.0
            ),
            max_std_ratio=_number(
                validation.get("max_std_ratio", 2.0), "validation.max_std_ratio", 1.0
            ),
            min_rows=int(_number(validation.get("min_rows", 50), "validation.min_rows", 1)),
            max_missing_target=_number(
                validation.get("max_missing_target", 0.2), "validation.max_missing_target", 0.0, 1.0
            ),
        ),
        serving=ServingConfig(out_of_range),
        signing_scheme=scheme,
        compiled=_compiled(raw.get("compiled") or {}),
        monitoring=_monitoring(raw.get("monitoring") or {}),
    )


def _monitoring(raw: Any) -> MonitoringConfig:
    if not isinstance(raw, Mapping):
        raise SailError("params.yaml: 'monitoring' must be a mapping")
    unknown = sorted(set(raw) - {f.name for f in fields(MonitoringConfig)})
    if unknown:
        raise SailError(f"params.yaml: unknown key 'monitoring.{unknown[0]}'")
    d = MonitoringConfig()
    share = {
        k: _number(raw.get(k, getattr(d, k)), f"monitoring.{k}", 0.0, 1.0)
        for k in ("max_ks", "min_p_value", "max_out_of_range", "max_missing")
    }
    return MonitoringConfig(
        max_psi=_number(raw.get("max_psi", d.max_psi), "monitoring.max_psi", 0.0),
        max_window_psi=_number(
            raw.get("max_window_psi", d.max_window_psi), "monitoring.max_window_psi", 0.0
        ),
        window_hours=_number(
            raw.get("window_hours", d.window_hours), "monitoring.window_hours", 1 / 60
        ),
        min_rows=_whole(raw, "min_rows", d.min_rows, "monitoring.", 1, 10**9),
        bins=_whole(raw, "bins", d.bins, "monitoring.", 2, 100),
        **share,
    )


def _compiled(raw: Any) -> CompiledConfig:
    if not isinstance(raw, Mapping):
        raise SailError("params.yaml: 'compiled' must be a mapping")
    unknown = sorted(set(raw) - {f.name for f in fields(CompiledConfig)})
    if unknown:
        raise SailError(f"params.yaml: unknown key 'compiled.{unknown[0]}'")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise SailError(f"params.yaml: 'compiled.enabled' must be true or false, got {enabled!r}")
    default = CompiledConfig()
    return CompiledConfig(
        enabled=enabled,
        max_probability_diff=_number(
            raw.get("max_probability_diff", default.max_probability_diff),
            "compiled.max_probability_diff",
            0.0,
            1.0,
        ),
        max_value_diff=_number(
            raw.get("max_value_diff", default.max_value_diff), "compiled.max_value_diff", 0.0
        ),
        max_label_mismatches=int(
            _number(
                raw.get("max_label_mismatches", default.max_label_mismatches),
                "compiled.max_label_mismatches",
                0,
            )
        ),
    )


def _thresholds(raw: Any, where: str, task: str) -> tuple[Threshold, ...]:
    allowed = METRICS_BY_TASK[task]
    if raw is not None and not isinstance(raw, Mapping):
        raise SailError(
            f"params.yaml: '{where}' must be a mapping of metric: {{min: ..., max: ...}}"
        )
    thresholds = []
    for metric, bounds in (raw or {}).items():
        if metric not in allowed:
            raise SailError(
                f"params.yaml: {where}.{metric} is not a {task} metric ({', '.join(allowed)})"
            )
        if not isinstance(bounds, Mapping) or not set(bounds) <= {"min", "max"} or not bounds:
            raise SailError(
                f"params.yaml: {where}.{metric} must be a mapping with 'min' and/or 'max'"
            )
        thresholds.append(
            Threshold(
                metric,
                _number(bounds["min"], f"{where}.{metric}.min") if "min" in bounds else None,
                _number(bounds["max"], f"{where}.{metric}.max") if "max" in bounds else None,
            )
        )
    return tuple(thresholds)


def _whole(raw: Mapping[str, Any], key: str, default: int, where: str, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SailError(
            f"params.yaml: '{where}{key}' must be a whole number from {low} to {high}, "
            f"got {value!r}"
        )
    return value


def _section(raw: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    section = raw.get(key) or {}
    if not isinstance(section, Mapping):
        raise SailError(f"params.yaml: '{where}{key}' must be a mapping")
    return section


def _flag(raw: Mapping[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise SailError(f"params.yaml: '{where}{key}' must be true or false, got {value!r}")
    return value


def _gate_settings(gate: Mapping[str, Any], task: str) -> dict[str, Any]:
    """The settings that make the gate robust to noise and bad test data (all optional)."""
    g, b, s = GateConfig, BootstrapConfig, SliceConfig  # their defaults fill in missing keys
    rule = gate.get("regression_rule", g.regression_rule)
    if rule not in REGRESSION_RULES:
        choices = ", ".join(REGRESSION_RULES)
        raise SailError(f"params.yaml: gate.regression_rule must be one of {choices}, got {rule!r}")
    boot, slices = _section(gate, "bootstrap", "gate."), _section(gate, "slices", "gate.")
    columns = slices.get("columns") or []
    if not isinstance(columns, list) or not all(isinstance(c, str) and c for c in columns):
        raise SailError(
            f"params.yaml: gate.slices.columns must be a list of column names, got {columns!r}"
        )
    drop = gate.get("suspicious_drop", g.suspicious_drop)
    many = 10**9
    return {
        "regression_rule": rule,
        "bootstrap": BootstrapConfig(
            level=_number(boot.get("level", b.level), "gate.bootstrap.level", 0.5, 0.999),
            resamples=_whole(boot, "resamples", b.resamples, "gate.bootstrap.", 100, 100_000),
            seed=_whole(boot, "seed", b.seed, "gate.bootstrap.", 0, 2**32 - 1),
        ),
        "min_test_rows": _whole(gate, "min_test_rows", g.min_test_rows, "gate.", 1, many),
        "min_rows_per_class": _whole(
            gate, "min_rows_per_class", g.min_rows_per_class, "gate.", 1, many
        ),
        "suspicious_drop": None if drop is None else _number(drop, "gate.suspicious_drop", 0.0),
        "holdout_rows": _whole(gate, "holdout_rows", g.holdout_rows, "gate.", 1, 10**7),
        "slices": SliceConfig(
            columns=tuple(dict.fromkeys(columns)),
            min_rows=_whole(slices, "min_rows", s.min_rows, "gate.slices.", 1, many),
            min_rows_per_class=_whole(
                slices, "min_rows_per_class", s.min_rows_per_class, "gate.slices.", 1, many
            ),
            thresholds=_thresholds(slices.get("thresholds"), "gate.slices.thresholds", task),
            no_regression=_flag(slices, "no_regression", "gate.slices."),
        ),
    }


def yaml_problem(exc: yaml.YAMLError) -> str:
    """'line N: problem' from a YAML error, instead of its multi-line dump."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}: {problem}" if mark else problem


def load_params(paths: ProjectPaths) -> Params:
    if not paths.params.is_file():
        raise SailError(
            f"no params.yaml in {paths.root}: run sail inside a generated project or pass --project"
        )
    try:
        raw = yaml.safe_load(paths.params.read_text())
    except yaml.YAMLError as exc:
        raise SailError(f"params.yaml is not valid YAML: {yaml_problem(exc)}") from exc
    return parse_params(raw)
