"""The gate against noise and bad test data, in a baked project with real MLflow, DVC and bundles:
the champion's signed holdout as a second yardstick, suspicious test data, the confidence rule,
minimum evidence, slices, and the model card."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from conftest import TEST_KEY, ok, sail
from sail_pipelines.evaluation.gate import HOLDOUT_CSV
from sail_pipelines.inference.serve import create_app
from sail_pipelines.integrity import signing
from sail_pipelines.integrity.bundle import HOLDOUT, load_bundle

KEY = signing.private_key(TEST_KEY, "test")
QUIET = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def registry(project):
    return MlflowClient(f"sqlite:///{project / '.mlflow' / 'mlflow.db'}")


def versions(project, model="sail_model"):
    return sorted(
        str(v.version) for v in registry(project).search_model_versions(f"name='{model}'")
    )


def edit_params(project, change):
    params = yaml.safe_load((project / "params.yaml").read_text())
    change(params)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def gate_report(project):
    return json.loads((project / "reports" / "gate.json").read_text())


def rules(project):
    return {r["rule"]: r for r in gate_report(project)["rules"]}


def one_line_failure(result, start):
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"sail gate: GATE FAILED: {start}"), result.stderr
    return last


def test_accepted_bundle_carries_the_labelled_holdout_and_the_smoke_rows(pipeline_project):
    bundle = load_bundle(pipeline_project / "models" / "accepted", KEY)
    holdout = json.loads(bundle.files[HOLDOUT])
    # what the smoke tests serve
    assert len(holdout["records"]) == len(holdout["predictions"]) == 20
    labelled = pd.read_csv(pipeline_project / "data" / "split" / "test.csv")
    # all 114 test rows, with labels
    assert bundle.files[HOLDOUT_CSV] == labelled.to_csv(index=False).encode()
    assert holdout["labelled"]["rows"] == holdout["labelled"]["test_rows"] == len(labelled) == 114
    # what the next gate expects
    assert holdout["labelled"]["metrics"] == bundle.metadata["evaluation"]["metrics"]


@pytest.mark.slow
def test_labels_corrupted_in_the_new_test_split_only_fail_as_suspicious_data(project_copy):
    ok(sail(project_copy, "promote"))
    edit_params(
        project_copy,
        lambda p: p["gate"].update(thresholds={"roc_auc": {"min": 0.3}, "f1": {"min": 0.3}}),
    )
    test_csv = project_copy / "data" / "split" / "test.csv"
    test = pd.read_csv(test_csv)
    test["target"] = test["target"].sample(frac=1, random_state=0).to_numpy()
    test.to_csv(test_csv, index=False)
    ok(sail(project_copy, "evaluate"))
    last = one_line_failure(sail(project_copy, "gate", **QUIET), "gate failed for candidate")
    assert (
        "suspicious test data: champion v1 scores roc_auc 0." in last
        and "gate.suspicious_drop 0.1" in last
    )
    by_name = rules(project_copy)
    # low thresholds let it through
    assert by_name["roc_auc >= 0.3"]["passed"] and by_name["f1 >= 0.3"]["passed"]
    # both models look equally bad on it
    assert by_name["no regression on roc_auc vs champion v1"]["passed"]
    assert [r for r, v in by_name.items() if not v["passed"]] == [
        "test data consistent with champion v1's holdout"
    ]
    champion = gate_report(project_copy)["champion"]
    assert (
        champion["metrics"]["roc_auc"]
        < 0.7
        < 0.95
        < champion["holdout"]["champion_all_rows"]["roc_auc"]
    )
    # its holdout: as recorded
    assert champion["holdout"]["champion_all_rows"] == champion["holdout"]["recorded"]
    assert versions(project_copy) == ["1"]


@pytest.mark.slow
def test_a_drop_within_noise_passes_the_confidence_rule_and_fails_the_point_rule(project_copy):
    """Random forest scores a little below the champion (logistic regression) on 114 rows."""
    ok(sail(project_copy, "promote"))
    edit_params(
        project_copy,
        lambda p: p.update(candidates=[c for c in p["candidates"] if c["name"] == "random_forest"]),
    )
    edit_params(
        project_copy, lambda p: p["gate"].update(tolerance=0.0, regression_rule="confidence")
    )
    ok(sail(project_copy, "train"))
    ok(sail(project_copy, "evaluate"))
    ok(sail(project_copy, "gate", "--no-register", **QUIET))
    rule = rules(project_copy)["no regression on roc_auc vs champion v1"]
    interval = gate_report(project_copy)["intervals"]["roc_auc"]["difference"]
    champion = gate_report(project_copy)["champion"]["metrics"]["roc_auc"]
    assert (
        gate_report(project_copy)["metrics"]["roc_auc"] < champion and interval[0] < 0 < interval[1]
    )
    assert rule["passed"] and "(confidence rule)" in rule["detail"]
    first = gate_report(project_copy)["intervals"]
    ok(sail(project_copy, "gate", "--no-register", **QUIET))
    assert gate_report(project_copy)["intervals"] == first  # seeded: the same intervals again
    edit_params(project_copy, lambda p: p["gate"].update(regression_rule="point"))
    last = one_line_failure(
        sail(project_copy, "gate", "--no-register", **QUIET),
        "gate failed for candidate 'random_forest'",
    )
    assert "may drop by at most 0" in last
    assert versions(project_copy) == ["1"]


@pytest.mark.slow
def test_too_few_rows_or_a_missing_class_is_a_clear_refusal(project_copy):
    test_csv = project_copy / "data" / "split" / "test.csv"
    test = pd.read_csv(test_csv)
    best = json.loads((project_copy / "reports" / "evaluation.json").read_text())["best"]
    test.head(40).to_csv(test_csv, index=False)
    ok(sail(project_copy, "evaluate"))
    last = one_line_failure(sail(project_copy, "gate"), "gate refused to judge")
    assert last.endswith(
        f"candidate '{best}': the test split has 40 rows, fewer than gate.min_test_rows = 50"
    )
    assert gate_report(project_copy)["rules"] == [
        {
            "rule": "minimum evidence",
            "passed": False,
            "judged": True,
            "detail": "the test split has 40 rows, fewer than gate.min_test_rows = 50",
        }
    ]
    test[test["target"] == 1].to_csv(test_csv, index=False)
    ok(sail(project_copy, "evaluate"))
    last = one_line_failure(sail(project_copy, "gate"), "gate refused to judge")
    assert last.endswith(
        "the test split has 0 rows of class 0, fewer than gate.min_rows_per_class = 10"
    )
    assert gate_report(project_copy)["verdict"] == "fail" and versions(project_copy) == ["1"]


@pytest.mark.slow
def test_a_slice_rule_fails_while_the_overall_metric_passes(regression_copy):
    project = regression_copy
    passed = gate_report(project)
    slices = {s["value"]: s for s in passed["slices"]}
    assert [s["column"] for s in passed["slices"]] == ["sex", "sex"] and set(slices) == {1, 2}
    assert all(s["judged"] and s["intervals"]["r2"]["candidate"] for s in slices.values())
    worst, best = sorted(slices.values(), key=lambda s: s["candidate"]["r2"])
    floor = round((worst["candidate"]["r2"] + best["candidate"]["r2"]) / 2, 4)
    assert passed["metrics"]["r2"] > 0.35  # the overall threshold keeps passing
    edit_params(project, lambda p: p["gate"]["slices"].update(thresholds={"r2": {"min": floor}}))
    last = one_line_failure(
        sail(project, "gate", "--no-register", **QUIET), "gate failed for candidate"
    )
    assert (
        f"sex={worst['value']}: r2 = {worst['candidate']['r2']:.4f}, minimum {floor:g} "
        f"({worst['rows']} rows)" in last
    )
    by_name = rules(project)
    assert (
        by_name["r2 >= 0.35"]["passed"]
        and not by_name[f"in every slice: r2 >= {floor:g}"]["passed"]
    )

    # every slice too small now
    edit_params(project, lambda p: p["gate"]["slices"].update(min_rows=1000))
    ok(sail(project, "gate", "--no-register", **QUIET))
    rule = rules(project)[f"in every slice: r2 >= {floor:g}"]
    assert (
        rule["passed"]
        and rule["judged"] is False
        and "not judged: no slice has enough rows" in rule["detail"]
    )
    assert all(
        not s["judged"]
        and "fewer than gate.slices.min_rows = 1000" in s["reason"]
        and "candidate" not in s
        for s in gate_report(project)["slices"]
    )


@pytest.mark.slow
def test_a_slice_column_that_is_not_a_category_is_refused(project_copy):
    edit_params(project_copy, lambda p: p["gate"]["slices"].update(columns=["mean_radius"]))
    result = sail(project_copy, "gate", "--no-register")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        "gate.slices column 'mean_radius' has" in result.stderr
        and "slices need a category column" in result.stderr
    )
    edit_params(project_copy, lambda p: p["gate"]["slices"].update(columns=["region"]))
    assert (
        "gate.slices.columns names 'region', not a column of data/split/test.csv"
        in sail(project_copy, "gate").stderr
    )


@pytest.mark.parametrize(
    "scheme, key",
    [(signing.ED25519, signing.Ed25519Signer), (signing.HMAC_SHA256, signing.HmacKey)],
)
def test_the_model_card_names_the_algorithm_the_bundle_is_signed_with(scheme, key):
    from sail_pipelines.evaluation.card import algorithm

    assert algorithm(scheme) == key.algorithm  # what SIGNATURE.json records


def test_the_model_card_is_written_logged_and_linked_from_metadata(pipeline_project):
    card = json.loads((pipeline_project / "reports" / "model_card.json").read_text())
    gate = gate_report(pipeline_project)
    assert card["intended_use"]["description"].startswith("A SAIL pipeline")  # the template answer
    assert (
        card["intended_use"]["project"] == "SAIL Model"
        and card["intended_use"]["owner"] == "ML Team"
    )
    assert card["data"] == {
        "hash": gate["data_hash"],
        "rows": 569,
        "columns": 31,
        "train_rows": 455,
        "test_rows": 114,
    }
    assert card["metrics"]["roc_auc"]["value"] == gate["metrics"]["roc_auc"]
    assert card["metrics"]["roc_auc"]["interval"] == gate["intervals"]["roc_auc"]["candidate"]
    assert card["verdict"]["result"] == "pass" and card["signing"]["key_id"] == KEY.key_id
    assert card["signing"]["algorithm"] == "Ed25519"  # the template's default signing.scheme
    assert card["lineage"] == {
        "git_commit": gate["git_commit"],
        "parent_champion": None,
        "candidate_bundle_id": gate["bundle_id"],
        "accepted_bundle_id": gate["accepted_bundle_id"],
        "mlflow_run_id": gate["mlflow_run_id"],
    }
    text = (pipeline_project / "reports" / "model_card.md").read_text()
    assert (
        text.startswith("# Model card: sail_model v1")
        and "| roc_auc (primary) |" in text
        and "## Slices" in text
    )
    logged = {
        a.path
        for a in registry(pipeline_project).list_artifacts(gate["mlflow_run_id"], "model_card")
    }
    assert logged == {"model_card/model_card.md", "model_card/model_card.json"}
    bundle = load_bundle(pipeline_project / "models" / "accepted", KEY)
    body = create_app(bundle).test_client().get("/metadata").get_json()
    assert body["model_card"] == f"runs:/{gate['mlflow_run_id']}/model_card"
