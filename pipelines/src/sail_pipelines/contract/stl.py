"""Loading the project's Shared Transformation Layer: the one place its transformations live."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from sail_pipelines.contract.schema import Schema
from sail_pipelines.errors import SailError


def build(spec: str, schema: Schema, src: Path) -> Any:
    """Call the project's `module:function` with the schema's numeric and categorical columns."""
    module_name, _, function = spec.partition(":")
    if not module_name or not function:
        raise SailError(f"params.yaml: 'transform' must look like 'package.module:function', got {spec!r}")
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    try:
        builder = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        raise SailError(f"cannot load the transformation layer {spec!r}: {exc}") from None
    numeric = [c.name for c in schema.features if c.type != "category"]
    categorical = [c.name for c in schema.features if c.type == "category"]
    return builder(numeric=numeric, categorical=categorical)
