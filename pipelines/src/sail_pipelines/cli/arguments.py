"""The `sail` command line: one argparse sub-command per step, each bound to its handler in
commands.py. The commands are declared in groups that follow the pipeline, in the order
`sail --help` lists them."""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable

from sail_pipelines.cli import commands as c
from sail_pipelines.delivery.release import ENVIRONMENTS

# add(name, handler, help): a sub-command whose handler `main` calls
Add = Callable[[str, Callable[[argparse.Namespace], Any], str], argparse.ArgumentParser]
BUNDLE_HELP = "bundle directory (default: models/accepted)"
APPROVER_HELP = "who approved, for the audit record (default: the CI user, else $USER)"
LOG_HELP = "prediction log: a file, a directory or an s3:// prefix"
WINDOW_HELP = "instead of --since: the last N minutes, hours or days (30m, 24h, 7d)"


def _bounded(name: str, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text) if text.isdigit() else 0
        if not 1 <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {name} (1-{high})")
        return value

    return parse


port = _bounded("TCP port", 65535)
workers = _bounded("worker count", 256)


def prediction_logging(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prediction-log",
        metavar="PATH",
        help="JSON lines of inputs and predictions: '-' (stdout), a file, or a directory "
        "(one rotating file per process); default: $SAIL_PREDICTION_LOG, else none",
    )
    p.add_argument(
        "--prediction-log-sample",
        metavar="RATE",
        help="share of requests logged, 0 to 1 (default: $SAIL_PREDICTION_LOG_SAMPLE, else 1)",
    )


def _data(add: Add) -> None:
    adopt = add(
        "adopt",
        c.cmd_adopt,
        "train on your own CSV or Parquet file: infer the schema, task and thresholds",
    )
    adopt.add_argument("data", help="the data file (CSV or Parquet)")
    adopt.add_argument("--target", required=True, help="the column to predict")
    adopt.add_argument(
        "--task", choices=("classification", "regression"), help="default: inferred from the target"
    )
    add(
        "validate", c.cmd_validate, "check the raw data against the schema and reference profile"
    ).add_argument(
        "--baseline",
        action="store_true",
        help="accept the current data as the new reference profile",
    )
    add("split", c.cmd_split, "seeded, deterministic train/test split")
    add(
        "candidates",
        c.cmd_candidates,
        "print the candidate names of params.yaml as a JSON list (for CI fan-out)",
    )
    add(
        "test", c.cmd_test, "run the project's own tests (tests/) with pytest: first in CI"
    ).add_argument("pytest_args", nargs="*", metavar="ARG", help="passed to pytest (after --)")


def _training(add: Add) -> None:
    build = add("build", c.cmd_build, "build the training and test/metric images (Docker)")
    build.add_argument(
        "--image",
        action="append",
        choices=("train", "metric"),
        help="build only this image (repeatable)",
    )
    train = add(
        "train", c.cmd_train, "fit the transformation layer and the candidates into signed bundles"
    )
    train.add_argument(
        "--candidate", action="append", help="train only this candidate (repeatable)"
    )
    train.add_argument(
        "--container", action="store_true", help="one training container per candidate, in parallel"
    )
    add(
        "evaluate",
        c.cmd_evaluate,
        "verify, score and compare the candidates on the test set; log to MLflow",
    ).add_argument("--container", action="store_true", help="run in the test/metric image")
    add(
        "gate",
        c.cmd_gate,
        "accept the best candidate only if it meets thresholds and beats the champion",
    ).add_argument(
        "--no-register", action="store_true", help="judge only: register nothing (pull requests)"
    )
    add("push", c.cmd_push, "dvc push the accepted bundle and the data")


def _release(add: Add) -> None:
    promote = add(
        "promote",
        c.cmd_promote,
        "move the MLflow alias 'champion' to the 'candidate' version and its image to production",
    )
    promote.add_argument(
        "--expect-champion",
        help="fail unless the current champion is this version ('none' for no champion)",
    )
    promote.add_argument(
        "--version", help="fail unless this version still holds the 'candidate' alias"
    )
    promote.add_argument("--approver", help=APPROVER_HELP)
    add(
        "evidence",
        c.cmd_evidence,
        "say the newest live evidence (canary, shadow) for the version `sail promote` would take",
    ).add_argument("--version", help="this model version (default: the 'candidate' one)")
    rollback = add(
        "rollback",
        c.cmd_rollback,
        "give 'champion' and the production image back to the previous champion",
    )
    rollback.add_argument(
        "--to", help="a former champion further back (default: the one before the current)"
    )
    rollback.add_argument("--approver", help=APPROVER_HELP)
    rollback.add_argument(
        "--environment",
        choices=ENVIRONMENTS,
        default="production",
        help="staging: only switch this host's staging back to its previous container "
        "(default: production, the champion and then this host's router)",
    )
    add(
        "report",
        c.cmd_report,
        "Markdown report of the gate verdict: reports/report.md and the CI job summary",
    ).add_argument(
        "--post",
        action="store_true",
        help="also create or update the pull-request comment (GITHUB_TOKEN, GITHUB_REPOSITORY)",
    )


