"""Kill a Python program just before a chosen rename, so a test sees the files as they were at
that instant: a real crash at an exact point, with no function under test patched.

`kill_at_rename(program, glob, workdir)` runs `python tests/pause_at_rename.py MARKER GLOB
PROGRAM...`, where PROGRAM is `-m module [args...]` or `script.py [args...]`. There os.rename
(which Path.rename calls) is wrapped: the first rename whose source's name matches GLOB writes
{"src": ..., "dst": ...} to MARKER and sleeps instead of renaming; the test then SIGKILLs it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping


def kill_at_rename(
    program: list[str],
    source_glob: str,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> dict[str, str]:
    """Run `program`, SIGKILL it just before it renames `source_glob`; return that rename."""
    marker = workdir / f"pause-{time.monotonic_ns()}.json"
    proc = subprocess.Popen(
        [sys.executable, __file__, str(marker), source_glob, *program],
        env=None if env is None else dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if not marker.exists():
            proc.kill()
            raise AssertionError(
                f"the program never renamed {source_glob} within {timeout:.0f}s "
                f"(exit {proc.wait()}): {proc.stderr.read()[-2000:]}"
            )
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
    return json.loads(marker.read_text())


def main() -> None:
    marker, pattern, *program = sys.argv[1:]
    real_rename = os.rename

    def rename(src, dst, *rest, **kwargs):
        if fnmatch.fnmatch(os.path.basename(os.fspath(src)), pattern):
            where = {"src": os.fspath(src), "dst": os.fspath(dst)}
            Path(marker + ".part").write_text(json.dumps(where))
            os.replace(marker + ".part", marker)  # the test never reads half a marker
            time.sleep(3600)  # the test kills us here
        return real_rename(src, dst, *rest, **kwargs)

    os.rename = rename
    if program[0] == "-m":
        sys.argv = program[1:]
        runpy.run_module(program[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = program
        runpy.run_path(program[0], run_name="__main__")


if __name__ == "__main__":
    main()
