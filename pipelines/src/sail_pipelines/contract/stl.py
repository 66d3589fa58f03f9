"""Loading the project's Shared Transformation Layer: the one place its transformations live."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

from sail_pipelines.contract.schema import NUMERIC, Schema
from sail_pipelines.errors import SailError


def arguments(schema: Schema) -> dict[str, Any]:
    """The STL builder's arguments, from the contract: which features are numbers (bool as 0/1),
    categories (with their allowed values) and dates."""
    categorical = schema.names("category")
    return {
        "numeric": schema.names(*NUMERIC),
        "categorical": categorical,
        "datetime": schema.names("datetime"),
        "categories": {
            c.name: sorted_values(c.values) for c in schema.features if c.name in categorical
        },
    }


def sorted_values(values: tuple[Any, ...] | None) -> list[Any]:
    """scikit-learn's encoder wants numeric categories sorted; strings keep the schema's order."""
    items = list(values or ())
    return sorted(items) if all(isinstance(v, (int, float)) for v in items) else items


def build(spec: str, schema: Schema, src: Path) -> Any:
    """Call the project's `module:function` with the arguments it accepts. A builder written
    before datetime support takes only numeric and categorical; it fails clearly on a date."""
    module_name, _, function = spec.partition(":")
    if not module_name or not function:
        raise SailError(
            f"params.yaml: 'transform' must look like 'package.module:function', got {spec!r}"
        )
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    try:
        builder = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        raise SailError(f"cannot load the transformation layer {spec!r}: {exc}") from exc
    given = arguments(schema)
    accepted = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return builder(**given)
    if given["datetime"] and "datetime" not in accepted:
        raise SailError(
            f"{spec} takes no 'datetime' argument, but the schema has date column(s) "
            f"{', '.join(given['datetime'])}: add the argument (see the template's transform.py) "
            "or set those columns to role: ignore"
        )
    return builder(**{name: value for name, value in given.items() if name in accepted})


class NonFiniteFeatures(SailError):
    """The STL turned finite inputs into inf or NaN (a scaler overflowing on 1e308, a log of 0):
    the model cannot score them. `field` and `rows` (positions in the batch) name the culprits."""

    def __init__(self, field: str | None, rows: list[int]):
        self.field = field
        self.rows = rows
        what = f"'{field}'" if field else "an input"
        super().__init__(
            f"{what} is too extreme for the model: the transformation layer turned it into a "
            "non-finite number; send a value nearer the training range"
        )


def source_fields(transformer: Any, schema: Schema) -> list[str | None]:
    """For each output column of a fitted STL, the input field it came from, from the output names
    (`x`, `colour_red`, `date_month`); None where a name does not say."""
    try:
        outputs = [str(name) for name in transformer.get_feature_names_out()]
    except (AttributeError, ValueError, TypeError):
        return []
    inputs = sorted(schema.feature_names, key=len, reverse=True)  # longest first: `a_b` before `a`
    bare = [out.split("__", 1)[-1] for out in outputs]  # `numeric__x` when names are verbose
    return [next((f for f in inputs if out == f or out.startswith(f"{f}_")), None) for out in bare]


def transform(transformer: Any, schema: Schema, frame: Any) -> Any:
    """Apply the fitted STL and refuse non-finite output, naming the input field it came from."""
    import numpy as np

    out = np.asarray(transformer.transform(frame), dtype=float)
    finite = np.isfinite(out)
    if finite.all():
        return out
    rows, cols = np.nonzero(~finite)
    fields = source_fields(transformer, schema)
    field = fields[cols[0]] if cols[0] < len(fields) else None
    raise NonFiniteFeatures(field, sorted({int(r) for r in rows}))
