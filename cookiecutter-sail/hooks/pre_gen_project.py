"""Reject invalid answers before anything is generated.

Each failure prints ONE line on stderr naming the answer and exits 1; cookiecutter then
removes the half-created project directory.
"""

import keyword
import math
import re
import sys

ANSWERS = {
    "project_name": {{ cookiecutter.project_name | tojson }},
    "project_slug": {{ cookiecutter.project_slug | tojson }},
    "module_name": {{ cookiecutter.module_name | tojson }},
    "description": {{ cookiecutter.description | tojson }},
    "author_name": {{ cookiecutter.author_name | tojson }},
    "task": {{ cookiecutter.task | tojson }},
    "min_roc_auc": {{ cookiecutter.min_roc_auc | tojson }},
    "min_r2": {{ cookiecutter.min_r2 | tojson }},
    "regression_tolerance": {{ cookiecutter.regression_tolerance | tojson }},
    "sail_pipelines_repo": {{ cookiecutter.sail_pipelines_repo | tojson }},
    "sail_pipelines_version": {{ cookiecutter.sail_pipelines_version | tojson }},
    "approvers": {{ cookiecutter.approvers | tojson }},
}

SLUG = r"^[a-z][a-z0-9-]*[a-z0-9]$"
MODULE = r"^[a-z_][a-z0-9_]*$"
DECIMAL = r"^(\d+(\.\d*)?|\.\d+)$"
REPO = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"
VERSION_TAG = r"^v\d+\.\d+\.\d+$"
GROUP = r"^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$"
TASKS = ("classification", "regression")
# Module names that would shadow what a generated project imports.
RESERVED = {"sail_pipelines", "sklearn", "pandas", "numpy", "yaml", "mlflow", "dvc", "joblib", "tests", "src"}
RANGES = {"min_roc_auc": (0.5, 1.0), "min_r2": (0.0, 1.0), "regression_tolerance": (0.0, 0.5)}
# Template delimiters, spelled so that rendering this hook leaves them alone.
DELIMITERS = ("{" + "{", "}" + "}", "{" + "%", "%" + "}")


def fail(message):
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(1)


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


if __name__ == "__main__":
    main()
