"""The shadow report's comparison (monitoring/shadow.py) on prediction-log lines the serving
code itself writes (inference/prediction_log.py), without Docker: pairing by request id and
record, agreement, confusion, score differences, the disagreements, live metrics with
intervals from feedback labels, and the decision."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import bake
from sail_pipelines.config import ProjectPaths, load_params
from sail_pipelines.inference import prediction_log
from sail_pipelines.monitoring import answers, shadow

CLASSES = ["no", "yes"]


def write_log(path, served: dict[str, tuple[list[str], list[float]]]) -> None:
    """One request per id: its labels and each record's probability of "yes"."""
    path.unlink(missing_ok=True)
    log = prediction_log.PredictionLog(
        prediction_log.LogSettings(str(path)), {"name": "m"}, "bundle", ["x"]
    )
    for rid, (labels, yes) in served.items():
        probabilities = np.array([[1 - p, p] for p in yes])
        outputs = prediction_log.outputs(np.array(labels, dtype=object), probabilities, CLASSES)
        columns = {"x": list(range(len(labels)))}
        log.write(rid, "/predict", 200, 0.002, columns, outputs)
    log.handler.close()


@pytest.fixture
def project(tmp_path):
    return bake(tmp_path, project_name="Shadow Check")


def sides(tmp_path, n: int, flipped: set[int]):
    """n requests of two records; the shadow flips the first record of the ones in `flipped`."""
    rng = np.random.default_rng(0)
    live, mirrored = {}, {}
    for i in range(n):
        yes = [float(p) for p in rng.uniform(0, 1, 2)]
        labels = ["yes" if p > 0.5 else "no" for p in yes]
        live[f"r{i}"] = (labels, yes)
        other = [1 - yes[0], yes[1]] if i in flipped else yes
        mirrored[f"r{i}"] = (["yes" if p > 0.5 else "no" for p in other], other)
    mirrored["only-shadow"] = (["no"], [0.1])  # the smoke check, sent to the shadow alone
    write_log(tmp_path / "live.jsonl", live)
    write_log(tmp_path / "shadow.jsonl", mirrored)
    stable = answers.parse((tmp_path / "live.jsonl").read_text().splitlines())
    return stable, answers.read_log_file(tmp_path / "shadow.jsonl", "shadow")


def test_pairs_agreement_confusion_and_decision(project, tmp_path):
    params = load_params(ProjectPaths(project))
    stable, mirrored = sides(tmp_path, 250, flipped=set(range(0, 250, 10)))
    paired = shadow.pair(stable, mirrored, "classification", 0.1)
    assert (paired.requests, len(paired.keys)) == (250, 500)
    assert paired.agree.mean() == pytest.approx(475 / 500)
    matrix = np.array(shadow.confusion(paired)["matrix"])
    assert matrix.sum() == 500 and matrix[0, 1] + matrix[1, 0] == 25
    top = shadow.disagreements(paired, stable)
    assert len(top) == 10 and top[0]["record"] == 0 and top[0]["inputs"] == {"x": 0}
    assert abs(top[0]["score_difference"]) >= abs(top[-1]["score_difference"])
    decision, summary = shadow.decide(params, paired, None)
    assert decision == "pass" and "95.0% agreement over 250 paired requests" in summary
    few = shadow.pair(*sides(tmp_path, 50, set()), "classification", 0.1)
    assert shadow.decide(params, few, None) == (
        "hold",
        "shadow: 100.0% agreement over 50 paired requests (min 90%); "
        "hold: 150 more paired requests needed",
    )
    bad = shadow.pair(*sides(tmp_path, 250, set(range(0, 250, 3))), "classification", 0.1)
    assert shadow.decide(params, bad, None)[0] == "fail"


def test_live_metrics_from_feedback_labels(project, tmp_path):
    """Labels that match the live answers: the shadow's flips make it worse beyond the
    interval, and the report fails it though its agreement passes."""
    paths = ProjectPaths(project)
    params = load_params(paths)
    stable, mirrored = sides(tmp_path, 250, flipped=set(range(0, 250, 10)))
    paired = shadow.pair(stable, mirrored, "classification", 0.1)
    labels = project / "data" / "feedback" / "labels.csv"
    labels.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{rid},{record},{stable.predictions[(rid, record)]}" for rid, record in paired.keys]
    labels.write_text("request_id,record,label\n" + "\n".join(rows) + "\n")
    live = shadow.labelled(paths, params, paired, stable, mirrored)
    assert live["rows"] == 500 and live["champion"]["accuracy"] == 1.0
    assert live["candidate"]["accuracy"] == pytest.approx(0.95)
    low, high = live["intervals"]["accuracy"]["difference"]
    assert low <= -0.05 <= high < 0 and any("accuracy" in w for w in live["worse"])
    assert shadow.decide(params, paired, live)[0] == "fail"


def test_regression_agreement_within_tolerance():
    stable, mirrored = answers.Side(), answers.Side()
    for i in range(100):
        stable.predictions[(f"r{i}", 0)] = float(i)
        mirrored.predictions[(f"r{i}", 0)] = float(i) + (10.0 if i < 5 else 0.5)
    paired = shadow.pair(stable, mirrored, "regression", 0.1)  # within 0.1 std (about 2.9)
    assert paired.agree.mean() == 0.95 and paired.scores[0] == 10.0
