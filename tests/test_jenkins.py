"""The Jenkins front end: shared-library/, the generated project's Jenkinsfile and this repository's.

Jenkins cannot run here, so tests/jenkins/ runs those pipeline scripts under stubs of every Jenkins
step (JenkinsPipelineUnit-style), all in one groovy process, and checks stage order, the gate and
pull-request paths, promotion, parallel training, credentials and the `sail` command sequences of
tests/ci_parity.yaml (see tests/jenkins/README.md). This file runs it and shows its output when it
fails. Without groovy the tests skip on a developer's machine and FAIL under CI=true.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "jenkins" / "run.groovy"
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$")


def missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


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
    return subprocess.run([groovy, str(HARNESS), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def counts(result: subprocess.CompletedProcess) -> tuple[int, int]:
    lines = result.stdout.strip().splitlines()
    match = SUMMARY.match(lines[-1]) if lines else None
    assert match, f"no 'N passed, N failed' line (exit {result.returncode})\n{shown(result)}"
    return int(match[1]), int(match[2])


def shown(result: subprocess.CompletedProcess) -> str:
    return f"stdout:\n{result.stdout[-12000:]}\nstderr:\n{result.stderr[-4000:]}"


def test_jenkins_harness_passes():
    result = run_harness()
    passed, failed = counts(result)
    assert result.returncode == 0 and failed == 0 and passed >= 25, shown(result)


def test_jenkins_harness_can_fail():
    """A deliberately failing check (a step that leaks a secret, claimed clean) fails the harness."""
    result = run_harness("--demo-failure")
    assert counts(result) == (0, 1) and result.returncode == 1, shown(result)
    assert "shows a secret: sail publish --password ****" in result.stdout, shown(result)
