"""One rule for "this is CI", and what follows from it (a pytest plugin, loaded by conftest.py).

CI counts when the variable CI is set to anything but "", "0" or "false" (any case): GitHub
Actions sets CI=true, this repository's Jenkinsfile and .ci/run set it too, and the Makefile
applies the same rule. Under CI nothing may pass by not running, or by being expected to fail:
a missing tool or service fails the test instead of skipping it, and any skip that happens anyway
(a test's, a module's, an importorskip), any xfail (marked, called, or not run) and any XPASS is
turned into a failure.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

NOT_CI = ("", "0", "false")


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() not in NOT_CI


# Read once, when the plugin loads: conftest.py then clears CI for the tests (the `sail` they
# start must not take the suite's CI for its own), but the suite still runs under it.
SUITE_UNDER_CI = under_ci()


def missing(message: str) -> NoReturn:
    """What a test needs is missing: a skip on a developer's machine, a failure under CI."""
    if SUITE_UNDER_CI:
        pytest.fail(message)
    pytest.skip(message)


def _as_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not SUITE_UNDER_CI:
        return
    xfail = getattr(report, "wasxfail", None)
    if xfail is not None:  # xfailed (reported as skipped) or XPASS (reported as passed)
        how = "failed as expected" if report.skipped else "passed"
        del report.wasxfail
        report.outcome = "failed"
        because = f": {xfail}" if xfail else ""
        report.longrepr = f"xfail under CI, where every test must pass ({how}){because}"
    elif report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reason = str(reason).removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where every test must run: {reason}"


# Outermost (tryfirst), so pytest's own xfail handling has marked the report when this reads it.
@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _as_failure(outcome.get_result())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _as_failure(outcome.get_result())
