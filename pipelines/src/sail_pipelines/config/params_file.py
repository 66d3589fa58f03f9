"""params.yaml as pydantic models: the file is checked as a whole, so a typo fails before any
work starts, with one line naming the key and the fix; the same models give its JSON Schema.

The models follow the file's shape; `ParamsFile.params()` turns them into the dataclasses the
steps take (params.py), filling the defaults that depend on other keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import core_schema

from sail_pipelines.config.messages import one_line, refuse, yaml_problem
from sail_pipelines.config.params import (
    METRICS_BY_TASK,
    BootstrapConfig,
    Candidate,
    CompiledConfig,
    Dimension,
    GateConfig,
    MonitoringConfig,
    Params,
    SearchConfig,
    ServingConfig,
    SliceConfig,
    SplitConfig,
    Threshold,
    ValidationConfig,
)
from sail_pipelines.config.paths import ProjectPaths
from sail_pipelines.errors import SailError

FILE = "params.yaml"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Range:
    """A YAML number within [low, high] (`above`: low itself excluded), checked before pydantic's
    own coercion so that one message gives the whole range; the bounds reach the JSON Schema."""

    low: float | None = None
    high: float | None = None
    whole: bool = False
    above: bool = False

    def check(self, value: Any) -> Any:
        kind = "a whole number" if self.whole else "a number"
        low, high = self.low, self.high
        if low is not None and high is not None:
            fix = f"set {kind} from {_shown(low)} to {_shown(high)}"
        elif low is not None:
            fix = f"set {kind} {'above' if self.above else 'of at least'} {_shown(low)}"
        else:
            fix = f"set {kind}"
        if isinstance(value, bool) or not isinstance(value, int if self.whole else (int, float)):
            raise refuse(f"= {value!r} is not {kind}; {fix}")
        if low is not None and high is not None and not low <= value <= high:
            raise refuse(f"= {value!r} is outside [{_shown(low)}, {_shown(high)}]; {fix}")
        if low is not None and (value <= low if self.above else value < low):
            raise refuse(
                f"= {value!r} is {'not above' if self.above else 'below'} {_shown(low)}; {fix}"
            )
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_before_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        result = handler(schema)
        if self.low is not None:
            result["exclusiveMinimum" if self.above else "minimum"] = self.low
        if self.high is not None:
            result["maximum"] = self.high
        return result


def _shown(bound: float | None) -> str:
    return str(int(bound)) if bound is not None and float(bound).is_integer() else f"{bound:.6g}"


Number = Annotated[float, Range()]
Whole = Annotated[int, Range(whole=True)]
Positive = Annotated[float, Range(0)]
Share = Annotated[float, Range(0, 1)]
Count = Annotated[int, Range(1, 10**9, whole=True)]
# A search range's end, kept an int when written as one: an int range must have whole ends.
Bound = Annotated[int | float, Range(), WithJsonSchema({"type": "number"})]


def _text(value: Any) -> Any:
    """A path, column or class name YAML may have read as a number is meant as text."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _name(value: Any) -> Any:
    if not isinstance(value, str) or not _NAME.match(value):
        raise refuse(f"= {value!r} is not a name; use letters, digits, '-' or '_'")
    return value


def _empty(value: Any) -> Any:
    """An empty YAML key (null) means the section's defaults."""
    return {} if value is None else value


Text = Annotated[str, Field(min_length=1), BeforeValidator(_text)]


