"""How long `sail run` takes when nothing changed since the last successful run.

    .venv/bin/python benchmarks/noop_run.py [--runs 5]

A project is generated with the default answers and run once in full; then `sail run` is timed
--runs times with nothing changed (the median and the spread are printed), and once with
`--force`, which gates, pushes and smoke-tests again over DVC's skipped stages. Printed, never
asserted (goal: at most 5 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

from _common import ROOT, sail
from sail_pipelines.integrity import signing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    pair = signing.generate()
    env = {**os.environ, "SAIL_SIGNING_KEY": pair.text(), "SAIL_VERIFY_KEY": pair.verify_key.text()}
    with tempfile.TemporaryDirectory() as scratch:
        project = Path(
            cookiecutter(str(ROOT / "cookiecutter-sail"), no_input=True, output_dir=scratch)
        )
        full = sail(project, "run", env=env)[0]
        skipped = [sail(project, "run", env=env)[0] for _ in range(args.runs)]
        forced = sail(project, "run", "--force", env=env)[0]
    print(f"first run (train, evaluate, gate, push, smoke test): {full:.1f} s")
    print(
        f"no-op run, median of {args.runs}: {statistics.median(skipped):.2f} s "
        f"(min {min(skipped):.2f}, max {max(skipped):.2f}; goal <= 5 s)"
    )
    print(f"forced run (DVC stages skipped; gate, push, smoke test again): {forced:.1f} s")


if __name__ == "__main__":
    main()
