"""Faults against real servers: MLflow down or answering 5xx during the gate, S3 down during the
push, and a training process killed while it writes a bundle. Each must fail closed with one
clear line, leave nothing that a later step could mistake for a result, and recover on the next
run without manual cleanup. (Two pipelines racing to promote: tests/test_promote.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import TEST_KEY, bake, ok, sail
from pause_at_rename import kill_at_rename
from sail_pipelines.integrity import signing
from sail_pipelines.integrity.bundle import bundle_id, load_bundle
from servers import (
    CLIENT_AWS,
    REGION,
    FaultProxy,
    S3Server,
    dvc_md5_paths,
    team_project,
    write_infrastructure,
)

pytestmark = pytest.mark.slow


def repro(project, **env) -> None:
    """validate → evaluate through DVC, as `sail run` starts, so a following `sail run` only gates
    and pushes."""
    full = dict(os.environ, SAIL_SIGNING_KEY=TEST_KEY, **env)
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "evaluate"],
        cwd=project,
        env=full,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def last_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def registry_api(method: str, path: str) -> bool:
    return "/registered-models/" in path or "/model-versions/" in path


def nothing_accepted_registered_or_pushed(project, client, model, s3) -> None:
    assert not (project / "models" / "accepted").exists()
    assert not (project / "reports" / "gate.json").exists()
    assert not client.search_model_versions(f"name='{model}'")
    assert s3.keys(prefix=f"{project.name}/") == []


@pytest.fixture
def proxy(mlflow_server):
    proxy = FaultProxy(mlflow_server.uri).up()
    yield proxy
    proxy.down()


@pytest.mark.parametrize("status", [503, 500])
def test_mlflow_answering_5xx_during_the_gate_fails_closed(
    tmp_path, s3, mlflow_server, proxy, status
):
    project = team_project(tmp_path, f"Flaky Registry {status}", s3, proxy.url)
    repro(project, **CLIENT_AWS)  # evaluate logs its runs through the proxy
    proxy.fail(status, when=registry_api)  # tracking still works, the model registry answers 5xx
    started = time.monotonic()
    result = sail(project, "run", **CLIENT_AWS)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    line = last_line(result)
    assert (
        line.startswith(
            f"sail run: error: MLflow at {proxy.url} failed while reading the champion: "
        )
        and str(status) in line
    )
    assert any("/registered-models/" in request for request in proxy.failed)
    nothing_accepted_registered_or_pushed(
        project, mlflow_server.client(), f"flaky_registry_{status}", s3
    )
    assert elapsed < 30, elapsed  # MLflow's client retries are kept short (tracking.client)


def test_mlflow_failing_while_registering_registers_nothing_and_the_next_run_recovers(
    tmp_path, s3, mlflow_server, proxy
):
    project = team_project(tmp_path, "Half Registered", s3, proxy.url)
    proxy.fail(
        500,
        when=lambda method, path: (
            method == "POST" and path.startswith("/api/2.0/mlflow/model-versions/create")
        ),
    )
    result = sail(project, "run", **CLIENT_AWS)
    assert result.returncode == 1
    line = last_line(result)
    assert (
        line.startswith(
            f"sail run: error: MLflow at {proxy.url} failed while registering the accepted model: "
        )
        and "500" in line
    )
    client = mlflow_server.client()
    nothing_accepted_registered_or_pushed(project, client, "half_registered", s3)
    assert not client.get_registered_model("half_registered").aliases

    proxy.fail(None)  # MLflow is healthy again: the same command completes, nothing to clean up
    ok(sail(project, "run", **CLIENT_AWS))
    assert str(client.get_model_version_by_alias("half_registered", "candidate").version) == "1"
    assert dvc_md5_paths(project, project.name) <= set(s3.keys(prefix=f"{project.name}/"))


def test_a_lost_answer_to_creating_the_experiment_is_not_a_failure(
    tmp_path, s3, mlflow_server, proxy
):
    """MLflow creates the experiment but its answer is lost: the client's retry then hears
    RESOURCE_ALREADY_EXISTS, as a job racing another to create it does (seen in CI)."""
    project = team_project(tmp_path, "Lost Answer", s3, proxy.url)
    proxy.fail(
        503,
        when=lambda method, path: method == "POST" and "/experiments/create" in path,
        times=1,
        forwarded=True,
    )
    repro(project, **CLIENT_AWS)
    assert proxy.failed == ["POST /api/2.0/mlflow/experiments/create"]
    assert mlflow_server.client().get_experiment_by_name("lost_answer") is not None


def test_mlflow_unreachable_during_the_gate_fails_fast_and_closed(
    tmp_path, s3, mlflow_server, proxy
):
    project = team_project(tmp_path, "Lost Tracking", s3, proxy.url)
    repro(project, **CLIENT_AWS)
    proxy.down()  # connection refused from here on
    started = time.monotonic()
    result = sail(project, "run", **CLIENT_AWS)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert last_line(result).startswith(
        f"sail run: error: MLflow at {proxy.url} failed while reading the champion: "
    )
    nothing_accepted_registered_or_pushed(project, mlflow_server.client(), "lost_tracking", s3)
    assert elapsed < 30, elapsed


def test_s3_outage_during_push_retries_with_backoff_then_the_next_run_recovers(
    tmp_path, mlflow_server
):
    # the team's S3, on its own port so stopping it leaves MLflow's alone
    store = S3Server().start()
    store.client().create_bucket(Bucket="outage")
    try:
        project = bake(tmp_path, project_name="Outage Model")
        write_infrastructure(
            project,
            aws={"endpoint_url": store.endpoint, "region": REGION},
            dvc={"remote_url": "s3://outage/outage-model"},
            mlflow={"tracking_uri": mlflow_server.uri},
            retry={"attempts": 3, "backoff_seconds": 0.5},
        )
        # botocore's own retries off: this times sail's
        env = {
            **CLIENT_AWS,
            "AWS_MAX_ATTEMPTS": "1",
        }
        repro(project, **env)
        ok(sail(project, "gate", **env))
        store.stop()
        started = time.monotonic()
        result = sail(project, "push", **env)
        elapsed = time.monotonic() - started
        assert result.returncode == 1
        retries = [
            line for line in result.stderr.splitlines() if line.startswith("sail push: attempt")
        ]
        assert [line.split(" failed, ")[1].split(":")[0] for line in retries] == [
            "retrying in 0.5s",
            "retrying in 1s",
        ]
        line = last_line(result)
        assert line.startswith(
            "sail push: error: push to s3://outage/outage-model failed after 3 attempt(s): "
        )
        assert (
            f'Could not connect to the endpoint URL: "{store.endpoint}/' in line
            and line.endswith("run `sail push` again when the remote is back")
        )
        assert elapsed >= 1.5

        store.start()  # S3 is back, same port, same data
        assert store.keys("outage") == []
        ran = ok(sail(project, "run", **env))
        assert "pushed data/raw/data.csv.dvc, models/accepted.dvc" in ran.stdout
        assert dvc_md5_paths(project, "outage-model") <= set(store.keys("outage"))
    finally:
        store.stop()


# --- a training process killed while it writes ---------------------------------------------------

# trained after the defaults
LAST = {
    "name": "extra_trees",
    "estimator": "sklearn.ensemble.ExtraTreesClassifier",
    "params": {"n_estimators": 20, "random_state": 0, "n_jobs": 1},
}
BUNDLE_FILES = [
    "MANIFEST.json",
    "SIGNATURE.json",
    "metadata.json",
    "model.joblib",
    "transformer.joblib",
]
COMPILED = "model.onnx"  # beside them when the candidate converts to ONNX


def train_killed_at_rename(project) -> dict:
    """`sail train`, SIGKILLed just before it renames extra_trees' finished bundle into place."""
    program = ["-m", "sail_pipelines.cli", "--project", str(project), "train"]
    env = dict(os.environ, SAIL_SIGNING_KEY=TEST_KEY)
    return kill_at_rename(program, ".extra_trees.tmp-*", project.parent, env=env, timeout=300)


