"""upload-artifact stand-in: copy the files `path` names into $SAIL_ACT_ARTIFACTS/<name>.

As documented for actions/upload-artifact v4:
- `path` holds files, folders or wildcard patterns, one a line (`!` exclusions, which these
  workflows do not use, are refused rather than approximated);
- the artifact's root is the least common ancestor of the search paths (a folder's contents sit
  at the root; a single file sits there by its name);
- files and folders whose name starts with a dot are left out unless include-hidden-files is
  true (judged on every item reached from a search path, the search path itself included);
- an existing artifact of the same name is an error unless overwrite is true;
- no file found: if-no-files-found decides (warn, error, ignore) and nothing is uploaded.
Files from 64 MiB up (the image tarballs) are hard-linked instead of copied, to save time and
disk; the workflows never rewrite such a file in place once it is uploaded or downloaded.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import tempfile
from pathlib import Path

WILDCARDS = set("*?[")
LINK_FROM = 64 * 2**20


def place(source: str, dest: str) -> None:
    """Copy a file; hard-link a large one where the file system allows."""
    if os.path.getsize(source) >= LINK_FROM:
        try:
            os.link(source, dest)
            return
        except OSError:
            pass
    shutil.copy2(source, dest)


def truthy(value: str) -> bool:
    return value.strip().lower() == "true"


def search_root(pattern: str) -> Path:
    """The part of a pattern before its first wildcard segment."""
    parts = Path(pattern).parts
    return Path(*parts[: next((i for i, p in enumerate(parts) if WILDCARDS & set(p)), len(parts))])


def hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root.parent).parts)


def matches(pattern: str, include_hidden: bool) -> tuple[Path, list[Path]]:
    root = search_root(pattern)
    found = [Path(p) for p in glob.glob(pattern, recursive=True, include_hidden=True)]
    files = []
    for item in found:
        candidates = [item] if item.is_file() else [p for p in item.rglob("*") if p.is_file()]
        files += [f for f in candidates if include_hidden or not hidden(f, root)]
    return root, files


def main() -> int:
    env = os.environ
    name, store = env["INPUT_NAME"], Path(env["SAIL_ACT_ARTIFACTS"])
    lines = [line.strip() for line in env["INPUT_PATH"].splitlines() if line.strip()]
    if any(line.startswith("!") for line in lines):
        print("::error::the upload-artifact stand-in does not implement `!` exclusions")
        return 1
    roots, files = [], set()
    for line in lines:
        root, found = matches(
            str(Path(os.path.expanduser(line)).absolute()),
            truthy(env["INPUT_INCLUDE_HIDDEN_FILES"]),
        )
        roots.append(root)
        files |= set(found)
    if not files:
        how = env["INPUT_IF_NO_FILES_FOUND"]
        message = (
            f"No files were found with the provided path: {env['INPUT_PATH'].strip()}. "
            "No artifacts will be uploaded."
        )
        if how == "error":
            print(f"::error::{message}")
            return 1
        if how == "warn":
            print(f"::warning::{message}")
        return 0
    # The least common ancestor of the search paths; a lone file's is its folder.
    base = Path(
        os.path.commonpath([str(r.parent if len(roots) == 1 and r.is_file() else r) for r in roots])
    )
    target = store / name
    if target.exists() and not truthy(env["INPUT_OVERWRITE"]):
        print(
            "::error::Failed to CreateArtifact: an artifact with this name already exists "
            f"on the workflow run: {name}"
        )
        return 1
    store.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=store, prefix=f".{name}."))
    for file in sorted(files):
        dest = staging / file.relative_to(base)
        dest.parent.mkdir(parents=True, exist_ok=True)
        place(str(file), str(dest))
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    print(f"Artifact {name} has been successfully uploaded: {len(files)} file(s)")
    with open(env["GITHUB_OUTPUT"], "a") as out:
        out.write(f"artifact-id={name}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
