"""The gate's verdict as a pure function: every rule can fail."""

import numpy as np

from sail_pipelines.config import GateConfig
from sail_pipelines.evaluation.bootstrap import Outputs
from sail_pipelines.evaluation.evidence import compare
from sail_pipelines.evaluation.gate import judge

GATE = GateConfig(
    primary_metric="roc_auc",
    thresholds={"roc_auc": {"min": 0.9}, "f1": {"min": 0.8}},
    tolerance=0.01,
    registered_model="m",
)
REGRESSION = GateConfig(
    primary_metric="rmse", thresholds={"rmse": {"max": 60.0}}, tolerance=0.5, registered_model="m"
)


def changed(gate: GateConfig, **keys) -> GateConfig:
    """The gate with some keys given anew, as params.yaml writes them (checked again)."""
    return GateConfig(**{**gate.model_dump(by_alias=True), **keys})


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
    assert not verdict(
        judge(REGRESSION, {"rmse": 55.0}, {"version": "1", "metrics": {"rmse": 50.0}})
    )
    assert verdict(judge(REGRESSION, {"rmse": 50.4}, {"version": "1", "metrics": {"rmse": 50.0}}))


# --- noise, the champion's holdout, suspicious test data, slices ---------------------------------

ROBUST = changed(
    GATE,
    thresholds={"roc_auc": {"min": 0.7}},
    tolerance=0.0,
    bootstrap={"level": 0.95, "resamples": 1000, "seed": 5},
)