def _deploy(add: Add) -> None:
    deploy = add(
        "deploy",
        c.cmd_deploy,
        "run the environment's inference image: this host (Docker) or Kubernetes",
    )
    deploy.add_argument("--environment", required=True, choices=ENVIRONMENTS)
    deploy.add_argument(
        "--target", default="local", choices=("local", "kubernetes"), help="default: local"
    )
    deploy.add_argument(
        "--strategy",
        choices=("blue-green", "canary", "shadow"),
        default="blue-green",
        help="blue-green (default) starts the new image beside the live one and switches once "
        "it is ready and smoke-tested, keeping the old one for rollback; canary sends it "
        "--weight percent of the requests; shadow: it gets a copy of every request (nginx mirror) "
        "and answers no one",
    )
    deploy.add_argument(
        "--weight",
        type=_bounded("canary weight in percent", 100),
        help="canary: the new image's share of the requests in percent (1-100; 100 promotes it)",
    )
    deploy.add_argument(
        "--port",
        type=port,
        help="local: the router's port (staging 8081, production 8080; then the last one used); "
        "kubernetes: Service port (80)",
    )
    deploy.add_argument(
        "--timeout",
        type=_bounded("timeout in seconds", 3600),
        default=120,
        help="seconds to become ready (default 120)",
    )
    deploy.add_argument(
        "--render-only",
        action="store_true",
        help="kubernetes: write deploy/<environment>/ and apply nothing",
    )


