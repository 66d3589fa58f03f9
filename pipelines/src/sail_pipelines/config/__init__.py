"""A project's configuration, typed: params.yaml (params.py, checked by params_file.py), the team
file infrastructure.yaml with its environment overrides (team.py, team_file.py) and the
project's layout (paths.py). Every step takes these objects instead of reading files or
os.environ itself, so the steps stay pure functions and the tests can build configs directly.

The two file readers (params_file.py, team_file.py) are pydantic models, loaded on first use:
serving imports this package without them, and the inference image carries no pydantic.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from sail_pipelines.config.messages import yaml_problem
from sail_pipelines.config.params import (
    HIGHER_IS_BETTER,
    METRICS_BY_TASK,
    OUT_OF_RANGE,
    REGRESSION_RULES,
    SEARCH_KINDS,
    SIGNING_SCHEMES,
    TASKS,
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

if TYPE_CHECKING:
    from sail_pipelines.config.params_file import load_params, parse_params
    from sail_pipelines.config.team_file import (
        SECRET_NAMES,
        TEAM_FILE,
        TEAM_KEYS,
        load_team_file,
        redact,
    )

__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS_BY_TASK",
    "OUT_OF_RANGE",
    "REGRESSION_RULES",
    "SEARCH_KINDS",
    "SIGNING_SCHEMES",
    "TASKS",
    "BootstrapConfig",
    "Candidate",
    "CompiledConfig",
    "Dimension",
    "GateConfig",
    "MonitoringConfig",
    "Params",
    "ProjectPaths",
    "SearchConfig",
    "ServingConfig",
    "SliceConfig",
    "SplitConfig",
    "Threshold",
    "ValidationConfig",
    "load_params",
    "parse_params",
    "yaml_problem",
]
from sail_pipelines.config.team import AwsSettings, RetryPolicy, Settings, team_values  # noqa: E402

__all__ += [
    "SECRET_NAMES",
    "TEAM_FILE",
    "TEAM_KEYS",
    "AwsSettings",
    "RetryPolicy",
    "Settings",
    "load_team_file",
    "redact",
    "team_values",
]

_LAZY = {
    "load_params": "params_file",
    "parse_params": "params_file",
    **dict.fromkeys(
        ("SECRET_NAMES", "TEAM_FILE", "TEAM_KEYS", "load_team_file", "redact"), "team_file"
    ),
}


def __getattr__(name: str) -> Any:
    """The names of the pydantic modules, imported when first asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