def test_training_killed_mid_write_leaves_nothing_a_later_step_would_use(tmp_path):
    project = bake(tmp_path, project_name="Killed Model")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["candidates"].append(LAST)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ok(sail(project, "validate"))
    ok(sail(project, "split"))
    key = signing.private_key(TEST_KEY, "test").verify_key
    candidates = project / "models" / "candidates"

    rename = train_killed_at_rename(project)
    # The kill landed after every file was written and signed, before the rename: a whole
    # bundle, but hidden where no step looks.
    hidden = Path(rename["src"])
    assert Path(rename["dst"]) == candidates / "extra_trees" and hidden.parent == candidates
    assert sorted(set(os.listdir(hidden)) - {COMPILED}) == BUNDLE_FILES
    assert load_bundle(hidden, key).metadata["name"] == "extra_trees"
    assert not (candidates / "extra_trees").exists()
    for finished in ("logistic_regression", "random_forest", "gradient_boosting"):
        load_bundle(candidates / finished, key)  # written before the kill: complete and signed
    served = sail(project, "serve", "--bundle", str(candidates / "extra_trees"), "--port", "1")
    assert served.returncode == 1 and last_line(served) == (
        f"sail serve: error: no model bundle at {candidates / 'extra_trees'}"
    )
    evaluated = sail(project, "evaluate")
    assert evaluated.returncode == 1 and last_line(evaluated) == (
        "sail evaluate: error: no trained bundle for candidate(s) extra_trees: run `sail train` "
        "first"
    )
    gated = sail(project, "gate")
    assert (
        gated.returncode == 1
        and last_line(gated)
        == "sail gate: error: no reports/evaluation.json: run `sail evaluate` first"
    )

    # Replacing a complete bundle, killed between its two renames: the old one is parked, the
    # new one whole beside it; the next step puts the old one back and uses it.
    ok(sail(project, "train"))
    before = bundle_id(candidates / "extra_trees")
    train_killed_at_rename(project)
    assert not (candidates / "extra_trees").exists()
    [parked] = candidates.glob(".extra_trees.old-*")
    assert load_bundle(parked, key).bundle_id == before
    ok(sail(project, "evaluate"))
    assert bundle_id(candidates / "extra_trees") == before
    assert not list(candidates.glob(".extra_trees.old-*"))

    # The next run needs no cleanup: DVC clears the stage's outputs, leftovers included.
    ok(sail(project, "run"))
    assert sorted(d.name for d in candidates.iterdir()) == [
        "extra_trees",
        "gradient_boosting",
        "logistic_regression",
        "random_forest",
    ]
