"""`sail canary analyze`: canary against stable on live traffic, from each container's own
`/metrics` (prometheus_client's multiprocess sums: every request since the container started)
and, where feedback labels came back, from their prediction logs.

It compares the prediction routes' error rate (5xx; a two-proportion z-test, one-sided), p99
latency (from the histogram's buckets: the upper edge of the bucket holding the 99th
percentile), for a classifier the distribution of predicted classes (the monitor's PSI,
`monitoring.max_psi`), and the gate's primary metric on each side's labelled records (the
records each container logged since the canary started, or `--since`, joined to the labels
`sail feedback` keeps). The two sides answered different requests, so each is resampled on its
own and the interval of canary minus stable comes from the independent resamples; the gate's
interval logic (wholly worse beyond `gate.tolerance`) makes it a breach. With fewer labelled
records than the gate's minimum evidence on either side that check is "not judged": labels may
come days later, and holding a canary for them would stall it, so the decision then rests on
the other checks. Too few canary requests is `hold`, with how many more it needs; a breach is
`rollback` (a labelled breach even while requests are still too few); else `promote`. It
decides and says why; it changes nothing but its evidence files
(reports/live/canary-<environment>.json and .md, delivery/live_evidence.py: promote is pass,
hold is hold, rollback is fail), which `sail promote` reads.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import requests

from sail_pipelines.config import Params, ProjectPaths
from sail_pipelines.delivery import bluegreen, live_evidence
from sail_pipelines.errors import SailError
from sail_pipelines.monitoring import answers
from sail_pipelines.monitoring.stats import psi

SCORING = ("predict", "invocations", "infer")  # the routes that score
MIN_REQUESTS = 500
LATENCY_FACTOR = 1.5  # canary p99 above this times stable's (and by more than a bucket) fails
Z_ALPHA = 2.326  # one-sided 1%
EVIDENCE = {"promote": "pass", "hold": "hold", "rollback": "fail"}  # analyze's word → the file's


@dataclass(frozen=True)
class Traffic:
    requests: int
    errors: int
    buckets: tuple[tuple[float, float], ...]  # (upper edge, cumulative count)
    classes: dict[str, float]

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def p99(self) -> float | None:
        total = self.buckets[-1][1] if self.buckets else 0
        if not total:
            return None
        return next(edge for edge, count in self.buckets if count >= 0.99 * total)


def scrape(port: int) -> Traffic:
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{port}/metrics"
    try:
        text = requests.get(url, timeout=10).text
    except requests.RequestException as exc:
        raise SailError(f"{url} did not answer: {exc}") from exc
    total = errors = 0
    buckets: dict[float, float] = {}
    classes: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            scoring = any(word in s.labels.get("route", "") for word in SCORING)
            if s.name == "sail_requests_total" and scoring:
                total += int(s.value)
                errors += int(s.value) if s.labels["status"].startswith("5") else 0
            elif s.name == "sail_request_seconds_bucket" and scoring:
                edge = float(s.labels["le"])
                buckets[edge] = buckets.get(edge, 0) + s.value
            elif s.name == "sail_predictions_total":
                classes[s.labels["cls"]] = classes.get(s.labels["cls"], 0) + s.value
    return Traffic(total, errors, tuple(sorted(buckets.items())), classes)


def error_z(stable: Traffic, canary: Traffic) -> float:
    """How many standard errors the canary's error rate lies above stable's (pooled)."""
    pooled = (stable.errors + canary.errors) / max(stable.requests + canary.requests, 1)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / stable.requests + 1 / canary.requests))
    difference = canary.error_rate - stable.error_rate
    return difference / spread if spread else (math.inf if difference > 0 else 0.0)


def _labelled(task: str, side: answers.Side, found: Mapping[answers.Key, str]) -> tuple:
    keys = sorted(k for k in side.predictions if k in found)
    values = np.array([side.predictions[k] for k in keys], dtype=object)
    return keys, values, answers.truth(task, [found[k] for k in keys], values)


def live_metric(
    params: Params,
    stable: answers.Side,
    canary: answers.Side,
    found: Mapping[answers.Key, str],
) -> dict[str, Any]:
    """The gate's primary metric on each side's labelled records, with intervals from
    independent resamples of each; judged only when both sides hold the gate's minimum
    evidence (gate.min_test_rows, and gate.min_rows_per_class of each labelled class)."""
    from sail_pipelines.evaluation import evidence

    gate, task, metric = params.gate, params.task, params.gate.primary_metric
    sides = {"canary": canary, "stable": stable}
    rows = {name: _labelled(task, side, found) for name, side in sides.items()}
    figures: dict[str, Any] = {"metric": metric, "rows": {n: len(r[0]) for n, r in rows.items()}}
    for name, (_, _, y_true) in rows.items():
        short = evidence.too_few(
            y_true,
            task,
            list(dict.fromkeys(y_true)),  # each labelled class (a class only predicted
            # never holds the check back: its answers are simply wrong)
            gate.min_test_rows,
            gate.min_rows_per_class,
            "gate.min_test_rows",
            "gate.min_rows_per_class",
        )
        if short:
            return {**figures, "judged": False, "reason": f"{name}: {short} (labelled)"}
    judged = {
        name: (y_true, answers.outputs(task, sides[name], keys, values, y_true))
        for name, (keys, values, y_true) in rows.items()
    }
    compared = evidence.compare_apart(task, judged["canary"], judged["stable"], gate.bootstrap)
    interval = compared["intervals"][metric]
    return {
        **figures,
        "judged": True,
        "canary": _finite(compared["candidate"].get(metric)),
        "stable": _finite(compared["champion"].get(metric)),
        "interval": interval,
        "worse": answers.worse(params, {"intervals": {metric: interval}}, "canary", "stable"),
    }


def _finite(value: float | None) -> float | None:
    return round(value, 6) if value is not None and math.isfinite(value) else None


def judge(
    stable: Traffic,
    canary: Traffic,
    max_psi: float,
    min_requests: int,
    live: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """promote, hold or rollback, and the figures behind it (a pure function); `live` is
    live_metric's judgement, which has its own minimum evidence."""
    figures: dict[str, Any] = {
        "requests": {"stable": stable.requests, "canary": canary.requests},
        "error_rate": {"stable": stable.error_rate, "canary": canary.error_rate},
        "p99_seconds": {"stable": stable.p99(), "canary": canary.p99()},
        **({"live_metric": live} if live is not None else {}),
    }
    reasons = [f"the canary's {w}" for w in (live or {}).get("worse", [])]
    if canary.requests < min_requests or stable.requests < min_requests:
        if reasons:
            return {**figures, "decision": "rollback", "reasons": reasons}
        more = max(min_requests - canary.requests, 0)
        return {**figures, "decision": "hold", "reasons": [f"{more} more canary requests needed"]}
    if error_z(stable, canary) > Z_ALPHA:
        reasons.append("the canary's error rate is higher than stable's (one-sided, 1%)")
    slow, fast = canary.p99(), stable.p99()
    if slow is not None and fast is not None and slow > LATENCY_FACTOR * fast:
        reasons.append(f"the canary's p99 latency is over {LATENCY_FACTOR}x stable's")
    if stable.classes and canary.classes:
        labels = sorted(set(stable.classes) | set(canary.classes))
        drift = psi(
            np.array([stable.classes.get(c, 0) for c in labels]),
            np.array([canary.classes.get(c, 0) for c in labels]),
        )
        figures["prediction_psi"] = round(drift, 4)
        if drift > max_psi:
            reasons.append(f"the predicted classes drifted from stable's (PSI > {max_psi})")
    return {**figures, "decision": "rollback" if reasons else "promote", "reasons": reasons}


