"""`sail test`: a generated project's own tests (its tests/), which CI runs first.

They pass on every public table the suite bakes (tests/datasets.py PUBLIC: categories with gaps,
dates, string labels), run inside copies of those projects; each check of the STL fails on a
transformation layer broken the way it guards against; a failing test makes `sail test` exit
non-zero with one line and the failures in the job summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import bake, ok, sail
from datasets import PUBLIC

pytestmark = pytest.mark.slow  # the public projects are built by one `sail run` each

TRANSFORM = "transform.py"


def copy_of(project: Path, dest: Path) -> Path:
    shutil.copytree(project, dest, symlinks=True)
    return dest


def summary_rows(summary: Path) -> list[str]:
    """The failed tests the job summary lists (its table's first column)."""
    return [
        line.split("`")[1] for line in summary.read_text().splitlines() if line.startswith("| `")
    ]


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_the_project_tests_pass_on_every_public_table(public_project, tmp_path, name):
    project = copy_of(public_project(name), tmp_path / name)
    summary = tmp_path / "summary.md"
    result = json.loads(ok(sail(project, "test", GITHUB_STEP_SUMMARY=str(summary))).stdout)
    schema = yaml.safe_load((project / "contracts" / "schema.yaml").read_text())
    categories = any(c.get("type") == "category" for c in schema["columns"])
    # only the unseen-category check may skip, and only where the schema has no category column
    assert result == {
        "passed": result["passed"],
        "failed": 0,
        "skipped": 0 if categories else 1,
        "job_summary": True,
    }
    assert result["passed"] >= 13
    assert summary.read_text().startswith("### ✅ sail test: the project's tests\n"), summary


def transform_file(project: Path) -> Path:
    [path] = (project / "src").glob(f"*/{TRANSFORM}")
    return path


# A transformation layer broken in one way, the table that shows it, and the check that must
# catch it. The old checks passed on both: they shifted only numeric columns (so an imputer that
# refits on the categories it transforms kept the same statistics) and left only the first column
# of four rows missing (so a date column without an imputer never met a gap).
BROKEN = [
    pytest.param(
        "penguins",
        'SimpleImputer(strategy="most_frequent")',
        'RefittingImputer(strategy="most_frequent")',
        "\n\nclass RefittingImputer(SimpleImputer):\n"
        "    def transform(self, X):\n"
        "        return super().fit(X).transform(X)\n",
        "test_transform_never_refits",
        id="categories-refit-at-transform",
    ),
    pytest.param(
        "economics",
        '            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),\n',
        "",
        "",
        "test_one_row_alone_equals_the_same_row_in_a_batch",
        id="dates-not-imputed",
    ),
]


@pytest.mark.parametrize("name, old, new, appended, check", BROKEN)
def test_each_check_catches_a_broken_transformation_layer(
    public_project, tmp_path, name, old, new, appended, check
):
    project = copy_of(public_project(name), tmp_path / name)
    path = transform_file(project)
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new) + appended)
    summary = tmp_path / "summary.md"
    result = sail(
        project, "test", "--", "tests/test_transform.py", GITHUB_STEP_SUMMARY=str(summary)
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"tests/test_transform.py::{check}" in summary_rows(summary), summary.read_text()


def test_a_failing_project_test_fails_sail_test_with_one_line_and_the_summary(tmp_path):
    project = bake(tmp_path)
    (project / "tests" / "test_broken.py").write_text(
        "def test_deliberately_broken():\n    assert 1 + 1 == 3, 'a | b'\n"
    )
    summary = tmp_path / "summary.md"
    result = sail(project, "test", GITHUB_STEP_SUMMARY=str(summary))
    assert result.returncode == 1 and result.stdout == "", result.stderr[-3000:]
    [line] = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert line.startswith("sail test: error: 1 of the project's tests failed (1 failed, "), line
    assert line.endswith(
        "): tests/test_broken.py::test_deliberately_broken; pytest's report is above"
    )
    assert "FAILED tests/test_broken.py::test_deliberately_broken" in result.stderr  # the log
    text = summary.read_text()
    assert text.startswith("### ❌ sail test: the project's tests\n\n1 failed, "), text
    assert "| `tests/test_broken.py::test_deliberately_broken` | AssertionError: a \\| b |" in text
    # and where there is nothing to run, nothing passes
    none = sail(project, "test", "--", "-k", "no_such_test")
    assert none.returncode == 1, none.stderr[-2000:]
    assert none.stderr.strip().splitlines()[-1] == (
        f"sail test: error: pytest collected no tests in {project.resolve()}"
    )
