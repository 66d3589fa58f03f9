"""`sail monitor` on prediction logs the real API wrote: traffic like the training data passes, a
shifted feature fails naming it, a sudden change between two windows trips the derivative
check, and a broken log is one line (the champion and the scheduled workflow:
test_monitor_champion.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import bake, sail
from logged import accept_classifier, post_logged
from sail_pipelines.contract.validate import profile_frame
from sail_pipelines.errors import SailError
from sail_pipelines.integrity import signing
from test_prediction_log import SCHEMA

SIGNER = signing.generate()


def draw(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x1": rng.normal(shift, 1, size=n),
            "income": rng.normal(3000, 800, size=n),
            "color": rng.choice(["a", "b"], size=n),
        }
    )
    frame["label"] = ((frame.x1 + rng.normal(0, 0.5, size=n)) > 0).astype(int)
    return frame


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A generated project whose accepted bundle was trained on data/split/train.csv."""
    root = bake(tmp_path_factory.mktemp("monitor"))
    train = draw(2000, 1)
    return accept_classifier(root, train, SCHEMA, [0, 1], SIGNER)


def serve_log(project: Path, log: Path, frame: pd.DataFrame, per_request: int = 20) -> list[str]:
    return post_logged(
        project, SIGNER.verify_key, log, frame[SCHEMA.feature_names].to_dict("records"), per_request
    )


def monitor(project: Path, *args: str):
    return sail(project, "monitor", *args, key=None, SAIL_VERIFY_KEY=SIGNER.verify_key.text())


@pytest.mark.slow
def test_traffic_like_the_test_split_passes(project, tmp_path):
    log = tmp_path / "p.jsonl"
    serve_log(project, log, draw(600, 2))
    result = monitor(project, "--log", str(log))
    assert result.returncode == 0, result.stderr
    report = json.loads((project / "reports" / "monitor.json").read_text())
    assert report["rows"] == 600 and report["breaches"] == []
    # `log: false`: never logged, never judged
    assert report["features"]["income"] == {"logged": False}
    assert set(report["features"]["x1"]) >= {"psi", "ks", "p_value", "out_of_range", "missing"}
    assert "Every limit holds." in (project / "reports" / "monitor.md").read_text()


@pytest.mark.slow
def test_a_shifted_feature_fails_naming_it(project, tmp_path):
    log = tmp_path / "p.jsonl"
    serve_log(project, log, draw(600, 3, shift=1.5))
    result = monitor(project, "--log", str(log))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "monitoring limit(s) breached" in lines[0] and "Traceback" not in result.stderr
    assert any(line.strip().startswith("x1: drift PSI") for line in lines)
    assert not any(line.strip().startswith("color:") for line in lines)
    assert (project / "reports" / "monitor" / "x1.png").is_file()


@pytest.mark.slow
def test_a_sudden_change_between_windows_trips_the_derivative_check(project, tmp_path):
    """The colors are split 50/50 overall, as in training, but all 'a' one day and all 'b' the
    next."""
    log = tmp_path / "p.jsonl"
    frame = draw(600, 4)
    frame["color"] = ["a"] * 300 + ["b"] * 300
    serve_log(project, log, frame)
    lines = log.read_text().splitlines()
    days = [("2026-01-01" if i < len(lines) / 2 else "2026-01-02") for i in range(len(lines))]
    log.write_text(
        "".join(
            line.replace(line[9:19], day, 1) + "\n" for line, day in zip(lines, days, strict=True)
        )
    )
    result = monitor(project, "--log", str(log))
    assert result.returncode == 1
    breaches = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert [b.split(",")[0] for b in breaches] == ["color: sudden change"], breaches
    # One day alone has no window before it: its colors drifted from training, but nothing changed
    # suddenly.
    one_day = monitor(project, "--log", str(log), "--since", "2026-01-02", "--until", "2026-01-03")
    assert "color: drift PSI" in one_day.stderr and "sudden change" not in one_day.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "no prediction log lines"),
        (
            '{"time":"2026-01-01T00:00:00.000+00:00","request_id":"r","inputs":{"x1":[1',
            "p.jsonl:1: truncated or corrupted line",
        ),
        (
            '{"time":"2026-01-01T00:00:00.000+00:00","status":200}\n',
            "p.jsonl:1: not a prediction line",
        ),
    ],
)
@pytest.mark.slow
def test_a_broken_log_is_one_line(project, tmp_path, content, message):
    log = tmp_path / "p.jsonl"
    log.write_text(content)
    result = monitor(project, "--log", str(log))
    assert result.returncode == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_bad_time_options_are_one_line(project, tmp_path):
    log = tmp_path / "p.jsonl"
    serve_log(project, log, draw(20, 5))
    for args, message in (
        (["--window", "3 weeks"], "--window must be"),
        (["--since", "yesterday"], "--since must be"),
        (["--since", "2030-01-01"], "no prediction logged in the chosen time span"),
    ):
        result = monitor(project, "--log", str(log), *args)
        assert result.returncode == 1 and message in result.stderr, result.stderr


