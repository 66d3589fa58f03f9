"""Seconds per test module from the JUnit XML `make test` writes, for a before/after per module.

    python3 benchmarks/suite_modules.py [build/test-results/junit.xml] [--before OLD.xml]

Each test's time is its setup, call and teardown (pytest's junit_duration_report default), so a
module fixture's cost lands on the module's first test, and the sum over modules is worker time:
on two xdist workers, about twice the wall time. Sorted by seconds, slowest first; with --before
a second column and the change. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[1] / "build" / "test-results" / "junit.xml"


def per_module(report: Path) -> dict[str, tuple[int, float]]:
    """module -> (tests, seconds) of one JUnit XML report."""
    tests: dict[str, int] = defaultdict(int)
    seconds: dict[str, float] = defaultdict(float)
    for case in ET.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "?").split(".")[:2]  # tests.test_x[.Class]
        name = ".".join(module) if module[0] == "tests" else module[0]
        tests[name] += 1
        seconds[name] += float(case.get("time") or 0)
    return {name: (tests[name], seconds[name]) for name in tests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, nargs="?", default=DEFAULT)
    parser.add_argument("--before", type=Path, help="an earlier run's JUnit XML")
    args = parser.parse_args()
    after = per_module(args.report)
    before = per_module(args.before) if args.before else {}
    print(f"{'module':<44} {'tests':>5} {'seconds':>9}" + ("  before   change" if before else ""))
    for name in sorted(set(after) | set(before), key=lambda n: -after.get(n, (0, 0.0))[1]):
        count, spent = after.get(name, (0, 0.0))
        line = f"{name:<44} {count:>5} {spent:>9.1f}"
        if before:
            old = before.get(name, (0, 0.0))[1]
            line += f" {old:>8.1f} {spent - old:>+8.1f}"
        print(line)
    total = sum(spent for _, spent in after.values())
    line = f"{'total (worker seconds)':<44} {sum(c for c, _ in after.values()):>5} {total:>9.1f}"
    if before:
        old_total = sum(spent for _, spent in before.values())
        line += f" {old_total:>8.1f} {total - old_total:>+8.1f}"
    print(line)


if __name__ == "__main__":
    main()
