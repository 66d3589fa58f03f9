"""The `sail` command: a thin layer that parses arguments, builds the config objects and
calls one step module. Every failure ends as one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from .config import ProjectPaths, Settings, load_params
from .errors import GateFailed, SailError
from .signing import resolve_key


def _context(args: argparse.Namespace) -> tuple[ProjectPaths, Any, Settings]:
    paths = ProjectPaths(Path(args.project).resolve())
    return paths, load_params(paths), Settings.from_env(paths)


def _bundle_path(args: argparse.Namespace, paths: ProjectPaths) -> Path:
    return Path(args.bundle).resolve() if args.bundle else paths.accepted_dir


def cmd_validate(args):
    paths, params, _ = _context(args)
    from . import validate

    return validate.run(paths, params, baseline=args.baseline)


def cmd_split(args):
    paths, params, _ = _context(args)
    from . import split

    return split.run(paths, params)


def cmd_candidates(args):
    _, params, _ = _context(args)
    return [c.name for c in params.candidates]


def cmd_train(args):
    paths, params, settings = _context(args)
    from . import train

    written = train.run(paths, params, resolve_key(settings), args.candidate)
    return {"bundles": [str(p.relative_to(paths.root)) for p in written]}


def cmd_evaluate(args):
    paths, params, settings = _context(args)
    from . import evaluate

    result = evaluate.run(paths, params, settings, resolve_key(settings))
    return {"best": result["best"], params.gate.primary_metric: result["candidates"][result["best"]]["metrics"][params.gate.primary_metric]}


def cmd_gate(args):
    paths, params, settings = _context(args)
    from . import gate

    report = gate.run(paths, params, settings, resolve_key(settings))
    return {k: report[k] for k in ("verdict", "candidate", "registered_version", "accepted_bundle_id")}


def cmd_push(args):
    paths, params, settings = _context(args)
    from . import push

    return push.run(paths, params, settings)


def cmd_promote(args):
    _, params, settings = _context(args)
    from . import promote

    return promote.run(params, settings, args.expect_champion)


def cmd_serve(args):
    paths = ProjectPaths(Path(args.project).resolve())
    from . import serve

    serve.run_server(_bundle_path(args, paths), resolve_key(Settings.from_env(paths)), args.host, args.port, args.workers)


def cmd_predict(args):
    paths = ProjectPaths(Path(args.project).resolve())
    from . import predict

    key = resolve_key(Settings.from_env(paths))
    return predict.run(_bundle_path(args, paths), key, Path(args.input), Path(args.output), args.format)


def cmd_smoke(args):
    paths = ProjectPaths(Path(args.project).resolve())
    from . import smoke

    return smoke.run(_bundle_path(args, paths), resolve_key(Settings.from_env(paths)), args.url)


def cmd_run(args):
    paths, params, settings = _context(args)
    from . import run

    run.run(paths, params, settings, resolve_key(settings), say=lambda line: print(line, flush=True))


def _bounded(name: str, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text) if text.isdigit() else 0
        if not 1 <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {name} (1-{high})")
        return value

    return parse


port = _bounded("TCP port", 65535)
workers = _bounded("worker count", 256)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sail", description="SAIL pipeline steps for a generated project.")
    top.add_argument("--project", default=".", help="project directory (default: current directory)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    add("validate", cmd_validate, "check the raw data against the schema and reference profile").add_argument(
        "--baseline", action="store_true", help="accept the current data as the new reference profile"
    )
    add("split", cmd_split, "seeded, deterministic train/test split")
    add("candidates", cmd_candidates, "print the candidate names of params.yaml as a JSON list (for CI fan-out)")
    add("train", cmd_train, "fit the transformation layer and the candidates into signed bundles").add_argument(
        "--candidate", action="append", help="train only this candidate (repeatable)"
    )
    add("evaluate", cmd_evaluate, "verify, score and compare the candidates on the test set; log to MLflow")
    add("gate", cmd_gate, "accept the best candidate only if it meets thresholds and beats the champion")
    add("push", cmd_push, "dvc push the accepted bundle and the data")
    add("promote", cmd_promote, "move the MLflow alias 'champion' to the 'candidate' version").add_argument(
        "--expect-champion", help="fail unless the current champion is this version ('none' for no champion)"
    )
    serve = add("serve", cmd_serve, "serve a verified bundle with Flask behind gunicorn")
    serve.add_argument("--bundle", help="bundle directory (default: models/accepted)")
    serve.add_argument("--host", default=os.environ.get("SAIL_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=port, default=os.environ.get("SAIL_PORT", "8000"))
    serve.add_argument("--workers", type=workers, help="gunicorn workers (default: CPUs available)")
    predict = add("predict", cmd_predict, "batch inference from CSV to CSV or JSON")
    predict.add_argument("--input", required=True, help="CSV with the feature columns")
    predict.add_argument("--output", required=True, help="where to write predictions (.csv or .json)")
    predict.add_argument("--format", choices=("csv", "json"), help="default: from the output suffix")
    predict.add_argument("--bundle", help="bundle directory (default: models/accepted)")
    smoke = add("smoke", cmd_smoke, "serve the accepted bundle and check the holdout predictions")
    smoke.add_argument("--bundle", help="bundle directory (default: models/accepted)")
    smoke.add_argument("--url", help="check an already running server instead of starting one")
    add("run", cmd_run, "the whole pipeline: validate, split, train, evaluate, gate, push, smoke test")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = args.handler(args)
    except GateFailed as exc:
        print(f"sail {args.command}: GATE FAILED: {exc}", file=sys.stderr)
        return 1
    except SailError as exc:
        print(f"sail {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sail {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the user gets one line; SAIL_DEBUG=1 shows the traceback
        if os.environ.get("SAIL_DEBUG"):
            raise
        print(f"sail {args.command}: unexpected error: {type(exc).__name__}: {exc} (SAIL_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2
    if result is not None:
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
