"""The gate's rules: a pure verdict from the gate config, the candidate's metrics, the
champion as gate.json records it, the bootstrap intervals and the slices. Each rule passes,
fails, or is not judged for want of evidence (reported as such, it neither passes nor fails)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from sail_pipelines.config import HIGHER_IS_BETTER, GateConfig, Threshold
from sail_pipelines.errors import SailError
from sail_pipelines.evaluation import accept, slices
from sail_pipelines.integrity.bundle import LoadedBundle


@dataclass(frozen=True)
class Rule:
    rule: str
    passed: bool
    detail: str
    judged: bool = True  # False: too little evidence; reported as such, it neither passes nor fails


def judge(
    gate: GateConfig,
    scores: dict[str, float],
    champion: dict[str, Any] | None,
    intervals: dict[str, Any] | None = None,
    slice_entries: Sequence[dict[str, Any]] = (),
) -> list[Rule]:
    """Pure verdict: thresholds; with a champion, no regression on the test split and on its
    holdout, and the suspicious-data check; then the slice rules that params.yaml asks for."""
    rules = _threshold_rules(gate.thresholds, scores)
    if champion is not None:
        rules.append(_test_split_rule(gate, scores, champion, intervals or {}))
        if "holdout" in champion:
            rules.append(_holdout_rule(gate, champion))
        if gate.suspicious_drop is not None and "recorded" in champion:
            rules.append(_suspicious_rule(gate, champion))
    return rules + _slice_rules(gate, list(slice_entries), champion)


def _threshold_rules(
    thresholds: tuple[Threshold, ...], scores: dict[str, float], prefix: str = ""
) -> list[Rule]:
    rules = []
    for t in thresholds:
        value = scores.get(t.metric, float("nan"))
        if t.minimum is not None:
            ok = not math.isnan(value) and value >= t.minimum
            rules.append(
                Rule(
                    f"{prefix}{t.metric} >= {t.minimum:g}",
                    ok,
                    f"{t.metric} = {value:.4f}, minimum {t.minimum:g}",
                )
            )
        if t.maximum is not None:
            ok = not math.isnan(value) and value <= t.maximum
            rules.append(
                Rule(
                    f"{prefix}{t.metric} <= {t.maximum:g}",
                    ok,
                    f"{t.metric} = {value:.4f}, maximum {t.maximum:g}",
                )
            )
    return rules


def serving_rule(bundle: LoadedBundle, holdout: dict[str, Any]) -> Rule:
    """The holdout rows, served through the real API code, come back as the metric step scored
    them."""
    try:
        accept.serving_check(bundle, holdout)
    except SailError as exc:
        return Rule(
            "serves the holdout rows through the API",
            False,
            str(exc).replace("; nothing was registered", ""),
        )
    return Rule(
        "serves the holdout rows through the API",
        True,
        f"{len(holdout['records'])} rows, same predictions",
    )


def regresses(
    gate: GateConfig, mine: float, theirs: float, difference: list[float] | None
) -> tuple[bool, str]:
    """Whether the candidate regresses on the primary metric, and the numbers that say so.

    "point": its value is worse than the champion's by more than the tolerance. "confidence":
    even the end of the interval of the difference most favourable to the candidate is, so the
    regression holds at the configured level and is not noise.
    """
    metric, tolerance = gate.primary_metric, gate.tolerance
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    delta = mine - theirs
    level = f"{gate.bootstrap.level:.0%}"
    shown = f", {level} CI [{difference[0]:+.4f}, {difference[1]:+.4f}]" if difference else ""
    numbers = f"{metric} = {mine:.4f} vs champion {theirs:.4f} (Δ {delta:+.4f}{shown})"
    if math.isnan(mine):
        return True, f"{metric} = nan vs champion {theirs:.4f}"
    if gate.regression_rule == "confidence" and difference:
        best_case = difference[1] if sign > 0 else difference[0]
        way, bound = (
            ("below" if sign > 0 else "above"),
            (f"{-sign * tolerance:+g}" if tolerance else "0"),
        )
        return sign * best_case < -tolerance, (
            f"{numbers}; fails only when the whole interval lies {way} {bound} (confidence rule)"
        )
    allowed = f"may {'drop' if sign > 0 else 'rise'} by at most {tolerance:g}"
    if gate.regression_rule == "confidence":
        allowed += " (point estimate: no interval without both models' predictions)"
    return sign * delta < -tolerance, f"{numbers}, {allowed}"


def _test_split_rule(
    gate: GateConfig, scores: dict[str, float], champion: dict[str, Any], intervals: dict[str, Any]
) -> Rule:
    metric = gate.primary_metric
    mine, theirs = scores.get(metric, float("nan")), champion["metrics"].get(metric)
    name = f"no regression on {metric} vs champion v{champion['version']}"
    if theirs is None or math.isnan(theirs):
        return Rule(
            name,
            True,
            f"champion v{champion['version']} has no recorded {metric}; thresholds decide",
            judged=False,
        )
    failed, detail = regresses(gate, mine, theirs, (intervals.get(metric) or {}).get("difference"))
    return Rule(name, not failed, detail)


def _holdout_rule(gate: GateConfig, champion: dict[str, Any]) -> Rule:
    holdout = champion["holdout"]
    metric = gate.primary_metric
    name = f"no regression on {metric} vs champion v{champion['version']} on its signed holdout"
    if not holdout.get("judged"):
        return Rule(name, True, f"not judged: {holdout['reason']}", judged=False)
    difference = (holdout["intervals"].get(metric) or {}).get("difference")
    failed, detail = regresses(
        gate, holdout["candidate"][metric], holdout["champion"][metric], difference
    )
    unseen, version = holdout["unseen_rows"], champion["version"]
    where = f"on champion v{version}'s holdout ({unseen} rows the candidate never trained on)"
    return Rule(name, not failed, f"{where}: {detail}")


def _suspicious_rule(gate: GateConfig, champion: dict[str, Any]) -> Rule:
    """The champion far below its record on the new split, yet as recorded on its own holdout:
    the model did not change, so the new test data did."""
    metric, limit, version = gate.primary_metric, gate.suspicious_drop, champion["version"]
    name = f"test data consistent with champion v{version}'s holdout"
    holdout = champion.get("holdout") or {}
    recorded = champion["recorded"].get(metric)
    on_holdout, holdout_recorded = (
        (holdout.get("champion_all_rows") or {}).get(metric),
        holdout.get("recorded", {}).get(metric),
    )
    if not champion.get("rescored") or None in (recorded, on_holdout, holdout_recorded):
        return Rule(
            name,
            True,
            "not judged: needs the champion re-scored on the new test split and on its "
            "signed holdout, and its recorded metrics",
            judged=False,
        )
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    now = champion["metrics"][metric]
    drop, holdout_drop = sign * (recorded - now), sign * (holdout_recorded - on_holdout)
    numbers = (
        f"champion v{version} scores {metric} {now:.4f} on the new test split against "
        f"{recorded:.4f} recorded (drop {drop:.4f}, gate.suspicious_drop {limit:g}) and "
        f"{on_holdout:.4f} on its signed holdout against {holdout_recorded:.4f} recorded"
    )
    if holdout_drop > limit:
        return Rule(
            name,
            True,
            f"not judged: the champion no longer scores as recorded on its own holdout, "
            f"so its environment changed, not only the data: {numbers}",
            judged=False,
        )
    if drop > limit:
        return Rule(name, False, f"suspicious test data: {numbers}")
    return Rule(name, True, numbers)


def _slice_rules(
    gate: GateConfig, entries: list[dict[str, Any]], champion: dict[str, Any] | None
) -> list[Rule]:
    """Every judged slice must meet gate.slices.thresholds, and (if asked) not regress against the
    champion's same slice. Too-small slices are named in the detail; with none judged, neither is
    the rule."""
    config = gate.slices
    judged = [e for e in entries if e["judged"]]
    small = "".join(
        f"; not judged: {slices.label(e)} ({e['reason']})" for e in entries if not e["judged"]
    )
    bounds = [
        t.model_copy(update={"maximum": None}) for t in config.thresholds if t.minimum is not None
    ]
    bounds += [
        t.model_copy(update={"minimum": None}) for t in config.thresholds if t.maximum is not None
    ]
    rules = []
    for bound in bounds:
        [named] = _threshold_rules((bound,), {})
        failures = [
            f"{slices.label(e)}: {rule.detail} ({e['rows']} rows)"
            for e in judged
            for rule in _threshold_rules((bound,), e["candidate"])
            if not rule.passed
        ]
        rules.append(_slice_rule(f"in every slice: {named.rule}", judged, failures, small))
    if config.no_regression and champion is not None and champion.get("rescored"):
        metric = gate.primary_metric
        failures = []
        for e in judged:
            difference = (e["intervals"].get(metric) or {}).get("difference")
            failed, detail = regresses(
                gate, e["candidate"][metric], e["champion"][metric], difference
            )
            if failed:
                failures.append(f"{slices.label(e)}: {detail} ({e['rows']} rows)")
        rules.append(
            _slice_rule(
                f"no slice regresses on {metric} vs champion v{champion['version']}",
                judged,
                failures,
                small,
            )
        )
    return rules


def _slice_rule(name: str, judged: list[dict[str, Any]], failures: list[str], small: str) -> Rule:
    if not judged:
        return Rule(name, True, f"not judged: no slice has enough rows{small}", judged=False)
    detail = "; ".join(failures) if failures else f"{len(judged)} slice(s) meet it"
    return Rule(name, not failures, detail + small)