class Section(BaseModel):
    """A mapping with known keys only: an unknown key names itself and the known ones."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any) -> Any:
        value = _empty(value)
        known = ", ".join(cls.model_fields)
        if not isinstance(value, Mapping):
            raise refuse(
                f"must be a mapping of {known}, got {value!r}; write it as key: value lines"
            )
        for key in value:
            if key not in cls.model_fields:
                raise refuse(
                    f"is not a known key; use one of {known} (or remove it)", leaf=str(key)
                )
        return value


class ThresholdFile(Section):
    min: Number | None = None
    max: Number | None = None

    @model_validator(mode="after")
    def _a_bound(self) -> ThresholdFile:
        if self.min is None and self.max is None:
            raise refuse("has no bound; give min and/or max, e.g. {min: 0.9}")
        return self


Thresholds = Annotated[dict[str, ThresholdFile], BeforeValidator(_empty)]


class DimensionFile(Section):
    """One searched parameter: {type: int|float, low, high, log} or {type: choice, values}."""

    type: Literal["int", "float", "choice"]
    low: Bound | None = None
    high: Bound | None = None
    log: bool = False
    values: list[Any] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _by_kind(self) -> DimensionFile:
        given = self.model_fields_set - {"type"}
        if self.type == "choice":
            if given != {"values"}:
                raise refuse("of type choice takes only values: [a, b, ...]; drop low/high/log")
            if not all(v is None or isinstance(v, (str, int, float)) for v in self.values or ()):
                raise refuse("values must be plain numbers, strings or null; fix the list")
            return self
        if "values" in given or self.low is None or self.high is None:
            raise refuse(f"of type {self.type} takes low, high (and log); give low and high")
        if self.type == "int" and not (isinstance(self.low, int) and isinstance(self.high, int)):
            raise refuse("is an int range; make low and high whole numbers")
        if self.low > self.high:
            raise refuse(f"has low {_shown(self.low)} > high {_shown(self.high)}; swap them")
        if self.log and self.low <= 0:
            raise refuse("is log-scaled; make low above 0 or set log: false")
        return self

    def dimension(self, name: str) -> Dimension:
        if self.type == "choice":
            return Dimension(name, self.type, choices=tuple(self.values or ()))
        assert self.low is not None and self.high is not None  # _by_kind requires both
        return Dimension(name, self.type, float(self.low), float(self.high), self.log)


class SearchFile(Section):
    space: dict[str, DimensionFile] = Field(min_length=1)
    trials: Annotated[int, Range(1, whole=True)] | None = None
    timeout: Annotated[float, Range(0, above=True)] | None = None
    metric: str | None = None  # unset: the gate's primary metric
    folds: Annotated[int, Range(2, 20, whole=True)] = 5
    seed: Whole | None = None  # unset: split.seed

    @model_validator(mode="after")
    def _budget(self) -> SearchFile:
        if self.trials is None and self.timeout is None:
            raise refuse("needs a budget; give trials and/or timeout (seconds)")
        return self


class CandidateFile(Section):
    name: Annotated[str, Field(pattern=_NAME.pattern), BeforeValidator(_name)]
    estimator: Text  # dotted path of a scikit-learn compatible class
    params: Annotated[dict[str, Any], BeforeValidator(_empty)] = {}
    search: SearchFile | None = None


class BootstrapFile(Section):
    level: Annotated[float, Range(0.5, 0.999)] = BootstrapConfig.level
    resamples: Annotated[int, Range(100, 100_000, whole=True)] = BootstrapConfig.resamples
    seed: Annotated[int, Range(0, 2**32 - 1, whole=True)] = BootstrapConfig.seed


class SlicesFile(Section):
    columns: Annotated[list[Text], BeforeValidator(lambda v: [] if v is None else v)] = []
    min_rows: Count = SliceConfig.min_rows
    min_rows_per_class: Count = SliceConfig.min_rows_per_class
    thresholds: Thresholds = {}
    no_regression: bool = False


class GateFile(Section):
    registered_model: Text
    primary_metric: str
    tolerance: Share = 0.0
    thresholds: Thresholds = {}
    regression_rule: Literal["confidence", "point"] = "point"
    bootstrap: BootstrapFile = BootstrapFile()
    min_test_rows: Count = GateConfig.min_test_rows
    min_rows_per_class: Count = GateConfig.min_rows_per_class
    suspicious_drop: Positive | None = GateConfig.suspicious_drop  # null: no such rule
    holdout_rows: Annotated[int, Range(1, 10**7, whole=True)] = GateConfig.holdout_rows
    slices: SlicesFile = SlicesFile()


class DataFile(Section):
    raw: Text  # the training data (CSV or Parquet)
    target: Text  # the label column


class SplitFile(Section):
    test_size: Annotated[float, Range(0.05, 0.9)]
    seed: Whole
    stratify: bool | None = None  # unset: true for classification


class ValidationFile(Section):
    range_margin: Positive = 0.1
    max_null_rate: Share = 0.05
    max_mean_shift: Positive = 0.5
    max_std_ratio: Annotated[float, Range(1)] = 2.0
    min_rows: Annotated[int, Range(1, whole=True)] = 50
    max_missing_target: Share = ValidationConfig.max_missing_target


class ServingFile(Section):
    out_of_range: Literal["flag", "refuse"] = "flag"


class SigningFile(Section):
    scheme: Literal["ed25519", "hmac-sha256"] = "ed25519"


class CompiledFile(Section):
    enabled: bool = CompiledConfig.enabled
    max_probability_diff: Share = CompiledConfig.max_probability_diff
    max_value_diff: Positive = CompiledConfig.max_value_diff
    max_label_mismatches: Annotated[int, Range(0, whole=True)] = CompiledConfig.max_label_mismatches


class MonitoringFile(Section):
    max_psi: Positive = MonitoringConfig.max_psi
    max_ks: Share = MonitoringConfig.max_ks
    min_p_value: Share = MonitoringConfig.min_p_value
    max_out_of_range: Share = MonitoringConfig.max_out_of_range
    max_missing: Share = MonitoringConfig.max_missing
    max_share_change: Share = MonitoringConfig.max_share_change
    max_window_psi: Positive = MonitoringConfig.max_window_psi
    window_hours: Annotated[float, Range(1 / 60)] = MonitoringConfig.window_hours
    min_rows: Count = MonitoringConfig.min_rows
    bins: Annotated[int, Range(2, 100, whole=True)] = MonitoringConfig.bins


class ParamsFile(Section):
    """The whole of params.yaml."""

    model_config = ConfigDict(title="params.yaml")

    task: Literal["classification", "regression"]
    data: DataFile
    transform: Text  # "module:function" building the Shared Transformation Layer
    split: SplitFile
    candidates: list[CandidateFile] = Field(min_length=1)
    gate: GateFile
    validation: ValidationFile = ValidationFile()
    serving: ServingFile = ServingFile()
    signing: SigningFile = SigningFile()
    compiled: CompiledFile = CompiledFile()
    monitoring: MonitoringFile = MonitoringFile()

    @model_validator(mode="after")
    def _metrics_of_the_task(self) -> ParamsFile:
        """Metric names depend on the task; candidate names must tell the candidates apart."""
        allowed = METRICS_BY_TASK[self.task]
        fix = f"use one of {', '.join(allowed)}"
        named = [("gate.primary_metric", self.gate.primary_metric, True)]
        for i, c in enumerate(self.candidates):
            if c.search is not None and c.search.metric is not None:
                named.append((f"candidates[{i}].search.metric", c.search.metric, True))
        named += [(f"gate.thresholds.{m}", m, False) for m in self.gate.thresholds]
        named += [(f"gate.slices.thresholds.{m}", m, False) for m in self.gate.slices.thresholds]
        for at, metric, valued in named:
            if metric not in allowed:
                value = f"= {metric!r} " if valued else ""
                raise refuse(f"{value}is not a {self.task} metric; {fix}", at=at)
        names = [c.name for c in self.candidates]
        if len(set(names)) != len(names):
            raise refuse(f"names {names} repeat; make candidate names unique", at="candidates")
        return self

    def params(self) -> Params:
        gate, split = self.gate, self.split
        return Params(
            task=self.task,
            raw_data=self.data.raw,
            target=self.data.target,
            transform=self.transform,
            split=SplitConfig(
                split.test_size,
                split.seed,
                self.task == "classification" if split.stratify is None else split.stratify,
            ),
            candidates=tuple(self._candidate(c) for c in self.candidates),
            gate=GateConfig(
                primary_metric=gate.primary_metric,
                thresholds=_thresholds(gate.thresholds),
                tolerance=gate.tolerance,
                registered_model=gate.registered_model,
                regression_rule=gate.regression_rule,
                bootstrap=BootstrapConfig(**gate.bootstrap.model_dump()),
                min_test_rows=gate.min_test_rows,
                min_rows_per_class=gate.min_rows_per_class,
                suspicious_drop=gate.suspicious_drop,
                holdout_rows=gate.holdout_rows,
                slices=SliceConfig(
                    columns=tuple(dict.fromkeys(gate.slices.columns)),
                    min_rows=gate.slices.min_rows,
                    min_rows_per_class=gate.slices.min_rows_per_class,
                    thresholds=_thresholds(gate.slices.thresholds),
                    no_regression=gate.slices.no_regression,
                ),
            ),
            validation=ValidationConfig(**self.validation.model_dump()),
            serving=ServingConfig(self.serving.out_of_range),
            signing_scheme=self.signing.scheme,
            compiled=CompiledConfig(**self.compiled.model_dump()),
            monitoring=MonitoringConfig(**self.monitoring.model_dump()),
        )

    def _candidate(self, c: CandidateFile) -> Candidate:
        search = None
        if c.search is not None:
            s = c.search
            space = tuple(d.dimension(name) for name, d in s.space.items())
            metric = s.metric or self.gate.primary_metric
            seed = self.split.seed if s.seed is None else s.seed
            search = SearchConfig(space, metric, s.trials, s.timeout, s.folds, seed)
        return Candidate(c.name, c.estimator, dict(c.params), search)


def _thresholds(raw: dict[str, ThresholdFile]) -> tuple[Threshold, ...]:
    return tuple(Threshold(metric, b.min, b.max) for metric, b in raw.items())


def parse_params(raw: Any) -> Params:
    """Check params.yaml as a whole, so a typo fails before any work starts."""
    try:
        return ParamsFile.model_validate(raw).params()
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
