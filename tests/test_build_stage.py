"""What `sail build` and `sail package` stage for the images (clients/build.py): with
serving.explanations on, requirements-explain.txt pins shap and what it adds to the core, and
the inference image starts from explain-deps whatever the runtime; off, the file is empty (the
metric image installs it too) and the compiled image keeps its small serve-deps stage."""

from __future__ import annotations

import pytest

from conftest import bake
from sail_pipelines.clients import build


@pytest.fixture
def staged(tmp_path, monkeypatch):
    """`stage(context, explanations)` on a baked project, without building the wheel."""
    project = bake(tmp_path)
    monkeypatch.setattr(build, "stage_wheel", lambda staging: staging / "wheels" / "x.whl")
    context = build.BuildContext(project, project / ".sail" / "build")

    def run(explanations: bool) -> dict[str, str]:
        build.stage(context, explanations)
        return {p.name: p.read_text() for p in context.staging.glob("requirements-*.txt")}

    return run


def names(text: str) -> set[str]:
    return {line.split("==")[0] for line in text.splitlines()}


def test_explanations_pin_shap_beside_the_core_and_nothing_when_off(staged):
    on = staged(True)
    explain = names(on["requirements-explain.txt"])
    assert {"shap", "numba", "llvmlite"} <= explain
    # scikit-learn, pandas and numpy come from the core (project-deps), pinned there once
    assert not explain & names(on["requirements-core.txt"])
    assert "shap" not in names(on["requirements-serve.txt"] + on["requirements-metric.txt"])
    off = staged(False)
    assert off["requirements-explain.txt"] == ""
    assert {k: v for k, v in off.items() if k != "requirements-explain.txt"} == {
        k: v for k, v in on.items() if k != "requirements-explain.txt"
    }


def test_the_inference_stage_follows_the_runtime_unless_explanations_are_on():
    assert build.inference_deps("onnx", False) == "serve-deps"
    assert build.inference_deps("sklearn", False) == "project-deps"
    assert build.inference_deps("onnx", True) == build.inference_deps("sklearn", True)
    assert build.inference_deps("onnx", True) == build.EXPLAIN_DEPS


def test_the_dockerfile_installs_the_explain_requirements_where_they_are_needed(tmp_path):
    text = (bake(tmp_path) / build.DOCKERFILE).read_text()
    assert f"FROM project-deps AS {build.EXPLAIN_DEPS}" in text
    metric = text[text.index("AS metric-deps") : text.index("AS train-deps")]
    assert "-r /tmp/requirements-explain.txt" in metric
    serve = text[text.index("AS serve-deps") : text.index("AS inference-build")]
    assert "requirements-explain" not in serve.split(f"AS {build.EXPLAIN_DEPS}")[0]
    assert "SAIL_EXPLANATIONS=${EXPLANATIONS}" in text


def test_explanations_on_without_shap_installed_is_one_line(monkeypatch):
    def missing(roots, hint="", **kw):
        raise build.SailError(f"shap is not installed in the environment that runs sail: {hint}")

    monkeypatch.setattr(build, "pinned", missing)
    with pytest.raises(build.SailError, match=r"sail-pipelines\[explain\]"):
        build.explain_requirements({}, True)
    assert build.explain_requirements({}, False) == {}
