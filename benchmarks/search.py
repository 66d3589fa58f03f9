"""Hyperparameter search figures for the README: the search time of each searched candidate of
the generated example at its default budget, and what the search gains over the fixed params.

    .venv/bin/python benchmarks/search.py [--runs 3]

For each task the template offers, a project is generated with the default answers, validated
and split. Each candidate with a `search:` block is trained twice with the real
`sail train --candidate`: as params.yaml ships it, and with the block removed (its fixed params).
Both bundles are scored on the test split by the evaluate step's own code. The figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import yaml
from cookiecutter.main import cookiecutter

from _common import ROOT, sail
from sail_pipelines.config import ProjectPaths, load_params
from sail_pipelines.contract.data import read_csv
from sail_pipelines.evaluation.evaluate import score
from sail_pipelines.integrity import signing
from sail_pipelines.integrity.bundle import load_bundle

KEY = signing.generate().text()  # a fresh Ed25519 pair for this run
ENV = {**os.environ, "SAIL_SIGNING_KEY": KEY}


def shown(params: dict) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def scored_on_test(project: Path, name: str, metric: str) -> float:
    """The candidate's bundle scored on the test split, as `sail evaluate` scores it."""
    paths = ProjectPaths(project)
    bundle = load_bundle(paths.candidates_dir / name, signing.private_key(KEY, "test"))
    return score(bundle, read_csv(paths.test_csv))[0][metric]


def measure(project: Path, name: str, runs: int) -> dict:
    params = load_params(ProjectPaths(project))
    primary = params.gate.primary_metric
    searched_walls, search_seconds = [], []
    for _ in range(runs):
        searched_walls.append(sail(project, "train", "--candidate", name, env=ENV)[0])
        bundle = load_bundle(
            project / "models" / "candidates" / name, signing.private_key(KEY, "test")
        )
        search_seconds.append(bundle.metadata["search"]["seconds"])
    summary = bundle.metadata["search"]
    searched = scored_on_test(project, name, primary)
    raw = yaml.safe_load((project / "params.yaml").read_text())
    next(c for c in raw["candidates"] if c["name"] == name).pop("search")
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    fixed_walls = [sail(project, "train", "--candidate", name, env=ENV)[0] for _ in range(runs)]
    fixed = scored_on_test(project, name, primary)
    fixed_cv = next(t["score"] for t in summary["history"] if t["number"] == 0)  # trial 0 = fixed
    return {
        "candidate": name,
        "metric": primary,
        "trials": summary["trials"],
        "search_s": statistics.median(search_seconds),
        "train_searched_s": statistics.median(searched_walls),
        "train_fixed_s": statistics.median(fixed_walls),
        "cv_fixed": fixed_cv,
        "cv_best": summary["best"]["score"],
        "test_fixed": fixed,
        "test_searched": searched,
        "best": summary["best"]["params"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=3, help="timed runs per candidate (median shown)"
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for task in ("classification", "regression"):
            project = Path(
                cookiecutter(
                    str(ROOT / "cookiecutter-sail"),
                    no_input=True,
                    output_dir=f"{scratch}/{task}",
                    extra_context={"task": task},
                )
            )
            sail(project, "validate", env=ENV)
            sail(project, "split", env=ENV)
            for candidate in load_params(ProjectPaths(project)).candidates:
                if candidate.search is not None:
                    rows.append({"task": task, **measure(project, candidate.name, args.runs)})
    print(
        f"Hyperparameter search on the generated examples, default budget, median of {args.runs} "
        f"runs ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end)\n"
    )
    print(
        "| task | candidate | trials | search | `sail train --candidate` searched / fixed "
        "| CV fixed → best | test fixed → searched (gain) | best params |"
    )
    print("|---|---|---:|---:|---:|---|---|---|")
    for r in rows:
        gain = r["test_searched"] - r["test_fixed"]
        print(
            f"| {r['task']} | {r['candidate']} | {r['trials']} | {r['search_s']:.1f} s "
            f"| {r['train_searched_s']:.1f} s / {r['train_fixed_s']:.1f} s "
            f"| {r['metric']} {r['cv_fixed']:.4f} → {r['cv_best']:.4f} "
            f"| {r['metric']} {r['test_fixed']:.4f} → {r['test_searched']:.4f} ({gain:+.4f}) "
            f"| {shown(r['best'])} |"
        )


if __name__ == "__main__":
    main()
