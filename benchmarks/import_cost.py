"""What a `sail` process pays to import its libraries, with and without compiled bytecode.

    python3 benchmarks/import_cost.py [--rounds 3]

Every step of `sail run` and every `sail` call in the suite is a new Python process. When the
machine sets PYTHONDONTWRITEBYTECODE (CI machines often do) and the venv was installed without
compiling (uv's default), no .pyc is ever written and each process compiles mlflow, scikit-learn
and pandas from source again. This prints the CPU and wall seconds of importing them both ways:
from the venv's .pyc files, and from source (an empty PYTHONPYCACHEPREFIX, so none is found).
Printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

IMPORTS = {
    "mlflow + scikit-learn + pandas (evaluate, gate)": "import mlflow, sklearn.ensemble, pandas",
    "sail_pipelines.cli (any command's start)": "import sail_pipelines.cli.commands",
    "scikit-learn + pandas (train)": "import sklearn.ensemble, sklearn.model_selection, pandas",
}


def once(code: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one fresh interpreter running `code`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    print(f"{'import':52} {'bytecode':>9} {'cpu s':>7} {'wall s':>7}")
    for name, code in IMPORTS.items():
        for label in ("compiled", "source"):
            rows = []
            for _ in range(args.rounds):
                with tempfile.TemporaryDirectory() as empty:
                    env = dict(base, PYTHONPYCACHEPREFIX=empty) if label == "source" else base
                    rows.append(once(code, env))
            wall = statistics.median(w for w, _ in rows)
            cpu = statistics.median(c for _, c in rows)
            print(f"{name:52} {label:>9} {cpu:7.2f} {wall:7.2f}")


if __name__ == "__main__":
    main()