@pytest.mark.slow
def test_feedback_joins_labels_and_monitor_scores_the_live_model(project, tmp_path):
    from sklearn.metrics import accuracy_score, roc_auc_score

    log = tmp_path / "p.jsonl"
    frame = draw(600, 6)
    ids = serve_log(project, log, frame)
    labels = pd.DataFrame(
        {
            "request_id": np.repeat(ids, 20),
            "record": np.tile(np.arange(20), len(ids)),
            "label": frame["label"],
        }
    )
    # ground truth for 500 of the 600 rows
    labels.iloc[:500].to_csv(tmp_path / "labels.csv", index=False)
    raw = project / "data" / "raw" / "data.csv"
    before = len(pd.read_csv(raw))
    joined = json.loads(
        sail(
            project,
            "feedback",
            str(tmp_path / "labels.csv"),
            "--log",
            str(log),
            "--append-to-training",
            key=None,
            SAIL_VERIFY_KEY=SIGNER.verify_key.text(),
        ).stdout
    )
    assert joined["joined"] == 500 and joined["appended"] == 500
    assert len(pd.read_csv(raw)) == before + 500

    result = monitor(project, "--log", str(log))
    live = json.loads((project / "reports" / "monitor.json").read_text())["live"]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    predictions = [p for line in lines for p in line["outputs"]["prediction"]][:500]
    scores = [p for line in lines for p in line["outputs"]["probabilities"]["1"]][:500]
    truth = frame["label"].iloc[:500]
    assert live["accuracy"] == pytest.approx(accuracy_score(truth, predictions))
    assert live["roc_auc"] == pytest.approx(roc_auc_score(truth, scores))
    assert live["roc_auc"] < 0.95  # the template's gate threshold: the live model misses it
    assert (
        result.returncode == 1
        and "live roc_auc" in result.stderr
        and "below the gate threshold 0.95" in result.stderr
    )


def test_a_labels_file_without_its_columns_is_one_line(project, tmp_path):
    (tmp_path / "labels.csv").write_text("id,label\n1,0\n")
    (tmp_path / "p.jsonl").write_text("")
    serve_log(project, tmp_path / "p.jsonl", draw(20, 7))
    result = sail(
        project,
        "feedback",
        str(tmp_path / "labels.csv"),
        "--log",
        str(tmp_path / "p.jsonl"),
        key=None,
        SAIL_VERIFY_KEY=SIGNER.verify_key.text(),
    )
    assert (
        result.returncode == 1
        and "needs the columns request_id and label (missing: request_id)" in result.stderr
    )