def scored(seed: int = 0, n: int = 120):
    """A champion on n test rows and a candidate whose scores differ on a few rows (seeded)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    q = p.copy()
    few = rng.choice(n, 8, replace=False)
    q[few] = rng.random(8)

    def outputs(s):
        return Outputs((s > 0.5).astype(int), np.c_[1 - s, s], (0, 1))

    return y, outputs(q), outputs(p)


def champion_of(comparison, **extra):
    return {"version": "4", "metrics": comparison["champion"], "rescored": True, **extra}


def judged_on(gate, y, candidate, champion):
    comparison = compare("classification", y, candidate, champion, gate.bootstrap)
    return judge(
        gate, comparison["candidate"], champion_of(comparison), comparison["intervals"]
    ), comparison


def test_a_drop_within_noise_passes_the_confidence_rule_and_fails_the_point_rule():
    y, candidate, champion = scored()
    point_rules, comparison = judged_on(
        changed(ROBUST, regression_rule="point"), y, candidate, champion
    )
    drop = comparison["champion"]["roc_auc"] - comparison["candidate"]["roc_auc"]
    low, high = comparison["intervals"]["roc_auc"]["difference"]
    assert 0 < drop and low < 0 < high  # worse, but the interval of the difference holds 0: noise
    assert not point_rules[-1].passed and "may drop by at most 0" in point_rules[-1].detail
    confidence_rules, _ = judged_on(
        changed(ROBUST, regression_rule="confidence"), y, candidate, champion
    )
    assert verdict(confidence_rules) and "95% CI [" in confidence_rules[-1].detail
    assert "(confidence rule)" in confidence_rules[-1].detail


def test_a_real_regression_fails_the_confidence_rule_too():
    y, _, champion = scored()
    rng = np.random.default_rng(1)
    noise = rng.random(len(y))
    blind = Outputs((noise > 0.5).astype(int), np.c_[1 - noise, noise], (0, 1))
    rules, _ = judged_on(
        changed(ROBUST, regression_rule="confidence", thresholds={}), y, blind, champion
    )
    assert not verdict(rules) and "whole interval lies below 0" in rules[-1].detail


def test_confidence_rule_without_the_champions_rows_falls_back_to_the_point_estimate():
    gate = changed(GATE, regression_rule="confidence")
    rules = judge(
        gate, {"roc_auc": 0.95, "f1": 0.9}, {"version": "3", "metrics": {"roc_auc": 0.99}}
    )
    assert not verdict(rules) and "point estimate: no interval" in rules[-1].detail


SUSPECT = {
    "version": "2",
    "rescored": True,
    "metrics": {"roc_auc": 0.4527},
    "recorded": {"roc_auc": 0.9937},
    "holdout": {
        "judged": False,
        "reason": "too few",
        "rows": 114,
        "unseen_rows": 3,
        "champion_all_rows": {"roc_auc": 0.9937},
        "recorded": {"roc_auc": 0.9937},
    },
}


def test_champion_far_below_its_record_on_new_data_but_not_on_its_holdout_is_suspicious_data():
    gate = changed(GATE, thresholds={"roc_auc": {"min": 0.5}}, tolerance=0.2)
    rules = judge(gate, {"roc_auc": 0.5704}, SUSPECT)
    by_name = {r.rule: r for r in rules}
    suspicious = by_name["test data consistent with champion v2's holdout"]
    assert not suspicious.passed and suspicious.detail.startswith(
        "suspicious test data: champion v2 scores roc_auc 0.4527"
    )
    assert "0.9937 recorded (drop 0.5410, gate.suspicious_drop 0.1)" in suspicious.detail
    assert (
        by_name["roc_auc >= 0.5"].passed
        and by_name["no regression on roc_auc vs champion v2"].passed
    )
    holdout = by_name["no regression on roc_auc vs champion v2 on its signed holdout"]
    assert holdout.passed and not holdout.judged and holdout.detail == "not judged: too few"


def test_suspicious_data_rule_is_not_judged_when_the_champion_changed_too_and_can_be_switched_off():
    moved = {**SUSPECT, "holdout": {**SUSPECT["holdout"], "champion_all_rows": {"roc_auc": 0.61}}}
    [rule] = [
        r
        for r in judge(GATE, {"roc_auc": 0.95, "f1": 0.9}, moved)
        if r.rule.startswith("test data")
    ]
    assert rule.passed and not rule.judged and "environment changed" in rule.detail
    fine = {**SUSPECT, "metrics": {"roc_auc": 0.95}}
    [rule] = [
        r for r in judge(GATE, {"roc_auc": 0.95, "f1": 0.9}, fine) if r.rule.startswith("test data")
    ]
    assert rule.passed and rule.judged
    off = changed(GATE, suspicious_drop=None)
    assert not [
        r
        for r in judge(off, {"roc_auc": 0.95, "f1": 0.9}, SUSPECT)
        if r.rule.startswith("test data")
    ]


def slice_entry(value, rows, f1=None, judged=True, champion_f1=None, difference=None):
    entry = {
        "column": "region",
        "value": value,
        "rows": rows,
        "judged": judged,
        "reason": None
        if judged
        else f"too small to judge: {rows} rows, fewer than gate.slices.min_rows = 30",
    }
    if judged:
        entry.update(
            candidate={"f1": f1, "roc_auc": 0.9},
            champion={"f1": champion_f1, "roc_auc": champion_f1},
            intervals={"roc_auc": {"difference": difference}},
        )
    return entry


def test_a_slice_rule_fails_while_the_overall_metric_passes():
    gate = changed(GATE, slices={"columns": ["region"], "thresholds": {"f1": {"min": 0.8}}})
    entries = [
        slice_entry("north", 60, 0.93),
        slice_entry("south", 45, 0.71),
        slice_entry("west", 12, judged=False),
    ]
    rules = judge(gate, {"roc_auc": 0.95, "f1": 0.9}, None, None, entries)
    assert [r.passed for r in rules] == [True, True, False]
    assert rules[-1].rule == "in every slice: f1 >= 0.8"
    assert rules[-1].detail == (
        "region=south: f1 = 0.7100, minimum 0.8 (45 rows); not judged: region=west "
        "(too small to judge: 12 rows, fewer than gate.slices.min_rows = 30)"
    )


def test_too_small_slices_neither_pass_nor_fail():
    gate = changed(GATE, slices={"columns": ["region"], "thresholds": {"f1": {"min": 0.8}}})
    [rule] = judge(
        gate, {"roc_auc": 0.95, "f1": 0.9}, None, None, [slice_entry("west", 12, judged=False)]
    )[2:]
    assert (
        rule.passed
        and not rule.judged
        and rule.detail.startswith("not judged: no slice has enough rows")
    )


def test_a_slice_that_regresses_against_the_champions_slice_fails():
    gate = changed(
        GATE, regression_rule="confidence", slices={"columns": ["region"], "no_regression": True}
    )
    entries = [
        slice_entry("north", 60, 0.9, champion_f1=0.9, difference=[-0.05, 0.02]),
        slice_entry("south", 45, 0.9, champion_f1=0.9, difference=[-0.2, -0.08]),
    ]
    champion = {"version": "4", "metrics": {"roc_auc": 0.95}, "rescored": True}
    rule = judge(gate, {"roc_auc": 0.95, "f1": 0.9}, champion, {}, entries)[-1]
    assert rule.rule == "no slice regresses on roc_auc vs champion v4" and not rule.passed
    assert (
        rule.detail.startswith("region=south: roc_auc = 0.9000 vs champion 0.9000")
        and "north" not in rule.detail
    )
