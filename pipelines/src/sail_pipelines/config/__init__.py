"""A project's configuration, typed: params.yaml (params.py, checked by params_file.py), the team
file infrastructure.yaml with its environment overrides (team.py, team_file.py) and the
project's layout (paths.py). Every step takes these objects instead of reading files or
os.environ itself, so the steps stay pure functions and the tests can build configs directly.
"""

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
from sail_pipelines.config.params_file import load_params, parse_params
from sail_pipelines.config.paths import ProjectPaths

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
from sail_pipelines.config.team_file import (  # noqa: E402
    SECRET_NAMES,
    TEAM_FILE,
    TEAM_KEYS,
    load_team_file,
    redact,
)

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
