"""No half-finished release: a model that cannot be served is never registered, and a failure at
any release step leaves the registry, models/accepted and the DVC remote as they were."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from conftest import TEST_KEY, ok, sail
from sail_pipelines.config import ProjectPaths, Settings, load_params
from sail_pipelines.evaluation import accept, gate
from sail_pipelines.integrity.bundle import bundle_id
from sail_pipelines.integrity.signing import signing_key


class Injected(RuntimeError):
    pass


def _state(project):
    client = MlflowClient(f"sqlite:///{project / '.mlflow' / 'mlflow.db'}")
    model = load_params(ProjectPaths(project)).gate.registered_model
    versions = sorted(
        (str(v.version) for v in client.search_model_versions(f"name='{model}'")), key=int
    )
    aliases = client.get_registered_model(model).aliases
    remote = sorted(p.name for p in (project / "dvc-storage").rglob("*") if p.is_file())
    return versions, aliases, bundle_id(project / "models" / "accepted"), remote


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, pipeline_project):
    """A run project whose new evaluation awaits the gate (so the gate would register a new
    version)."""
    import shutil

    project = tmp_path_factory.mktemp("release") / "p"
    shutil.copytree(pipeline_project, project, symlinks=True)
    ok(sail(project, "evaluate"))
    return project


def _gate(project, monkeypatch):
    monkeypatch.setenv("SAIL_SIGNING_KEY", TEST_KEY)
    paths = ProjectPaths(project)
    settings, params = Settings.from_env(paths), load_params(paths)
    return gate.run(paths, params, settings, signing_key(settings, params.signing_scheme))


@pytest.mark.parametrize(
    "step",
    [
        "create_model_version",
        "log_artifacts",
        "set_model_version_tag",
        "set_registered_model_alias",
        "write accepted bundle",
    ],
)
@pytest.mark.slow
def test_a_failure_at_any_release_step_leaves_everything_as_it_was(evaluated, monkeypatch, step):
    before = _state(evaluated)
    if step == "write accepted bundle":
        real = accept.write_bundle
        calls = []

        def write(dest, *args):
            calls.append(dest)
            # the first writes the staged copy for MLflow, the second models/accepted
            if len(calls) == 2:
                raise Injected(step)
            return real(dest, *args)

        monkeypatch.setattr(accept, "write_bundle", write)
    else:

        def fail(*args, **kwargs):
            raise Injected(step)

        monkeypatch.setattr(MlflowClient, step, fail)
    with pytest.raises(Injected):
        _gate(evaluated, monkeypatch)
    assert _state(evaluated) == before


def test_after_those_failures_the_next_gate_releases(evaluated, monkeypatch):
    before = _state(evaluated)
    report = _gate(evaluated, monkeypatch)
    after = _state(evaluated)
    assert after[0] == [*before[0], str(report["registered_version"])]
    assert (
        str(after[1]["candidate"]) == str(report["registered_version"])
        and after[2] == report["accepted_bundle_id"]
    )


def test_a_model_the_api_cannot_serve_is_never_registered(evaluated, monkeypatch):
    before = _state(evaluated)
    evaluation = json.loads((evaluated / "reports" / "evaluation.json").read_text())
    evaluation["holdout"]["predictions"][0] = "not what the model says"
    (evaluated / "reports" / "evaluation.json").write_text(json.dumps(evaluation))
    with pytest.raises(gate.GateFailed, match="serves the holdout|differ from the metric step"):
        _gate(evaluated, monkeypatch)
    assert _state(evaluated)[:3] == before[:3]
    verdict = json.loads((evaluated / "reports" / "gate.json").read_text())
    rule = next(
        r for r in verdict["rules"] if r["rule"] == "serves the holdout rows through the API"
    )
    assert not rule["passed"] and "rows [0]" in rule["detail"]
