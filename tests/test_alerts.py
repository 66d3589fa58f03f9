"""The template's alert rules under `promtool test rules`: for each alert, series that make it fire
near its limit and series that must not (just under it, or traffic it must ignore). Each
mutation of the rules below must make a case fail, so the cases do hold the rules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ci_rules import missing
from conftest import bake

PREDICT = 'sail_requests_total{route="/predict",status="%s"}'
SLOW = 'sail_request_seconds_bucket{route="/predict",le="%s"}'
LATENCY_BUCKETS = ("0.05", "0.1", "0.25", "+Inf")


def _latency(fast_per_minute: int, slow_per_minute: int) -> list[tuple[str, str]]:
    """/predict's histogram: fast requests take under 50 ms, slow ones 100-250 ms."""
    total = fast_per_minute + slow_per_minute
    return [
        (SLOW % le, f"0+{fast_per_minute if le in ('0.05', '0.1') else total}x40")
        for le in LATENCY_BUCKETS
    ]


def _classes(after: tuple[int, int]) -> list[tuple[str, str]]:
    """A week at 50/50 (every 10 minutes), then four hours at `after` (per 10 minutes)."""
    week = 7 * 24 * 6
    return [
        (f'sail_predictions_total{{cls="{cls}"}}', f"0+500x{week} {500 * week + n}+{n}x23")
        for cls, n in zip(("0", "1"), after, strict=True)
    ]


# (case, alert, fires, evaluated at, interval, series)
CASES = [
    ("5xx at 2%", "SailServerErrors", True, "15m", "1m",
     [(PREDICT % "200", "0+98x20"), (PREDICT % "500", "0+2x20")]),
    ("5xx at 0.5%", "SailServerErrors", False, "15m", "1m",
     [(PREDICT % "200", "0+199x20"), (PREDICT % "500", "0+1x20")]),
    ("bad input is no server error", "SailServerErrors", False, "15m", "1m",
     [(PREDICT % "200", "0+50x20"), (PREDICT % "422", "0+50x20")]),
    ("5xx for less than 5 minutes", "SailServerErrors", False, "8m", "1m",
     [(PREDICT % "200", "0+98x20"), (PREDICT % "500", "0x4 0+5x16")]),
    ("refused 8%", "SailRefusedInputs", True, "25m", "1m",
     [(PREDICT % "200", "0+92x30"), (PREDICT % "422", "0+8x30")]),
    ("refused 3%", "SailRefusedInputs", False, "25m", "1m",
     [(PREDICT % "200", "0+97x30"), (PREDICT % "422", "0+3x30")]),
    # A v2 client's health and metadata polls are no prediction requests: they neither dilute
    # the share nor count as refusals.
    ("refused 8% of v2 inferences, polled often", "SailRefusedInputs", True, "25m", "1m",
     [('sail_requests_total{route="/v2/models/<name>/infer",status="200"}', "0+92x30"),
      ('sail_requests_total{route="/v2/models/<name>/infer",status="400"}', "0+8x30"),
      ('sail_requests_total{route="/v2/health/ready",status="200"}', "0+600x30")]),
    ("a wrong model name in v2 metadata calls", "SailRefusedInputs", False, "25m", "1m",
     [(PREDICT % "200", "0+100x30"),
      ('sail_requests_total{route="/v2/models/<name>",status="404"}', "0+50x30")]),
    ("p99 in the slow bucket", "SailSlowPredictions", True, "20m", "1m", _latency(97, 3)),
    ("p99 fast", "SailSlowPredictions", False, "20m", "1m", _latency(199, 1)),
    ("4% out of range", "SailOutOfRange", True, "60m", "1m",
     [('sail_out_of_range_values_total{feature="x1"}', "0+4x70"),
      ("sail_records_total", "0+100x70")]),
    ("1% out of range", "SailOutOfRange", False, "60m", "1m",
     [('sail_out_of_range_values_total{feature="x1"}', "0+1x70"),
      ("sail_records_total", "0+100x70")]),
    ("8% outliers", "SailOutliers", True, "60m", "1m",
     [("sail_outliers_total", "0+8x70"), ("sail_records_total", "0+100x70")]),
    ("2% outliers", "SailOutliers", False, "60m", "1m",
     [("sail_outliers_total", "0+2x70"), ("sail_records_total", "0+100x70")]),
    ("classes moved 30 points", "SailPredictionDrift", True, "172h", "10m", _classes((200, 800))),
    ("classes moved 5 points", "SailPredictionDrift", False, "172h", "10m", _classes((450, 550))),
    ("no model reported", "SailModelMissing", True, "15m", "1m", [(PREDICT % "200", "0+1x20")]),
    ("a model reported", "SailModelMissing", False, "15m", "1m",
     [('sail_model_info{model="m",version="1",bundle_id="b",runtime="onnx"}', "1x20")]),
]  # fmt: skip


