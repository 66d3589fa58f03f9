"""Finish the generated project, offline and in seconds.

1. Put the example task's dataset at data/raw/data.csv, its contract at contracts/schema.yaml and
   the reference profile `sail validate` compares later data against at contracts/profile.json.
2. git init (branch main), dvc init, add a local default remote.
3. With data_file: `sail adopt` the user's file (the pre-generation hook checked it trains), which
   replaces the example's data, contract, profile and thresholds; else track the example data.
4. Write .cruft.json so `cruft check` / `cruft update` can follow template changes.
5. Commit everything, if git knows who you are.

Any failure prints ONE line starting with ERROR on stderr and exits 1.
"""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

CONTEXT = json.loads({{cookiecutter | jsonify | tojson}})
TASK = CONTEXT["__example_task"]
ROOT = Path.cwd()
ADOPT = ROOT / ".sail-adopt.json"  # written by the pre-generation hook when data_file is given
REMOTE_TEMPLATE = re.compile(r"^([a-zA-Z][\w+.-]*://|git@|gh:|gl:|bb:)")
# Paths `cruft update` must not diff: repository internals created by this hook, and this
# file itself (cruft rewrites it; diffing the re-rendered copy would only conflict).
CRUFT_SKIP = [".cruft.json", ".git", ".dvc/cache", ".dvc/tmp"]
# The questions hooks/pre_prompt.py may leave out, each with a derived `__` twin.
HIDEABLE = ("data_file", "target", "task", "min_roc_auc", "min_r2")


class HookError(Exception):
    """A setup step failed; the message is the whole report."""


def run(cmd, what, check=True, cwd=None):
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    try:
        proc = subprocess.run(cmd, cwd=cwd or ROOT, env=env, capture_output=True, text=True)
    except OSError as exc:
        raise HookError(f"{what} failed: {exc}") from None
    if check and proc.returncode != 0:
        lines = [
            line.strip() for line in (proc.stderr + "\n" + proc.stdout).splitlines() if line.strip()
        ]
        detail = lines[-1] if lines else f"exit status {proc.returncode}"
        raise HookError(f"{what} failed: {detail}")
    return proc


def place_task_files():
    source = ROOT / "_task" / TASK
    data, schema, profile = source / "data.csv", source / "schema.yaml", source / "profile.json"
    if not data.is_file() or not schema.is_file() or not profile.is_file():
        raise HookError(f"the template has no dataset/schema/profile for task {TASK!r}")
    (ROOT / "data" / "raw").mkdir(parents=True, exist_ok=True)
    (ROOT / "contracts").mkdir(exist_ok=True)
    shutil.move(str(data), str(ROOT / "data" / "raw" / "data.csv"))
    shutil.move(str(schema), str(ROOT / "contracts" / "schema.yaml"))
    # reference for `sail validate`
    shutil.move(str(profile), str(ROOT / "contracts" / "profile.json"))
    shutil.rmtree(ROOT / "_task")


def git_init():
    if shutil.which("git") is None:
        raise HookError(
            "git is not installed or not on PATH; install git and generate the project again"
        )
    run(["git", "init", "-q"], "git init")
    run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], "git init (branch main)")


def dvc_repo():
    """DVC's repository and error types, in this process: one import instead of a `python -m dvc`
    process per step (each paid dvc's import again, most of a project's generation time)."""
    try:
        from dvc.exceptions import DvcException
        from dvc.repo import Repo
    except ImportError:
        raise HookError(
            f"dvc cannot be imported by {sys.executable}; install sail-pipelines (it brings dvc) "
            "into the Python environment that runs cookiecutter, then generate the project again"
        ) from None
    logging.getLogger("dvc").setLevel(logging.WARNING)  # as `dvc -q`: no "next, run ..." advice
    return Repo, DvcException


def dvc_init():
    """`dvc init`, analytics off, and the local folder dvc-storage/ as the default remote (stored
    relative to .dvc/, as `dvc remote add` run from the root writes it: dvc rewrites a path
    relative to the working directory, here ROOT, into one relative to .dvc/)."""
    repo_type, dvc_error = dvc_repo()
    try:
        repo = repo_type.init(str(ROOT))
        with repo.config.edit() as conf:
            conf["core"]["analytics"] = "false"
            conf["core"]["remote"] = "local"
            conf["remote"]["local"] = {"url": "dvc-storage"}  # cwd is ROOT
        repo.close()
    except dvc_error as exc:
        raise HookError(f"dvc init failed: {exc}") from None


