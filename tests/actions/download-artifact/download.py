"""download-artifact stand-in: copy artifacts of $SAIL_ACT_ARTIFACTS into `path`.

As documented for actions/download-artifact v4:
- with `name`: that artifact's files go into `path` itself; an unknown name fails the step;
- without: every artifact (or those whose name matches `pattern`) goes into `path/<name>/`, or,
  with merge-multiple true, all into `path` itself; no artifact found is not an error;
- `path` defaults to the workspace; `~` is expanded.
Files from 64 MiB up (the image tarballs) are hard-linked instead of copied, as in upload.py.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import sys
from pathlib import Path

LINK_FROM = 64 * 2**20


def place(source: str, dest: str) -> None:
    """Copy a file; hard-link a large one where the file system allows."""
    if os.path.getsize(source) >= LINK_FROM and not os.path.exists(dest):
        try:
            os.link(source, dest)
            return
        except OSError:
            pass
    shutil.copy2(source, dest)


def main() -> int:
    env = os.environ
    store = Path(env["SAIL_ACT_ARTIFACTS"])
    dest = Path(os.path.expanduser(env["INPUT_PATH"] or env["GITHUB_WORKSPACE"])).absolute()
    available = (
        sorted(p.name for p in store.iterdir() if not p.name.startswith("."))
        if store.is_dir()
        else []
    )
    if env["INPUT_NAME"]:
        if env["INPUT_NAME"] not in available:
            print(
                "::error::Unable to download artifact(s): "
                f"Artifact not found for name: {env['INPUT_NAME']}"
            )
            return 1
        chosen, merge = [env["INPUT_NAME"]], True
    else:
        chosen = [n for n in available if fnmatch.fnmatchcase(n, env["INPUT_PATTERN"] or "*")]
        merge = env["INPUT_MERGE_MULTIPLE"].strip().lower() == "true"
    for name in chosen:
        shutil.copytree(
            store / name, dest if merge else dest / name, copy_function=place, dirs_exist_ok=True
        )
        print(f"Artifact {name} downloaded to {dest if merge else dest / name}")
    print(f"Total of {len(chosen)} artifact(s) downloaded")
    with open(env["GITHUB_OUTPUT"], "a") as out:
        out.write(f"download-path={dest}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
