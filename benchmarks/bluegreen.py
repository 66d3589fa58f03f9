"""Blue-green behind the nginx router: failed requests during a switch and during a rollback,
and how long each takes, under steady load (8 threads POSTing without pause).

    .venv/bin/python benchmarks/bluegreen.py [--rounds 3] [--project DIR]

Without --project, a freshly generated project deploys two stand-in images (tests/test_deploy.py's
stubs: a threaded Python server that starts in a moment) so the figures are the router's and
sail's, not a model's load time; with --project (a project `sail package` has run in), its real
inference image is deployed twice. Each round deploys the other color (a switch) and then runs
`sail rollback --environment staging`, once with a fresh connection per request and once with
keep-alive. With the stand-ins, a canary at 20% then takes 2,000 requests: its measured share.
The figures are printed, never asserted (goal: 0 failed requests).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import docker

from _common import ROOT, prepare_machine, sail
from sail_pipelines.delivery import bluegreen
from sail_pipelines.inference.smoke import free_port
from sail_pipelines.integrity import signing

sys.path.insert(0, str(ROOT / "tests"))
from conftest import bake  # noqa: E402
from load import Load  # noqa: E402
from test_deploy import Stubs, package  # noqa: E402

IMAGE = "bench-bluegreen/inference:bench"
CANARY = "bench-bluegreen/inference:canary"

KEY = signing.generate().text()


def measured(project: Path, body: object, keepalive: bool, args: list[str]) -> dict:
    port = json.loads((project / ".sail" / "router" / "staging" / "state.json").read_text())["port"]
    with Load(f"http://127.0.0.1:{port}", body, keepalive=keepalive) as load:
        load.wait_for(50)
        before = load.counts.failed, load.counts.ok
        seconds, out = sail(project, *args, env={**os.environ, "SAIL_SIGNING_KEY": KEY})
        load.wait_for(load.counts.ok + 50)
    result = json.loads(out)
    return {
        "failed": load.counts.failed - before[0],
        "answered": load.counts.ok - before[1],
        "command_seconds": round(seconds, 2),
        "switch_seconds": result["switch_seconds"],
        "examples": load.counts.examples,
    }


def canary_share(project: Path, stubs: Stubs, weight: int, requests: int) -> dict:
    """Deploy another stand-in as a canary at `weight`% and count who answers."""
    stubs.build(CANARY)
    package(project, CANARY)
    env = {**os.environ, "SAIL_SIGNING_KEY": KEY}
    deploy = ["deploy", "--environment", "staging", "--strategy", "canary"]
    sail(project, *deploy, "--weight", str(weight), env=env)
    port = json.loads((project / ".sail" / "router" / "staging" / "state.json").read_text())["port"]
    with Load(f"http://127.0.0.1:{port}", [{"x": 1}], tally="image") as load:
        load.wait_for(requests)
    n = load.counts.ok
    return {
        "canary_weight": weight,
        "requests": n,
        "failed": load.counts.failed,
        "canary_share": round(load.counts.bodies.get(CANARY, 0) / n, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--project", type=Path, help="a packaged project: its real image")
    args = parser.parse_args()
    client = docker.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        stubs = None
        if args.project:
            project = args.project.resolve()
            holdout = json.loads((project / "models/accepted/holdout.json").read_text())
            body = holdout["records"]
        else:
            project, body = bake(Path(tmp), project_name="Bench Bluegreen"), [{"x": 1}]
            stubs = Stubs(client, prepare_machine())
            stubs.build(IMAGE)
            package(project, IMAGE)
        env = {**os.environ, "SAIL_SIGNING_KEY": KEY}
        deploy = ["deploy", "--environment", "staging"]
        try:
            sail(project, *deploy, "--port", str(free_port()), env=env)
            for keepalive in (False, True):
                for n in range(args.rounds):
                    row = {"keepalive": keepalive, "round": n + 1}
                    row["switch"] = measured(project, body, keepalive, deploy)
                    rollback = ["rollback", "--environment", "staging"]
                    row["rollback"] = measured(project, body, keepalive, rollback)
                    print(json.dumps(row), flush=True)
                    time.sleep(1)
            if stubs:
                print(json.dumps(canary_share(project, stubs, 20, 2000)), flush=True)
        finally:
            bluegreen.stop_all(client, project / ".sail" / "router" / "staging")
            if stubs:
                stubs.remove_all()


if __name__ == "__main__":
    main()
