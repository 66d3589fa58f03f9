"""Serving figures for the README: the same registered model, `models:/<name>@candidate`, served
by `mlflow models serve` and by `sail serve` (interleaved rounds), then by the inference image.

    make bench-serve [DATASET=weather] [ARGS="--fallback --rounds 1 --seconds 5"]
    (or: .venv/bin/python benchmarks/serve.py [--dataset NAME] [--fallback] [--rounds 3] ...)

`--dataset` picks the project: the template's example (default), one of the public tables of
tests/datasets.py (penguins, economics, weather, diamonds) or the generated messy customers table,
baked and run as a user would. `--fallback` turns the compiled path off (`compiled: {enabled:
false}`), for the figures of a model scikit-learn serves.

Load comes from wrk (Debian package `wrk`) at 8 connections, with MLflow's own request format
(`/invocations`, `dataframe_split`) so both servers answer the very same bytes: one-row and
100-row bodies of the test split. It prints req/s, p50 and p99 for each, the ratio to MLflow,
rows/s of the 100-row bodies, the runtime each candidate serves by, the cold start to ready
(median of 5) and the image size. The figures are printed, never asserted. Goals: one-row >= 10x
MLflow and p99 <= 20 ms on every dataset, a fallback >= 3x MLflow, >= 20,000 rows/s, image <=
150 MB, ready <= 1 s, every candidate compiled.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import requests
import yaml
from cookiecutter.main import cookiecutter

from _common import ROOT, image_megabytes, prepare_machine, sail
from sail_pipelines.inference import pyfunc, smoke
from sail_pipelines.integrity import signing

KEY = signing.generate().text()  # a fresh Ed25519 pair for this run
CONNECTIONS = 8
COLD_STARTS = 5
EXAMPLE = "example"


def _datasets() -> Any:
    """tests/datasets.py: the public tables' loaders and the messy table (imported by path)."""
    spec = importlib.util.spec_from_file_location("datasets", ROOT / "tests" / "datasets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DATASETS = _datasets()
CHOICES = [EXAMPLE, *DATASETS.PUBLIC, "customers"]


def bake(dataset: str, scratch: Path, fallback: bool) -> Path:
    """A project generated for `dataset` (its data file exported as a user would), compiled path
    off with `fallback`."""
    answers: dict[str, str] = {}
    if dataset == "customers":
        answers = {"data_file": str(DATASETS.messy_csv(scratch)), "target": "tier"}
    elif dataset != EXAMPLE:
        rows = DATASETS.PUBLIC_ROWS.get(dataset)
        data = DATASETS.public_csv(dataset, scratch, rows)
        answers = {"data_file": str(data), "target": DATASETS.PUBLIC[dataset][0]}
    if answers:
        answers["project_name"] = dataset
    project = Path(
        cookiecutter(
            str(ROOT / "cookiecutter-sail"),
            no_input=True,
            extra_context=answers,
            output_dir=str(scratch / "projects"),
        )
    )
    if fallback:
        params_path = project / "params.yaml"
        params = yaml.safe_load(params_path.read_text())
        params["compiled"] = {"enabled": False}
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def wait_ready(url: str, proc: subprocess.Popen | None, timeout: float = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"the server at {url} exited with code {proc.returncode}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code == 200:
                return time.monotonic() - started
        time.sleep(0.01)
    sys.exit(f"{url} was not ready within {timeout:.0f} s")


@contextlib.contextmanager
def process(command: list[str], ready_path: str, port: int) -> Iterator[tuple[str, float]]:
    """A server process in its own process group; yields its URL and seconds to ready."""
    started = time.monotonic()
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + ready_path, proc)
        yield url, time.monotonic() - started
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def mlflow_server(model: str, workers: int) -> contextlib.AbstractContextManager:
    port = smoke.free_port()
    return process(pyfunc.serve_command(f"models:/{model}@candidate", port, workers), "/ping", port)


def sail_server(bundle: Path, workers: int) -> contextlib.AbstractContextManager:
    port = smoke.free_port()
    return process(
        [
            sys.executable,
            "-m",
            "sail_pipelines.cli",
            "serve",
            "--bundle",
            str(bundle),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        "/ready",
        port,
    )


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, body: str, seconds: int, scratch: Path) -> dict[str, float]:
    """req/s, p50 and p99 (ms) of one wrk run posting `body` to `url`; non-2xx answers counted."""
    script = scratch / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{body}]==]\n"
    )
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    latency = {
        q: float(v) * UNITS[u]
        for q, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latency["50"],
        "p99": latency["99"],
        "errors": int(errors.group(1)) if errors else 0,
    }


