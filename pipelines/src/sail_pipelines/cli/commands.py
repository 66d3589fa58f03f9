"""The handlers of the `sail` commands: each builds the config objects from the parsed
arguments and calls one step module, whose result dict `main` prints as JSON. Step modules are
imported inside the handler, so a command loads only what it runs (the serving commands never
load pydantic)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

from sail_pipelines.config import ProjectPaths, Settings
from sail_pipelines.errors import SailError
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


def cmd_test(args):
    paths = ProjectPaths(Path(args.project).resolve())
    from sail_pipelines.cli import project_tests

    return project_tests.run(paths, args.pytest_args, os.environ, say=_say)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _in_container(args: argparse.Namespace) -> bool:
    """--container, or SAIL_RUNTIME=container (how `sail run --container` reaches the DVC
    stages)."""
    return args.container or os.environ.get("SAIL_RUNTIME") == "container"


def cmd_build(args):
    paths, params, settings = _context(args)
    from sail_pipelines.clients import build

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
    keys = _champion_keys(params, settings)
    return promote.run(paths, params, settings, keys, promotion, say=_say)


def cmd_evidence(args):
    paths, params, settings = _context(args)
    from sail_pipelines.delivery import promote

    return promote.show(paths, params, settings, args.version, os.environ)


def cmd_rollback(args):
    paths, params, settings = _context(args)
    from sail_pipelines.delivery import audit, rollback

    if args.environment == "staging":
        from sail_pipelines.delivery import deploy

        return deploy.switch_back(paths, params, settings, "staging", None)
    approver = audit.approver(args.approver, os.environ)
    keys = _champion_keys(params, settings)
    return rollback.run(paths, params, settings, keys, args.to, approver)


def cmd_report(args):
    paths, params, _ = _context(args)
    from sail_pipelines.clients import github
    from sail_pipelines.evaluation import report

    return report.run(
        paths, params, os.environ, github.PullRequest.from_env(os.environ) if args.post else None
    )


def cmd_deploy(args):
    paths, params, settings = _context(args)
    from sail_pipelines.delivery import deploy

    key = signing.verify_key(settings, params.signing_scheme)
    target = deploy.Deployment(
        args.environment,
        args.target,
        args.port,
        args.timeout,
        args.render_only,
        args.strategy,
        args.weight,
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
        explained=args.explain,
    )


def _s3(settings: Settings) -> Callable[[], Any]:
    """The S3 client of the project's AWS settings, made only for an s3:// log."""
    from sail_pipelines.clients import aws

    return lambda: aws.client(settings.aws, "s3")


def cmd_canary(args):
    paths, params, settings = _context(args)
    from datetime import datetime

    from sail_pipelines.delivery import bluegreen, deploy
    from sail_pipelines.monitoring import canary, logs

    prefix = bluegreen.router_dir(paths, args.environment)
    since, _ = logs.time_span(args.since, None, args.window)
    start = None if since is None else datetime.fromisoformat(since).timestamp()

    def analysis() -> dict:
        return canary.analyze(prefix, params, args.min_requests, paths.reports, paths, start)

    if not args.auto:
        return analysis()
    return canary.auto(
        prefix,
        args.steps,
        lambda weight: deploy.canary_weight(paths, params, settings, args.environment, weight),
        lambda: deploy.switch_back(paths, params, settings, args.environment, None),
        analysis,
        args.wait,
    )


def cmd_shadow(args):
    paths, params, _ = _context(args)
    from sail_pipelines.monitoring import shadow_report

    out = Path(args.output_dir) if args.output_dir else None
    return shadow_report.run(paths, params, args.environment, out)


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
    from sail_pipelines.cli import doctor

    settings = Settings.from_env(paths)
    if args.ci:  # what a CI run keeps and loses: informational, the first step of every CI run
        doctor.ci_report(paths, settings, os.environ, say=lambda line: print(line, flush=True))
    else:
        doctor.run(paths, settings, say=lambda line: print(line, flush=True))


def cmd_run(args):
    paths, params, settings = _context(args)
    from sail_pipelines.cli import run

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
