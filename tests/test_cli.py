"""The CLI refuses bad invocations with one line and no traceback; promotion is compare-and-set."""

import json

import pytest
from mlflow import MlflowClient

from conftest import ok, sail


def one_line_error(result, command, text):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith(f"sail {command}: error:") and text in lines[-1], result.stderr


def test_outside_a_project(tmp_path):
    one_line_error(sail(tmp_path, "validate"), "validate", "no params.yaml")


@pytest.mark.parametrize(
    "args,text",
    [(["--port", "99999"], "not a TCP port"), (["--workers", "0"], "not a worker count")],
)
def test_bad_serve_arguments(tmp_path, args, text):
    one_line_error(sail(tmp_path, "serve", *args), "serve", text)


def test_broken_params_yaml_names_the_line(project_copy):
    (project_copy / "params.yaml").write_text("task: classification\ncandidates: [\n")
    one_line_error(sail(project_copy, "split"), "split", "params.yaml is not valid YAML: line 3")


def test_a_wrapped_error_is_one_line_and_sail_debug_shows_its_cause(tmp_path):
    """The one line stays as it is; SAIL_DEBUG=1 adds the chain down to the YAML parser's error."""
    (tmp_path / "params.yaml").write_text("task: classification\ncandidates: [\n")
    message = "params.yaml is not valid YAML: line 3"
    one_line_error(sail(tmp_path, "split"), "split", message)
    assert len(sail(tmp_path, "split").stderr.strip().splitlines()) == 1

    debug = sail(tmp_path, "split", SAIL_DEBUG="1")
    assert debug.returncode == 1
    lines = debug.stderr.strip().splitlines()
    assert lines[-1].startswith("sail split: error: " + message), debug.stderr
    assert "yaml.parser.ParserError: while parsing a flow node" in debug.stderr
    assert "The above exception was the direct cause of the following exception" in debug.stderr
    assert "sail_pipelines.errors.SailError: " + message in debug.stderr


@pytest.mark.slow
def test_unknown_candidate_and_estimator(project_copy):
    one_line_error(
        sail(project_copy, "train", "--candidate", "nope"), "train", "unknown candidate(s) nope"
    )
    params = (
        (project_copy / "params.yaml")
        .read_text()
        .replace("sklearn.linear_model.LogisticRegression", "sklearn.linear_model.Nope")
    )
    (project_copy / "params.yaml").write_text(params)
    one_line_error(
        sail(project_copy, "train"), "train", "cannot import estimator 'sklearn.linear_model.Nope'"
    )


def test_bad_batch_files(project_copy, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    one_line_error(
        sail(project_copy, "predict", "--input", str(empty), "--output", str(tmp_path / "o.csv")),
        "predict",
        "not a readable CSV",
    )
    one_line_error(
        sail(
            project_copy,
            "predict",
            "--input",
            str(tmp_path / "none.csv"),
            "--output",
            str(tmp_path / "o.csv"),
        ),
        "predict",
        "no data file",
    )
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    one_line_error(
        sail(project_copy, "predict", "--input", str(wrong), "--output", str(tmp_path / "o.csv")),
        "predict",
        "input is missing 30 column(s)",
    )
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.slow
def test_promotion_is_compare_and_set(project_copy):
    client = MlflowClient(f"sqlite:///{project_copy / '.mlflow' / 'mlflow.db'}")
    one_line_error(
        sail(project_copy, "promote", "--expect-champion", "3"),
        "promote",
        "has no champion, not the expected '3'",
    )
    assert "champion" not in client.get_registered_model("sail_model").aliases
    result = json.loads(ok(sail(project_copy, "promote", "--expect-champion", "none")).stdout)
    assert {k: result[k] for k in ("model", "from", "to", "changed")} == {
        "model": "sail_model",
        "from": None,
        "to": "1",
        "changed": True,
    }
    assert json.loads(ok(sail(project_copy, "promote")).stdout)["changed"] is False
    one_line_error(
        sail(project_copy, "promote", "--expect-champion", "none"),
        "promote",
        "has v1, not the expected 'none'",
    )


@pytest.mark.slow
def test_promote_without_a_candidate(tmp_path):
    from conftest import bake

    project = bake(tmp_path)
    one_line_error(
        sail(project, "promote"), "promote", "no 'candidate' version of sail_model to promote"
    )
    one_line_error(sail(project, "push"), "push", "nothing to push")
