"""No half-finished release: a model that cannot be served is never registered, and a failure at
any release step leaves what the gate writes as it was: the registry's versions, aliases and
tags, models/accepted and reports/gate.json. Failures are injected by step name, not by call
order; a release whose undo is switched off (a mutation, kept as a case) is caught changing
them."""

from __future__ import annotations

import json
from pathlib import Path

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
    """What the gate writes: versions, aliases, the versions' tags, models/accepted, gate.json."""
    client = MlflowClient(f"sqlite:///{project / '.mlflow' / 'mlflow.db'}")
    model = load_params(ProjectPaths(project)).gate.registered_model
    found = client.search_model_versions(f"name='{model}'")
    versions = sorted((str(v.version) for v in found), key=int)
    aliases = client.get_registered_model(model).aliases
    tags = {str(v.version): v.tags for v in found}
    verdict = project / "reports" / "gate.json"
    report = verdict.read_bytes() if verdict.is_file() else None
    return versions, aliases, bundle_id(project / "models" / "accepted"), tags, report


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


MLFLOW_STEPS = (
    "create_model_version",
    "log_artifacts",
    "set_model_version_tag",
    "set_registered_model_alias",
)
# write_bundle's two calls, told apart by where they write
WRITE_STEPS = ("write the staged copy", "write models/accepted")


def _inject(project, monkeypatch, step: str) -> None:
    """Make the release step named `step` raise Injected, whenever in the release it comes."""
    if step in WRITE_STEPS:
        real, accepted = accept.write_bundle, project / "models" / "accepted"

        def write(dest, *args):
            if (Path(dest) == accepted) == (step == "write models/accepted"):
                raise Injected(step)
            return real(dest, *args)

        monkeypatch.setattr(accept, "write_bundle", write)
    else:

        def fail(*args, **kwargs):
            raise Injected(step)

        monkeypatch.setattr(MlflowClient, step, fail)


@pytest.mark.parametrize(
    "step, undo",
    [*((step, True) for step in (*MLFLOW_STEPS, *WRITE_STEPS)), ("write models/accepted", False)],
)
@pytest.mark.slow
def test_a_failure_at_any_release_step_leaves_everything_as_it_was(
    evaluated, monkeypatch, step, undo
):
    before = _state(evaluated)
    _inject(evaluated, monkeypatch, step)
    if not undo:  # the mutation: what the check must see
        monkeypatch.setattr(accept, "_undo", lambda *args: None)
    with pytest.raises(Injected):
        _gate(evaluated, monkeypatch)
    after = _state(evaluated)
    if undo:
        assert after == before
    else:
        assert after[0] != before[0] and after[1] != before[1]  # a version, and the alias on it
        monkeypatch.undo()  # clean up for the tests after this one: the undo, done by hand
        client = MlflowClient(f"sqlite:///{evaluated / '.mlflow' / 'mlflow.db'}")
        model = load_params(ProjectPaths(evaluated)).gate.registered_model
        client.set_registered_model_alias(model, "candidate", before[1]["candidate"])
        client.delete_model_version(model, after[0][-1])
        assert _state(evaluated) == before


@pytest.mark.slow
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
    assert _state(evaluated)[:4] == before[:4]  # gate.json now holds the failed verdict
    verdict = json.loads((evaluated / "reports" / "gate.json").read_text())
    rule = next(
        r for r in verdict["rules"] if r["rule"] == "serves the holdout rows through the API"
    )
    assert not rule["passed"] and "rows [0]" in rule["detail"]
