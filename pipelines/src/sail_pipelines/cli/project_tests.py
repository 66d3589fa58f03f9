"""`sail test`: the project's own tests (its tests/: the transformation layer, the data contract,
params.yaml), run by pytest. CI runs it first, so a broken STL or contract stops the pipeline
before an image is built or a candidate trained.

pytest's own report goes to the log (stderr; stdout keeps the one JSON result), its JUnit XML is
read back for the counts and the failures, which go to the job summary when GITHUB_STEP_SUMMARY
is set and into the one-line error."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sail_pipelines.config import ProjectPaths
from sail_pipelines.errors import SailError

# pytest's exit statuses other than 0 (all passed) and 1 (some failed)
STOPPED = {2: "was interrupted", 3: "failed internally", 4: "was misused", 5: "collected no tests"}


@dataclass(frozen=True)
class Outcome:
    """What one pytest run found: counts, and each failed or erroring test with its message."""

    passed: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (test id, first line)
    seconds: float = 0.0

    @property
    def counts(self) -> str:
        parts = [(len(self.failures), "failed"), (self.passed, "passed"), (self.skipped, "skipped")]
        return ", ".join(f"{n} {what}" for n, what in parts if n) or "no tests"


def read_junit(path: Path) -> Outcome:
    """The counts and failures of a pytest JUnit XML report (junit_family xunit1: each testcase
    names its file)."""
    passed = skipped = 0
    failures: list[tuple[str, str]] = []
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        where = case.get("file") or case.get("classname", "")
        test = f"{where}::{case.get('name', '')}"
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            message = (bad.get("message") or bad.text or "").strip().splitlines()
            failures.append((test, message[0] if message else ""))
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    seconds = sum(float(suite.get("time", 0)) for suite in root.iter("testsuite"))
    return Outcome(passed, skipped, failures, seconds)


def cell(text: str) -> str:
    """Text that stays inside one Markdown table cell."""
    return text.replace("|", "\\|")


def markdown(outcome: Outcome, status: int) -> str:
    """The job summary's section: the verdict and counts, then a row per failed test."""
    mark = "✅" if status == 0 else "❌"
    lines = [
        f"### {mark} sail test: the project's tests",
        "",
        f"{outcome.counts} in {outcome.seconds:.1f} s"
        + (f"; pytest {STOPPED[status]}" if status in STOPPED else ""),
    ]
    if outcome.failures:
        lines += ["", "| Test | Failure |", "| --- | --- |"]
        lines += [f"| `{test}` | {cell(message)} |" for test, message in outcome.failures]
    return "\n".join(lines) + "\n"


def command(junit: Path, extra: Sequence[str]) -> list[str]:
    """pytest in the project, as its pyproject configures it; no cache folder in the workspace."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-rfE",
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit1",
        *extra,
    ]


def run(
    paths: ProjectPaths,
    extra: Sequence[str],
    env: Mapping[str, str],
    say: Callable[[str], None],
) -> dict:
    """Run the project's tests; raise SailError naming the failures unless every one passed."""
    if not (paths.root / "tests").is_dir():
        raise SailError(f"{paths.root / 'tests'} does not exist: the project's tests live there")
    if importlib.util.find_spec("pytest") is None:
        raise SailError(
            "pytest is not installed where sail runs: pip install 'sail-pipelines[pipeline]'"
        )
    # src/ importable even where the project's pyproject predates `pythonpath = ["src"]`
    child = dict(env, PYTHONPATH=os.pathsep.join(filter(None, ["src", env.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory(prefix="sail-test-") as tmp:
        junit = Path(tmp) / "junit.xml"
        say(f"sail test: {' '.join(['pytest', *extra])} in {paths.root}")
        status = subprocess.run(
            command(junit, extra), cwd=paths.root, env=child, stdout=sys.stderr, check=False
        ).returncode
        outcome = read_junit(junit) if junit.is_file() else Outcome()
    result = {
        "passed": outcome.passed,
        "failed": len(outcome.failures),
        "skipped": outcome.skipped,
        "job_summary": False,
    }
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(markdown(outcome, status))
        except OSError as exc:
            raise SailError(
                f"cannot append to the job summary GITHUB_STEP_SUMMARY={summary}: {exc.strerror}"
            ) from exc
        result["job_summary"] = True
    if outcome.failures:
        names = ", ".join(test for test, _ in outcome.failures[:3])
        more = f" and {len(outcome.failures) - 3} more" if len(outcome.failures) > 3 else ""
        raise SailError(
            f"{len(outcome.failures)} of the project's tests failed ({outcome.counts}): "
            f"{names}{more}; pytest's report is above"
        )
    if status != 0:
        raise SailError(f"pytest {STOPPED.get(status, f'exited {status}')} in {paths.root}")
    return result
