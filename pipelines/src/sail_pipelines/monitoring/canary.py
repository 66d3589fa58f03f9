"""`sail canary analyze`: canary against stable on live traffic, from each container's own
`/metrics` (prometheus_client's multiprocess sums: every request since the container started).

It compares the prediction routes' error rate (5xx; a two-proportion z-test, one-sided), p99
latency (from the histogram's buckets: the upper edge of the bucket holding the 99th
percentile) and, for a classifier, the distribution of predicted classes (the monitor's PSI,
`monitoring.max_psi`). Too few canary requests is `hold`, with how many more it needs; a
breach is `rollback`; else `promote`. It decides and says why; it changes nothing but its
evidence files (reports/live/canary-<environment>.json and .md, delivery/live_evidence.py:
promote is pass, hold is hold, rollback is fail), which `sail promote` reads.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import requests

from sail_pipelines.config import Params
from sail_pipelines.delivery import bluegreen, live_evidence
from sail_pipelines.errors import SailError
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


def judge(stable: Traffic, canary: Traffic, max_psi: float, min_requests: int) -> dict[str, Any]:
    """promote, hold or rollback, and the figures behind it (a pure function)."""
    figures: dict[str, Any] = {
        "requests": {"stable": stable.requests, "canary": canary.requests},
        "error_rate": {"stable": stable.error_rate, "canary": canary.error_rate},
        "p99_seconds": {"stable": stable.p99(), "canary": canary.p99()},
    }
    if canary.requests < min_requests or stable.requests < min_requests:
        more = max(min_requests - canary.requests, 0)
        return {**figures, "decision": "hold", "reasons": [f"{more} more canary requests needed"]}
    reasons = []
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
    )


def analyze(
    prefix: Path, params: Params, min_requests: int = MIN_REQUESTS, reports: Path | None = None
) -> dict[str, Any]:
    """Judge the running canary; with `reports`, leave the analysis there as live evidence."""
    state = bluegreen.read_state(prefix)
    canary, live = state.get("canary"), state.get("live")
    if not canary or not live:
        raise SailError(f"no canary runs in {prefix.name}: deploy one with --strategy canary")
    verdict = judge(
        scrape(live["port"]), scrape(canary["port"]), params.monitoring.max_psi, min_requests
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


def auto(
    prefix: Path,
    params: Params,
    steps: tuple[int, ...],
    set_weight: Callable[[int], dict[str, Any]],
    drop: Callable[[], dict[str, Any]],
    min_requests: int = MIN_REQUESTS,
    wait: float = 600,
    reports: Path | None = None,
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
        verdict = analyze(prefix, params, min_requests, reports)
        while verdict["decision"] == "hold" and time.monotonic() < deadline:
            time.sleep(1)
            verdict = analyze(prefix, params, min_requests, reports)
        history.append(verdict)
        if verdict["decision"] == "rollback":
            return {"decision": "rolled back", "steps": history, "dropped": drop()}
        if verdict["decision"] == "hold":
            return {"decision": "hold", "steps": history}
    return {"decision": "promote", "steps": history}
