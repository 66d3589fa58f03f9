"""What the benchmarks share: the real `sail` (and docker/prepare-machine) in a child process,
as a user runs them, a failure stopping the benchmark with the end of its stderr; and the size
of an image."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parents[1]


def sail(project: Path, *args: str, env: Mapping[str, str] | None = None) -> tuple[float, str]:
    """Run one sail command (in os.environ unless env is given); its wall time and stdout."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "sail_pipelines.cli", "--project", str(project), *args],
        capture_output=True,
        text=True,
        env=os.environ if env is None else env,
    )
    if result.returncode != 0:
        sys.exit(f"sail {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return time.monotonic() - started, result.stdout


def prepare_machine() -> str:
    """Run docker/prepare-machine; the base image it made (its last line, SAIL_BASE_IMAGE=...)."""
    result = subprocess.run(
        [str(ROOT / "docker" / "prepare-machine")], capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"docker/prepare-machine failed:\n{result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1].partition("=")[2]


def image_megabytes(client: Any, ref: str) -> tuple[float, float]:
    """Uncompressed size (what `docker images` shows) and gzip'd `docker save` (about what a
    registry stores)."""
    size = client.images.get(ref).attrs["Size"] / 1e6
    saved = subprocess.run(
        f"docker save {ref} | gzip -1 | wc -c",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    )
    return size, int(saved.stdout) / 1e6
