"""Faults against real servers: MLflow down or answering 5xx during the gate, S3 down during the
push, and a training process killed while it writes a bundle. Each must fail closed with one
clear line, leave nothing that a later step could mistake for a result, and recover on the next
run without manual cleanup. (Two pipelines racing to promote: tests/test_promote.py.)
"""

from __future__ import annotations

import json
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


def failed_run(project, proxy, step: str) -> str:
    """`sail run`'s last line, after it failed naming MLflow behind the proxy and the step."""
    result = sail(project, "run", **CLIENT_AWS)
    assert result.returncode == 1
    line = last_line(result)
    assert line.startswith(f"sail run: error: MLflow at {proxy.url} failed while {step}: "), line
    return line


@pytest.fixture
def proxy(mlflow_server):
    proxy = FaultProxy(mlflow_server.uri).up()
    yield proxy
    proxy.down()


# MLflow's client as tracking.client sets it up: 2 retries; urllib3's backoff before retry n is
# none for the first, MLflow's default factor (MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR) * 2**(n-1) after
# (plus up to 1 s of jitter).
RETRIES, BACKOFF_FACTOR = 2, 2
BACKOFF = [0.0] + [BACKOFF_FACTOR * 2 ** (n - 1) for n in range(2, RETRIES + 1)]


def retry_schedule_problems(asked: list[tuple[float, str]]) -> list[str]:
    """How the attempts at the failing registry call (monotonic time, request) depart from one
    request tried 1 + RETRIES times, each retry after at least its backoff."""
    problems = []
    if len({request for _, request in asked}) != 1:
        problems.append(f"{len({r for _, r in asked})} different requests failed, not one")
    if len(asked) != 1 + RETRIES:
        problems.append(f"{len(asked)} attempts, not {1 + RETRIES}")
    gaps = [later - earlier for (earlier, _), (later, _) in zip(asked, asked[1:], strict=False)]
    problems += [
        f"retry {n} came {gap:.2f}s after the attempt before, not at least {wait}s"
        for n, (gap, wait) in enumerate(zip(gaps, BACKOFF, strict=False), start=1)
        if gap < wait
    ]
    return problems


def test_mlflow_answering_5xx_during_the_gate_fails_closed(tmp_path, s3, mlflow_server, proxy):
    """A 503, then a 500 on the same project: each fails after MLflow's client retried the call
    with its backoff, not at once and not forever; a client with no backoff (a mutation) fails
    the schedule check."""
    project = team_project(tmp_path, "Flaky Registry", s3, proxy.url)
    repro(project, **CLIENT_AWS)  # evaluate logs its runs through the proxy
    asked: list[tuple[float, str]] = []

    def registry_call(method: str, path: str) -> bool:
        if registry_api(method, path):
            asked.append((time.monotonic(), f"{method} {path}"))
            return True
        return False

    for status in (503, 500):
        asked.clear()
        proxy.failed.clear()
        proxy.fail(status, when=registry_call)  # tracking works, the model registry answers 5xx
        line = failed_run(project, proxy, "reading the champion")
        assert str(status) in line, line
        assert any("/registered-models/" in request for request in proxy.failed)
        nothing_accepted_registered_or_pushed(project, mlflow_server.client(), "flaky_registry", s3)
        assert retry_schedule_problems(asked) == [], (status, asked)
        if status == 503:
            asked.clear()
            hasty = sail(project, "gate", **CLIENT_AWS, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0")
            assert hasty.returncode == 1 and "failed while reading the champion" in last_line(hasty)
            assert retry_schedule_problems(asked), asked


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
    assert "500" in failed_run(project, proxy, "registering the accepted model")
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
    # A refused connection reaches no server to count the attempts at (the 5xx test does): the
    # retries' backoff is what the run must at least have waited.
    assert elapsed >= sum(BACKOFF), elapsed


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
    "explain_background.json",
    "metadata.json",
    "model.joblib",
    "outliers.joblib",
    "transformer.joblib",
]
COMPILED = {"model.onnx"}  # beside them when the candidate converts to ONNX


def train_killed_at_rename(project) -> dict:
    """`sail train`, SIGKILLed just before it renames extra_trees' finished bundle into place."""
    program = ["-m", "sail_pipelines.cli", "--project", str(project), "train"]
    env = dict(os.environ, SAIL_SIGNING_KEY=TEST_KEY)
    return kill_at_rename(program, ".extra_trees.tmp-*", project.parent, env=env, timeout=300)


def evaluation_is_checked_by_the_gate(project: Path) -> None:
    """After an evaluate that ran: its report gone, or naming a bundle other than the one on
    disk, and the gate refuses in one line; put back, it is the report the next run keeps."""
    report = project / "reports" / "evaluation.json"
    written = report.read_bytes()
    evaluation = json.loads(written)
    best = evaluation["best"]
    retrained = {**evaluation["candidates"][best], "bundle_id": "0" * 16}
    tampered = {**evaluation, "candidates": {**evaluation["candidates"], best: retrained}}
    for contents, refusal in (
        (None, "no reports/evaluation.json: run `sail evaluate` first"),
        (
            json.dumps(tampered).encode(),
            f"bundle {retrained['bundle']} changed since it was evaluated: run `sail evaluate` "
            "again",
        ),
    ):
        report.unlink(missing_ok=True)
        if contents is not None:
            report.write_bytes(contents)
        gated = sail(project, "gate")
        assert gated.returncode == 1 and last_line(gated) == f"sail gate: error: {refusal}"
        assert not (project / "reports" / "gate.json").exists()
    report.write_bytes(written)


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
    assert sorted(set(os.listdir(hidden)) - COMPILED) == BUNDLE_FILES
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
    evaluation_is_checked_by_the_gate(project)

    # The next run needs no cleanup: DVC clears the stage's outputs, leftovers included.
    ok(sail(project, "run"))
    assert sorted(d.name for d in candidates.iterdir()) == [
        "extra_trees",
        "gradient_boosting",
        "logistic_regression",
        "random_forest",
    ]
