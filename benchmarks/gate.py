"""The gate's added run time: what judging against noise and bad test data costs on the example.

    .venv/bin/python benchmarks/gate.py [--resamples 1000] [--runs 5] [--task TASK ...]

For each task a project is generated with the default answers, run (`sail run`) and its model
promoted, so the gate has a champion with a signed holdout. Then, in this process, the parts
the gate now adds are timed on that project, each the median of --runs:
  - the candidate's predictions on the test split (before, only its recorded metrics were used);
  - the paired bootstrap over the test split, candidate and champion (every metric);
  - the champion's signed holdout: both models on it, leaked rows left out, intervals;
  - slices (the regression example slices by `sex`);
  - the model card: built, written, and logged to the MLflow run.
The figures are printed, never asserted (goal: under 5 s for 1,000 resamples).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from cookiecutter.main import cookiecutter

from _common import ROOT, sail
from sail_pipelines.clients import tracking
from sail_pipelines.config import ProjectPaths, Settings, load_params
from sail_pipelines.contract.data import read_csv
from sail_pipelines.evaluation import card, slices
from sail_pipelines.evaluation.champion import fetch_champion, holdout_comparison
from sail_pipelines.evaluation.evaluate import predict
from sail_pipelines.evaluation.evidence import compare
from sail_pipelines.files import read_json
from sail_pipelines.integrity import signing
from sail_pipelines.integrity.bundle import load_bundle

KEY = signing.generate().text()  # a fresh Ed25519 pair for this run


def median_seconds(work: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def measure(project: Path, resamples: int, runs: int) -> dict[str, float]:
    paths = ProjectPaths(project)
    params = load_params(paths)
    bootstrap = params.gate.bootstrap.model_copy(update={"resamples": resamples})
    config = params.gate.model_copy(update={"bootstrap": bootstrap})
    key = signing.private_key(KEY, "bench")
    settings = Settings.from_env(paths)
    evaluation = read_json(paths.evaluation_report)
    candidate = load_bundle(
        paths.root / evaluation["candidates"][evaluation["best"]]["bundle"], key
    )
    test = read_csv(paths.test_csv)
    target, task = candidate.metadata["target"], candidate.metadata["task"]
    client = tracking.client(settings)
    version = tracking.version_by_alias(client, config.registered_model, tracking.CHAMPION)
    champion, _, _ = fetch_champion(client, version.run_id, candidate.metadata["schema"], key)
    champion_outputs = predict(champion, test)
    train = read_csv(paths.train_csv)
    figures: dict[str, float] = {"test rows": len(test)}
    figures["candidate predictions"], outputs = median_seconds(
        lambda: predict(candidate, test), runs
    )
    figures["bootstrap, test split"], _ = median_seconds(
        lambda: compare(task, test[target], outputs, champion_outputs, config.bootstrap), runs
    )
    figures["champion's holdout"], _ = median_seconds(
        lambda: holdout_comparison(config, champion, candidate, train), runs
    )
    figures["slices"], _ = median_seconds(
        lambda: slices.measure(
            config.slices,
            config.bootstrap,
            task,
            candidate.classes,
            test,
            target,
            outputs,
            champion_outputs,
        ),
        runs,
    )
    figures["model card"], written = median_seconds(
        lambda: card.write(paths, card.build(paths, params)), runs
    )
    run_id = evaluation["candidates"][evaluation["best"]]["mlflow_run_id"]
    figures["model card to MLflow"], _ = median_seconds(
        lambda: [client.log_artifact(run_id, str(path), card.ARTIFACT) for path in written], runs
    )
    figures["added in total"] = sum(v for k, v in figures.items() if k != "test rows")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--task", nargs="+", default=["classification", "regression"])
    args = parser.parse_args()
    os.environ.update(
        SAIL_SIGNING_KEY=KEY,
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.invalid",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.invalid",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )
    print(
        f"gate's added run time, {args.resamples} bootstrap resamples, "
        f"median of {args.runs} runs (goal < 5 s)"
    )
    with tempfile.TemporaryDirectory() as scratch:
        for task in args.task:
            project = Path(
                cookiecutter(
                    str(ROOT / "cookiecutter-sail"),
                    no_input=True,
                    output_dir=scratch,
                    extra_context={"task": task, "project_name": f"bench {task}"},
                )
            )
            sail(project, "run")
            sail(project, "promote")
            figures = measure(project, args.resamples, args.runs)
            print(f"\n{task} example ({figures.pop('test rows')} test rows):")
            for name, seconds in figures.items():
                print(f"  {name:<24} {seconds:7.3f} s")


if __name__ == "__main__":
    main()