def bodies(project: Path, target: str) -> dict[str, str]:
    rows = pd.read_csv(project / "data" / "split" / "test.csv").drop(columns=[target])
    hundred = pd.concat([rows] * (100 // len(rows) + 1)).head(100)

    def split(frame: pd.DataFrame) -> str:
        return json.dumps(
            {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
        )

    return {"1 row": split(rows.head(1)), "100 rows": split(hundred)}


def show(
    name: str, results: list[dict[str, float]], rows: int, baseline: list[dict[str, float]] | None
) -> None:
    rps = statistics.median(r["rps"] for r in results)
    rounds = ", ".join(f"{r['rps']:.0f}" for r in results)
    p50, p99 = (statistics.median(r[q] for r in results) for q in ("p50", "p99"))
    line = f"{name:<34} req/s {rps:9.1f}  (rounds {rounds})  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms"
    if rows > 1:
        line += f"  rows/s {rps * rows:9.0f}"
    if baseline:
        line += f"  x{rps / statistics.median(r['rps'] for r in baseline):.1f} vs mlflow"
    errors = sum(r["errors"] for r in results)
    print(line + (f"  NON-2XX: {errors}" if errors else ""), flush=True)


def cold_starts(start: callable, times: int) -> list[float]:
    seconds = []
    for _ in range(times):
        with start() as (_, ready):
            seconds.append(ready)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=CHOICES, default=EXAMPLE, help="the project's data")
    parser.add_argument(
        "--fallback", action="store_true", help="compiled path off: scikit-learn serves"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="length of one wrk run")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="server workers, both servers"
    )
    parser.add_argument(
        "--project", type=Path, help="a project after `sail run` (default: generate and run one)"
    )
    parser.add_argument(
        "--no-image", action="store_true", help="skip building and serving the inference image"
    )
    parser.add_argument("--cold-starts", type=int, default=COLD_STARTS, help="starts timed")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    # a given project comes with its key (SAIL_SIGNING_KEY or SAIL_ALLOW_DEV_KEY)
    if not args.project:
        os.environ["SAIL_SIGNING_KEY"] = KEY
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.update(
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.invalid",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.invalid",
    )
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        project = args.project or bake(args.dataset, scratch, args.fallback)
        if not args.project:
            print(
                f"sail run ({args.dataset}{', fallback' if args.fallback else ''}) ...", flush=True
            )
            sail(project, "run")
        params = yaml.safe_load((project / "params.yaml").read_text())
        model = params["gate"]["registered_model"]
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / '.mlflow' / 'mlflow.db'}"
        import mlflow.artifacts

        model_dir = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{model}@candidate", dst_path=str(scratch / "model")
            )
        )
        bundle = pyfunc.bundle_dir(model_dir)
        evaluation = json.loads((project / "reports" / "evaluation.json").read_text())
        for name, candidate in evaluation["candidates"].items():
            inference = candidate["inference"]
            print(
                f"candidate {name:<20} served by {inference['runtime']}"
                + (f" ({inference['reason']})" if inference["reason"] else "")
            )
        served = json.loads((bundle / "metadata.json").read_text())
        print(
            f"dataset {args.dataset}: models:/{model}@candidate = {served['name']}, "
            f"runtime {served['inference']['runtime']}; "
            f"{args.workers} workers each, wrk -c{CONNECTIONS} -d{args.seconds}s, "
            f"{os.cpu_count()} CPUs shared with wrk\n",
            flush=True,
        )

        requests_ = bodies(project, params["data"]["target"])
        servers = {
            "mlflow models serve": lambda: mlflow_server(model, args.workers),
            "sail serve": lambda: sail_server(bundle, args.workers),
        }
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for round_ in range(1, args.rounds + 1):
            for server, start in servers.items():
                with start() as (url, _):
                    for label, body in requests_.items():
                        results.setdefault((server, label), []).append(
                            wrk(f"{url}/invocations", body, args.seconds, scratch)
                        )
            print(f"round {round_} done", flush=True)
        print()
        for label in requests_:
            rows = 100 if label == "100 rows" else 1
            baseline = results[("mlflow models serve", label)]
            show(f"mlflow models serve, {label}", baseline, rows, None)
            show(f"sail serve, {label}", results[("sail serve", label)], rows, baseline)
        goals(results, served["inference"]["runtime"])

        print(f"\ncold start to ready (s), median of {args.cold_starts}:")
        for server, start in servers.items():
            seconds = cold_starts(start, args.cold_starts)
            print(
                f"  {server:<22} {statistics.median(seconds):.2f} "
                f"({min(seconds):.2f}-{max(seconds):.2f})",
                flush=True,
            )
        if not args.no_image:
            image_figures(project, requests_, results, args, scratch)


