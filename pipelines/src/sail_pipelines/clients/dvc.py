"""Running DVC as a subprocess of the same Python, so `sail` works without an activated venv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sail_pipelines.errors import SailError


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """PATH with this interpreter's bin first, so `dvc repro` finds the same `sail`."""
    env = {**os.environ, **(extra or {})}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def dvc(root: Path, *args: str, capture: bool = True, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        env=environment(env),
        capture_output=capture,
        text=True,
    )
    if proc.returncode != 0 and not capture:
        raise SailError(
            f"dvc {' '.join(args)} stopped (exit {proc.returncode}): the failing stage's report "
            "is above"
        )
    if proc.returncode != 0:
        lines = [
            line
            for line in ((proc.stderr or "") + (proc.stdout or "")).splitlines()
            if line.strip()
        ]
        reason = next(
            (line for line in lines if "ERROR" in line),
            lines[-1] if lines else f"exit {proc.returncode}",
        )
        raise SailError(f"dvc {' '.join(args)} failed: {reason.strip()}")
    return proc.stdout or ""
