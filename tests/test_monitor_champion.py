"""`sail monitor --champion`, as both CI front ends run it: production's model from MLflow and
its training split from the work tree or DVC at the commit it was trained at, whatever bundle the
checkout holds; each way it can fail is one line. And the scheduled workflow's own scripts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, TEST_VERIFY_KEY, bake, dvc, ok, sail

pytestmark = pytest.mark.slow  # a promoted project with its split in a DVC remote

FEATURE = "mean_radius"  # a feature of the default project, shifted to make traffic drift


@pytest.fixture(scope="module")
def champion(tmp_path_factory) -> Path:
    """A default project trained at a commit whose dvc.lock names its split (pushed to the
    project's DVC remote by `sail run`), after `sail run` and `sail promote`: v1 is the
    champion."""
    project = bake(tmp_path_factory.mktemp("champion"))
    dvc(project, "repro", "split")
    subprocess.run(["git", "add", "dvc.lock"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", "the split"], cwd=project, check=True)
    run = sail(project, "run")  # its push sends the split along with the data and the bundle
    ok(run)
    assert (
        "data/split/train.csv"
        in [line for line in (run.stdout + run.stderr).splitlines() if "pushed " in line][-1]
    )
    ok(sail(project, "promote"))
    return project


@pytest.fixture
def copy(champion, tmp_path) -> Path:
    dest = tmp_path / champion.name
    shutil.copytree(champion, dest, symlinks=True)
    return dest


def write_log(project: Path, log: Path, shift: float) -> Path:
    """The training rows served by `sail predict` with the prediction log on; `shift` scales
    one feature."""
    rows = pd.read_csv(project / "data" / "split" / "train.csv").drop(columns="target")
    rows[FEATURE] *= 1 + shift
    rows.to_csv(log.with_suffix(".csv"), index=False)
    ok(
        sail(
            project,
            "predict",
            "--input",
            str(log.with_suffix(".csv")),
            "--output",
            str(log.with_suffix(".out.csv")),
            "--prediction-log",
            str(log),
        )
    )
    return log


def monitor(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return sail(project, "monitor", *args, key=None, SAIL_VERIFY_KEY=TEST_VERIFY_KEY, **env)


def report(project: Path) -> dict:
    return json.loads((project / "reports" / "monitor.json").read_text())


def one_line(result: subprocess.CompletedProcess, *texts: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("sail monitor: error:"), result.stderr
    assert all(text in lines[0] for text in texts), result.stderr


def accepted_id(project: Path) -> str:
    return json.loads((project / "reports" / "gate.json").read_text())["accepted_bundle_id"]


def test_the_champion_is_monitored_whatever_models_accepted_holds(copy, tmp_path):
    """Same verdict as the direct path while models/accepted is the champion; after another
    candidate's bundle replaces it, the direct path judges that one and --champion still the
    champion."""
    log = str(write_log(copy, tmp_path / "p.jsonl", shift=0.5))
    direct = monitor(copy, "--log", log)
    assert direct.returncode == 1 and f"{FEATURE}: drift PSI" in direct.stderr, direct.stderr
    expected = report(copy)
    assert expected["bundle_id"] == accepted_id(copy)
    other = next(
        p
        for p in (copy / "models" / "candidates").iterdir()
        if p.name != json.loads((copy / "reports" / "gate.json").read_text())["candidate"]
    )
    shutil.rmtree(copy / "models" / "accepted")
    shutil.copytree(other, copy / "models" / "accepted")
    monitor(copy, "--log", log)
    assert report(copy)["bundle_id"] != expected["bundle_id"]
    result = monitor(copy, "--champion", "--log", log)
    assert result.returncode == 1 and result.stderr == direct.stderr
    assert report(copy) == expected


def test_the_training_split_comes_from_dvc_at_the_champions_commit(copy, tmp_path):
    log = str(write_log(copy, tmp_path / "p.jsonl", shift=0.0))
    ok(monitor(copy, "--champion", "--log", log))
    expected = report(copy)
    (copy / "data" / "split" / "train.csv").unlink()
    shutil.rmtree(copy / ".dvc" / "cache")  # only the DVC remote holds it now
    ok(monitor(copy, "--champion", "--log", log))
    assert report(copy) == expected and expected["breaches"] == []
    assert not (copy / "data" / "split" / "train.csv").exists()  # read, not checked out


def test_a_training_split_found_nowhere_is_one_line(copy, tmp_path):
    log = str(write_log(copy, tmp_path / "p.jsonl", shift=0.0))
    train = copy / "data" / "split" / "train.csv"
    meta = json.loads((copy / "models" / "accepted" / "metadata.json").read_text())
    train.write_text(
        "".join(train.read_text().splitlines(keepends=True)[:-5])
    )  # another split than the champion trained on
    shutil.rmtree(copy / ".dvc" / "cache")
    shutil.rmtree(copy / "dvc-storage")
    one_line(
        monitor(copy, "--champion", "--log", log),
        f"md5 {meta['train_hash']}",
        f"commit {meta['git_commit'][:12]}",
        "fetch-depth: 0",
        "dvc push data/split/train.csv",
    )


def test_without_a_champion_it_is_one_line(copy):
    params = copy / "params.yaml"
    params.write_text(
        params.read_text().replace("registered_model: sail_model", "registered_model: other_model")
    )
    one_line(
        monitor(copy, "--champion", "--log", "p.jsonl"),
        "other_model has no champion yet",
        "sail promote",
    )


def test_a_tampered_champion_is_refused_in_one_line(copy):
    artifacts = list((copy / ".mlflow" / "artifacts").rglob("accepted_bundle/data/*/model.joblib"))
    assert len(artifacts) == 1, artifacts
    with open(artifacts[0], "ab") as fh:
        fh.write(b"\0")
    one_line(
        monitor(copy, "--champion", "--log", "p.jsonl"),
        "the champion sail_model v1 is refused",
        "model.joblib does not match its signed hash",
    )


def test_mlflow_unreachable_and_both_bundles_are_one_line(copy):
    one_line(
        monitor(
            copy,
            "--champion",
            "--log",
            "p.jsonl",
            MLFLOW_TRACKING_URI="http://127.0.0.1:9",
        ),
        "MLflow at http://127.0.0.1:9 failed while reading the champion",
    )
    one_line(
        monitor(copy, "--champion", "--bundle", "models/accepted", "--log", "p.jsonl"),
        "give --champion or --bundle, not both",
    )


def workflow_steps(path: Path) -> dict[str, dict]:
    doc = yaml.safe_load(path.read_text())
    jobs = doc["jobs"].values()
    return {step.get("name"): step for job in jobs for step in job.get("steps") or []}


def run_step(step: dict, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A workflow step's `run:` script as the runner runs it (bash -eo pipefail), with its env:
    keys given values here; `sail` is this interpreter's."""
    assert set(step.get("env") or {}) <= set(env), step
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    shell = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]]
    return subprocess.run(
        shell,
        cwd=cwd,
        env={**os.environ, "PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize(
    "shift, breached", [(0.5, True), (0.0, False)], ids=["shifted", "like-training"]
)
def test_the_scheduled_workflow_fails_on_a_breach_and_its_retraining_sees_it(
    copy, tmp_path, shift, breached
):
    """The scripts of .github/workflows/sail-monitor.yml and of the generated monitor.yml's
    retraining job, run as GitHub runs them, on a log `sail predict` wrote, against the champion
    (models/accepted is gone, as in a fresh checkout)."""
    log = write_log(copy, tmp_path / "p.jsonl", shift)
    shutil.rmtree(copy / "models" / "accepted")
    summary, output = tmp_path / "summary.md", tmp_path / "output"
    env = {
        "LOG": str(log),
        "WINDOW": "24h",
        "SAIL_VERIFY_KEY": TEST_VERIFY_KEY,
        "MLFLOW_TRACKING_TOKEN": "",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(output),
    }
    steps = workflow_steps(ROOT / ".github" / "workflows" / "sail-monitor.yml")
    result = run_step(steps["sail monitor"], copy, env)
    assert result.returncode == (1 if breached else 0), result.stderr
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert any(line.startswith(f"{FEATURE}: drift PSI") for line in lines) == breached
    assert run_step(steps["Report to the job summary"], copy, env).returncode == 0
    assert (f"- {FEATURE}: drift PSI" in summary.read_text()) == breached
    retraining = bake(tmp_path / "bake", retrain_on_breach="yes") / ".github" / "workflows"
    verdict = run_step(workflow_steps(retraining / "monitor.yml")["Breached limits"], copy, env)
    assert verdict.returncode == 0, verdict.stderr
    assert output.read_text() == f"breached={str(breached).lower()}\n"
