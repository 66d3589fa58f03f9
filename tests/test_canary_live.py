"""`sail canary analyze` on feedback labels (monitoring/canary.py), without Docker: prediction-log
lines as the serving code writes them stand in for each container's stdout, the labels file is
the one `sail feedback` keeps, and /metrics is a stand-in Traffic. A canary whose labelled
answers are worse is rolled back by this check alone; an equal one passes; too few labels is
"not judged" and leaves the decision to the other checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import bake
from sail_pipelines.config import ProjectPaths, load_params
from sail_pipelines.monitoring import answers, canary
from test_shadow_report import write_log

CALM = canary.Traffic(1000, 0, ((0.05, 1000.0),), {})  # /metrics with no breach


def served(prefix: str, n: int, skill: float, seed: int):
    """n one-record requests: each answer's probability of "yes" leans towards the true label
    by `skill` (0: a coin), and the true labels."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    yes = np.clip(0.5 + skill * (truth - 0.5) + rng.normal(0, 0.2, n), 0.01, 0.99)
    log = {f"{prefix}{i}": (["yes" if p > 0.5 else "no"], [float(p)]) for i, p in enumerate(yes)}
    labels = {(f"{prefix}{i}", 0): "yes" if t else "no" for i, t in enumerate(truth)}
    return log, labels


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    """The example's gate: roc_auc, tolerance 0.01, at least 50 rows and 10 of each class."""
    return load_params(ProjectPaths(bake(tmp_path_factory.mktemp("p"), project_name="Canary Live")))


def sides(tmp_path, canary_skill: float, labelled_canary: int = 300):
    stable_log, stable_labels = served("s", 300, 0.8, seed=1)
    canary_log, canary_labels = served("c", 300, canary_skill, seed=2)
    write_log(tmp_path / "stable.jsonl", stable_log)
    write_log(tmp_path / "canary.jsonl", canary_log)
    kept = dict(list(canary_labels.items())[:labelled_canary])
    lines = {
        "live": (tmp_path / "stable.jsonl").read_bytes().splitlines(),
        "canary": (tmp_path / "canary.jsonl").read_bytes().splitlines(),
    }
    return lines, {**stable_labels, **kept}


def test_worse_labelled_answers_roll_the_canary_back(params, tmp_path):
    lines, found = sides(tmp_path, canary_skill=0.1)
    live = canary.live_metric(
        params, answers.parse(lines["live"]), answers.parse(lines["canary"]), found
    )
    assert live["judged"] and live["metric"] == "roc_auc"
    assert live["rows"] == {"canary": 300, "stable": 300}
    assert live["stable"] > 0.9 and live["canary"] < 0.7
    low, high = live["interval"]["difference"]
    assert low <= live["canary"] - live["stable"] <= high < -0.01
    assert live["worse"] and live["worse"][0].startswith("live roc_auc: canary minus stable in")
    judged = canary.judge(CALM, CALM, params.monitoring.max_psi, 500, live)
    assert judged["decision"] == "rollback" and judged["reasons"] == [
        f"the canary's {live['worse'][0]}"
    ]
    few = canary.Traffic(10, 0, ((0.05, 10.0),), {})  # requests still too few: labels decide
    assert canary.judge(CALM, few, params.monitoring.max_psi, 500, live)["decision"] == "rollback"


def test_an_equal_canary_passes(params, tmp_path):
    lines, found = sides(tmp_path, canary_skill=0.8)
    live = canary.live_metric(
        params, answers.parse(lines["live"]), answers.parse(lines["canary"]), found
    )
    low, high = live["interval"]["difference"]
    assert live["judged"] and low < 0 < high and live["worse"] == []
    judged = canary.judge(CALM, CALM, params.monitoring.max_psi, 500, live)
    assert judged["decision"] == "promote" and judged["live_metric"] == live
    result = {**judged, "environment": "staging", "weight": 20}
    record = canary.evidence(result, {"image": "v2"}, {"image": "v1"})
    assert record["summary"].endswith("or live roc_auc (300 labelled canary rows)")


