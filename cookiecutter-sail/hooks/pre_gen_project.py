"""Reject invalid answers before anything is generated.

Each failure prints ONE line on stderr naming the answer and exits 1; cookiecutter then
removes the half-created project directory. A data file is read and its schema inferred here
already, so a file that cannot train is refused before any project exists; the post-generation
hook then adopts it (see ADOPT).
"""

import json
import keyword
import math
import os
import re
import sys
from pathlib import Path

CONTEXT = json.loads({{cookiecutter | jsonify | tojson}})
# A question that hooks/pre_prompt.py found not to apply was not asked: the derived `__` value.
ANSWERS = {
    key: CONTEXT[key] if key in CONTEXT else CONTEXT[f"__{key}"]
    for key in (
        "project_name",
        "project_slug",
        "module_name",
        "description",
        "author_name",
        "data_file",
        "target",
        "task",
        "min_roc_auc",
        "min_r2",
        "regression_tolerance",
        "sail_pipelines_repo",
        "sail_pipelines_version",
        "approvers",
        "retrain_on_breach",
    )
}

SLUG = r"^[a-z][a-z0-9-]*[a-z0-9]$"
MODULE = r"^[a-z_][a-z0-9_]*$"
DECIMAL = r"^(\d+(\.\d*)?|\.\d+)$"
REPO = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"
VERSION_TAG = r"^v\d+\.\d+\.\d+$"
GROUP = r"^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$"
TASKS = ("auto", "classification", "regression")
YES_NO = ("no", "yes")
ADOPT = ".sail-adopt.json"  # the checked data answers, for the post-generation hook
# Module names that would shadow what a generated project imports.
RESERVED = {
    "sail_pipelines",
    "sklearn",
    "pandas",
    "numpy",
    "yaml",
    "mlflow",
    "dvc",
    "joblib",
    "tests",
    "src",
}
RANGES = {"min_roc_auc": (0.5, 1.0), "min_r2": (0.0, 1.0), "regression_tolerance": (0.0, 0.5)}
# Template delimiters, spelled so that rendering this hook leaves them alone.
DELIMITERS = ("{" + "{", "}" + "}", "{" + "%", "%" + "}")


def fail(message):
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(1)


def data_path(answer):
    """The data file as the user meant it: relative to where they ran cookiecutter, whose process is
    our parent (this hook runs inside the new project directory)."""
    path = Path(os.path.expanduser(answer))
    if path.is_absolute():
        return path
    bases = []
    try:
        bases.append(Path(f"/proc/{os.getppid()}/cwd").resolve(strict=True))
    except OSError:
        pass
    if os.environ.get("PWD"):
        bases.append(Path(os.environ["PWD"]))
    return next((base / path for base in bases if (base / path).is_file()), path)


def check_data():
    """With data_file: the file must train, or we say why in one line before generating anything."""
    answer, target, task = ANSWERS["data_file"].strip(), ANSWERS["target"].strip(), ANSWERS["task"]
    if not answer:
        if target:
            fail(f"target {target!r} was given without data_file: name your data file too")
        return
    if not target:
        fail("data_file needs target: the column to predict")
    path = data_path(answer)
    if not path.is_file():
        fail(f"data_file {answer!r}: no such file")
    try:
        from sail_pipelines.contract.data import read_table
        from sail_pipelines.contract.infer import infer
        from sail_pipelines.errors import SailError
    except ImportError:
        fail(
            "data_file needs sail-pipelines in the Python that runs cookiecutter "
            f"({sys.executable})"
        )
    try:
        infer(read_table(path), target, None if task == "auto" else task)
    except SailError as exc:
        fail(f"data_file {path.name}: {exc}")
    Path(ADOPT).write_text(
        json.dumps({"path": str(path.resolve()), "target": target, "task": task})
    )


def main():
    for key in ("project_name", "description", "author_name"):
        value = ANSWERS[key]
        if not isinstance(value, str) or (key == "project_name" and not value.strip()):
            fail(f"{key} must be non-empty text")
        if any(ch in value for ch in "\r\n") or any(d in value for d in DELIMITERS):
            fail(f"{key} {value!r} must be one line without template delimiters")

    slug = ANSWERS["project_slug"]
    if not isinstance(slug, str) or not re.match(SLUG, slug) or "--" in slug:
        fail(f"project_slug {slug!r} must match {SLUG} (no double '-')")

    module = ANSWERS["module_name"]
    if not isinstance(module, str) or not re.match(MODULE, module):
        fail(f"module_name {module!r} must be a lowercase Python identifier matching {MODULE}")
    if keyword.iskeyword(module):
        fail(f"module_name {module!r} is a Python keyword")
    if module in RESERVED or module in getattr(sys, "stdlib_module_names", ()):
        fail(f"module_name {module!r} would shadow an existing Python module; choose another")

    task = ANSWERS["task"]
    if task not in TASKS:
        fail(f"task {task!r} must be one of {', '.join(TASKS)}")
    if ANSWERS["retrain_on_breach"] not in YES_NO:
        fail(f"retrain_on_breach {ANSWERS['retrain_on_breach']!r} must be no or yes")

    for key, (low, high) in RANGES.items():
        raw = ANSWERS[key]
        text = str(raw).strip()
        try:
            value = float(text)
        except ValueError:
            fail(f"{key} {raw!r} must be a number in [{low}, {high}]")
        if not math.isfinite(value) or not re.match(DECIMAL, text):
            fail(f"{key} {raw!r} must be a plain decimal number in [{low}, {high}], e.g. {high}")
        if not low <= value <= high:
            fail(f"{key} {raw!r} must be in [{low}, {high}]")

    for key, pattern, example in (
        ("sail_pipelines_repo", REPO, "owner/sail-pipelines"),
        ("sail_pipelines_version", VERSION_TAG, "v0.1.0"),
        ("approvers", GROUP, "ml-approvers or alice,bob"),
    ):
        value = ANSWERS[key]
        if not isinstance(value, str) or not re.match(pattern, value):
            fail(f"{key} {value!r} must look like {example}")

    check_data()


if __name__ == "__main__":
    main()