def track_data():
    """The user's data file through `sail adopt`, or the example data as it is."""
    if not ADOPT.is_file():
        repo_type, dvc_error = dvc_repo()
        try:
            with repo_type(str(ROOT)) as repo:
                repo.add("data/raw/data.csv")
        except dvc_error as exc:
            raise HookError(f"dvc add data/raw/data.csv failed: {exc}") from None
        return
    answers = json.loads(ADOPT.read_text())
    ADOPT.unlink()
    task = [] if answers["task"] == "auto" else ["--task", answers["task"]]
    proc = run(
        [
            sys.executable,
            "-m",
            "sail_pipelines.cli",
            "adopt",
            answers["path"],
            "--target",
            answers["target"],
            *task,
        ],
        f"sail adopt {Path(answers['path']).name}",
    )
    print("\n".join(line for line in proc.stdout.splitlines() if not line.startswith("{")))


def local_template_dir(path):
    """Absolute directory of a local template, even when cookiecutter was given a relative path."""
    if not path or REMOTE_TEMPLATE.match(str(path)):
        return None
    candidates = [Path(path)] if Path(path).is_absolute() else []
    if not candidates and os.environ.get("PWD"):
        # cookiecutter runs this hook from the temporary copy hooks/pre_prompt.py runs in, so the
        # place it was started from is known only to the shell.
        candidates.append(Path(os.environ["PWD"]) / path)
    for candidate in candidates:
        if (candidate / "cookiecutter.json").is_file():
            return candidate.resolve()
    return None


def git_home(template_dir):
    """(repository root, template's folder in it) of a local template inside a git repository.

    The template lives in a subfolder (cookiecutter-sail/) of the sail-pipelines repository, and
    cruft clones `template` and renders `directory`: naming the subfolder as the template makes
    `cruft check` and `cruft update` fail ("repository ... does not exist")."""
    proc = run(
        ["git", "rev-parse", "--show-toplevel"], "git rev-parse", check=False, cwd=template_dir
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        return template_dir, None
    root = Path(proc.stdout.strip()).resolve()
    folder = template_dir.resolve().relative_to(root).as_posix()
    return root, (None if folder == "." else folder)


def write_cruft_state():
    template = CONTEXT.get("_template")
    # `_repo_dir` is the temporary copy cookiecutter made for hooks/pre_prompt.py, which names the
    # folder it copied in `_template_dir` when the command line says.
    source = local_template_dir(CONTEXT.get("_template_dir"))
    repo_dir = (
        source or local_template_dir(template) or local_template_dir(CONTEXT.get("_repo_dir"))
    )
    directory = None
    if template and not REMOTE_TEMPLATE.match(str(template)):
        template_dir = source or local_template_dir(template) or Path(template).resolve()
        root, folder = git_home(template_dir)
        template, directory = str(root), folder
    commit = CONTEXT.get("_commit")
    if not commit and repo_dir is not None:
        proc = run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"],
            "git rev-parse",
            check=False,
            cwd=repo_dir,
        )
        commit = proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None
    local = ("_output_dir", "_repo_dir", "_template_dir")
    answers = {k: v for k, v in CONTEXT.items() if k not in local}
    # A question hooks/pre_prompt.py did not ask is kept under its own name with the value used,
    # and the derived copies go, so `cruft update --variables-to-update` reaches the files.
    for key in HIDEABLE:
        answers[key] = answers.pop(f"__{key}", answers.get(key))
    # Adoption happened once, here; a template update re-renders without it (the data, contract and
    # thresholds are the project's own now) and must not need the file on another machine.
    answers.update(data_file="", target="")
    answers["_template"] = template
    if commit:
        answers["_commit"] = commit
    state = {
        "template": template,
        "commit": commit,
        "checkout": CONTEXT.get("_checkout"),
        "context": {"cookiecutter": answers},
        "directory": directory,
        "skip": CRUFT_SKIP,
    }
    (ROOT / ".cruft.json").write_text(
        json.dumps(state, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )


def git_commit():
    run(["git", "add", "-A"], "git add")
    name = run(["git", "config", "user.name"], "git config", check=False).stdout.strip()
    email = run(["git", "config", "user.email"], "git config", check=False).stdout.strip()
    if not (name and email):
        print(
            "NOTE: git user.name/user.email are not set, so the files are staged but not "
            "committed; set them and run: git commit -m 'Initial commit'"
        )
        return
    message = "Initial commit from cookiecutter-sail"
    run(
        ["git", "-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "-m", message],
        "git commit",
    )


def main():
    try:
        place_task_files()
        git_init()
        dvc_init()
        track_data()
        write_cruft_state()
        git_commit()
    except HookError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # anything unexpected still gets one clear line
        print(f"ERROR: project setup failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"Created {ROOT.name}; next: cd {ROOT.name} && sail run")


if __name__ == "__main__":
    main()
