"""A project's configuration, typed: params.yaml (params.py, the frozen pydantic models every step
takes), the team file infrastructure.yaml with its environment overrides (team.py, team_file.py)
and the project's layout (paths.py). Every step takes these objects instead of reading files or
os.environ itself, so the steps stay pure functions and the tests can build configs directly.

The pydantic modules (params.py, team_file.py) are loaded on first use: serving imports this
package, its choices (choices.py) and Settings without them, and the inference image carries no
pydantic.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from sail_pipelines.config.choices import (
    HIGHER_IS_BETTER,
    METRICS_BY_TASK,
    OUT_OF_RANGE,
    OUTLIERS,
    REGRESSION_RULES,
    SEARCH_KINDS,
    SIGNING_SCHEMES,
    TASKS,
)
from sail_pipelines.config.messages import yaml_problem
from sail_pipelines.config.paths import ProjectPaths
from sail_pipelines.config.team import AwsSettings, RetryPolicy, Settings, team_values

if TYPE_CHECKING:
    from sail_pipelines.config.params import (
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
        load_params,
        parse_params,
    )
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
    "OUTLIERS",
    "REGRESSION_RULES",
    "SEARCH_KINDS",
    "SECRET_NAMES",
    "SIGNING_SCHEMES",
    "TASKS",
    "TEAM_FILE",
    "TEAM_KEYS",
    "AwsSettings",
    "BootstrapConfig",
    "Candidate",
    "CompiledConfig",
    "Dimension",
    "GateConfig",
    "MonitoringConfig",
    "Params",
    "ProjectPaths",
    "RetryPolicy",
    "SearchConfig",
    "ServingConfig",
    "Settings",
    "SliceConfig",
    "SplitConfig",
    "Threshold",
    "ValidationConfig",
    "load_params",
    "load_team_file",
    "parse_params",
    "redact",
    "team_values",
    "yaml_problem",
]
_TEAM_FILE = ("SECRET_NAMES", "TEAM_FILE", "TEAM_KEYS", "load_team_file", "redact")
# What is not imported above: each name's pydantic module.
_LAZY = {
    name: "team_file" if name in _TEAM_FILE else "params"
    for name in __all__
    if name not in globals()
}


def __getattr__(name: str) -> Any:
    """The names of the pydantic modules, imported when first asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
