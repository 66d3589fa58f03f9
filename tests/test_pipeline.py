"""The whole pipeline in a baked project, with real DVC, a real MLflow store and real gunicorn."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import requests
import yaml
from mlflow import MlflowClient

from conftest import TEST_KEY, TEST_VERIFY_KEY, bake, dvc, ok, sail
from sail_pipelines.inference.smoke import local_server
from sail_pipelines.integrity import signing

PNG = b"\x89PNG\r\n\x1a\n"


def registry(project):
    return MlflowClient(f"sqlite:///{project / '.mlflow' / 'mlflow.db'}")


def remote_files(project):
    return sorted(
        p.relative_to(project) for p in (project / "dvc-storage").rglob("*") if p.is_file()
    )


def test_metrics_exist_and_are_sane(pipeline_project):
    metrics = json.loads((pipeline_project / "reports" / "metrics.json").read_text())
    assert 0.95 <= metrics["roc_auc"] <= 1.0 and 0.9 <= metrics["f1"] <= 1.0
    assert all(-1 <= metrics[m] <= 1 for m in ("accuracy", "precision", "recall", "mcc"))
    evaluation = json.loads((pipeline_project / "reports" / "evaluation.json").read_text())
    assert set(evaluation["candidates"]) == {
        "logistic_regression",
        "random_forest",
        "gradient_boosting",
    }
    best = evaluation["candidates"][evaluation["best"]]["metrics"]["roc_auc"]
    assert all(c["metrics"]["roc_auc"] <= best for c in evaluation["candidates"].values())
    matrix = evaluation["candidates"][evaluation["best"]]["metrics"]["confusion_matrix"]
    assert sum(map(sum, matrix)) == evaluation["test_rows"]
    for plot in ("confusion_matrix.png", "roc.png"):
        assert (pipeline_project / "reports" / "plots" / plot).read_bytes().startswith(PNG)


def test_registry_holds_the_version_with_its_alias(pipeline_project):
    client = registry(pipeline_project)
    version = client.get_model_version_by_alias("sail_model", "candidate")
    assert str(version.version) == "1"
    gate = json.loads((pipeline_project / "reports" / "gate.json").read_text())
    assert (
        gate["verdict"] == "pass" and gate["registered_version"] == "1" and gate["champion"] is None
    )
    run = client.get_run(version.run_id)
    assert run.data.tags["git_commit"] == gate["git_commit"] != "unknown"
    assert run.data.tags["data_hash"] == gate["data_hash"]
    assert run.data.metrics["roc_auc"] == pytest.approx(gate["metrics"]["roc_auc"])
    assert "estimator" in run.data.params
    runs = client.search_runs([run.info.experiment_id])
    # one per candidate
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 3


def test_dvc_remote_holds_the_accepted_bundle_and_data(pipeline_project):
    pointer = yaml.safe_load((pipeline_project / "models" / "accepted.dvc").read_text())["outs"][0]
    digest = pointer["md5"].removesuffix(".dir")
    storage = pipeline_project / "dvc-storage" / "files" / "md5"
    listing = json.loads((storage / digest[:2] / f"{digest[2:]}.dir").read_text())
    assert {entry["relpath"] for entry in listing} >= {
        "model.joblib",
        "outliers.joblib",
        "transformer.joblib",
        "metadata.json",
        "MANIFEST.json",
        "SIGNATURE.json",
    }
    for entry in listing:
        assert (storage / entry["md5"][:2] / entry["md5"][2:]).is_file()
    data_md5 = yaml.safe_load((pipeline_project / "data" / "raw" / "data.csv.dvc").read_text())[
        "outs"
    ][0]["md5"]
    assert (storage / data_md5[:2] / data_md5[2:]).is_file()


def test_accepted_bundle_carries_its_provenance(pipeline_project):
    metadata = json.loads((pipeline_project / "models" / "accepted" / "metadata.json").read_text())
    assert metadata["registry"] == {"model": "sail_model", "version": "1", "alias": "candidate"}
    assert metadata["signing"]["dev_key"] is False and TEST_KEY not in json.dumps(metadata)
    assert {
        "data_hash",
        "git_commit",
        "schema",
        "training_profile",
        "created_at",
        "library_versions",
        "evaluation",
    } <= set(metadata)


def test_served_predictions_equal_batch_predictions(pipeline_project, tmp_path, monkeypatch):
    monkeypatch.setenv("SAIL_SIGNING_KEY", TEST_KEY)
    batch_file = tmp_path / "batch.csv"
    ok(
        sail(
            pipeline_project,
            "predict",
            "--input",
            str(pipeline_project / "data/split/test.csv"),
            "--output",
            str(batch_file),
        )
    )
    batch = pd.read_csv(batch_file)
    rows = pd.read_csv(pipeline_project / "data/split/test.csv").drop(columns=["target"])
    with local_server(
        pipeline_project / "models" / "accepted", signing.public_key(TEST_VERIFY_KEY, "test")
    ) as url:
        served = requests.post(
            f"{url}/predict", json=rows.to_dict(orient="records"), timeout=30
        ).json()
        single = requests.post(f"{url}/predict", json=rows.iloc[0].to_dict(), timeout=30).json()
    assert served["predictions"] == batch["prediction"].tolist()
    assert [p["1"] for p in served["probabilities"]] == pytest.approx(
        batch["probability_1"].tolist(), rel=1e-12
    )
    assert single["predictions"] == served["predictions"][:1]
    assert served["model_version"] == "1"


def test_flipped_byte_is_refused_by_serve_and_evaluate(project_copy):
    accepted = project_copy / "models" / "accepted" / "model.joblib"
    data = bytearray(accepted.read_bytes())
    data[-10] ^= 0xFF
    accepted.write_bytes(bytes(data))
    served = sail(project_copy, "serve", "--port", "1")
    assert served.returncode == 1 and "model.joblib does not match its signed hash" in served.stderr
    assert "Traceback" not in served.stderr

    candidate = project_copy / "models" / "candidates" / "random_forest" / "transformer.joblib"
    data = bytearray(candidate.read_bytes())
    data[100] ^= 0x01
    candidate.write_bytes(bytes(data))
    evaluated = sail(project_copy, "evaluate")
    assert (
        evaluated.returncode == 1
        and "transformer.joblib does not match its signed hash" in evaluated.stderr
    )


def test_bundle_signed_with_another_key_is_refused(pipeline_project):
    other = signing.generate()
    result = sail(pipeline_project, "smoke", key=other.text())
    assert result.returncode == 1 and "signature does not match" in result.stderr
    assert f"this key is Ed25519 key id {other.key_id}" in result.stderr
    assert (
        f"signed with Ed25519 key id {signing.public_key(TEST_VERIFY_KEY, 'test').key_id}"
        in result.stderr
    )


def test_missing_signing_key_is_a_clear_error(pipeline_project):
    result = sail(pipeline_project, "train", key=None)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("sail train: error: SAIL_SIGNING_KEY is not set")
    )


@pytest.mark.slow
def test_unreachable_mlflow_fails_the_gate_closed(project_copy):
    before = (project_copy / "models" / "accepted" / "MANIFEST.json").read_bytes()
    result = sail(
        project_copy,
        "gate",
        MLFLOW_TRACKING_URI="http://127.0.0.1:9",
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
    )
    assert (
        result.returncode == 1
        and "MLflow at http://127.0.0.1:9 failed while reading the champion" in result.stderr
    )
    assert (project_copy / "models" / "accepted" / "MANIFEST.json").read_bytes() == before


@pytest.mark.slow
def test_bad_data_stops_the_pipeline_naming_column_and_value(project_copy):
    data = project_copy / "data" / "raw" / "data.csv"
    frame = pd.read_csv(data)
    frame["mean_radius"] = frame["mean_radius"].astype(object)
    frame.loc[3, "mean_radius"] = "abc"
    frame.to_csv(data, index=False)
    stale = sail(project_copy, "validate")
    assert stale.returncode == 1 and "changed since it was tracked" in stale.stderr
    ok(sail(project_copy, "push"))  # still the old accepted bundle: nothing new slipped in
    dvc(project_copy, "add", "data/raw/data.csv")
    result = sail(project_copy, "run")
    assert result.returncode == 1
    # line 5 of the file: header, then rows 0-3
    assert "mean_radius: non-numeric value(s): 'abc' (line 5)" in result.stderr


@pytest.mark.slow
def test_worse_models_are_stopped_and_leave_champion_and_remote_untouched(tmp_path):
    project = bake(tmp_path, project_name="Gatekeeper")
    ok(sail(project, "run"))
    # nothing changed: the run is skipped whole; forced, DVC skips every stage and the gate
    # reuses the version
    again = ok(sail(project, "run"))
    assert "nothing changed since the last successful run" in again.stdout
    forced = ok(sail(project, "run", "--force"))
    assert "Stage 'train' didn't change, skipping" in forced.stdout + forced.stderr
    assert "registered as gatekeeper v1" in forced.stdout
    ok(sail(project, "promote"))
    client = registry(project)
    assert str(client.get_model_version_by_alias("gatekeeper", "champion").version) == "1"
    remote_before = remote_files(project)
    accepted_before = (project / "models" / "accepted" / "MANIFEST.json").read_bytes()

    # 1. Labels shuffled: the model learns nothing, and the thresholds stop it.
    data = project / "data" / "raw" / "data.csv"
    original = data.read_bytes()
    frame = pd.read_csv(data)
    frame["target"] = frame["target"].sample(frac=1, random_state=0).to_numpy()
    frame.to_csv(data, index=False)
    dvc(project, "add", "data/raw/data.csv")
    shuffled = sail(project, "run")
    assert (
        shuffled.returncode == 1
        and "GATE FAILED" in shuffled.stderr
        and "roc_auc = 0." in shuffled.stderr
    )
    # The champion, re-scored on the new (shuffled) test split, falls far below its record while its
    # own signed holdout still scores as recorded: the new data is suspect, whatever the thresholds.
    assert "suspicious test data: champion v1 scores roc_auc 0." in shuffled.stderr
    assert json.loads((project / "reports" / "gate.json").read_text())["verdict"] == "fail"
    assert [str(v.version) for v in client.search_model_versions("name='gatekeeper'")] == ["1"]
    assert str(client.get_model_version_by_alias("gatekeeper", "champion").version) == "1"
    assert remote_files(project) == remote_before
    assert (project / "models" / "accepted" / "MANIFEST.json").read_bytes() == accepted_before
    refused = sail(project, "push")  # a failed verdict has nothing to push
    assert refused.returncode == 1
    assert (
        refused.stderr.strip().splitlines()[-1]
        == "sail push: error: nothing to push: the last gate verdict was 'fail'"
    )

    # 2. Thresholds met, but worse than the champion beyond the tolerance: the no-regression rule
    # stops it.
    data.write_bytes(original)
    dvc(project, "add", "data/raw/data.csv")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["gate"]["thresholds"] = {"roc_auc": {"min": 0.6}, "f1": {"min": 0.6}}
    params["candidates"] = [
        {
            "name": "stump",
            "estimator": "sklearn.tree.DecisionTreeClassifier",
            "params": {"max_depth": 1, "random_state": 0},
        }
    ]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    weaker = sail(project, "run")
    assert weaker.returncode == 1 and "vs champion" in weaker.stderr, weaker.stderr
    report = json.loads((project / "reports" / "gate.json").read_text())
    assert [(r["rule"], r["passed"]) for r in report["rules"]] == [
        ("roc_auc >= 0.6", True),
        ("f1 >= 0.6", True),
        ("no regression on roc_auc vs champion v1", False),
        ("no regression on roc_auc vs champion v1 on its signed holdout", False),
        ("test data consistent with champion v1's holdout", True),
    ]
    assert report["champion"]["metrics_source"] == "rescored on this test set"
    assert str(client.get_model_version_by_alias("gatekeeper", "champion").version) == "1"
    assert remote_files(project) == remote_before

    # 3. A champion bundle that no longer verifies is not trusted for re-scoring: its recorded
    # metrics decide.
    champion_run = client.get_model_version_by_alias("gatekeeper", "champion").run_id
    # the registered MLflow model holds the signed bundle under data/accepted/
    [stored] = (project / ".mlflow" / "artifacts").rglob(
        f"{champion_run}/artifacts/accepted_bundle/data/accepted/model.joblib"
    )
    stored.write_bytes(stored.read_bytes() + b"\0")
    refused = sail(project, "gate")
    assert refused.returncode == 1 and "GATE FAILED" in refused.stderr, refused.stderr
    report = json.loads((project / "reports" / "gate.json").read_text())
    assert report["champion"]["metrics_source"].startswith("recorded (its bundle was refused")
    by_name = {r["rule"]: r for r in report["rules"]}
    assert by_name["no regression on roc_auc vs champion v1"]["passed"] is False
    # nothing to re-score: the suspicious-data check cannot judge
    assert by_name["test data consistent with champion v1's holdout"]["judged"] is False


@pytest.mark.slow
def test_a_judge_only_gate_registers_and_ships_nothing(project_copy):
    """Pull requests run `sail gate --no-register`: a verdict for the report, nothing else."""
    client = registry(project_copy)
    versions = [str(v.version) for v in client.search_model_versions("name='sail_model'")]
    accepted = (project_copy / "models" / "accepted" / "MANIFEST.json").read_bytes()
    result = ok(sail(project_copy, "gate", "--no-register"))
    assert json.loads(result.stdout)["verdict"] == "pass"
    report = json.loads((project_copy / "reports" / "gate.json").read_text())
    assert report["registered"] is False and report["registered_version"] is None
    assert [str(v.version) for v in client.search_model_versions("name='sail_model'")] == versions
    assert (project_copy / "models" / "accepted" / "MANIFEST.json").read_bytes() == accepted
    refused = sail(project_copy, "push")
    assert refused.returncode == 1 and "does not match the last gate verdict" in refused.stderr


@pytest.mark.slow
def test_regression_project_runs_end_to_end(regression_project):
    project = regression_project
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert 0.35 <= metrics["r2"] <= 1 and 0 < metrics["mae"] <= metrics["rmse"] < 70
    assert (project / "reports" / "plots" / "residuals.png").read_bytes().startswith(PNG)
    assert (
        str(
            registry(project)
            .get_model_version_by_alias("diabetes_progression", "candidate")
            .version
        )
        == "1"
    )


@pytest.mark.slow
def test_dvc_remote_url_from_the_environment(project_copy, tmp_path):
    team_remote = tmp_path / "team-remote"
    ok(sail(project_copy, "push", SAIL_DVC_REMOTE_URL=str(team_remote)))
    assert any(p.name.endswith(".dir") for p in team_remote.rglob("*"))
    # the committed config is untouched
    assert "sail-env" not in (project_copy / ".dvc" / "config").read_text()


def test_sudden_shift_against_the_shipped_profile_stops_validation(project_copy):
    """The template ships a reference profile, so the first-derivative check works from the first
    commit."""
    assert (
        json.loads((project_copy / "reports" / "validation.json").read_text())["baseline_created"]
        is False
    )
    ref = json.loads((project_copy / "contracts" / "profile.json").read_text())["reference"][
        "columns"
    ]["mean_texture"]
    data = project_copy / "data" / "raw" / "data.csv"
    frame = pd.read_csv(data)
    frame["mean_texture"] = (frame["mean_texture"] + ref["std"]).clip(ref["min"], ref["max"])
    frame.to_csv(data, index=False)
    dvc(project_copy, "add", "data/raw/data.csv")
    result = sail(project_copy, "validate")
    assert result.returncode == 1 and "mean_texture: mean moved" in result.stderr
    assert "reference maximum" not in result.stderr
    assert json.loads((project_copy / "reports" / "validation.json").read_text())["passed"] is False


@pytest.mark.slow  # one sail run per watched input: minutes
def test_a_run_with_nothing_changed_is_skipped_and_any_change_runs_it(project_copy):
    """The skip must never hide a change: each input the outcome depends on runs it again."""
    stamp = project_copy / ".sail" / "last-run.json"
    gate_file = project_copy / "reports" / "gate.json"
    judged = gate_file.read_bytes()
    skipped = ok(sail(project_copy, "run"))
    assert "nothing changed since the last successful run" in skipped.stdout
    assert "sail_model v1 stands" in skipped.stdout and "== gate" not in skipped.stdout
    assert gate_file.read_bytes() == judged and stamp.is_file()

    def runs(**env: str) -> None:
        result = ok(sail(project_copy, "run", **env))
        assert "== gate" in result.stdout and "smoke test passed" in result.stdout, result.stdout
        assert "nothing changed" in ok(sail(project_copy, "run", **env)).stdout

    params = project_copy / "params.yaml"
    params.write_text(params.read_text().replace("tolerance: 0.01", "tolerance: 0.02"))
    runs()  # a gate setting
    runs(SAIL_RETRY_ATTEMPTS="2")  # a team setting from the environment
    accepted = project_copy / "models" / "accepted" / "holdout.json"
    accepted.write_text(accepted.read_text() + " ")
    runs()  # a pushed output edited by hand: dvc status sees it, the run rebuilds it
    assert "smoke test passed" in ok(sail(project_copy, "run", "--force")).stdout

    # A run that fails leaves no record: the next one runs in full.
    failed = sail(project_copy, "run", MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    assert failed.returncode == 1 and not stamp.exists()
    runs()
