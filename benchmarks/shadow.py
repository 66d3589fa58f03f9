"""The shadow mirror's cost to the live answers: p50/p99 of the environment's port with no
shadow, with a shadow that answers, with one that is down (stopped) and with one that takes 2 s
per answer (the mirror gives up after 1 s), each under two loads at 8 concurrent clients: wrk
flat out (the machine saturated: the shadow's own CPU competes with the live container's) and
8 threads of tests/load.py pausing 50 ms between requests (a steady rate the machine holds).
The cases are interleaved over --rounds; the median of each case's figures is printed.

    .venv/bin/python benchmarks/shadow.py [--seconds 5] [--rounds 2] [--project DIR]

Without --project, a freshly generated project deploys tests/test_deploy.py's stand-ins (a
threaded Python server that logs each prediction, as the inference image does), so the figures
are the router's and the mirror's, not a model's; with --project (a project `sail package` has
run in), its real inference image is live and shadow both. On one machine the shadow also
takes CPU from the live container: part of the cost measured is that, not nginx's. The figures
are printed, never asserted (goal: p99 with the mirror within 10% of p99 without).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

from _common import ROOT, prepare_machine, sail
from sail_pipelines.delivery import bluegreen
from sail_pipelines.inference.smoke import free_port
from sail_pipelines.integrity import signing
from serve import wrk

sys.path.insert(0, str(ROOT / "tests"))
from conftest import bake  # noqa: E402
from load import Load  # noqa: E402
from test_deploy import Stubs, package  # noqa: E402

LIVE = "bench-shadow/inference:live"
SHADOWS = {"answers": "bench-shadow/inference:shadow", "slow": "bench-shadow/inference:lagging"}
KEY = signing.generate().text()


def measure(project: Path, body: str, seconds: int, scratch: Path) -> dict[str, float]:
    port = bluegreen.read_state(project / ".sail" / "router" / "staging")["port"]
    flat_out = wrk(f"http://127.0.0.1:{port}/predict", body, seconds, scratch)
    with Load(f"http://127.0.0.1:{port}", json.loads(body), pause=0.05) as load:
        time.sleep(seconds)
    took = sorted(load.counts.seconds)
    return {
        "wrk_rps": flat_out["rps"],
        "wrk_p50": flat_out["p50"],
        "wrk_p99": flat_out["p99"],
        "paced_p50": round(took[len(took) // 2] * 1000, 2),
        "paced_p99": round(took[int(len(took) * 0.99)] * 1000, 2),
        "failed": flat_out["errors"] + load.counts.failed,
    }


def shadow(project: Path, ref: str | None) -> None:
    """Deploy `ref` as the shadow (None: drop the running one)."""
    env = {**os.environ, "SAIL_SIGNING_KEY": KEY}
    if ref is None:
        sail(project, "rollback", "--environment", "staging", env=env)
        return
    package(project, ref)
    sail(project, "deploy", "--environment", "staging", "--strategy", "shadow", env=env)


def one_round(project: Path, body: str, seconds: int, scratch: Path, client, shadows: dict):
    rows = {"no shadow": measure(project, body, seconds, scratch)}
    shadow(project, shadows["answers"])
    rows["shadow answers"] = measure(project, body, seconds, scratch)
    slot = bluegreen.read_state(project / ".sail" / "router" / "staging")["shadow"]
    client.containers.get(slot["id"]).stop(timeout=0)
    rows["shadow down"] = measure(project, body, seconds, scratch)
    if "slow" in shadows:
        shadow(project, shadows["slow"])
        rows["shadow slow (2 s)"] = measure(project, body, seconds, scratch)
    shadow(project, None)
    return rows


def run(args, project: Path, body: str, scratch: Path, client, shadows: dict) -> None:
    env = {**os.environ, "SAIL_SIGNING_KEY": KEY}
    sail(project, "deploy", "--environment", "staging", "--port", str(free_port()), env=env)
    rounds = [one_round(project, body, args.seconds, scratch, client, shadows)]
    for _ in range(args.rounds - 1):
        rounds.append(one_round(project, body, args.seconds, scratch, client, shadows))
    medians = {
        case: {k: statistics.median(r[case][k] for r in rounds) for k in rounds[0][case]}
        for case in rounds[0]
    }
    base = medians["no shadow"]
    for case, row in medians.items():
        cost = {
            f"{k}_cost_percent": round((row[k] / base[k] - 1) * 100, 1)
            for k in ("wrk_p99", "paced_p99")
        }
        rounded = {k: round(v, 2) for k, v in row.items()}
        print(json.dumps({"case": case, **rounded, **cost}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (median)")
    parser.add_argument("--project", type=Path, help="a packaged project: its real image")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    client = docker.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        scratch, stubs = Path(tmp), None
        if args.project:
            project = args.project.resolve()
            holdout = json.loads((project / "models/accepted/holdout.json").read_text())
            body = json.dumps(holdout["records"][:1])
            ref = json.loads((project / "reports" / "package.json").read_text())["image"]
            shadows = {"answers": ref}
        else:
            project, body = bake(scratch, project_name="Bench Shadow"), json.dumps([{"x": 1}])
            stubs = Stubs(client, prepare_machine())
            stubs.build(LIVE)
            stubs.build(SHADOWS["answers"])
            stubs.build(SHADOWS["slow"], mode="lagging")
            package(project, LIVE)
            shadows = SHADOWS
        try:
            run(args, project, body, scratch, client, shadows)
        finally:
            bluegreen.stop_all(client, project / ".sail" / "router" / "staging")
            if stubs:
                stubs.remove_all()


if __name__ == "__main__":
    main()