def _firing_labels(alert: str, series: list[tuple[str, str]]) -> list[dict[str, str]]:
    """The extra labels each firing alert carries: the class for drift, none for the rest."""
    if alert == "SailPredictionDrift":
        return [{"cls": "0"}, {"cls": "1"}]
    return [{}]


def unit_tests(rules: Path, interval: str) -> dict:
    """promtool's test file for the CASES sampled every `interval` (rules evaluated as often: a
    week of series evaluated every minute takes minutes), the expected alerts spelled as the
    rules spell them."""
    defined = {
        rule["alert"]: rule
        for group in yaml.safe_load(rules.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tests = []
    for name, alert, fires, at, every, series in CASES:
        if every != interval:
            continue
        rule = defined[alert]
        expected = [
            {"exp_labels": {**rule["labels"], **extra}, "exp_annotations": rule["annotations"]}
            for extra in _firing_labels(alert, series)
        ]
        tests.append(
            {
                "name": name,
                "interval": interval,
                "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": [
                    {"eval_time": at, "alertname": alert, "exp_alerts": expected if fires else []}
                ],
            }
        )
    return {"rule_files": [str(rules)], "evaluation_interval": interval, "tests": tests}


@pytest.fixture(scope="module")
def rules(tmp_path_factory) -> Path:
    return bake(tmp_path_factory.mktemp("alerts")) / "monitoring" / "prometheus-rules.yml"


def promtool_test(rules: Path, workdir: Path) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool is not installed (Debian package prometheus; docker/prepare-machine)")
    files = []
    for interval in sorted({c[4] for c in CASES}):
        files.append(workdir / f"alerts-test-{interval}.yml")
        files[-1].write_text(yaml.safe_dump(unit_tests(rules, interval), sort_keys=False))
    return subprocess.run(
        [promtool, "test", "rules", *map(str, files)], capture_output=True, text=True, timeout=120
    )


def test_each_alert_fires_near_its_limit_and_not_below_it(rules, tmp_path):
    assert {c[1] for c in CASES} == set(
        r["alert"]
        for g in yaml.safe_load(rules.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    )  # every alert the template ships has its cases
    result = promtool_test(rules, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


MUTATIONS = [
    ("sail:request_error_ratio:rate5m > 0.01", "sail:request_error_ratio:rate5m > 0.05",
     "5xx at 2%"),
    ('sum(rate(sail_requests_total{status=~"5.."}[5m]))',
     'sum(rate(sail_requests_total{status=~"[45].."}[5m]))', "bad input is no server error"),
    ("for: 5m\n", "for: 1m\n", "5xx for less than 5 minutes"),
    ("/predict|/invocations|/v2/models/.+/infer", "/predict|/invocations|/v2/.*",
     "refused 8% of v2 inferences, polled often"),
    ("sail:refused_ratio:rate5m > 0.05", "sail:refused_ratio:rate5m > 0.02", "refused 3%"),
    ("histogram_quantile(0.99,", "histogram_quantile(0.9,", "p99 in the slow bucket"),
    ("sail:out_of_range_share:rate15m > 0.02", "sail:out_of_range_share:rate15m > 0.005",
     "1% out of range"),
    ("sail:outlier_share:rate15m > 0.05", "sail:outlier_share:rate15m > 0.01", "2% outliers"),
    ("rate1h - sail:prediction_share:rate7d) > 0.1", "rate1h - sail:prediction_share:rate7d) > 0.4",
     "classes moved 30 points"),
    ("absent(sail_model_info)", "absent(sail_model_information)", "a model reported"),
]  # fmt: skip


@pytest.mark.parametrize("old, new, case", MUTATIONS, ids=[m[2] for m in MUTATIONS])
def test_a_weakened_rule_fails_its_case(rules, tmp_path, old, new, case):
    text = rules.read_text()
    assert old in text, old  # every occurrence is mutated (the refused ratio's two routes)
    mutated = tmp_path / "prometheus-rules.yml"
    mutated.write_text(text.replace(old, new))
    result = promtool_test(mutated, tmp_path)
    assert result.returncode != 0 and f"name: {case}" in result.stdout + result.stderr, (
        result.stdout + result.stderr
    )
