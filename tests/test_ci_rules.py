"""The one rule for CI (tests/ci_rules.py) and its hook that turns any skip into a failure under
CI, run by a separate pytest on a small test file; and no variable of the CI running the suite
reaching a test (conftest.py clears them)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ci_rules import under_ci

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "pipelines" / "src" / "sail_pipelines"
READ = re.compile(r'(?:environ|env)(?:\.get\(|\[)\s*"([A-Z][A-Z0-9_]*)"')
# Read by the code and kept: where the tools are, where the Docker daemon is, the login name.
MACHINE = {"PATH", "DOCKER_HOST", "USER"}
SAMPLE = """
import pytest

def test_skipped():
    pytest.skip("groovy is not installed")

@pytest.mark.skipif(True, reason="no Docker")
def test_marked():
    pass

@pytest.mark.xfail(reason="a known bug")
def test_expected_failure():
    assert False

def test_plain():
    pass
"""


@pytest.mark.parametrize(
    "value, ci",
    [
        (None, False),
        ("", False),
        ("0", False),
        ("false", False),
        ("False", False),
        ("FALSE", False),
        ("true", True),
        ("1", True),
        ("yes", True),
        ("TRUE", True),
        (" false", True),
    ],
)
def test_what_counts_as_ci(monkeypatch, value, ci):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert under_ci() is ci


def sample_run(tmp_path: Path, ci: str) -> str:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = dict(os.environ, CI=ci, PYTHONPATH=str(TESTS))
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "ci_rules",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rA",
        "test_sample.py",
    ]
    proc = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    return proc.stdout


@pytest.mark.slow
def test_under_ci_a_skip_is_a_failure(tmp_path):
    out = sample_run(tmp_path, "true")
    because = "skipped under CI, where every test must run"
    assert f"FAILED test_sample.py::test_skipped - {because}: groovy is not installed" in out, out
    assert f"ERROR test_sample.py::test_marked - {because}: no Docker" in out, out
    assert out.strip().splitlines()[-1].startswith("1 failed, 1 passed, 1 xfailed, 1 error"), out


@pytest.mark.slow
def test_elsewhere_a_skip_stays_a_skip(tmp_path):
    out = sample_run(tmp_path, "false")
    assert "SKIPPED [1] test_sample.py:5: groovy is not installed" in out, out
    assert out.strip().splitlines()[-1].startswith("1 passed, 2 skipped, 1 xfailed"), out


def variables_the_code_reads() -> set[str]:
    return {name for path in PACKAGE.rglob("*.py") for name in READ.findall(path.read_text())}


def test_no_variable_the_code_reads_leaks_in():
    leaked = sorted(name for name in variables_the_code_reads() - MACHINE if name in os.environ)
    assert leaked == []


@pytest.mark.slow
def test_they_are_cleared_even_when_the_ci_sets_them():
    """The test above, in a pytest whose environment sets every one of them, as a CI job would."""
    names = variables_the_code_reads() - MACHINE
    assert {
        "BUILD_USER_ID",
        "GITHUB_ACTOR",
        "GITHUB_STEP_SUMMARY",
        "GITHUB_EVENT_PATH",
        "CHANGE_ID",
    } <= names
    env = dict(os.environ, **dict.fromkeys(names, "set-by-the-ci"))
    test = f"{Path(__file__).name}::test_no_variable_the_code_reads_leaks_in"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", test]
    proc = subprocess.run(command, cwd=TESTS, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-3000:]
