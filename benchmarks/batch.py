"""Batch scoring at scale: `sail predict` on a 1,000,000-row file, rows per second and peak memory.

    make bench-batch      (or: .venv/bin/python benchmarks/batch.py [--rows 1000000])

A default project is generated and run once; its data is resampled (with jitter) to the asked
number of rows, written as CSV and as Parquet, and each is scored by the real `sail predict` in
its own process. The figures are printed, never asserted (goal: peak RSS <= 500 MB).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from cookiecutter.main import cookiecutter

from _common import ROOT, sail
from sail_pipelines.integrity import signing

KEY = signing.generate().text()  # a fresh Ed25519 pair for this run
ENV = {**os.environ, "SAIL_SIGNING_KEY": KEY}


def measured(command: list[str]) -> tuple[float, float]:
    """Wall time and peak resident memory (MB) of one command, read by a fresh wrapper process whose
    only child it is, so no earlier child's peak counts."""
    wrapper = (
        "import resource, subprocess, sys, time; t = time.monotonic(); "
        "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(time.monotonic() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        capture_output=True,
        text=True,
        env=ENV,
    )
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[3:])} failed:\n{result.stderr[-2000:]}")
    elapsed, kilobytes = result.stdout.split()
    return float(elapsed), int(kilobytes) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        project = Path(
            cookiecutter(str(ROOT / "cookiecutter-sail"), no_input=True, output_dir=str(work))
        )
        sail(project, "run", env=ENV)
        data = pd.read_csv(project / "data" / "raw" / "data.csv").drop(columns=["target"])
        rng = np.random.default_rng(0)
        big = data.sample(args.rows, replace=True, random_state=0).reset_index(drop=True)
        big *= rng.normal(1.0, 0.01, big.shape)
        files = {"csv": work / "big.csv", "parquet": work / "big.parquet"}
        big.to_csv(files["csv"], index=False)
        big.to_parquet(files["parquet"])
        del big, data
        print(
            f"sail predict on {args.rows:,} rows, 30 float features, the example's accepted model:"
        )
        for fmt, source in files.items():
            command = [
                sys.executable,
                "-m",
                "sail_pipelines.cli",
                "--project",
                str(project),
                "predict",
                "--input",
                str(source),
                "--output",
                str(work / f"out.{fmt}"),
            ]
            elapsed, rss = measured(command)
            print(
                f"  {fmt:8} {args.rows / elapsed:10,.0f} rows/s  {elapsed:6.1f} s  peak RSS "
                f"{rss:6.0f} MB (goal <= 500 MB)"
            )


if __name__ == "__main__":
    main()
