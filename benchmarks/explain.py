"""Explanation figures: `POST /predict?explain=true` latency, and what a loaded explainer costs
the compiled fast path.

    .venv/bin/python benchmarks/explain.py [--seconds 10]

Bundles are signed in-process on tests/explained.py's synthetic table (4 source columns, a
category and a date: 11 STL features), each served by `sail serve` with a worker per CPU (as
benchmarks/serve.py), loaded by wrk at 8 connections with one-record bodies:

- a 100-tree forest (the template's `random_forest`: depth 6) and a logistic regression, both
  compiled, with `?explain=true`: p50 and p99 (goals: p99 <= 50 ms and <= 20 ms);
- `/predict` p50 of two servers of the same compiled bundle, in interleaved rounds: one that never
  explained and one whose workers hold the explainer (the model unpickled, scikit-learn, pandas
  and shap imported): the fast path must not slow down; and the same in-process through Flask's
  test client, before and after one explanation (less of the shared machine's noise).

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
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


JSON = {"Content-Type": "application/json"}


def _line(name: str, result: dict[str, float], goal: str = "") -> str:
    return (
        f"{name:<44} req/s {result['rps']:8.1f}  p50 {result['p50']:7.2f} ms  "
        f"p99 {result['p99']:7.2f} ms  non-2xx {result['errors']:.0f}  {goal}"
    )


def in_process(dest: Path, body: str, requests_: int = 600) -> tuple[float, float]:
    """/predict p50 (ms) through Flask's test client, before and after the explainer is loaded:
    no network and no second server, so less of the shared machine's noise."""
    from sail_pipelines.inference.serve import create_app
    from sail_pipelines.integrity.bundle import load_bundle

    client = create_app(load_bundle(dest, explained.KEY)).test_client()

    def p50() -> float:
        times = []
        for _ in range(requests_):
            started = time.perf_counter()
            client.post("/predict", data=body, headers=JSON)
            times.append(time.perf_counter() - started)
        return 1000 * statistics.median(times)

    before = p50()
    client.post("/predict?explain=true", data=body, headers=JSON)
    return before, p50()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of one wrk run")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server workers")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved /predict rounds")
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
            with (
                local_server(dest, explained.KEY, workers=args.workers) as plain,
                local_server(dest, explained.KEY, workers=args.workers) as loaded,
            ):
                for url in (plain, loaded):  # warm-up: every worker has answered
                    wrk(f"{url}/predict", body, 2, folder)
                started = time.perf_counter()
                first = requests.post(
                    f"{loaded}/predict?explain=true", data=body, headers=JSON, timeout=120
                )
                first.raise_for_status()
                cold = 1000 * (time.perf_counter() - started)
                wrk(f"{loaded}/predict?explain=true", body, 5, folder)  # every worker builds one
                explaining = wrk(f"{loaded}/predict?explain=true", body, args.seconds, folder)
                rounds: dict[str, list[dict[str, float]]] = {plain: [], loaded: []}
                for _ in range(args.rounds):  # interleaved: the shared machine's drift hits both
                    for url in (plain, loaded):
                        rounds[url].append(wrk(f"{url}/predict", body, args.seconds, folder))
            print(_line(f"{name}: /predict?explain=true", explaining, goal))
            print(f"{name}: the first explanation (the worker builds its explainer): {cold:.0f} ms")
            p50 = {url: statistics.median(r["p50"] for r in rounds[url]) for url in rounds}
            for url, label in ((plain, "not loaded"), (loaded, "loaded")):
                shown = ", ".join(f"{r['p50']:.2f}" for r in rounds[url])
                print(f"{name}: /predict p50, explainer {label}: {p50[url]:.2f} ms ({shown})")
            change = 100 * (p50[loaded] / p50[plain] - 1)
            print(f"{name}: p50 change with the explainer loaded: {change:+.1f}%")
            before, after = in_process(dest, body)
            print(
                f"{name}: in-process /predict p50 {before:.3f} ms, with the explainer loaded "
                f"{after:.3f} ms ({100 * (after / before - 1):+.1f}%)"
            )


if __name__ == "__main__":
    main()
