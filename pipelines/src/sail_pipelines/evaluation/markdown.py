"""Markdown pieces the report is made of: a table cell, a number, a difference judged by
the metric's direction, a threshold with its margin, a value with its bootstrap interval."""

from __future__ import annotations

import math
from typing import Any

from sail_pipelines.config import HIGHER_IS_BETTER, Params
from sail_pipelines.evaluation import card


def cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def num(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    return "nan" if math.isnan(value) else f"{value:.4f}"


def delta(metric: str, mine: Any, theirs: Any) -> str:
    if (
        not isinstance(mine, (int, float))
        or not isinstance(theirs, (int, float))
        or math.isnan(mine)
        or math.isnan(theirs)
    ):
        return "–"
    diff = mine - theirs
    if diff == 0:
        return "±0"
    better = (diff > 0) == HIGHER_IS_BETTER.get(metric, True)
    return f"{diff:+.4f} {'better' if better else 'worse'}"


def thresholds(params: Params, metric: str, value: Any) -> str:
    parts = []
    for t in params.gate.thresholds:
        if t.metric != metric:
            continue
        number = isinstance(value, (int, float)) and not math.isnan(value)
        if t.minimum is not None:
            parts.append(
                f"≥ {t.minimum:g} {'✅' if number and value >= t.minimum else '❌'} "
                f"({f'{value - t.minimum:+.4f}' if number else '–'})"
            )
        if t.maximum is not None:
            parts.append(
                f"≤ {t.maximum:g} {'✅' if number and value <= t.maximum else '❌'} "
                f"({f'{t.maximum - value:+.4f}' if number else '–'})"
            )
    return "; ".join(parts) or "–"


def level(gate: dict[str, Any]) -> str:
    return f"{(gate.get('bootstrap') or {}).get('level', 0.95):.0%}"


def ci_columns(level: str, *names: str) -> str:
    return " | ".join(f"{name} ({level} CI)" for name in names)


def with_interval(value: str, intervals: dict[str, Any], metric: str, who: str) -> str:
    """'0.9937 [0.9812, 0.9998]': the value and its bootstrap interval, when there is one."""
    bounds = (intervals.get(metric) or {}).get(who)
    return (
        f"{value} {card.interval(bounds, signed=who == 'difference')}"
        if bounds and value != "–"
        else value
    )


def compared(metric: str, mine: Any, theirs: Any, intervals: dict[str, Any]) -> str:
    """Table cells: the candidate, the champion and their difference, each with its interval."""
    return " | ".join(
        (
            with_interval(num(mine), intervals, metric, "candidate"),
            with_interval(num(theirs), intervals, metric, "champion"),
            with_interval(delta(metric, mine, theirs), intervals, metric, "difference"),
        )
    )


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
