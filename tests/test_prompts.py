"""Interactive generation asks only what applies (hooks/pre_prompt.py).

The real `cookiecutter` command runs on a pseudo-terminal (pexpect) and every question it asks is
recorded: with a data file, neither the example's task nor its thresholds are asked; without one,
only the chosen example's threshold is. --no-input runs keep every question (tests/test_bake.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from conftest import TEMPLATE

# Each test bakes through a terminal: `make test` runs these, not `make test-fast`.
pytestmark = pytest.mark.slow

PROMPTS = json.loads((TEMPLATE / "cookiecutter.json").read_text())["__prompts__"]
QUESTION = {
    key: text if isinstance(text, str) else text["__prompt__"] for key, text in PROMPTS.items()
}
EXAMPLE_DATA = TEMPLATE / "{{cookiecutter.project_slug}}" / "_task" / "regression" / "data.csv"
ALWAYS = [
    "project_name",
    "project_slug",
    "module_name",
    "description",
    "author_name",
    "regression_tolerance",
    "sail_pipelines_repo",
    "sail_pipelines_version",
    "approvers",
    "retrain_on_breach",
]


# rich styles the default even with NO_COLOR (bold): a question ends in ")" or "]", styles, ": "
PROMPT_END = r"[)\]](?:\x1b\[[0-9;]*m)*: $"
STYLE = re.compile(r"\x1b\[[0-9;]*m")


def asked_in(chunk: str) -> str:
    """The variable whose question this piece of the transcript ends with."""
    flat = " ".join(STYLE.sub("", chunk).split())  # rich wraps long questions
    found = [key for key, text in QUESTION.items() if text in flat]
    assert found, f"an unknown question: {chunk[-300:]!r}"
    return max(found, key=lambda key: len(QUESTION[key]))


def generate(cwd: Path, *args: str, answers: dict[str, list[str]]) -> tuple[list[str], str]:
    """Run `cookiecutter` on a terminal from cwd; answer each question from `answers` (in turn,
    Enter once they run out). Returns the questions in the order asked, and the transcript."""
    env = {**os.environ, "PWD": str(cwd), "NO_COLOR": "1", "COLUMNS": "500"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "cookiecutter", "-o", str(cwd / "out"), *args],
        cwd=str(cwd),
        env=env,
        encoding="utf-8",
        dimensions=(50, 500),
        timeout=180,
    )
    asked, transcript = [], []
    pending = {key: list(values) for key, values in answers.items()}
    while child.expect([PROMPT_END, pexpect.EOF]) == 0:
        chunk = child.before + child.after
        transcript.append(chunk)
        key = asked_in(chunk)
        asked.append(key)
        child.sendline(pending[key].pop(0) if pending.get(key) else "")
    transcript.append(child.before)
    child.close()
    output = "".join(transcript)
    assert child.exitstatus == 0, output[-2000:]
    return asked, output


def cruft_state(project: Path) -> dict:
    return json.loads((project / ".cruft.json").read_text())


def test_without_a_data_file_only_the_chosen_examples_threshold_is_asked(tmp_path):
    """The task comes first; the regression example is asked for R2, not ROC AUC, and the answer
    reaches params.yaml and .cruft.json (under its own name, for `cruft update`). The template is
    named by a relative path from elsewhere: .cruft.json still names its repository."""
    template = os.path.relpath(TEMPLATE, tmp_path)
    asked, _ = generate(
        tmp_path, template, answers={"task": ["3"], "min_r2": ["0.42"], "project_name": ["Ex"]}
    )
    assert asked == ["data_file", "task", *ALWAYS[:5], "min_r2", *ALWAYS[5:]]
    project = tmp_path / "out" / "ex"
    assert re.search(r"r2: \{min: 0\.42\}", (project / "params.yaml").read_text())
    state = cruft_state(project)
    answers = state["context"]["cookiecutter"]
    assert (answers["task"], answers["min_r2"], answers["min_roc_auc"]) == (
        "regression",
        "0.42",
        "0.95",
    )
    assert not {"__task", "__min_r2", "__data_file", "_template_dir"} & set(answers)
    top = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=TEMPLATE, capture_output=True, text=True
    )
    if top.returncode == 0:
        assert state["template"] == str(Path(top.stdout.strip()).resolve())
        assert state["directory"] == TEMPLATE.resolve().relative_to(state["template"]).as_posix()


def test_with_a_data_file_neither_the_task_nor_thresholds_are_asked(tmp_path):
    """data_file on the command line: the target is asked (again while empty), the task is
    inferred and the gate thresholds come from the baseline."""
    data = tmp_path / "diabetes.csv"
    data.write_bytes(EXAMPLE_DATA.read_bytes())
    asked, output = generate(
        tmp_path, str(TEMPLATE), f"data_file={data.name}", answers={"target": ["", "target"]}
    )
    assert asked == ["target", "target", *ALWAYS]
    assert "A data file needs the column to predict" in output
    params = (tmp_path / "out" / "sail-model" / "params.yaml").read_text()
    assert "task: regression" in params and "derived by `sail adopt`" in params


def test_a_data_file_answered_is_checked_before_the_next_question(tmp_path):
    """Asked for a data file, a path that is not there is asked again; with the target and the
    task given on the command line, nothing else about the data is asked, and the task is kept."""
    data = tmp_path / "diabetes.csv"
    data.write_bytes(EXAMPLE_DATA.read_bytes())
    asked, output = generate(
        tmp_path,
        str(TEMPLATE),
        "target=target",
        "task=regression",
        answers={"data_file": ["missing.csv", data.name], "project_name": ["Answered"]},
    )
    assert asked == ["data_file", "data_file", *ALWAYS]
    assert "No such file: missing.csv" in output
    answers = cruft_state(tmp_path / "out" / "answered")["context"]["cookiecutter"]
    assert (answers["task"], answers["data_file"], answers["target"]) == ("regression", "", "")
