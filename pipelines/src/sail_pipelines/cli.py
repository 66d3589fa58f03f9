"""The `sail` command: a thin layer that parses arguments, builds the config objects and
calls one step module. Every failure ends as one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from sail_pipelines.config import ProjectPaths, Settings
from sail_pipelines.delivery.release import ENVIRONMENTS
from sail_pipelines.errors import GateFailed, SailError
from sail_pipelines.integrity import signing


def _context(args: argparse.Namespace) -> tuple[ProjectPaths, Any, Settings]:
    paths = ProjectPaths(Path(args.project).resolve())
    return paths, _params(paths), Settings.from_env(paths)


def _params(paths: ProjectPaths) -> Any:
    """params.yaml, read by its pydantic models: imported here, so the serving commands (which
    read no params.yaml in the image) never load pydantic."""
    from sail_pipelines.config import load_params

    return load_params(paths)


def _scheme(paths: ProjectPaths) -> str | None:
    """params.yaml's signing scheme; None where there is none (the inference image): the key
    decides."""
    return _params(paths).signing_scheme if paths.params.is_file() else None


def _verify_key(paths: ProjectPaths, settings: Settings | None = None) -> signing.VerifyKey:
    return signing.verify_key(settings or Settings.for_serving(paths), _scheme(paths))


def _bundle_path(args: argparse.Namespace, paths: ProjectPaths) -> Path:
    return Path(args.bundle).resolve() if args.bundle else paths.accepted_dir


def cmd_adopt(args):
    paths = ProjectPaths(Path(args.project).resolve())
    from sail_pipelines.contract import adopt

    return adopt.run(
        paths,
        Path(args.data).resolve(),
        args.target,
        args.task,
        say=lambda line: print(line, flush=True),
    )


def cmd_validate(args):
    paths, params, _ = _context(args)
    from sail_pipelines.contract import validate

    return validate.run(paths, params, baseline=args.baseline)


def cmd_split(args):
    paths, params, _ = _context(args)
    from sail_pipelines.training import split

    return split.run(paths, params)


def cmd_candidates(args):
    _, params, _ = _context(args)
    return [c.name for c in params.candidates]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _in_container(args: argparse.Namespace) -> bool:
    """--container, or SAIL_RUNTIME=container (how `sail run --container` reaches the DVC
    stages)."""
    return args.container or os.environ.get("SAIL_RUNTIME") == "container"


def cmd_build(args):
    paths, params, settings = _context(args)
    from sail_pipelines.delivery import build

    return build.run(paths, params, settings, tuple(args.image or ("train", "metric")), say=_say)


def cmd_train(args):
    paths, params, settings = _context(args)
    from sail_pipelines.provenance import Provenance
    from sail_pipelines.training import train

    if _in_container(args):
        ran = train.in_containers(paths, params, settings, args.candidate, say=_say)
        return {
            "bundles": [str((paths.candidates_dir / name).relative_to(paths.root)) for name in ran],
            "containers": ran,
        }
    origin = Provenance.from_env(os.environ) or Provenance.of(
        paths.root, paths.root / params.raw_data
    )
    key = signing.signing_key(settings, params.signing_scheme)
    written = train.run(paths, params, key, origin, args.candidate, settings.search_storage)
    return {"bundles": [str(p.relative_to(paths.root)) for p in written]}


def cmd_evaluate(args):
    paths, params, settings = _context(args)
    from sail_pipelines.evaluation import evaluate

    key = signing.verify_key(settings, params.signing_scheme)
    if _in_container(args):
        result = evaluate.in_container(paths, params, settings, key, say=_say)
    else:
        result = evaluate.run(paths, params, settings, key)
    return {
        "best": result["best"],
        params.gate.primary_metric: result["candidates"][result["best"]]["metrics"][
            params.gate.primary_metric
        ],
    }


def cmd_gate(args):
    paths, params, settings = _context(args)
    from sail_pipelines.evaluation import gate

    key = signing.signing_key(settings, params.signing_scheme)
    report = gate.run(paths, params, settings, key, register=not args.no_register)
    return {
        k: report[k] for k in ("verdict", "candidate", "registered_version", "accepted_bundle_id")
    }


def cmd_push(args):
    paths, params, settings = _context(args)
    from sail_pipelines.delivery import push

    return push.run(paths, params, settings)


def _champion_keys(params: Any, settings: Settings) -> Any:
    """The audit key, and the key that checks image signatures (only images in a registry have
    one)."""
    from sail_pipelines.delivery import promote

    images = signing.verify_key(settings, params.signing_scheme) if settings.registry else None
    return promote.Keys(signing.audit_key(settings), images)


def cmd_promote(args):
    paths, params, settings = _context(args)
    from sail_pipelines.delivery import audit, promote

    promotion = promote.Promotion(
        args.version, args.expect_champion, audit.approver(args.approver, os.environ)
    )
    return promote.run(paths, params, settings, _champion_keys(params, settings), promotion)


def cmd_rollback(args):
    paths, params, settings = _context(args)
    from sail_pipelines.delivery import audit, rollback

    approver = audit.approver(args.approver, os.environ)
    keys = _champion_keys(params, settings)
    return rollback.run(paths, params, settings, keys, args.to, approver)


def cmd_report(args):
    paths, params, _ = _context(args)
    from sail_pipelines.evaluation import report
    from sail_pipelines.integrations import github

    return report.run(
        paths, params, os.environ, github.PullRequest.from_env(os.environ) if args.post else None
    )


def cmd_deploy(args):
    paths, params, settings = _context(args)
    from sail_pipelines.delivery import deploy

    key = signing.verify_key(settings, params.signing_scheme)
    target = deploy.Deployment(
        args.environment, args.target, args.port, args.timeout, args.render_only
    )
    return deploy.run(paths, params, settings, key, target)


def cmd_serve(args):
    paths = ProjectPaths(Path(args.project).resolve())
    from sail_pipelines.inference import prediction_log, serve

    key = _verify_key(paths)
    logs = prediction_log.settings_from(args.prediction_log, args.prediction_log_sample)
    serve.run_server(
        _bundle_path(args, paths),
        key,
        args.host,
        args.port,
        args.workers,
        log_settings=logs,
        access_log=args.access_log,
    )


def cmd_predict(args):
    paths = ProjectPaths(Path(args.project).resolve())
    from sail_pipelines.inference import batch_io, prediction_log

    key = _verify_key(paths)
    logs = prediction_log.settings_from(args.prediction_log, args.prediction_log_sample)
    return batch_io.runner()(
        _bundle_path(args, paths),
        key,
        Path(args.input),
        Path(args.output),
        args.format,
        log_settings=logs,
    )


def _s3(settings: Settings) -> Callable[[], Any]:
    """The S3 client of the project's AWS settings, made only for an s3:// log."""
    from sail_pipelines.integrations import aws

    return lambda: aws.client(settings.aws, "s3")


