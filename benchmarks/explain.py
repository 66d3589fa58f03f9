"""Explanation figures: `POST /predict?explain=true` latency, and what a loaded explainer costs
the compiled fast path.

    .venv/bin/python benchmarks/explain.py [--seconds 10]

Bundles are signed in-process on tests/explained.py's synthetic table (4 source columns, a
category and a date: 11 STL features), each served by `sail serve` with a worker per CPU (as
benchmarks/serve.py), loaded by wrk at 8 connections with one-record bodies:

- a 100-tree forest (the template's `random_forest`: depth 6) and a logistic regression, both
  compiled, with `?explain=true`: p50 and p99 (goals: p99 <= 50 ms and <= 20 ms);
- the compiled forest's `/predict` p50 before any explanation was asked for, and again after one
  (the worker then holds the explainer, the model unpickled and shap imported): the fast path
  must not slow down.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from _common import ROOT
from sail_pipelines.contract.data import json_records
from sail_pipelines.inference.smoke import local_server
from serve import wrk

sys.path.insert(0, str(ROOT / "tests"))
explained: Any = importlib.import_module("explained")


def _line(name: str, result: dict[str, float], goal: str = "") -> str:
    return (
        f"{name:<44} req/s {result['rps']:8.1f}  p50 {result['p50']:7.2f} ms  "
        f"p99 {result['p99']:7.2f} ms  non-2xx {result['errors']:.0f}  {goal}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of one wrk run")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server workers")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    body = json.dumps(json_records(explained.frame(1, 3))[0])
    models = {
        "forest (100 trees, depth 6)": (
            RandomForestClassifier(100, max_depth=6, random_state=42, n_jobs=1),
            "p99 goal <= 50 ms",
        ),
        "logistic regression": (LogisticRegression(), "p99 goal <= 20 ms"),
    }
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name, (estimator, goal) in models.items():
            dest = explained.build(
                folder / name.split()[0], estimator, "classification", compiled=True
            )
            with local_server(dest, explained.KEY, workers=args.workers) as url:
                before = wrk(f"{url}/predict", body, args.seconds, folder)
                first = requests.post(
                    f"{url}/predict?explain=true",
                    data=body,
                    timeout=60,
                    headers={"Content-Type": "application/json"},
                )
                first.raise_for_status()
                explaining = wrk(f"{url}/predict?explain=true", body, args.seconds, folder)
                after = wrk(f"{url}/predict", body, args.seconds, folder)
            print(_line(f"{name}: /predict?explain=true", explaining, goal))
            print(_line(f"{name}: /predict, explainer not loaded", before))
            print(_line(f"{name}: /predict, explainer loaded", after))
            change = 100 * (after["p50"] / before["p50"] - 1)
            print(f"{'':<44} p50 change with the explainer loaded: {change:+.1f}%")


if __name__ == "__main__":
    main()
