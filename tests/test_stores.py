"""In CI the steps whose work must outlive the job refuse throwaway stores (config/stores.py):
the rule for each step, marker, kind of store and the opt-out; then the real `sail` under the
markers (one line naming the variable), the pull-request path that still judges and reports, and
`sail doctor --ci` for a project with nothing configured and one pointing at the team servers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import bake, ok, sail
from sail_pipelines.config import ProjectPaths, Settings, stores
from sail_pipelines.errors import SailError
from servers import team_project

MARKERS = {
    "CI": {"CI": "true"},
    "GITHUB_ACTIONS": {"GITHUB_ACTIONS": "true"},
    "JENKINS_URL": {"JENKINS_URL": "https://jenkins.example.com/"},
}
TEAM = {
    "MLFLOW_TRACKING_URI": "https://mlflow.example.com",
    "SAIL_DVC_REMOTE_URL": "s3://acme-ml/churn",
    "SAIL_REGISTRY": "registry.example.com/ml",
}
VARIABLE = {stores.TRACKING: "MLFLOW_TRACKING_URI", stores.DVC: "SAIL_DVC_REMOTE_URL"}
VARIABLE[stores.REGISTRY] = "SAIL_REGISTRY"
DVC_CONFIG = "[core]\n    remote = local\n['remote \"local\"']\n    url = ../dvc-storage\n"


@pytest.fixture
def project(tmp_path) -> ProjectPaths:
    """A project folder as generated: the default DVC remote dvc-storage/ inside it."""
    root = tmp_path / "churn"
    (root / ".dvc").mkdir(parents=True)
    (root / ".dvc" / "config").write_text(DVC_CONFIG)
    return ProjectPaths(root)


def check(paths: ProjectPaths, step: str, env: dict[str, str]) -> list[str]:
    """What require says (opt-out lines) for `step` under `env`; raises as the step would."""
    said: list[str] = []
    stores.require(paths, Settings.from_env(paths, env), step, env, said.append)
    return said


@pytest.mark.parametrize("marker", MARKERS)
def test_each_marker_counts_as_ci(marker):
    assert stores.ci(MARKERS[marker]) is not None
    assert stores.ci({}) is None and stores.ci({"CI": "false", "GITHUB_ACTIONS": ""}) is None


@pytest.mark.parametrize("step", stores.NEEDS)
def test_each_step_refuses_what_it_needs_in_ci(project, step):
    for marker, env in MARKERS.items():
        with pytest.raises(SailError) as refused:
            check(project, step, env)
        needed = stores.NEEDS[step][0]
        assert VARIABLE[needed] in str(refused.value), (marker, str(refused.value))
        assert "\n" not in str(refused.value)
        assert "SAIL_ALLOW_EPHEMERAL=1" in str(refused.value)
        assert check(project, step, {**env, **TEAM}) == []  # team stores: it runs


@pytest.mark.parametrize("step", stores.NEEDS)
def test_outside_ci_every_step_runs_on_embedded_stores(project, step):
    assert check(project, step, {}) == []


def test_the_refusal_names_where_each_front_end_takes_the_variable(project):
    messages = {}
    for marker, env in MARKERS.items():
        with pytest.raises(SailError) as refused:
            check(project, "push", env)
        messages[marker] = str(refused.value)
    assert (
        "the repository variable SAIL_DVC_REMOTE_URL (Settings > Secrets and variables"
        in (messages["GITHUB_ACTIONS"])
    )
    assert (
        "SAIL_DVC_REMOTE_URL in the Jenkinsfile's sailPipeline(environment:"
        in (messages["JENKINS_URL"])
    )
    assert "SAIL_DVC_REMOTE_URL in the CI job's environment" in messages["CI"]
    assert all("dvc.remote_url in infrastructure.yaml" in m for m in messages.values())
    assert "dvc-storage in the job's workspace" in messages["CI"]


@pytest.mark.parametrize(
    "tracking_uri, kept",
    [
        (None, False),  # the embedded store, .mlflow/mlflow.db
        ("sqlite:///mlflow.db", False),  # relative: in the project
        ("WORKSPACE/other/mlflow.db", False),  # elsewhere in the job's workspace
        ("file:WORKSPACE/mlruns", False),
        ("sqlite:////srv/mlflow/mlflow.db", True),  # a self-hosted agent's own disk
        ("https://mlflow.example.com", True),
        ("postgresql://mlflow@db.example.com/mlflow", True),
        ("databricks://team", True),
    ],
)
def test_which_tracking_stores_outlive_the_job(project, tracking_uri, kept):
    workspace = project.root.parent
    env = {"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(workspace)}
    if tracking_uri:
        uri = tracking_uri.replace("WORKSPACE", str(workspace))
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{uri}" if uri.startswith("/") else uri
    [store] = stores.stores(project, Settings.from_env(project, env), env, (stores.TRACKING,))
    assert store.kept is kept, store


@pytest.mark.parametrize(
    "remote, kept",
    [
        (None, False),  # the generated default: dvc-storage/ in the project
        ("team-remote", False),  # a folder in the project
        ("/mnt/team/dvc", True),  # a folder outside the workspace (a self-hosted agent's mount)
        ("s3://acme-ml/churn", True),
    ],
)
def test_which_dvc_remotes_outlive_the_job(project, remote, kept):
    env = {"CI": "true", **({"SAIL_DVC_REMOTE_URL": remote} if remote else {})}
    [store] = stores.stores(project, Settings.from_env(project, env), env, (stores.DVC,))
    assert store.kept is kept, store


def test_no_dvc_remote_at_all_is_refused(project):
    (project.root / ".dvc" / "config").write_text("")
    with pytest.raises(SailError, match="no DVC remote, deleted with the job; set SAIL_DVC_"):
        check(project, "push", {"CI": "1"})


def test_no_registry_is_refused_for_publish_and_deploy(project):
    env = {"CI": "true", "MLFLOW_TRACKING_URI": TEAM["MLFLOW_TRACKING_URI"]}
    for step in ("publish", "deploy"):
        with pytest.raises(SailError, match="no image registry: images stay in the runner's"):
            check(project, step, env)
    assert check(project, "promote", env) == []  # the tracking server is all promote needs


def test_the_opt_out_runs_and_says_so(project):
    env = {"JENKINS_URL": "https://jenkins.example.com/", "SAIL_ALLOW_EPHEMERAL": "1"}
    [line] = check(project, "monitor --champion", env)
    assert line.startswith("sail monitor --champion: SAIL_ALLOW_EPHEMERAL=1: writing to stores")
    assert "tracking server .mlflow/mlflow.db" in line and "DVC remote dvc-storage" in line
    with pytest.raises(SailError):
        check(project, "gate", {**env, "SAIL_ALLOW_EPHEMERAL": "0"})


def test_the_report_learns_why_there_is_no_champion(project):
    settings = Settings.from_env(project, {})
    assert stores.tracking_missing(project, settings, {"GITHUB_ACTIONS": "true"})
    assert not stores.tracking_missing(project, settings, {})  # a developer's own store
    team = Settings.from_env(project, TEAM)
    assert not stores.tracking_missing(project, team, {"GITHUB_ACTIONS": "true"})


# --- the real `sail` ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def baked(tmp_path_factory) -> Path:
    return bake(tmp_path_factory.mktemp("stores"))


@pytest.mark.parametrize(
    "step, args, variable",
    [
        ("gate", ("gate",), "MLFLOW_TRACKING_URI"),
        ("push", ("push",), "SAIL_DVC_REMOTE_URL"),
        ("package", ("package",), "MLFLOW_TRACKING_URI"),
        ("publish", ("publish",), "SAIL_REGISTRY"),
        ("deploy", ("deploy", "--environment", "staging"), "SAIL_REGISTRY"),
        ("promote", ("promote",), "MLFLOW_TRACKING_URI"),
        ("monitor", ("monitor", "--champion", "--log", "logs/"), "MLFLOW_TRACKING_URI"),
    ],
)
def test_sail_refuses_with_one_line(baked, step, args, variable):
    marker = list(MARKERS)[len(step) % len(MARKERS)]  # every marker, across the steps
    result = sail(baked, *args, **MARKERS[marker])
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"sail {step}: error: in CI this would lose "), line
    assert variable in line


@pytest.mark.slow
def test_a_pull_request_judges_and_reports_without_a_tracking_server(pipeline_project, tmp_path):
    project = tmp_path / pipeline_project.name
    shutil.copytree(pipeline_project, project, symlinks=True)
    ci = MARKERS["GITHUB_ACTIONS"]
    refused = sail(project, "gate", **ci)
    assert refused.returncode == 1 and "MLFLOW_TRACKING_URI" in refused.stderr
    ok(sail(project, "gate", "--no-register", **ci))
    ok(sail(project, "report", **ci))
    report = (project / "reports" / "report.md").read_text()
    assert "No champion: no team tracking server configured (MLFLOW_TRACKING_URI)" in report
    assert "No champion yet" not in report
    demo = ok(sail(project, "gate", **ci, SAIL_ALLOW_EPHEMERAL="1"))
    assert "sail gate: SAIL_ALLOW_EPHEMERAL=1: writing to stores deleted with this CI job" in (
        demo.stderr
    )


def test_doctor_ci_with_nothing_configured(baked):
    result = ok(sail(baked, "doctor", "--ci", key=None, **MARKERS["GITHUB_ACTIONS"]))
    lines = result.stdout.splitlines()
    assert lines[0] == "### sail doctor --ci: what a CI run keeps (GitHub Actions)"
    loses = [line for line in lines if line.startswith("- LOSES ")]
    assert len(loses) == 3, result.stdout
    assert "no team tracking server: MLflow writes to .mlflow/mlflow.db" in loses[0]
    assert "the repository variable MLFLOW_TRACKING_URI" in loses[0]
    assert "SAIL_DVC_REMOTE_URL" in loses[1] and "SAIL_REGISTRY" in loses[2]
    assert (
        "Refused in CI until that is set: gate, push, package, publish, deploy, promote, "
        "monitor --champion." in lines
    )
    assert "no team tracking server configured, so no champion to compare" in result.stdout


@pytest.mark.slow
def test_doctor_ci_with_the_team_servers(s3, mlflow_server, local_registry, tmp_path):
    project = team_project(
        tmp_path, "Stores Team", s3, mlflow_server.uri, registry={"url": local_registry}
    )
    result = ok(sail(project, "doctor", "--ci", key=None, **MARKERS["JENKINS_URL"]))
    lines = result.stdout.splitlines()
    assert lines[0] == "### sail doctor --ci: what a CI run keeps (Jenkins)"
    assert [line.split(":")[0] for line in lines if line.startswith("- ")] == [
        "- keeps runs, registered versions, aliases and the audit history",
        "- keeps the pushed data and model bundles",
        "- keeps the images",
    ], result.stdout
    assert f"tracking server {mlflow_server.uri}" in result.stdout
    assert "DVC remote s3://" in result.stdout and "Every step keeps its work." in lines


def test_the_readme_says_what_to_set_before_the_first_push(baked):
    """The generated README's three settings, and its `mlflow server` line uses only options the
    installed MLflow's own `mlflow server --help` lists."""
    readme = (baked / "README.md").read_text()
    section = readme.split("## Before your first push", 1)[1].split("\n## ", 1)[0]
    for variable in ("MLFLOW_TRACKING_URI", "SAIL_DVC_REMOTE_URL", "SAIL_REGISTRY"):
        assert f"`{variable}`" in section, variable
    command = section.split("mlflow server \\", 1)[1].split("```", 1)[0]
    options = re.findall(r"(--[a-z-]+)", command)
    assert options[:3] == ["--backend-store-uri", "--artifacts-destination", "--serve-artifacts"]
    mlflow = Path(sys.executable).parent / "mlflow"
    help_text = subprocess.run(
        [str(mlflow), "server", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert all(option in help_text for option in options), options
