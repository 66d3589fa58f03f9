"""The importance step's added time to `sail run`: permutation importance per source column (5
repeats) and mean |contribution| of the winner on the test split (evaluation/importance.py).

    .venv/bin/python benchmarks/importance.py [--dataset weather] [--project DIR]

It bakes and runs a project as a user would (the template's example, or one of the public tables
of tests/datasets.py), times `sail run`, then times the importance step alone on the run's winner
(median of 3, in-process, by the runtime that serves it) and prints it as a share of the run.
The figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import sail
from sail_pipelines.config import ProjectPaths
from sail_pipelines.config.params import load_params
from sail_pipelines.contract.data import read_csv
from sail_pipelines.evaluation import importance
from sail_pipelines.integrity import signing
from sail_pipelines.integrity.bundle import load_bundle
from serve import CHOICES, EXAMPLE, KEY, bake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=CHOICES, default=EXAMPLE)
    parser.add_argument("--project", type=Path, help="a project after `sail run`")
    args = parser.parse_args()
    os.environ["SAIL_SIGNING_KEY"] = KEY
    os.environ.update(
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.invalid",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.invalid",
    )
    with tempfile.TemporaryDirectory() as scratch:
        project = args.project or bake(args.dataset, Path(scratch), fallback=False)
        run_seconds = None
        if not args.project:
            run_seconds, _ = sail(project, "run")
        params = load_params(ProjectPaths(project))
        evaluation = json.loads((project / "reports" / "evaluation.json").read_text())
        winner = evaluation["candidates"][evaluation["best"]]
        verify = signing.private_key(KEY, "bench").verify_key
        bundle = load_bundle(project / winner["bundle"], verify)
        test = read_csv(project / "data" / "split" / "test.csv")
        times = []
        for _ in range(3):
            started = time.perf_counter()
            found = importance.importance(
                bundle,
                test,
                params.gate.primary_metric,
                winner["inference"]["runtime"],
                params.split.seed,
            )
            times.append(time.perf_counter() - started)
        step = statistics.median(times)
        columns = len(found["permutation"])
        print(
            f"dataset {args.dataset}: winner {evaluation['best']} "
            f"({winner['inference']['runtime']}), {len(test)} test rows, {columns} source columns, "
            f"{found['repeats']} repeats"
        )
        print(
            f"importance step: {step:.2f} s (median of 3: {', '.join(f'{t:.2f}' for t in times)})"
        )
        if run_seconds:
            share = 100 * step / run_seconds
            print(f"sail run: {run_seconds:.1f} s; the importance step adds {share:.1f}%")


if __name__ == "__main__":
    main()
