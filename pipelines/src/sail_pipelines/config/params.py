"""What every step is given from params.yaml: frozen dataclasses that tests build directly.

params_file.py checks the file and builds these; the steps never read the file themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    # evidence: a breach needs its p-value, Holm-corrected over every check of a run, below this
    min_p_value: float = 0.001
    max_out_of_range: float = 0.05  # share of a feature's served values beyond the training range
    max_missing: float = 0.05  # share of a feature's served values that are null, above training's
    max_share_change: float = 0.1  # change of one category's share from training (0.1: 10 points)
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
