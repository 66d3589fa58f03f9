"""The one rule for CI (tests/ci_rules.py) and its hooks that turn any skip, xfail or XPASS into
a failure under CI, run by a separate pytest on small test files; and no variable of the CI
running the suite reaching a test (conftest.py clears them)."""

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
# Read by the code and kept: where the tools are, where the Docker daemon is, the login name, and
# the import path `sail test` extends with the project's src/.
MACHINE = {"PATH", "DOCKER_HOST", "USER", "PYTHONPATH"}


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


# Every way a test can pass without running, or by failing as expected. Under CI each one fails;
# elsewhere pytest reports them as usual. No ini file: xfail is not strict here.
SAMPLES = {
    "test_sample.py": """
import pytest

def test_skipped():
    pytest.skip("groovy is not installed")

@pytest.mark.skipif(True, reason="no Docker")
def test_marked():
    pass

@pytest.mark.xfail(reason="a known bug")
def test_expected_failure():
    assert False

def test_called_xfail():
    pytest.xfail("not supported here")

@pytest.mark.xfail(run=False, reason="hangs")
def test_not_run():
    pass

@pytest.mark.xfail(reason="fixed since")
def test_xpass():
    pass

def test_plain():
    pass
""",
    "test_importorskip.py": """
import pytest

pytest.importorskip("no_such_module_for_sail")

def test_needs_it():
    pass
""",
    "test_module_skip.py": """
import pytest

pytest.skip("no GPU on this machine", allow_module_level=True)

def test_on_gpu():
    pass
""",
}


def sample_run(folder: Path, ci: str) -> str:
    """The samples under a separate pytest with only this plugin (no plugins of the environment:
    quicker, and nothing else decides outcomes), every module collected despite errors."""
    for name, text in SAMPLES.items():
        (folder / name).write_text(text)
    env = dict(os.environ, CI=ci, PYTHONPATH=str(TESTS), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    command = [sys.executable, "-m", "pytest", "-p", "ci_rules", "-p", "no:cacheprovider"]
    command += ["-q", "-rA", "--continue-on-collection-errors", *SAMPLES]
    proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    return proc.stdout


@pytest.fixture(scope="module")
def under_ci_run(tmp_path_factory) -> str:
    return sample_run(tmp_path_factory.mktemp("ci"), "true")


@pytest.fixture(scope="module")
def elsewhere_run(tmp_path_factory) -> str:
    return sample_run(tmp_path_factory.mktemp("not-ci"), "false")


SKIPPED = "skipped under CI, where every test must run"
XFAIL = "xfail under CI, where every test must pass"


@pytest.mark.parametrize(
    "line",
    [
        f"FAILED test_sample.py::test_skipped - {SKIPPED}: groovy is not installed",
        f"ERROR test_sample.py::test_marked - {SKIPPED}: no Docker",
        f"FAILED test_sample.py::test_expected_failure - {XFAIL} (failed as expected): a known bug",
        f"FAILED test_sample.py::test_called_xfail - {XFAIL} (failed as expected): not supported",
        f"ERROR test_sample.py::test_not_run - {XFAIL} (failed as expected): [NOTRUN] hangs",
        f"FAILED test_sample.py::test_xpass - {XFAIL} (passed): fixed since",
        f"ERROR test_importorskip.py - {SKIPPED}: could not import 'no_such_module_for_sail'",
        f"ERROR test_module_skip.py - {SKIPPED}: no GPU on this machine",
    ],
    ids=lambda line: line.split(" - ")[0].split("::")[-1],
)
def test_under_ci_nothing_passes_without_running(under_ci_run, line):
    assert any(shown.startswith(line) for shown in under_ci_run.splitlines()), under_ci_run


def test_under_ci_only_the_plain_test_passes(under_ci_run):
    last = under_ci_run.strip().splitlines()[-1]
    assert last.startswith("4 failed, 1 passed, 4 errors"), under_ci_run


def test_elsewhere_skips_and_xfails_stay_what_they_are(elsewhere_run):
    assert "SKIPPED [1] test_sample.py:5: groovy is not installed" in elsewhere_run, elsewhere_run
    assert "XPASS test_sample.py::test_xpass - fixed since" in elsewhere_run, elsewhere_run
    last = elsewhere_run.strip().splitlines()[-1]
    assert last.startswith("1 passed, 4 skipped, 3 xfailed, 1 xpassed"), elsewhere_run


def test_this_suite_makes_xfail_strict(pytestconfig):
    """An unexpected pass of a test marked xfail fails everywhere, not only under CI."""
    assert pytestconfig.getini("xfail_strict") is True


def variables_the_code_reads() -> set[str]:
    return {name for path in PACKAGE.rglob("*.py") for name in READ.findall(path.read_text())}


def test_no_variable_the_code_reads_leaks_in():
    leaked = sorted(name for name in variables_the_code_reads() - MACHINE if name in os.environ)
    assert leaked == []


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
    env = dict(
        os.environ, **dict.fromkeys(names, "set-by-the-ci"), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"
    )
    test = f"{Path(__file__).name}::test_no_variable_the_code_reads_leaks_in"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", test]
    proc = subprocess.run(command, cwd=TESTS, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-3000:]
