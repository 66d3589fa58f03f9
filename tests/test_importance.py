"""Global importance per source column (evaluation/importance.py) on the synthetic table whose
target depends on `x` only (tests/explained.py): `x` carries at least 90% of the permutation
importance and of the mean |contribution|, the shuffles move a category and a date as one column,
and the picture, the PR comment's chart and the model card's table show it."""

from __future__ import annotations

import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor

import explained
from sail_pipelines.evaluation import card, charts, importance, plots
from sail_pipelines.integrity.bundle import load_bundle

SOURCES = [c.name for c in explained.FEATURES]
CASES = {
    "forest": (
        lambda: RandomForestClassifier(50, max_depth=5, random_state=0),
        "classification",
        "f1",
    ),
    "ridge": (lambda: Ridge(), "regression", "rmse"),
}


@pytest.fixture(scope="module", params=list(CASES))
def found(request, tmp_path_factory):
    make, task, metric = CASES[request.param]
    dest = explained.build(tmp_path_factory.mktemp("importance") / "b", make(), task)
    test = explained.frame(300, 11)
    test[explained.schema(task).target.name] = explained.target(test, task)
    return importance.importance(load_bundle(dest, explained.KEY), test, metric, "sklearn", 42)


def test_the_column_the_target_depends_on_carries_the_importance(found):
    permuted = found["permutation"]
    assert set(permuted) == set(SOURCES)  # source columns: colour and day as one each
    positive = {c: max(p["mean"], 0.0) for c, p in permuted.items()}
    assert positive["x"] >= 0.9 * sum(positive.values())
    assert permuted["x"]["low"] > 0 and permuted["x"]["low"] <= permuted["x"]["high"]
    mean_abs = found["contributions"]["mean_abs"]
    assert set(mean_abs) == set(SOURCES)
    assert mean_abs["x"] >= 0.9 * sum(mean_abs.values())


def test_the_picture_the_chart_and_the_card_show_it(found, tmp_path):
    from browser import MermaidParser, chromium, mermaid_script

    assert plots.importance(tmp_path, found).stat().st_size > 1000
    chart = charts.mermaid_importance(found)
    assert chart.startswith("```mermaid") and 'x-axis ["x"' in chart
    with chromium() as driver:  # Mermaid's own parser reads it
        assert (
            MermaidParser(driver, mermaid_script()).error(chart[len("```mermaid\n") : -3]) is None
        )
    lines = card._importance_lines({"importance": found})
    assert any(line.startswith("| x | ") for line in lines)
    assert "model has no explainer" not in "\n".join(lines)


def test_a_model_without_an_explainer_still_gets_permutation_importance(tmp_path):
    dest = explained.build(tmp_path / "b", KNeighborsRegressor(), "regression")
    test = explained.frame(120, 12)
    test["y"] = explained.target(test, "regression")
    found = importance.importance(load_bundle(dest, explained.KEY), test, "rmse", "sklearn", 1)
    assert "no explainer" in found["contributions"]["reason"]
    assert max(found["permutation"], key=lambda c: found["permutation"][c]["mean"]) == "x"
    assert "model has no explainer" in "\n".join(card._importance_lines({"importance": found}))
    assert plots.importance(tmp_path, found).is_file()


@pytest.mark.slow  # the default project after one `sail run` (built once per test run)
def test_the_winners_mlflow_run_carries_the_picture_and_the_figures(pipeline_project, tmp_path):
    import json

    from mlflow import MlflowClient

    evaluation = json.loads((pipeline_project / "reports" / "evaluation.json").read_text())
    winner = evaluation["candidates"][evaluation["best"]]["mlflow_run_id"]
    client = MlflowClient(f"sqlite:///{pipeline_project / '.mlflow' / 'mlflow.db'}")
    assert "plots/importance.png" in {a.path for a in client.list_artifacts(winner, "plots")}
    logged = client.download_artifacts(winner, "importance.json", str(tmp_path))
    assert json.loads(open(logged).read()) == evaluation["importance"]
    others = [
        c["mlflow_run_id"] for n, c in evaluation["candidates"].items() if n != evaluation["best"]
    ]
    for run in others:  # only the winner's importance is measured
        assert "importance.json" not in {a.path for a in client.list_artifacts(run)}