def test_too_few_labels_is_not_judged_and_holds_nothing(params, tmp_path):
    lines, found = sides(tmp_path, canary_skill=0.1, labelled_canary=30)
    live = canary.live_metric(
        params, answers.parse(lines["live"]), answers.parse(lines["canary"]), found
    )
    assert live == {
        "metric": "roc_auc",
        "rows": {"canary": 30, "stable": 300},
        "judged": False,
        "reason": "canary: 30 rows, fewer than gate.min_test_rows = 50 (labelled)",
    }
    assert canary.judge(CALM, CALM, params.monitoring.max_psi, 500, live)["decision"] == "promote"
    empty = canary.live_metric(params, answers.Side(), answers.Side(), {})
    assert not empty["judged"] and empty["rows"] == {"canary": 0, "stable": 0}


def test_analyze_reads_both_logs_since_the_canary_started(tmp_path, monkeypatch):
    """analyze's own pieces: the router's state, each container's log lines, the labels file;
    the evidence keeps the agreed fields and carries the check."""
    project = bake(tmp_path / "project", project_name="Canary Evidence")
    paths = ProjectPaths(project)
    lines, found = sides(tmp_path, canary_skill=0.1)
    labels = project / "data" / "feedback" / "labels.csv"
    labels.parent.mkdir(parents=True)
    rows = [f"{rid},{record},{label}" for (rid, record), label in found.items()]
    labels.write_text("request_id,record,label\n" + "\n".join(rows) + "\n")
    live = {"image": "m/inference:v1", "image_id": "sha256:" + "1" * 64, "port": 1}
    candidate = {"image": "m/inference:v2", "image_id": "sha256:" + "2" * 64, "port": 2}
    state = {"live": live, "canary": {**candidate, "weight": 20}, "switched_at": 1234.5}
    monkeypatch.setattr(canary.bluegreen, "read_state", lambda prefix: state)
    monkeypatch.setattr(canary, "scrape", lambda port: CALM)
    asked = []

    def logged(slot, since, name):
        asked.append((slot["image"], since, name))
        return lines[name]

    monkeypatch.setattr(canary.answers, "container_lines", logged)
    params = load_params(paths)
    result = canary.analyze(tmp_path / "staging", params, 500, paths.reports, paths)
    assert asked == [("m/inference:v1", 1234.5, "live"), ("m/inference:v2", 1234.5, "canary")]
    assert result["decision"] == "rollback" and result["live_metric"]["judged"]
    record = json.loads((paths.reports / "live" / "canary-staging.json").read_text())
    assert {"kind", "environment", "candidate", "stable", "decision", "summary", "created"} <= set(
        record
    )
    assert record["decision"] == "fail" and "live roc_auc: canary minus stable" in record["summary"]
    assert record["analysis"]["live_metric"]["rows"] == {"canary": 300, "stable": 300}
    md = (paths.reports / "live" / "canary-staging.md").read_text()
    assert "Live roc_auc on feedback labels (300 labelled stable records, 300 canary)" in md
    canary.analyze(tmp_path / "staging", params, 500, paths.reports, paths, since=99.0)
    assert asked[-1][1] == 99.0
    labels.unlink()  # no labels: the logs are not read, the check is not judged
    quiet = canary.analyze(tmp_path / "staging", params, 500, paths.reports, paths)
    assert len(asked) == 4 and quiet["decision"] == "promote"
    record = json.loads((paths.reports / "live" / "canary-staging.json").read_text())
    assert "live roc_auc not judged: no feedback labels yet (sail feedback)" in record["summary"]


def test_answers_without_probabilities_are_judged_on_their_labels(params):
    """A log without probabilities (the classes then come from the answers and the labels)."""
    accuracy = params.model_copy(
        update={"gate": params.gate.model_copy(update={"primary_metric": "accuracy"})}
    )
    stable, shifted, found = answers.Side(), answers.Side(), {}
    for i in range(100):
        found[(f"s{i}", 0)] = found[(f"c{i}", 0)] = str(i % 2)
        stable.predictions[(f"s{i}", 0)] = i % 2
        shifted.predictions[(f"c{i}", 0)] = 1
    live = canary.live_metric(accuracy, stable, shifted, found)
    assert (live["stable"], live["canary"]) == (1.0, 0.5) and live["worse"]
