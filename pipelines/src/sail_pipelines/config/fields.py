"""The building blocks of the params.yaml models (params.py): checked numbers and names, the
section base that refuses unknown keys, and the two shapes where the file and the steps differ
(a mapping keyed by name, a key filled from another one)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import core_schema

from sail_pipelines.config.messages import refuse

NAME = re.compile(r"^[A-Za-z0-9_-]+$")


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
            fix = f"set {kind} from {shown(low)} to {shown(high)}"
        elif low is not None:
            fix = f"set {kind} {'above' if self.above else 'of at least'} {shown(low)}"
        else:
            fix = f"set {kind}"
        if isinstance(value, bool) or not isinstance(value, int if self.whole else (int, float)):
            raise refuse(f"= {value!r} is not {kind}; {fix}")
        if low is not None and high is not None and not low <= value <= high:
            raise refuse(f"= {value!r} is outside [{shown(low)}, {shown(high)}]; {fix}")
        if low is not None and (value <= low if self.above else value < low):
            raise refuse(
                f"= {value!r} is {'not above' if self.above else 'below'} {shown(low)}; {fix}"
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


def shown(bound: float | None) -> str:
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
    if not isinstance(value, str) or not NAME.match(value):
        raise refuse(f"= {value!r} is not a name; use letters, digits, '-' or '_'")
    return value


def empty(value: Any) -> Any:
    """An empty YAML key (null) means the section's defaults."""
    return {} if value is None else value


Text = Annotated[str, Field(min_length=1), BeforeValidator(_text)]


@dataclass(frozen=True)
class Listed:
    """A YAML list (checked, messages and schema, as a list of at least `min_length` items), a
    tuple for the steps."""

    min_length: int | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        items = core_schema.list_schema(
            handler.generate_schema(get_args(source)[0]), min_length=self.min_length
        )
        as_list = core_schema.plain_serializer_function_ser_schema(list, return_schema=items)
        return core_schema.no_info_after_validator_function(tuple, items, serialization=as_list)


Name = Annotated[str, Field(pattern=NAME.pattern), BeforeValidator(_name)]


@dataclass(frozen=True)
class Filled:
    """A key that may be left unset (null): once the file is read, the model holding the keys
    that decide it fills it (Params: search.metric from gate.primary_metric, ...; Dimension: no
    choices for a range). Null in the file and its schema, never null for the steps, so typed as
    the value."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.nullable_schema(handler(source))


UNSET: Any = None  # a Filled key's default


@dataclass(frozen=True)
class Keyed:
    """A mapping {key: entry} in the file (gate.thresholds, search.space), a tuple of entries for
    the steps, each entry given its key as its `key_field` (a threshold's metric, a searched
    parameter's name). The file's shape, messages, JSON Schema and dump are the mapping's."""

    min_length: int = 0

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        entry: type[Section] = get_args(source)[0]  # tuple[Entry, ...]
        mapping = core_schema.dict_schema(
            core_schema.str_schema(),
            handler.generate_schema(entry),
            min_length=self.min_length or None,
        )

        def entries(value: dict[str, Section]) -> tuple[Section, ...]:
            return tuple(e.model_copy(update={entry.key_field: k}) for k, e in value.items())

        def keyed(value: tuple[Section, ...]) -> dict[str, Section]:
            return {getattr(e, entry.key_field): e for e in value}

        # dumped in the file's shape too (the key field is excluded from the entry's own dump)
        as_file = core_schema.plain_serializer_function_ser_schema(keyed, return_schema=mapping)
        return core_schema.no_info_after_validator_function(entries, mapping, serialization=as_file)


class Section(BaseModel):
    """A mapping with known keys only: an unknown key names itself and the known ones. The keys
    are the file's (a field's alias where the steps' name differs); `key_field` is not one, it
    holds the key of the mapping the section sits in (Keyed)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    key_field: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any) -> Any:
        value = empty(value)
        keys = [f.alias or n for n, f in cls.model_fields.items() if n != cls.key_field]
        known = ", ".join(keys)
        if not isinstance(value, Mapping):
            raise refuse(
                f"must be a mapping of {known}, got {value!r}; write it as key: value lines"
            )
        for key in value:
            if key not in keys:
                raise refuse(
                    f"is not a known key; use one of {known} (or remove it)", leaf=str(key)
                )
        return value