def test_monitoring_limits_default_for_old_projects_and_are_checked(project):
    import yaml

    from sail_pipelines.config import MonitoringConfig, parse_params

    raw = yaml.safe_load((project / "params.yaml").read_text())
    assert parse_params(raw).monitoring == MonitoringConfig()  # the template states the defaults
    assert (
        parse_params({k: v for k, v in raw.items() if k != "monitoring"}).monitoring
        == MonitoringConfig()
    )
    tuned = parse_params({**raw, "monitoring": {"max_psi": 0.1, "window_hours": 1}}).monitoring
    assert (tuned.max_psi, tuned.window_hours, tuned.max_ks) == (0.1, 1, MonitoringConfig().max_ks)
    for bad, message in (
        ({"max_psy": 1}, "monitoring.max_psy is not a known key; use one of max_psi"),
        ({"max_ks": 2}, "monitoring.max_ks"),
        ({"bins": 1}, "monitoring.bins"),
        ("yes", "monitoring must be a mapping of max_psi"),
    ):
        with pytest.raises(SailError, match=message):
            parse_params({**raw, "monitoring": bad})


def test_logs_are_read_from_s3_too(project, tmp_path):
    from sail_pipelines.monitoring import logs
    from servers import S3Server

    log = tmp_path / "p.jsonl"
    serve_log(project, log, draw(40, 8))
    server = S3Server().start()
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="logs")
        lines = log.read_text().splitlines(keepends=True)
        s3.put_object(Bucket="logs", Key="serve/a.jsonl", Body="".join(lines[:1]).encode())
        s3.put_object(Bucket="logs", Key="serve/b.jsonl", Body="".join(lines[1:]).encode())
        traffic = logs.read("s3://logs/serve/", s3=server.client)
        with pytest.raises(SailError, match="s3://logs/nothing/: no prediction log lines"):
            logs.read("s3://logs/nothing/", s3=server.client)
        with pytest.raises(SailError, match="s3://nobucket/: cannot read from S3"):
            logs.read("s3://nobucket/", s3=server.client)
    finally:
        server.stop()
    assert traffic.rows == 40 and traffic.request_ids[0] == json.loads(lines[0])["request_id"]


# The statistics, on pure functions: known values, each rule tripped on its own just past its
# limit and not just under it, and the false-alarm and detection rates at a small scale (the full
# figures: benchmarks/monitor_power.py).


def stats_schema():
    from sail_pipelines.contract.schema import Column, Schema

    return Schema(
        target=Column("label", "category", values=("n", "y")),
        features=(
            Column("x", "float"),
            Column("d", "datetime"),
            Column("c", "category", values=("a", "b")),
            Column("m", "float", nullable=True),
        ),
    )


def grid(rows: int, shift: float = 0.0) -> np.ndarray:
    """Evenly spread normal quantiles: a sample without sampling noise."""
    from scipy.stats import norm

    return norm.ppf((np.arange(rows) + 0.5) / rows) + shift


def reference(rows: int = 20_000):
    """x normal, d two years of days, c half 'a', m 10% missing, all evenly spread and shuffled
    (one fixed order) so that any half of the rows is alike."""
    spread = np.arange(rows) / rows
    frame = pd.DataFrame(
        {
            "x": grid(rows),
            "d": (pd.Timestamp("2020-01-01") + pd.to_timedelta(np.floor(spread * 730), unit="D"))
            .strftime("%Y-%m-%d")
            .to_numpy(),
            "c": np.where(np.arange(rows) % 2 == 0, "a", "b"),
            "m": np.where(np.arange(rows) % 10 == 0, np.nan, grid(rows)),
            "label": np.where(np.arange(rows) % 2 == 0, "n", "y"),
        }
    )
    frame = frame.sample(frac=1, random_state=0).reset_index(drop=True)
    schema = stats_schema()
    metadata = {"task": "classification", "training_profile": profile_frame(schema, frame, "h")}
    return schema, metadata, frame