def evidence(result: dict[str, Any], canary: dict[str, Any], live: dict[str, Any]) -> dict:
    """The analysis as live evidence (a pure function of the analysis and the router's slots)."""
    counts = result["requests"]
    why = "; ".join(result["reasons"]) or "no breach of error rate, p99 latency or predictions"
    labelled = result.get("live_metric")
    if labelled and not labelled["judged"]:
        why += f"; live {labelled['metric']} not judged: {labelled['reason']}"
    elif labelled and not result["reasons"]:
        why += f" or live {labelled['metric']} ({labelled['rows']['canary']} labelled canary rows)"
    return {
        "kind": "canary",
        "environment": result["environment"],
        "candidate": {"image": canary["image"], "image_id": canary.get("image_id")},
        "stable": {"image": live["image"], "image_id": live.get("image_id")},
        "decision": EVIDENCE[result["decision"]],
        "summary": f"canary at {result['weight']}%: {result['decision']}: {why}",
        "created": live_evidence.now(),
        "requests": counts["canary"] + counts["stable"],
        "analysis": result,
    }


def markdown(record: dict[str, Any]) -> str:
    a = record["analysis"]
    rows = [
        ("requests", a["requests"]["stable"], a["requests"]["canary"]),
        ("error rate", f"{a['error_rate']['stable']:.4f}", f"{a['error_rate']['canary']:.4f}"),
        ("p99 (s)", a["p99_seconds"]["stable"], a["p99_seconds"]["canary"]),
    ]
    table = "\n".join(f"| {name} | {s} | {c} |" for name, s, c in rows)
    return (
        f"# Canary in {record['environment']}: {record['decision']}\n\n{record['summary']}\n\n"
        f"Candidate `{record['candidate']['image']}` ({record['candidate']['image_id']}), "
        f"stable `{record['stable']['image']}`, {record['created']}.\n\n"
        f"| | stable | canary |\n|---|---|---|\n{table}\n"
        + (f"\nPrediction PSI: {a['prediction_psi']}\n" if "prediction_psi" in a else "")
        + _live_markdown(a.get("live_metric"))
    )