def _serving(add: Add) -> None:
    serve = add("serve", c.cmd_serve, "serve a verified bundle with Flask behind gunicorn")
    serve.add_argument("--bundle", help=BUNDLE_HELP)
    serve.add_argument("--host", default=os.environ.get("SAIL_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=port, default=os.environ.get("SAIL_PORT", "8000"))
    serve.add_argument("--workers", type=workers, help="gunicorn workers (default: CPUs available)")
    serve.add_argument(
        "--access-log",
        action="store_true",
        default=os.environ.get("SAIL_ACCESS_LOG", "").lower() in ("1", "true", "yes"),
        help="one JSON line per request on stderr (default: $SAIL_ACCESS_LOG, else off; "
        "the prediction log records every prediction)",
    )
    prediction_logging(serve)
    predict = add(
        "predict",
        c.cmd_predict,
        "batch inference, in chunks, from CSV or Parquet to CSV, JSON or Parquet",
    )
    predict.add_argument(
        "--input", required=True, help="CSV or Parquet file with the feature columns"
    )
    predict.add_argument(
        "--output", required=True, help="where to write predictions (.csv or .json)"
    )
    predict.add_argument(
        "--format", choices=("csv", "json", "parquet"), help="default: from the output suffix"
    )
    predict.add_argument("--bundle", help=BUNDLE_HELP)
    predict.add_argument(
        "--explain",
        action="store_true",
        help="add each row's explanation: contribution_<column> per source column, "
        "explanation_base_value, explanation_output, explanation_space (explanation_class)",
    )
    prediction_logging(predict)


def _steps(text: str) -> tuple[int, ...]:
    parts = text.split(",")
    if not all(p.isdigit() and 1 <= int(p) <= 100 for p in parts) or parts[-1] != "100":
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of weights ending at 100")
    return tuple(int(p) for p in parts)


def _canary(add: Add) -> None:
    canary = add(
        "canary",
        c.cmd_canary,
        "judge the canary against stable (/metrics, labelled logs): promote, hold or rollback",
    )
    canary.add_argument("action", choices=("analyze",))
    canary.add_argument("--environment", required=True, choices=ENVIRONMENTS)
    canary.add_argument(
        "--min-requests",
        type=_bounded("request count", 10**9),
        default=500,
        help="scored requests each side needs before deciding (default 500; fewer: hold)",
    )
    canary.add_argument(
        "--auto",
        action="store_true",
        help="step the weight through --steps while it says promote, drop the canary on rollback",
    )
    canary.add_argument(
        "--steps", type=_steps, default=(5, 25, 50, 100), help="weights (default 5,25,50,100)"
    )
    canary.add_argument(
        "--wait",
        type=_bounded("wait in seconds", 86400),
        default=600,
        help="--auto: seconds a step may hold for lack of requests (default 600)",
    )
    canary.add_argument("--since", help="the logs from (ISO 8601; default: the canary's start)")
    canary.add_argument("--window", help=WINDOW_HELP)


def _monitoring(add: Add) -> None:
    monitor = add(
        "monitor",
        c.cmd_monitor,
        "compare logged predictions with the accepted model's training data",
    )
    monitor.add_argument("--log", required=True, help=LOG_HELP)
    monitor.add_argument("--since", help="first time to include (ISO 8601, UTC unless it says)")
    monitor.add_argument("--until", help="first time to leave out (ISO 8601)")
    monitor.add_argument("--window", help=WINDOW_HELP)
    monitor.add_argument("--bundle", help=BUNDLE_HELP)
    monitor.add_argument(
        "--champion",
        action="store_true",
        help="compare with the MLflow champion and its training split (not models/accepted)",
    )
    feedback = add(
        "feedback",
        c.cmd_feedback,
        "join ground-truth labels to logged predictions (for sail monitor)",
    )
    feedback.add_argument(
        "labels", metavar="LABELS.csv", help="CSV with request_id, label (and record, in a batch)"
    )
    feedback.add_argument("--log", required=True, help=LOG_HELP)
    feedback.add_argument(
        "--append-to-training",
        action="store_true",
        help="append the joined rows to the raw data (then dvc add, sail validate)",
    )
    feedback.add_argument("--bundle", help=BUNDLE_HELP)


def _shipping(add: Add) -> None:
    smoke = add("smoke", c.cmd_smoke, "serve the accepted bundle and check the holdout predictions")
    smoke.add_argument("--bundle", help=BUNDLE_HELP)
    smoke.add_argument("--url", help="check an already running server instead of starting one")
    smoke.add_argument(
        "--container",
        action="store_true",
        help="run the packaged inference image (reports/package.json)",
    )
    smoke.add_argument("--image", help="run this inference image")
    add("package", c.cmd_package, "build the inference image around the gated, verified bundle")
    add("publish", c.cmd_publish, "push the images to the registry (SAIL_REGISTRY)")


def _tools(add: Add) -> None:
    keygen = add(
        "keygen",
        c.cmd_keygen,
        "write a new Ed25519 key pair: DIR/signing.key (private) and DIR/verify.key (public)",
    )
    keygen.add_argument(
        "directory",
        metavar="DIR",
        help="where to write the pair (existing keys are never overwritten)",
    )
    add(
        "doctor",
        c.cmd_doctor,
        "check every configured service (MLflow, S3, DVC remote, registry, Docker, signing key)",
    ).add_argument(
        "--ci",
        action="store_true",
        help="instead: what a CI run of this project keeps and what it loses with the job",
    )
    run = add(
        "run",
        c.cmd_run,
        "the whole pipeline: validate, split, train, evaluate, gate, push, smoke test",
    )
    run.add_argument(
        "--container",
        action="store_true",
        help="train and evaluate in containers, then package and smoke-test the image",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="gate, push and smoke-test even when nothing changed since the last successful run",
    )


def _shadow(add: Add) -> None:
    shadow = add("shadow", c.cmd_shadow, "judge the running shadow against live: pass/hold/fail")
    shadow.add_argument("action", choices=("report",))
    shadow.add_argument("--environment", required=True, choices=ENVIRONMENTS)
    shadow.add_argument("--output-dir", help="for shadow-<env>.json/.md/.png (reports/live)")


GROUPS = (
    _data,
    _training,
    _release,
    _deploy,
    _canary,
    _shadow,
    _serving,
    _monitoring,
    _shipping,
    _tools,
)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="sail", description="SAIL pipeline steps for a generated project."
    )
    top.add_argument(
        "--project", default=".", help="project directory (default: current directory)"
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    for group in GROUPS:
        group(add)
    return top
