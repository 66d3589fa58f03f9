"""The gate's verdict as a pure function: every rule can fail."""

from sail_pipelines.config import GateConfig, Threshold
from sail_pipelines.evaluation.gate import judge

GATE = GateConfig("roc_auc", (Threshold("roc_auc", minimum=0.9), Threshold("f1", minimum=0.8)), 0.01, "m")
REGRESSION = GateConfig("rmse", (Threshold("rmse", maximum=60.0),), 0.5, "m")


def verdict(rules):
    return all(r.passed for r in rules)


def test_first_model_is_judged_on_thresholds_alone():
    rules = judge(GATE, {"roc_auc": 0.95, "f1": 0.9}, None)
    assert verdict(rules) and len(rules) == 2


def test_threshold_below_minimum_fails_and_names_numbers():
    rules = judge(GATE, {"roc_auc": 0.5, "f1": 0.9}, None)
    failed = [r for r in rules if not r.passed]
    assert len(failed) == 1 and "0.5000" in failed[0].detail and "0.9" in failed[0].detail


def test_nan_metric_fails():
    assert not verdict(judge(GATE, {"roc_auc": float("nan"), "f1": 0.9}, None))


def test_regression_against_champion_beyond_tolerance_fails():
    champion = {"version": "3", "metrics": {"roc_auc": 0.99}}
    rules = judge(GATE, {"roc_auc": 0.95, "f1": 0.9}, champion)
    assert not verdict(rules)
    assert "champion v3" in rules[-1].rule


def test_drop_within_tolerance_passes():
    champion = {"version": "3", "metrics": {"roc_auc": 0.99}}
    assert verdict(judge(GATE, {"roc_auc": 0.985, "f1": 0.9}, champion))


def test_lower_is_better_metrics_compare_the_other_way():
    assert not verdict(judge(REGRESSION, {"rmse": 61.0}, None))
    assert not verdict(judge(REGRESSION, {"rmse": 55.0}, {"version": "1", "metrics": {"rmse": 50.0}}))
    assert verdict(judge(REGRESSION, {"rmse": 50.4}, {"version": "1", "metrics": {"rmse": 50.0}}))
