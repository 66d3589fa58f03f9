"""Search scale-out as the README documents it: several `sail train --candidate` processes, each
in its own checkout, sharing one SAIL_SEARCH_STORAGE on a real PostgreSQL server (Debian's
`postgresql` package, started here as an unprivileged user and stopped at the end)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml

from ci_rules import missing
from conftest import TEST_KEY, key_env, ok
from sail_pipelines.integrity import signing
from sail_pipelines.integrity.bundle import load_bundle

pytestmark = pytest.mark.slow

LR = "logistic_regression"
TRIALS = 10  # not the example's 8: the budget the test sets is the one that runs
SERVER_USER = "postgres"  # the Debian package's system user; the server refuses to run as root


def _binaries() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not found:
        missing("no PostgreSQL server (/usr/lib/postgresql/*/bin): install Debian's `postgresql`")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A throwaway server on 127.0.0.1 (trust auth, socket in its own folder); its base URL."""
    try:
        import psycopg  # noqa: F401  # the driver the storage URL names
    except ImportError:
        missing("psycopg is not installed: pip install 'psycopg[binary]' (the test extra)")
    bin_dir = _binaries()
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="sail-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(SERVER_USER)
        except KeyError:
            shutil.rmtree(folder)
            missing(f"no `{SERVER_USER}` user to run the PostgreSQL server as (not as root)")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", SERVER_USER, "--"]
    data, port = folder / "data", _free_port()

    def run(*args: str) -> None:
        result = subprocess.run(
            [*as_user, *args], capture_output=True, text=True, timeout=120, cwd=folder
        )
        assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout}\n{result.stderr}"

    ctl = str(bin_dir / "pg_ctl")
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "sail", "--auth=trust", "--no-sync")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        logged = ["-D", str(data), "-l", str(folder / "log")]
        run(ctl, "start", "-w", "-t", "60", *logged, "-o", options)
        yield f"postgresql+psycopg://sail@127.0.0.1:{port}"
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            run(ctl, "stop", "-m", "fast", "-w", "-D", str(data))
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def storage(postgres):
    """A fresh database on the server for one test: the SAIL_SEARCH_STORAGE URL."""
    import psycopg

    name = f"search_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.replace("+psycopg", "") + "/postgres", autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return f"{postgres}/{name}"


def checkout(pipeline_project: Path, where: Path) -> Path:
    """A worker's own copy of the run project, its candidate's budget set to TRIALS trials."""
    project = where / pipeline_project.name
    shutil.copytree(pipeline_project, project, symlinks=True)
    raw = yaml.safe_load((project / "params.yaml").read_text())
    block = next(c for c in raw["candidates"] if c["name"] == LR)["search"]
    block.update(trials=TRIALS, folds=3)
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return project