def cmd_monitor(args):
    paths, params, settings = _context(args)
    from sail_pipelines.integrity.bundle import load_bundle
    from sail_pipelines.monitoring import feedback, logs, monitor

    since, until = logs.time_span(args.since, args.until, args.window)
    key = _verify_key(paths, settings)
    train = None
    if args.champion:  # what production serves, and the split it was trained on
        from sail_pipelines.config import stores
        from sail_pipelines.monitoring import reference

        if args.bundle:
            raise SailError("give --champion or --bundle, not both")
        stores.require(paths, settings, "monitor --champion")
        bundle = reference.champion_bundle(params, settings, key)
        train = reference.training_split(paths, settings, bundle)
    else:
        bundle = load_bundle(_bundle_path(args, paths), key)
    traffic = logs.read(args.log, since, until, s3=_s3(settings))
    live = None
    if feedback.labels_path(paths).is_file():  # ground truth from `sail feedback`
        joined = feedback.join(traffic, feedback.read_labels(feedback.labels_path(paths)))
        live = feedback.live_metrics(joined, bundle.metadata, params) if len(joined) else None
    return monitor.run(paths, params, bundle, traffic, live, train)


def cmd_feedback(args):
    paths, params, settings = _context(args)
    from sail_pipelines.integrity.bundle import load_bundle
    from sail_pipelines.monitoring import feedback, logs

    bundle = load_bundle(_bundle_path(args, paths), _verify_key(paths, settings))
    traffic = logs.read(args.log, s3=_s3(settings))
    return feedback.run(paths, params, bundle, Path(args.labels), traffic, args.append_to_training)


