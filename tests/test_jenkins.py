"""The Jenkins front end: shared-library/, the generated project's Jenkinsfile and this
repository's.

Jenkins cannot run here, so tests/jenkins/ runs those pipeline scripts under stubs of every Jenkins
step (JenkinsPipelineUnit-style), all in one groovy process, and checks stage order, the gate and
pull-request paths, promotion, parallel training, credentials and the `sail` command sequences of
tests/ci_parity.yaml (see tests/jenkins/README.md). This file runs it and shows its output when it
fails. Without groovy the tests skip on a developer's machine and FAIL under CI (tests/ci_rules.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ci_rules import missing

pytestmark = pytest.mark.slow  # a JVM (groovy) per test

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "jenkins" / "run.groovy"
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$")
RESULT = re.compile(r"^(PASS|FAIL)  (.+)$")
# Every check of tests/jenkins/HarnessMain.groovy, by name: one dropped or renamed fails here.
CHECKS = (
    "every vars/*.groovy step has a vars/*.txt beside it",
    "main: the stages run in order and the build succeeds",
    "main: sail commands equal ci_parity.yaml push-main, then promote",
    "main: every sail command runs in its own stage, on the agent",
    "main, gate fails: the report still runs, nothing after the gate (ci_parity "
    "push-main-gate-fails)",
    "pull request: report posted, no push, no deploy, no approval (ci_parity pull-request)",
    "pull request: the report is posted to the repository of CHANGE_URL, or the one configured",
    "other branches: judged and reported like a pull request, registered and delivered nowhere",
    "pull request, gate fails: the report is still posted",
    "promotion: input with submitter, no agent or lock while waiting; milestone and "
    "lock around promote",
    "promotion: sail evidence runs before the input, whose message carries its line",
    "promotion: the first model promotes with --expect-champion none",
    "promotion: a rejected input promotes nothing and aborts the build",
    "promotion: a build superseded by a newer approved one stops at the milestone",
    "project tests: a failing one fails the build before anything is built or trained, its "
    "summary in the log (ci_parity tests-fail)",
    "training: one parallel branch per candidate, each running its own container",
    "training: a failing candidate fails the build before evaluation",
    "credentials: bound by withCredentials only where needed, never in sh or echo text",
    "credentials: a secret given in config.environment is refused before any sail command",
    "settings: environment reaches every sail command; bad settings are refused with one line",
    "stores, nothing configured: sail doctor --ci heads the log; the gate refuses with one line, "
    "nothing after it",
    "stores, team environment: sail doctor --ci says every step keeps its work; the build delivers",
    "generated Jenkinsfile (default answers): pins the library release and runs the pipeline",
    "generated Jenkinsfile (custom answers): release tag, approvers and candidates flow through",
    "this repository's Jenkinsfile: bakes the template, runs make test, keeps junit "
    "results even on failure",
    (
        "monitoring: a cron trigger on main once a log is named; its builds run only sail monitor "
        "(ci_parity monitor)"
    ),
    (
        "monitoring: a breach fails the build; with retrain it starts a full build of the job, "
        "without it none"
    ),
    "monitoring: a monitor that fails without judging (no report) starts no retraining",
    "monitoring: bad monitor settings are refused with one line before any sail command",
    "generated Jenkinsfile (retrain_on_breach yes): monitoring retrains once its log is named",
    "harness: the docs check flags a step without .txt and a .txt without step",
    "harness: the leak checks catch a step that interpolates a secret in Groovy",
    "harness: the parity check catches a missing sail command",
    "harness: the promotion check catches an input that holds an executor",
    "harness: sh outside an agent fails the build, as in Jenkins",
    "harness: an unknown step fails the build and names the step",
)


def run_harness(*args: str) -> subprocess.CompletedProcess:
    groovy = shutil.which("groovy")
    if groovy is None:
        missing("groovy is not installed (apt-get install groovy, or docker/prepare-machine)")
    # The harness bakes the template and asks `sail` and PyYAML, from the virtualenv running us.
    env = dict(os.environ, SAIL_VENV_BIN=str(Path(sys.executable).parent))
    # Debian's groovy looks for /usr/lib/jvm/default-java unless JAVA_HOME names a JDK.
    if not (Path(env.get("JAVA_HOME", "/nonexistent")) / "bin" / "java").is_file():
        java = shutil.which("java")
        if java is None:
            missing("java is not installed (groovy needs it)")
        env["JAVA_HOME"] = str(Path(java).resolve().parents[1])
    return subprocess.run(
        [groovy, str(HARNESS), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def counts(result: subprocess.CompletedProcess) -> tuple[int, int]:
    lines = result.stdout.strip().splitlines()
    match = SUMMARY.match(lines[-1]) if lines else None
    assert match, f"no 'N passed, N failed' line (exit {result.returncode})\n{shown(result)}"
    return int(match[1]), int(match[2])


def shown(result: subprocess.CompletedProcess) -> str:
    return f"stdout:\n{result.stdout[-12000:]}\nstderr:\n{result.stderr[-4000:]}"


def results(result: subprocess.CompletedProcess) -> dict[str, str]:
    """{check name: PASS or FAIL} from the harness's output."""
    return {m[2]: m[1] for m in map(RESULT.match, result.stdout.splitlines()) if m}


def test_jenkins_harness_passes():
    result = run_harness()
    assert results(result) == dict.fromkeys(CHECKS, "PASS"), shown(result)
    assert counts(result) == (len(CHECKS), 0) and result.returncode == 0, shown(result)


def test_jenkins_harness_can_fail():
    """A deliberately failing check (a step that leaks a secret, claimed clean) fails the
    harness."""
    result = run_harness("--demo-failure")
    assert counts(result) == (0, 1) and result.returncode == 1, shown(result)
    assert "shows a secret: sail publish --password ****" in result.stdout, shown(result)
