"""Where `make demo` spends its time: install, bake, each `sail run` stage, batch predict.

    python3 benchmarks/demo_phases.py [--venv .venv] [--profile] [--makefile OLD_MAKEFILE]

Runs the Makefile's own `demo` target (so what is timed is what a user runs) into a scratch
folder, with a fresh venv unless --venv names an existing one, and stamps each line it prints:
a phase starts at the line make or `sail run` prints for it. --profile then runs the project's
`sail train` and `sail evaluate` again under cProfile and prints what took their time (imports,
the search, ONNX conversion, the bootstrap, ...). --makefile runs another Makefile's demo (e.g.
`git show HEAD~1:Makefile > /tmp/old.mk`) for a before/after. Wall times on a shared machine are
inflated: compare phases with each other, the CPU seconds of all the processes, and wall figures
only from a quiet machine. Printed, never asserted (goal: at most 120 s from a fresh clone, venv
included).
"""

from __future__ import annotations

import argparse
import os
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (pattern of the line that starts a phase, its name); the first match of each counts.
MARKERS = (
    (r"-m venv ", "venv + pip install"),
    (r"cookiecutter --no-input", "bake (cookiecutter)"),
    (r"sail run$", "sail run: start-up, fingerprint"),
    (r"Running stage 'validate'", "stage validate"),
    (r"Running stage 'split'", "stage split"),
    (r"Running stage 'train'", "stage train (search, fit, ONNX, sign)"),
    (r"Running stage 'evaluate'", "stage evaluate (metrics, bootstrap, MLflow)"),
    (r"^== gate", "gate (register)"),
    (r"^== push", "push (DVC remote)"),
    (r"^== serving smoke test", "serving smoke test"),
    (r"sail predict --input", "sail predict (batch)"),
    (r"^demo project: ", "end"),
)
# Functions whose cumulative time --profile reports when they appear (names as cProfile shows).
PROFILED = (
    "_find_and_load",  # imports
    "search.py",
    "study.py",
    "onnx_convert.py",
    "bootstrap.py",
    "fit",
)


def run_demo(venv: Path, demo_dir: Path, makefile: Path | None) -> list[tuple[str, float]]:
    """`make demo` with its output stamped; [(phase, seconds)] in order."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # lines arrive when printed, not at exit
    command = ["make", "--no-print-directory", "-C", str(ROOT), "demo"]
    command += [f"VENV={venv}", f"DEMO_DIR={demo_dir}"]
    if makefile:
        command += ["-f", str(makefile.resolve())]
    started = time.monotonic()
    marks: list[tuple[str, float]] = []
    pending = list(MARKERS)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.monotonic() - started
            sys.stdout.write(f"{now:7.1f}s | {line}")
            for index, (pattern, name) in enumerate(pending):
                if re.search(pattern, line.rstrip()):
                    marks.append((name, now))
                    del pending[: index + 1]
                    break
    total = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"make demo failed (exit {proc.returncode})")
    if not marks or marks[0][0] != MARKERS[0][1]:
        marks.insert(0, ("venv (already there)", 0.0))
    ends = [at for _, at in marks[1:]] + [total]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    return [
        (name, end - at) for (name, at), end in zip(marks, ends, strict=True) if name != "end"
    ] + [("total", total), ("CPU seconds of all processes (user + system)", cpu)]


def profile_stage(python: Path, project: Path, stage: str, top: int) -> None:
    """One stage again under cProfile, in the venv's interpreter; its slowest parts."""
    out = project / f".{stage}.prof"
    command = [str(python), "-m", "cProfile", "-o", str(out), "-m", "sail_pipelines.cli"]
    env = {**os.environ, "SAIL_ALLOW_DEV_KEY": "1"}
    started = time.monotonic()
    result = subprocess.run(
        [*command, "--project", str(project), stage], capture_output=True, text=True, env=env
    )
    if result.returncode != 0:
        sys.exit(f"sail {stage} failed:\n{result.stderr[-2000:]}")
    print(f"\n-- sail {stage} under cProfile: {time.monotonic() - started:.1f} s wall")
    stats = pstats.Stats(str(out))
    rows = []
    for (file, _, function), (_, _, _, cumulative, _) in stats.stats.items():
        where = f"{Path(file).name}:{function}"
        if any(key in where for key in PROFILED) or "sail_pipelines" in file:
            rows.append((cumulative, where))
    for cumulative, where in sorted(rows, reverse=True)[:top]:
        print(f"{cumulative:8.2f}s  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, help="an existing venv (default: a fresh one)")
    parser.add_argument("--profile", action="store_true", help="profile train and evaluate")
    parser.add_argument("--top", type=int, default=15, help="rows per profiled stage")
    parser.add_argument("--makefile", type=Path, help="another Makefile's demo target")
    args = parser.parse_args()
    (ROOT / "build").mkdir(exist_ok=True)
    # Under the checkout and named relative to it: an older Makefile put $(CURDIR) before VENV.
    with tempfile.TemporaryDirectory(prefix="demo-phases-", dir=ROOT / "build") as scratch:
        relative = Path(scratch).relative_to(ROOT)
        venv = args.venv.resolve() if args.venv else relative / ".venv"
        phases = run_demo(venv, Path(scratch) / "demo", args.makefile)
        print("\nphase                                         seconds")
        for name, seconds in phases:
            print(f"{name:<45} {seconds:7.1f}")
        if args.profile:
            project = Path(scratch) / "demo" / "sail-model"
            for stage in ("train", "evaluate"):
                profile_stage(ROOT / venv / "bin" / "python", project, stage, args.top)


if __name__ == "__main__":
    main()