def cmd_package(args):
    paths, params, settings = _context(args)
    from sail_pipelines.delivery import package

    key = signing.verify_key(settings, params.signing_scheme)
    return package.run(paths, params, settings, key, say=_say)


def cmd_smoke(args):
    paths = ProjectPaths(Path(args.project).resolve())
    from sail_pipelines.inference import smoke

    image = args.image or (smoke.packaged_image(paths.reports) if args.container else None)
    return smoke.run(_bundle_path(args, paths), _verify_key(paths), args.url, image)


def cmd_publish(args):
    paths, params, settings = _context(args)
    from sail_pipelines.delivery import publish

    key = signing.signing_key(settings, params.signing_scheme)
    return publish.run(paths, settings, key, say=_say)


def cmd_doctor(args):
    paths = ProjectPaths(Path(args.project).resolve())
    from sail_pipelines.integrations import doctor

    settings = Settings.from_env(paths)
    if args.ci:  # what a CI run keeps and loses: informational, the first step of every CI run
        doctor.ci_report(paths, settings, os.environ, say=lambda line: print(line, flush=True))
    else:
        doctor.run(paths, settings, say=lambda line: print(line, flush=True))


def cmd_run(args):
    paths, params, settings = _context(args)
    from sail_pipelines import run

    key = signing.signing_key(settings, params.signing_scheme)
    run.run(
        paths,
        params,
        settings,
        key,
        say=lambda line: print(line, flush=True),
        container=args.container,
        force=args.force,
    )


