"""params.yaml as the frozen pydantic models every step takes: the file is checked as a whole, so
a typo fails before any work starts, with one line naming the key and the fix; the same models
give its JSON Schema (schema.py). Tests build them directly, with the file's keys.

Each model's title is the name its JSON Schema has always published (schema.py names the
definitions by it). Where the steps' name differs from the file's key, the field's alias is the
key: a threshold's min/max are `minimum`/`maximum`, a dimension's type/values `kind`/`choices`.
Models without docstrings keep it so: a docstring would become a description in the schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from sail_pipelines.config.choices import METRICS_BY_TASK
from sail_pipelines.config.fields import (
    UNSET,
    Bound,
    Count,
    Filled,
    Keyed,
    Listed,
    Name,
    Number,
    Positive,
    Section,
    Share,
    Text,
    Whole,
    empty,
    shown,
)
from sail_pipelines.config.fields import Range as R
from sail_pipelines.config.messages import one_line, refuse, yaml_problem
from sail_pipelines.config.paths import ProjectPaths
from sail_pipelines.errors import SailError

FILE = "params.yaml"


# {metric: {min, max}} in the file: the metric is the key.
class Threshold(Section):
    model_config = ConfigDict(title="ThresholdFile")
    key_field = "metric"

    metric: SkipJsonSchema[str] = Field("", exclude=True)
    minimum: Number | None = Field(None, alias="min")
    maximum: Number | None = Field(None, alias="max")

    @model_validator(mode="after")
    def _a_bound(self) -> Threshold:
        if self.minimum is None and self.maximum is None:
            raise refuse("has no bound; give min and/or max, e.g. {min: 0.9}")
        return self


Thresholds = Annotated[tuple[Threshold, ...], Keyed(), BeforeValidator(empty)]
# No thresholds: {} in the file and its schema, () for the steps.
NO_THRESHOLDS: Any = Field({}, validate_default=True)


class Dimension(Section):
    """One searched parameter: {type: int|float, low, high, log} or {type: choice, values}."""

    model_config = ConfigDict(title="DimensionFile")
    key_field = "name"

    name: SkipJsonSchema[str] = Field("", exclude=True)  # its key in search.space
    kind: Literal["int", "float", "choice"] = Field(alias="type")  # one of SEARCH_KINDS
    low: Bound | None = None
    high: Bound | None = None
    log: bool = False
    choices: Annotated[tuple[Any, ...], Listed(1), Filled()] = Field(UNSET, alias="values")

    @model_validator(mode="after")
    def _by_kind(self) -> Dimension:
        given = self.model_fields_set - {"kind"}
        if self.kind == "choice":
            if given != {"choices"}:
                raise refuse("of type choice takes only values: [a, b, ...]; drop low/high/log")
            if not all(v is None or isinstance(v, (str, int, float)) for v in self.choices):
                raise refuse("values must be plain numbers, strings or null; fix the list")
            return self
        object.__setattr__(self, "choices", ())  # a range has no choices (Filled)
        if "choices" in given or self.low is None or self.high is None:
            raise refuse(f"of type {self.kind} takes low, high (and log); give low and high")
        if self.kind == "int" and not (isinstance(self.low, int) and isinstance(self.high, int)):
            raise refuse("is an int range; make low and high whole numbers")
        if self.low > self.high:
            raise refuse(f"has low {shown(self.low)} > high {shown(self.high)}; swap them")
        if self.log and self.low <= 0:
            raise refuse("is log-scaled; make low above 0 or set log: false")
        return self


# A candidate's hyperparameter search, run on the training split (training/search.py). Its
# budget: trials and/or seconds, whichever ends first.
class SearchConfig(Section):
    model_config = ConfigDict(title="SearchFile")

    space: Annotated[tuple[Dimension, ...], Keyed(min_length=1)]
    trials: Annotated[int, R(1, whole=True)] | None = None
    timeout: Annotated[float, R(0, above=True)] | None = None
    metric: Annotated[str, Filled()] = UNSET  # unset: the gate's primary metric
    folds: Annotated[int, R(2, 20, whole=True)] = 5
    seed: Annotated[int, R(whole=True), Filled()] = UNSET  # unset: split.seed

    @model_validator(mode="after")
    def _budget(self) -> SearchConfig:
        if self.trials is None and self.timeout is None:
            raise refuse("needs a budget; give trials and/or timeout (seconds)")
        return self


# Searched values replace the fixed params of the same name.
class Candidate(Section):
    model_config = ConfigDict(title="CandidateFile")

    name: Name
    estimator: Text  # dotted path of a scikit-learn compatible class
    params: Annotated[dict[str, Any], BeforeValidator(empty)] = {}
    search: SearchConfig | None = None


# The paired bootstrap behind every interval the gate reports: seeded, so a verdict repeats.
class BootstrapConfig(Section):
    model_config = ConfigDict(title="BootstrapFile")

    level: Annotated[float, R(0.5, 0.999)] = 0.95
    resamples: Annotated[int, R(100, 100_000, whole=True)] = 1000
    seed: Annotated[int, R(0, 2**32 - 1, whole=True)] = 0


# Metrics per value of category columns: always in the report; the rules are optional.
class SliceConfig(Section):
    model_config = ConfigDict(title="SlicesFile")

    columns: Annotated[
        tuple[Text, ...],
        Listed(),
        BeforeValidator(lambda v: [] if v is None else v),
        AfterValidator(lambda v: tuple(dict.fromkeys(v))),  # each column once
    ] = ()
    min_rows: Count = 30  # a smaller slice is reported as too small, never judged
    min_rows_per_class: Count = 5
    thresholds: Thresholds = NO_THRESHOLDS  # every judged slice must meet these
    no_regression: bool = False  # no judged slice may regress against the champion's same slice


class GateConfig(Section):
    model_config = ConfigDict(title="GateFile")

    registered_model: Text
    primary_metric: str
    tolerance: Share = 0.0
    thresholds: Thresholds = NO_THRESHOLDS
    # one of REGRESSION_RULES (choices.py)
    regression_rule: Literal["confidence", "point"] = "point"
    bootstrap: BootstrapConfig = BootstrapConfig()
    min_test_rows: Count = 50  # below these the gate refuses to judge
    min_rows_per_class: Count = 10
    suspicious_drop: Positive | None = 0.1  # null: no suspicious-test-data rule
    # labelled test rows the accepted bundle keeps for the next gate
    holdout_rows: Annotated[int, R(1, 10**7, whole=True)] = 10_000
    slices: SliceConfig = SliceConfig()


class DataConfig(Section):
    model_config = ConfigDict(title="DataFile")

    raw: Text  # the training data (CSV or Parquet)
    target: Text  # the label column


class SplitConfig(Section):
    model_config = ConfigDict(title="SplitFile")

    test_size: Annotated[float, R(0.05, 0.9)]
    seed: Whole
    stratify: Annotated[bool, Filled()] = UNSET  # unset: true for classification


class ValidationConfig(Section):
    model_config = ConfigDict(title="ValidationFile")

    range_margin: Positive = 0.1  # fraction of the reference range a value may exceed min/max by
    max_null_rate: Share = 0.05  # absolute null rate allowed per column
    # change of a column mean since the last accepted data, in reference std units
    max_mean_shift: Positive = 0.5
    # change of a column std since the last accepted data, as a ratio
    max_std_ratio: Annotated[float, R(1)] = 2.0
    min_rows: Annotated[int, R(1, whole=True)] = 50
    max_missing_target: Share = 0.2  # share of rows without a label dropped before failing


# How the API and batch treat a value beyond the training range (plus validation.range_margin):
# "flag" answers and names it, "refuse" answers 422. It travels in the bundle's metadata.
class ServingConfig(Section):
    model_config = ConfigDict(title="ServingFile")

    out_of_range: Literal["flag", "refuse"] = "flag"  # one of OUT_OF_RANGE
    # A record the outlier detector (fitted at training) scores above the threshold: answered and
    # flagged, or refused with a 422; the threshold is this quantile of the training split's scores.
    outliers: Literal["flag", "refuse"] = "flag"  # one of OUTLIERS
    outlier_quantile: Annotated[float, R(0.5, 0.9999)] = 0.99
    # `?explain=true` from the inference image (`sail package`) and mean |contribution| in the
    # `sail run --container` model card: the images get scikit-learn, pandas and shap. Off by
    # default: a compiled model's image grows from 150 to 550 MB (docs/serving.md).
    explanations: bool = False


# How bundles are signed (integrity/signing.py): one of SIGNING_SCHEMES.
class SigningConfig(Section):
    model_config = ConfigDict(title="SigningFile")

    scheme: Literal["ed25519", "hmac-sha256"] = "ed25519"


# The compiled (ONNX Runtime) path and how closely it must agree with scikit-learn.
class CompiledConfig(Section):
    model_config = ConfigDict(title="CompiledFile")

    enabled: bool = True
    max_probability_diff: Share = 0.02  # largest difference of a class probability
    # regression: largest difference, in std devs of the predictions
    max_value_diff: Positive = 0.02
    max_label_mismatches: Annotated[int, R(0, whole=True)] = 0  # rows whose class may differ


# Limits `sail monitor` holds served traffic to, against the accepted bundle's training data.
class MonitoringConfig(Section):
    model_config = ConfigDict(title="MonitoringFile")

    max_psi: Positive = 0.2  # population stability index of a feature (or of the predictions)
    max_ks: Share = 0.2  # Kolmogorov-Smirnov statistic of a numeric feature
    # evidence: a breach needs its p-value, Holm-corrected over every check of a run, below this
    min_p_value: Share = 0.001
    max_out_of_range: Share = 0.05  # share of a feature's served values beyond the training range
    max_missing: Share = 0.05  # share of a feature's served values that are null, above training's
    max_outlier_share: Share = 0.05  # share of served records flagged as outliers, above training's
    max_share_change: Share = 0.1  # change of one category's share from training (0.1: 10 points)
    max_window_psi: Positive = 0.25  # PSI between two consecutive windows: a sudden change
    window_hours: Annotated[float, R(1 / 60)] = 24.0  # length of those windows
    min_rows: Count = 100  # fewer rows than this (in all, or in a window) are not judged
    bins: Annotated[int, R(2, 100, whole=True)] = 10  # quantile bins of the training data for PSI


# What live evidence must show (`sail shadow report`) and what `sail promote` asks of a candidate
# beyond the gate (delivery/live_evidence.py).
class PromotionConfig(Section):
    model_config = ConfigDict(title="PromotionFile")

    min_shadow_agreement: Share = 0.9  # share of paired requests where shadow and live agree
    min_live_requests: Annotated[int, R(1, whole=True)] = 200  # fewer paired requests: hold
    # regression: a shadow value agrees within this share of the live values' standard deviation
    shadow_tolerance: Positive = 0.1
    # refuse a candidate without a passing canary or shadow report (reports/live/) on its image
    require_live_evidence: bool = False


class Params(Section):
    """The whole of params.yaml."""

    model_config = ConfigDict(title="params.yaml")

    task: Literal["classification", "regression"]  # one of TASKS
    data: DataConfig
    transform: Text  # "module:function" building the Shared Transformation Layer
    split: SplitConfig
    candidates: Annotated[tuple[Candidate, ...], Listed(1)]
    gate: GateConfig
    validation: ValidationConfig = ValidationConfig()
    serving: ServingConfig = ServingConfig()
    signing: SigningConfig = SigningConfig()
    compiled: CompiledConfig = CompiledConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    promotion: PromotionConfig = PromotionConfig()

    @property
    def raw_data(self) -> str:
        return self.data.raw

    @property
    def target(self) -> str:
        return self.data.target

    @property
    def signing_scheme(self) -> str:
        return self.signing.scheme

    @model_validator(mode="after")
    def _metrics_of_the_task(self) -> Params:
        """Metric names depend on the task; candidate names must tell the candidates apart."""
        allowed = METRICS_BY_TASK[self.task]
        fix = f"use one of {', '.join(allowed)}"
        named = [("gate.primary_metric", self.gate.primary_metric, True)]
        for i, c in enumerate(self.candidates):
            if c.search is not None and c.search.metric is not None:
                named.append((f"candidates[{i}].search.metric", c.search.metric, True))
        named += [(f"gate.thresholds.{t.metric}", t.metric, False) for t in self.gate.thresholds]
        named += [
            (f"gate.slices.thresholds.{t.metric}", t.metric, False)
            for t in self.gate.slices.thresholds
        ]
        for at, metric, valued in named:
            if metric not in allowed:
                value = f"= {metric!r} " if valued else ""
                raise refuse(f"{value}is not a {self.task} metric; {fix}", at=at)
        names = [c.name for c in self.candidates]
        if len(set(names)) != len(names):
            raise refuse(f"names {names} repeat; make candidate names unique", at="candidates")
        return self

    @model_validator(mode="after")
    def _fill(self) -> Params:
        """The keys left unset that other keys decide (Filled). Set as a frozen dataclass's
        __post_init__ would: the model is built, not yet handed out."""
        split, gate = self.split, self.gate
        if split.stratify is None:
            split = split.model_copy(update={"stratify": self.task == "classification"})
            object.__setattr__(self, "split", split)
        filled = {"metric": gate.primary_metric, "seed": split.seed}
        candidates = []
        for c in self.candidates:
            if c.search is not None:
                unset = {k: v for k, v in filled.items() if getattr(c.search, k) is None}
                c = c.model_copy(update={"search": c.search.model_copy(update=unset)})
            candidates.append(c)
        object.__setattr__(self, "candidates", tuple(candidates))
        return self


def parse_params(raw: Any) -> Params:
    """Check params.yaml as a whole, so a typo fails before any work starts."""
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise one_line(exc, FILE) from exc


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