def start(project: Path, url: str, patch: str = "") -> subprocess.Popen:
    """`sail train --candidate` in the background, optionally after a patch (Python source run
    first, in the same process: a stall or a shorter wait the test needs)."""
    script = textwrap.dedent(patch) + textwrap.dedent(f"""
        from sail_pipelines.cli import main
        sys.exit(main(["--project", {str(project)!r}, "train", "--candidate", {LR!r}]))
    """)
    return subprocess.Popen(
        [sys.executable, "-c", "import sys\n" + script],
        env={**os.environ, **key_env(TEST_KEY), "SAIL_SEARCH_STORAGE": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    try:
        out, err = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def searched(project: Path) -> dict:
    """The search summary the candidate's (verified) bundle carries."""
    bundle = load_bundle(
        project / "models" / "candidates" / LR, signing.private_key(TEST_KEY, "test")
    )
    return bundle.metadata["search"]


def trials_of(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=url).get_trials()


def only_study(url: str) -> str:
    names = optuna.get_all_study_names(storage=url)
    assert len(names) == 1, names
    return names[0]


OPENER = """
import sys, time
from sail_pipelines.training.study import open_storage
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))  # all at once: the race to create the tables
open_storage(sys.argv[1])
"""


@pytest.mark.parametrize("round_", range(3))
def test_workers_opening_a_fresh_database_at_once_all_get_the_storage(storage, round_):
    """Six workers create Optuna's tables in one new database at the same moment: PostgreSQL
    tells the losers a table "already exists" (a DuplicateTable, seen once in a full suite run);
    that is a race, retried, not a failure."""
    at = time.time() + 3  # after every interpreter has started
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, storage, str(at)], stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    errors = [finish_opener(worker) for worker in workers]
    assert errors == [""] * len(workers), errors
    assert optuna.get_all_study_names(storage=storage) == []  # usable: an empty storage


def finish_opener(worker: subprocess.Popen) -> str:
    _, err = worker.communicate(timeout=120)
    return (
        ""
        if worker.returncode == 0
        else (err.strip() or f"exit {worker.returncode}").splitlines()[-1]
    )


def test_two_trains_run_one_budget_on_postgres_and_a_rerun_only_refits(
    pipeline_project, tmp_path, storage
):
    projects = [checkout(pipeline_project, tmp_path / worker) for worker in ("a", "b")]
    workers = [start(project, storage) for project in projects]  # at the same time
    results = [ok(finish(worker)) for worker in workers]
    summaries = [searched(project) for project in projects]
    study = summaries[0]["study"]
    assert only_study(storage) == study == summaries[1]["study"]  # one study, both bundles
    trials = trials_of(storage, study)
    assert sorted(t.number for t in trials) == list(range(TRIALS))  # the budget ran once
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    pids = {f":{worker.pid}-" for worker in workers}
    assert all(any(pid in t.user_attrs["worker"] for pid in pids) for t in trials)
    assert summaries[0]["history"] == summaries[1]["history"]  # each waited for the other's
    assert summaries[0]["trials"] == TRIALS and "sail@" not in summaries[0]["storage"]
    assert not any("Traceback" in result.stderr for result in results)

    rerun = start(projects[0], storage)
    result = ok(finish(rerun))
    assert (
        f"search for '{LR}': study {study} had no trial left to run, its {TRIALS} trials ran "
        "in other runs; refitting its best"
    ) in result.stderr.splitlines()
    assert sorted(t.number for t in trials_of(storage, study)) == list(range(TRIALS))
    again = searched(projects[0])
    assert again["study"] == study and again["history"] == summaries[0]["history"]
    assert again["best"] == summaries[0]["best"]  # refitted on the same winner
    assert not any(f":{rerun.pid}-" in t["worker"] for t in again["history"])


def test_a_creator_stopping_before_its_queue_is_complete_is_one_line_for_the_others(
    pipeline_project, tmp_path, storage
):
    project = checkout(pipeline_project, tmp_path)
    bundle = project / "models" / "candidates" / LR / "metadata.json"
    before = bundle.read_bytes()
    # The creator dies (SIGKILL) after queueing 3 of its trials, before it marks the queue whole.
    creator = start(
        project,
        storage,
        """
        import os, signal, optuna
        queue = optuna.study.Study.enqueue_trial
        def enqueue(self, *args, **kwargs):
            queue(self, *args, **kwargs)
            if len(self.get_trials(deepcopy=False)) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        optuna.study.Study.enqueue_trial = enqueue
        """,
    )
    assert finish(creator).returncode == -signal.SIGKILL
    study = only_study(storage)
    # The next worker waits for the queue (a minute; 2 s here), then stops with one line.
    joiner = finish(
        start(
            project,
            storage,
            "import sail_pipelines.training.study as s; s.QUEUE_WAIT_SECONDS = 2\n",
        )
    )
    assert joiner.returncode == 1
    assert joiner.stderr.strip().splitlines() == [
        f"sail train: error: the shared search study {study} never got its trial queue: "
        "its creator stopped early; delete the study from the storage, rerun"
    ]
    trials = trials_of(storage, study)
    assert [(t.number, t.state.name) for t in trials] == [(n, "WAITING") for n in range(3)]
    assert bundle.read_bytes() == before  # nothing trained on a half-made study

    optuna.delete_study(study_name=study, storage=storage)  # what the line says to do
    rerun = ok(finish(start(project, storage)))
    assert "Traceback" not in rerun.stderr
    assert len(trials_of(storage, study)) == TRIALS == searched(project)["trials"]


def test_a_creator_stopped_mid_search_leaves_one_failed_trial_and_a_line_saying_so(
    pipeline_project, tmp_path, storage
):
    project = checkout(pipeline_project, tmp_path)
    # The creator stalls in trial 2, and is stopped there (SIGTERM, as a cancelled CI job).
    creator = start(
        project,
        storage,
        """
        import time
        from sail_pipelines.training import search
        score = search.cv_score
        def stall(params, problem, metric, cuts, trial=None):
            if trial is not None and trial.number == 2:
                time.sleep(3600)
            return score(params, problem, metric, cuts, trial)
        search.cv_score = stall
        """,
    )
    try:
        watch, running = optuna.storages.RDBStorage(storage), []
        deadline = time.monotonic() + 300
        while running != [2] and creator.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            for study in watch.get_all_studies():  # none until the creator made it
                study_id = watch.get_study_id_from_name(study.study_name)
                trials = watch.get_all_trials(study_id, deepcopy=False)
                running = [t.number for t in trials if t.state.name == "RUNNING"]
        assert running == [2], "the creator never reached its stalling trial"
    finally:
        creator.send_signal(signal.SIGTERM)
        finish(creator)
    assert creator.returncode == -signal.SIGTERM
    study = only_study(storage)
    # The next run claims what is left and fails the dead trial once its heartbeat is stale
    # (after 30 s; 1 s here).
    rerun = finish(
        start(project, storage, "import sail_pipelines.training.study as s; s.GRACE_SECONDS = 1\n")
    )
    ok(rerun)
    assert (
        f"search for '{LR}': study {study}: trial(s) 2 were left running by a worker that "
        "stopped (no heartbeat); counted as failed, not rerun"
    ) in rerun.stderr.splitlines()
    assert "Traceback" not in rerun.stderr
    states = {t.number: t.state.name for t in trials_of(storage, study)}
    assert sorted(states) == list(range(TRIALS)) and states.pop(2) == "FAIL"
    assert set(states.values()) <= {"COMPLETE", "PRUNED"}
    summary = searched(project)
    assert summary["study"] == study and summary["trials"] == TRIALS
    assert summary["history"][2]["error"] == "its worker stopped (no heartbeat)"