def cmd_keygen(args):
    return signing.keygen(Path(args.directory))


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

    adopt = add(
        "adopt",
        cmd_adopt,
        "train on your own CSV or Parquet file: infer the schema, task and thresholds",
    )
    adopt.add_argument("data", help="the data file (CSV or Parquet)")
    adopt.add_argument("--target", required=True, help="the column to predict")
    adopt.add_argument(
        "--task", choices=("classification", "regression"), help="default: inferred from the target"
    )
    add(
        "validate", cmd_validate, "check the raw data against the schema and reference profile"
    ).add_argument(
        "--baseline",
        action="store_true",
        help="accept the current data as the new reference profile",
    )
    add("split", cmd_split, "seeded, deterministic train/test split")
    add(
        "candidates",
        cmd_candidates,
        "print the candidate names of params.yaml as a JSON list (for CI fan-out)",
    )
    build = add("build", cmd_build, "build the training and test/metric images (Docker)")
    build.add_argument(
        "--image",
        action="append",
        choices=("train", "metric"),
        help="build only this image (repeatable)",
    )
    train = add(
        "train", cmd_train, "fit the transformation layer and the candidates into signed bundles"
    )
    train.add_argument(
        "--candidate", action="append", help="train only this candidate (repeatable)"
    )
    train.add_argument(
        "--container", action="store_true", help="one training container per candidate, in parallel"
    )
    add(
        "evaluate",
        cmd_evaluate,
        "verify, score and compare the candidates on the test set; log to MLflow",
    ).add_argument("--container", action="store_true", help="run in the test/metric image")
    add(
        "gate",
        cmd_gate,
        "accept the best candidate only if it meets thresholds and beats the champion",
    ).add_argument(
        "--no-register", action="store_true", help="judge only: register nothing (pull requests)"
    )
    add("push", cmd_push, "dvc push the accepted bundle and the data")
    promote = add(
        "promote",
        cmd_promote,
        "move the MLflow alias 'champion' to the 'candidate' version and its image to production",
    )
    promote.add_argument(
        "--expect-champion",
        help="fail unless the current champion is this version ('none' for no champion)",
    )
    promote.add_argument(
        "--version", help="fail unless this version still holds the 'candidate' alias"
    )
    promote.add_argument(
        "--approver", help="who approved, for the audit record (default: the CI user, else $USER)"
    )
    rollback = add(
        "rollback",
        cmd_rollback,
        "give 'champion' and the production image back to the previous champion",
    )
    rollback.add_argument(
        "--to", help="a former champion further back (default: the one before the current)"
    )
    rollback.add_argument(
        "--approver", help="who approved, for the audit record (default: the CI user, else $USER)"
    )
    add(
        "report",
        cmd_report,
        "Markdown report of the gate verdict: reports/report.md and the CI job summary",
    ).add_argument(
        "--post",
        action="store_true",
        help="also create or update the pull-request comment (GITHUB_TOKEN, GITHUB_REPOSITORY)",
    )
    deploy = add(
        "deploy",
        cmd_deploy,
        "run the environment's inference image: this host (Docker) or Kubernetes",
    )
    deploy.add_argument("--environment", required=True, choices=ENVIRONMENTS)
    deploy.add_argument(
        "--target", default="local", choices=("local", "kubernetes"), help="default: local"
    )
    deploy.add_argument(
        "--port",
        type=port,
        help="local: host port (staging 8081, production 8080); kubernetes: Service port (80)",
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
    serve = add("serve", cmd_serve, "serve a verified bundle with Flask behind gunicorn")
    serve.add_argument("--bundle", help="bundle directory (default: models/accepted)")
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
        cmd_predict,
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
    predict.add_argument("--bundle", help="bundle directory (default: models/accepted)")
    prediction_logging(predict)
    monitor = add(
        "monitor", cmd_monitor, "compare logged predictions with the accepted model's training data"
    )
    monitor.add_argument(
        "--log", required=True, help="prediction log: a file, a directory or an s3:// prefix"
    )
    monitor.add_argument("--since", help="first time to include (ISO 8601, UTC unless it says)")
    monitor.add_argument("--until", help="first time to leave out (ISO 8601)")
    monitor.add_argument(
        "--window", help="instead of --since: the last N minutes, hours or days (30m, 24h, 7d)"
    )
    monitor.add_argument("--bundle", help="bundle directory (default: models/accepted)")
    monitor.add_argument(
        "--champion",
        action="store_true",
        help="compare with the MLflow champion and its training split (not models/accepted)",
    )
    feedback = add(
        "feedback",
        cmd_feedback,
        "join ground-truth labels to logged predictions (for sail monitor)",
    )
    feedback.add_argument(
        "labels", metavar="LABELS.csv", help="CSV with request_id, label (and record, in a batch)"
    )
    feedback.add_argument(
        "--log", required=True, help="prediction log: a file, a directory or an s3:// prefix"
    )
    feedback.add_argument(
        "--append-to-training",
        action="store_true",
        help="append the joined rows to the raw data (then dvc add, sail validate)",
    )
    feedback.add_argument("--bundle", help="bundle directory (default: models/accepted)")
    smoke = add("smoke", cmd_smoke, "serve the accepted bundle and check the holdout predictions")
    smoke.add_argument("--bundle", help="bundle directory (default: models/accepted)")
    smoke.add_argument("--url", help="check an already running server instead of starting one")
    smoke.add_argument(
        "--container",
        action="store_true",
        help="run the packaged inference image (reports/package.json)",
    )
    smoke.add_argument("--image", help="run this inference image")
    add("package", cmd_package, "build the inference image around the gated, verified bundle")
    add("publish", cmd_publish, "push the images to the registry (SAIL_REGISTRY)")
    keygen = add(
        "keygen",
        cmd_keygen,
        "write a new Ed25519 key pair: DIR/signing.key (private) and DIR/verify.key (public)",
    )
    keygen.add_argument(
        "directory",
        metavar="DIR",
        help="where to write the pair (existing keys are never overwritten)",
    )
    add(
        "doctor",
        cmd_doctor,
        "check every configured service (MLflow, S3, DVC remote, registry, Docker, signing key)",
    ).add_argument(
        "--ci",
        action="store_true",
        help="instead: what a CI run of this project keeps and what it loses with the job",
    )
    run = add(
        "run",
        cmd_run,
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
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = args.handler(args)
    except SailError as exc:
        if os.environ.get("SAIL_DEBUG"):  # what led to it, the cause chain first
            traceback.print_exception(exc, file=sys.stderr)
        verdict = "GATE FAILED" if isinstance(exc, GateFailed) else "error"
        print(f"sail {args.command}: {verdict}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sail {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line; SAIL_DEBUG=1 shows the traceback
        if os.environ.get("SAIL_DEBUG"):
            raise
        print(
            f"sail {args.command}: unexpected error: {type(exc).__name__}: {exc} (SAIL_DEBUG=1 "
            "shows the traceback)",
            file=sys.stderr,
        )
        return 2
    if result is not None:
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