def _live_markdown(live: dict[str, Any] | None) -> str:
    if not live:
        return ""
    rows = live["rows"]
    head = (
        f"\nLive {live['metric']} on feedback labels ({rows['stable']} labelled stable records, "
        f"{rows['canary']} canary): "
    )
    if not live["judged"]:
        return f"{head}not judged: {live['reason']}.\n"
    interval = live["interval"]["difference"]
    shown = "undefined" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]"
    return (
        f"{head}stable {live['stable']}, canary {live['canary']}; canary minus stable {shown} "
        "(independent resamples of each side)"
        + "".join(f"\n- worse: {w}" for w in live["worse"])
        + "\n"
    )


def analyze(
    prefix: Path,
    params: Params,
    min_requests: int = MIN_REQUESTS,
    reports: Path | None = None,
    paths: ProjectPaths | None = None,
    since: float | None = None,
) -> dict[str, Any]:
    """Judge the running canary; with `reports`, leave the analysis there as live evidence; with
    the project's `paths`, also on its feedback labels (prediction logs since `since`, or since
    the canary started)."""
    state = bluegreen.read_state(prefix)
    canary, live = state.get("canary"), state.get("live")
    if not canary or not live:
        raise SailError(f"no canary runs in {prefix.name}: deploy one with --strategy canary")
    labelled = None if paths is None else _labelled_check(paths, params, state, since)
    verdict = judge(
        scrape(live["port"]),
        scrape(canary["port"]),
        params.monitoring.max_psi,
        min_requests,
        labelled,
    )
    result = {
        "environment": prefix.name,
        "weight": canary["weight"],
        "canary": canary["image"],
        "stable": live["image"],
        **verdict,
    }
    if reports is not None:
        record = evidence(result, canary, live)
        written = live_evidence.write(reports, record, markdown(record))
        result["evidence"] = str(written)
    return result


def _labelled_check(
    paths: ProjectPaths, params: Params, state: dict[str, Any], since: float | None
) -> dict[str, Any]:
    """live_metric on both containers' prediction logs (their stdout), read only when labels
    exist."""
    found = answers.feedback_labels(paths)
    if not found:
        metric = params.gate.primary_metric
        reason = "no feedback labels yet (sail feedback)"
        return {
            "metric": metric,
            "rows": {"canary": 0, "stable": 0},
            "judged": False,
            "reason": reason,
        }
    start = state.get("switched_at", 0.0) if since is None else since
    stable, canary = (
        answers.parse(answers.container_lines(state[slot], start, slot))
        for slot in ("live", "canary")
    )
    return live_metric(params, stable, canary, found)


def auto(
    prefix: Path,
    steps: tuple[int, ...],
    set_weight: Callable[[int], dict[str, Any]],
    drop: Callable[[], dict[str, Any]],
    analysis: Callable[[], dict[str, Any]],
    wait: float = 600,
) -> dict[str, Any]:
    """Step the canary's weight through `steps` while each analysis says promote; wait while it
    says hold (up to `wait` s a step, then stop: the canary stays where it is); drop the canary
    at the first rollback. At the last step (100) it is live."""
    history: list[dict[str, Any]] = []
    for weight in steps:
        if weight != bluegreen.read_state(prefix)["canary"]["weight"]:
            history.append({"weight": weight, **set_weight(weight)})
            if weight >= 100:
                return {"decision": "promoted", "steps": history}
        deadline = time.monotonic() + wait
        verdict = analysis()
        while verdict["decision"] == "hold" and time.monotonic() < deadline:
            time.sleep(1)
            verdict = analysis()
        history.append(verdict)
        if verdict["decision"] == "rollback":
            return {"decision": "rolled back", "steps": history, "dropped": drop()}
        if verdict["decision"] == "hold":
            return {"decision": "hold", "steps": history}
    return {"decision": "promote", "steps": history}