def goals(results: dict[tuple[str, str], list[dict[str, float]]], runtime: str) -> None:
    """Each goal of this run, met or missed (a compiled model: >= 10x MLflow and p99 <= 20 ms on
    one row, >= 20,000 rows/s on 100; a fallback: >= 3x MLflow)."""

    def median(server: str, label: str, figure: str) -> float:
        return statistics.median(r[figure] for r in results[(server, label)])

    ratio = median("sail serve", "1 row", "rps") / median("mlflow models serve", "1 row", "rps")
    checks = [(f"one row x{ratio:.1f} vs mlflow", ratio >= (10 if runtime == "onnx" else 3))]
    if runtime == "onnx":
        p99, rows = median("sail serve", "1 row", "p99"), median("sail serve", "100 rows", "rps")
        checks += [(f"p99 {p99:.1f} ms", p99 <= 20), (f"{rows * 100:,.0f} rows/s", rows >= 200)]
    goal = "(goals: >=10x, p99 <= 20 ms, >= 20,000 rows/s)" if runtime == "onnx" else "(goal >=3x)"
    print(
        f"goals, {runtime}: "
        + "; ".join(f"{text} {'met' if met else 'MISSED'}" for text, met in checks)
        + f" {goal}",
        flush=True,
    )


def image_figures(
    project: Path, requests_: dict[str, str], results: dict, args: argparse.Namespace, scratch: Path
) -> None:
    """Package the inference image (compiled path when the model converts) and serve from it."""
    import docker

    os.environ["SAIL_BASE_IMAGE"] = prepare_machine()
    sail(project, "package")
    package = json.loads((project / "reports" / "package.json").read_text())
    image = package["image"]
    size, gzipped = image_megabytes(docker.from_env(), image)
    print(
        f"\ninference image {image} (runtime {package['runtime']}): {size:.0f} MB, "
        f"{gzipped:.0f} MB gzip'd"
    )
    env = {k: os.environ[k] for k in ("SAIL_SIGNING_KEY", "SAIL_ALLOW_DEV_KEY") if k in os.environ}
    seconds = []
    for _ in range(COLD_STARTS):
        with smoke.container_server(image, env) as (_, ready):
            seconds.append(ready)
    print(
        f"  cold start, docker run to /ready (s), median of 5: {statistics.median(seconds):.2f} "
        f"({min(seconds):.2f}-{max(seconds):.2f})",
        flush=True,
    )
    image_results: dict[str, list[dict[str, float]]] = {}
    with smoke.container_server(image, env) as (url, _):
        for _ in range(args.rounds):
            for label, body in requests_.items():
                image_results.setdefault(label, []).append(
                    wrk(f"{url}/invocations", body, args.seconds, scratch)
                )
    for label, figures in image_results.items():
        show(
            f"inference image, {label}",
            figures,
            100 if label == "100 rows" else 1,
            results[("mlflow models serve", label)],
        )


if __name__ == "__main__":
    main()
