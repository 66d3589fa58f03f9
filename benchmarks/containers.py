"""Container figures for the README: image sizes, inference cold start, code-only rebuild time,
and candidates trained in parallel vs one after another; then the inference and metric images
again with serving.explanations: true (scikit-learn, pandas and shap in them), and that inference
image's cold start.

    make bench            (or: .venv/bin/python benchmarks/containers.py [--runs 5])

Everything is measured on a freshly generated project with the real `sail` commands; the
figures are printed, never asserted (goals: the inference image of a compiled model <= 150 MB,
ready <= 1 s, a code-only rebuild <= 30 s). Where the inference image's bytes go is printed too:
its largest folders, measured inside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

import docker
from cookiecutter.main import cookiecutter

from _common import ROOT, image_megabytes, prepare_machine, sail
from sail_pipelines.inference import smoke
from sail_pipelines.integrity import signing

KEY = signing.generate().text()  # a fresh pair; the image verifies with its public half, baked in


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)


def largest(client: docker.DockerClient, image: str, shown: int = 12) -> dict[str, float]:
    """The image's largest folders (each library, the standard library, the system's), in MB."""
    folders = (
        "/opt/venv/lib/python3*/site-packages/* /usr/lib/python3* /usr/lib/*-linux-gnu "
        "/usr/bin /usr/share /etc /app"
    )
    out = client.containers.run(
        image, ["-c", f"du -sk {folders} 2>/dev/null; true"], entrypoint="sh", remove=True
    ).decode()
    sizes = [(int(k), path) for k, path in (line.split("\t") for line in out.splitlines())]
    return {path: kb / 1000 for kb, path in sorted(sizes, reverse=True)[:shown]}


def with_explanations(client: docker.DockerClient, project: Path, runs: int) -> dict[str, float]:
    """serving.explanations: true, then `sail build` (the metric image gets shap) and `sail
    package` (the inference image starts from explain-deps): their sizes and the cold start."""
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("explanations: false", "explanations: true"))
    git(project, "commit", "-qam", "serving.explanations: true")
    figures: dict[str, float] = {}
    figures["explain_build_seconds"], _ = sail(project, "build")
    figures["explain_package_seconds"], out = sail(project, "package")
    inference = json.loads(out)["image"]
    metric = json.loads((project / ".sail" / "images.json").read_text())["metric"]
    for side, ref in (("metric", metric), ("inference", inference)):
        size, gzipped = image_megabytes(client, ref)
        figures[f"{side}_explain_image_mb"], figures[f"{side}_explain_image_gzip_mb"] = (
            size,
            gzipped,
        )
    starts = []
    for _ in range(runs):
        with smoke.container_server(inference, {}) as (_, seconds):
            starts.append(seconds)
    figures["explain_cold_start_seconds"] = statistics.median(starts)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cold starts to time")
    args = parser.parse_args()
    os.environ.update(
        SAIL_BASE_IMAGE=prepare_machine(),
        SAIL_SIGNING_KEY=KEY,
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.invalid",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.invalid",
    )
    client = docker.from_env()
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as scratch:
        project = Path(
            cookiecutter(str(ROOT / "cookiecutter-sail"), no_input=True, output_dir=scratch)
        )
        figures["build_seconds"], _ = sail(project, "build")

        transform = next((project / "src").glob("*/transform.py"))
        transform.write_text(transform.read_text() + "\n# a code-only change\n")
        git(project, "commit", "-qam", "code-only change")
        figures["code_only_rebuild_seconds"], _ = sail(project, "build")

        sail(project, "validate")
        sail(project, "split")
        candidates = json.loads(sail(project, "candidates")[1])
        figures["candidates"] = len(candidates)
        figures["train_parallel_seconds"], _ = sail(project, "train", "--container")
        figures["train_serial_seconds"] = sum(
            sail(project, "train", "--container", "--candidate", c)[0] for c in candidates
        )

        sail(project, "evaluate", "--container")
        sail(project, "gate")
        figures["package_seconds"], out = sail(project, "package")
        inference = json.loads(out)["image"]
        images = json.loads((project / ".sail" / "images.json").read_text())
        for side, ref in (
            ("train", images["train"]),
            ("metric", images["metric"]),
            ("inference", inference),
        ):
            figures[f"{side}_image_mb"], figures[f"{side}_image_gzip_mb"] = image_megabytes(
                client, ref
            )

        figures["inference_largest_mb"] = largest(client, inference)
        starts = []
        for _ in range(args.runs):
            with smoke.container_server(inference, {}) as (_, seconds):
                starts.append(seconds)
        figures["cold_start_seconds"] = {
            "min": min(starts),
            "median": statistics.median(starts),
            "max": max(starts),
        }
        figures.update(with_explanations(client, project, args.runs))
        figures["cpus"] = os.cpu_count()

    print(json.dumps(figures, indent=2, default=lambda x: round(x, 2)))
    print()
    print("| measure | figure | goal |")
    print("|---|---|---|")
    for side in ("train", "metric", "inference"):
        goal = "<= 150 MB" if side == "inference" else ""
        print(
            f"| {side} image | {figures[f'{side}_image_mb']:.0f} MB "
            f"({figures[f'{side}_image_gzip_mb']:.0f} MB gzip'd) | {goal} |"
        )
    cold = figures["cold_start_seconds"]
    print(
        f"| inference cold start, `docker run` to /ready (n={args.runs}) | median "
        f"{cold['median']:.2f} s (min {cold['min']:.2f}, max {cold['max']:.2f}) | <= 1 s |"
    )
    print(
        f"| rebuild after a code-only change | {figures['code_only_rebuild_seconds']:.1f} s | <= "
        "30 s |"
    )
    print(
        f"| {figures['candidates']} candidates, parallel containers | "
        f"{figures['train_parallel_seconds']:.1f} s | |"
    )
    print(
        f"| {figures['candidates']} candidates, one after another | "
        f"{figures['train_serial_seconds']:.1f} s | |"
    )
    print(f"| first build (train + metric) | {figures['build_seconds']:.1f} s | |")
    print(f"| package (inference image) | {figures['package_seconds']:.1f} s | |")
    for side in ("metric", "inference"):
        print(
            f"| {side} image, serving.explanations: true | "
            f"{figures[f'{side}_explain_image_mb']:.0f} MB "
            f"({figures[f'{side}_explain_image_gzip_mb']:.0f} MB gzip'd) | |"
        )
    print(
        "| inference cold start, serving.explanations: true | median "
        f"{figures['explain_cold_start_seconds']:.2f} s | |"
    )


if __name__ == "__main__":
    main()