def window(frame: pd.DataFrame, times: list[str] | None = None):
    from sail_pipelines.monitoring.logs import Traffic

    n = len(frame)
    return Traffic(
        times=times or ["2026-01-01T00:00:00.000+00:00"] * n,
        request_ids=[str(i) for i in range(n)],
        positions=[0] * n,
        inputs={
            c: [None if pd.isna(v) else v for v in frame[c].tolist()] for c in ("x", "d", "c", "m")
        },
        predictions=frame["label"].tolist(),
        requests=n,
    )


@pytest.fixture(scope="module")
def judged():
    """The monitor's verdict on a window built from the reference with `change` applied."""
    from sail_pipelines.config import MonitoringConfig
    from sail_pipelines.monitoring import monitor

    schema, metadata, train = reference()
    base = monitor.baseline(schema, metadata, train, MonitoringConfig())

    def verdict(change, rows: int = 5000, times=None, **limits) -> list[str]:
        served = reference(rows)[2]
        change(served)
        config = MonitoringConfig(**limits)
        report = monitor.compare(schema, metadata, train, window(served, times), config, base)
        return report["breaches"]

    return verdict


def test_psi_and_ks_match_known_values():
    from sail_pipelines.monitoring.stats import holm, numeric_drift, psi

    assert psi(np.array([50.0, 50.0]), np.array([25.0, 75.0])) == pytest.approx(
        0.25 * np.log(2) + 0.25 * np.log(1.5)
    )
    assert psi(np.array([1.0, 3.0]), np.array([10.0, 30.0])) == 0.0
    drift = numeric_drift(np.arange(100.0), np.arange(100.0) + 10, np.array([50.0]))
    assert drift["ks"] == pytest.approx(0.10)
    assert drift["psi"] == pytest.approx(
        psi(np.array([50.0, 50.0]), np.array([40.0, 60.0]))
    )  # one inner edge: 40 of the shifted values below 50
    assert list(holm([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])


def _set(column: str, values):
    def change(frame: pd.DataFrame) -> None:
        frame[column] = values(frame)

    return change


def _share(column: str, share: float, value: str, other: str):
    """The first `share` of the rows take `value`, the rest `other`."""

    def change(frame: pd.DataFrame) -> None:
        frame[column] = np.where(np.arange(len(frame)) < share * len(frame), value, other)

    return change


def _beyond(column: str, share: float, value):
    def change(frame: pd.DataFrame) -> None:
        frame.loc[frame.index[: round(share * len(frame))], column] = value

    return change


def _missing(share: float):
    """m missing in the first `share` of the rows, present in all others."""

    def change(frame: pd.DataFrame) -> None:
        frame["m"] = np.where(np.arange(len(frame)) < share * len(frame), np.nan, frame["x"])

    return change


@pytest.mark.parametrize(
    "rule, tripped, under, limits",
    [
        # KS 0.22 against 0.18 (PSI held off: it is checked on its own below)
        (
            "x: drift KS",
            _set("x", lambda f: grid(len(f), 0.56)),
            _set("x", lambda f: grid(len(f), 0.45)),
            {"max_psi": 5},
        ),
        (
            "x: drift PSI",
            _set("x", lambda f: grid(len(f), 0.5)),
            _set("x", lambda f: grid(len(f), 0.4)),
            {"max_ks": 1},
        ),
        # 6% against 4% of served values beyond the widened range (limit 5%)
        (
            "x: 6.0% of served values outside",
            _beyond("x", 0.06, 99.0),
            _beyond("x", 0.04, 99.0),
            {},
        ),
        (
            "d: 6.0% of served values outside",
            _beyond("d", 0.06, "2030-01-01"),
            _beyond("d", 0.04, "2030-01-01"),
            {},
        ),
        # 10% missing in training: 16% trips (6 points above), 14% does not
        (
            "m: 16.0% of served values missing",
            _missing(0.16),
            _missing(0.14),
            {},
        ),
        # the share of 'a': 50% in training, 62% trips (limit 10 points), 58% does not
        (
            "c: the share of 'a' moved +12.0%",
            _share("c", 0.62, "a", "b"),
            _share("c", 0.58, "a", "b"),
            {},
        ),
        # predictions 50/50 in training: 73/27 is PSI 0.23 (trips), 68/32 is PSI 0.14
        (
            "predictions: drift PSI",
            _share("label", 0.73, "n", "y"),
            _share("label", 0.68, "n", "y"),
            {},
        ),
    ],
    ids=["ks", "psi", "out_of_range", "date_out_of_range", "missing", "share", "predictions"],
)
def test_each_rule_trips_on_its_own_just_past_its_limit(judged, rule, tripped, under, limits):
    lines = judged(tripped, **limits)
    assert len(lines) == 1 and lines[0].startswith(rule), lines
    assert judged(under, **limits) == []


def test_a_sudden_change_between_windows_trips_on_its_own(judged):
    """Two days of 2,500 rows: 'a' 35% then 65% (PSI 0.37 between them, limit 0.25) trips;
    38% then 62% (PSI 0.235) does not. Over both days the share stays 50%."""
    times = ["2026-01-01T12:00:00.000+00:00"] * 2500 + ["2026-01-02T12:00:00.000+00:00"] * 2500

    def days(first: float):
        def change(frame: pd.DataFrame) -> None:
            day = np.arange(len(frame)) % 2500
            share = np.where(np.arange(len(frame)) < 2500, first, 1 - first)
            frame["c"] = np.where(day < share * 2500, "a", "b")

        return change

    lines = judged(days(0.35), times=times)
    assert len(lines) == 1 and lines[0].startswith("c: sudden change, PSI 0.371"), lines
    assert judged(days(0.38), times=times) == []


def test_an_effect_without_evidence_is_no_breach(judged):
    """PSI past its limit on 120 rows is within the noise of that size: not proven."""
    lines = judged(_set("x", lambda f: grid(len(f), 0.5)), rows=120, max_ks=1)
    assert lines == []


@pytest.mark.parametrize("seed", range(5))
def test_in_distribution_windows_raise_no_alarm(seed):
    """Random windows of 100, 250 and 1,000 rows from the same source as a 2,000-row split."""
    from sail_pipelines.config import MonitoringConfig
    from sail_pipelines.monitoring import monitor

    def sample(rows: int, rng) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "x": rng.lognormal(0, 1, rows),
                "d": (pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 730, rows), "D"))
                .strftime("%Y-%m-%d")
                .to_numpy(),
                "c": rng.choice(["a", "b", "c", "d", "rare"], rows, p=[0.4, 0.3, 0.2, 0.09, 0.01]),
                "m": np.where(rng.random(rows) < 0.36, np.nan, rng.normal(size=rows)),
            }
        )
        frame["label"] = np.where(frame.x > 1, "y", "n")
        return frame

    rng = np.random.default_rng(seed)
    schema = stats_schema()
    train = sample(2000, rng)
    metadata = {"task": "classification", "training_profile": profile_frame(schema, train, "h")}
    base = monitor.baseline(schema, metadata, train, MonitoringConfig())
    for rows in (100, 250, 1000):
        served = window(sample(rows, rng))
        report = monitor.compare(schema, metadata, train, served, MonitoringConfig(), base)
        assert report["breaches"] == [], (rows, report["breaches"])


@pytest.fixture(scope="module")
def power():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import monitor_power

    return monitor_power


@pytest.mark.parametrize(
    "name, rows, shifts",
    [("example", 100, ("mean 0.5 sd",)), ("diamonds", 1000, ("mean 0.5 sd", "category +15 pts"))],
)
def test_false_alarms_and_detection_at_a_small_scale(power, name, rows, shifts):
    """40 seeded windows of held-out rows: none alarms; each shift is caught in 90% or more."""
    setup = power.prepare(name)
    rng = np.random.default_rng(0)
    assert power.false_alarms(setup, rows, 40, rng) == 0.0
    for kind in shifts:
        assert power.detection(setup, kind, rows, 40, rng) >= 0.9, kind
