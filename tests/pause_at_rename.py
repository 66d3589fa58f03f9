"""Run a Python program that stops, for good, just before a chosen rename, so a test can look at
the files at that instant and SIGKILL the process there: a real crash at an exact point, not a
patched function under test.

    python tests/pause_at_rename.py MARKER GLOB -m module [args...]
    python tests/pause_at_rename.py MARKER GLOB script.py [args...]

os.rename (which Path.rename calls) is wrapped: the first rename whose source's name matches GLOB
writes {"src": ..., "dst": ...} to MARKER and then sleeps instead of renaming.
"""

from __future__ import annotations

import fnmatch
import json
import os
import runpy
import sys
import time
from pathlib import Path


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
