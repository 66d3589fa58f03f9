"""`sail feedback` by value: the rows it appends to the training data are the logged inputs with
their labels (unlogged columns empty), with integer and string class labels; a labels file
without `record` works; the later label for a record wins, in the stored labels, in `sail
monitor`'s live metrics and in what is appended, and no label is appended twice. (The live
metrics against the gate's thresholds and a labels file without its columns: test_monitor.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from conftest import bake, sail
from logged import accept_classifier, post_logged
from sail_pipelines.contract.schema import Column, Schema
from sail_pipelines.integrity import signing

# Each test trains and serves a project: `make test` runs these, not `make test-fast`.
pytestmark = pytest.mark.slow

SIGNER = signing.generate()
CLASSES = {"int": (0, 1), "str": ("no", "yes")}


def schema(kind: str) -> Schema:
    return Schema(
        target=Column("label", "category", values=CLASSES[kind]),
        features=(
            Column("x1", "float"),
            Column("income", "float", log=False),
            Column("color", "category", values=("a", "b")),
        ),
    )


def draw(n: int, seed: int, kind: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=n).round(6),
            "income": rng.normal(3000, 800, size=n).round(2),
            "color": rng.choice(["a", "b"], size=n),
        }
    )
    positive = (frame.x1 + rng.normal(0, 0.5, size=n)) > 0
    frame["label"] = np.where(positive, CLASSES[kind][1], CLASSES[kind][0])
    return frame


def make_project(project: Path, kind: str) -> Path:
    """The generated project with raw data and an accepted bundle of a small classifier on
    schema(kind): the monitor's and feedback's inputs, nothing trained by `sail run`."""
    train = draw(400, 1, kind)
    train.to_csv(project / "data" / "raw" / "data.csv", index=False)
    return accept_classifier(project, train, schema(kind), list(CLASSES[kind]), SIGNER)


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> dict[str, Path]:
    baked = bake(tmp_path_factory.mktemp("feedback"))
    projects = {}
    for kind in CLASSES:
        projects[kind] = baked.parent / kind
        shutil.copytree(baked, projects[kind], symlinks=True)
        make_project(projects[kind], kind)
    return projects


def serve(project: Path, log: Path, frame: pd.DataFrame, per_request: int) -> list[str]:
    records = frame[["x1", "income", "color"]].to_dict("records")
    return post_logged(project, SIGNER.verify_key, log, records, per_request)


def feedback(project: Path, labels: pd.DataFrame, log: Path, tmp_path: Path, *args: str) -> dict:
    source = tmp_path / "labels.csv"
    labels.to_csv(source, index=False)
    result = sail(
        project,
        "feedback",
        str(source),
        "--log",
        str(log),
        *args,
        key=None,
        SAIL_VERIFY_KEY=SIGNER.verify_key.text(),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def raw(project: Path) -> pd.DataFrame:
    return pd.read_csv(project / "data" / "raw" / "data.csv", dtype={"label": str})


@pytest.mark.parametrize("kind", list(CLASSES))
def test_appended_rows_are_the_logged_inputs_with_their_labels(projects, tmp_path, kind):
    project, log = projects[kind], tmp_path / "p.jsonl"
    frame = draw(30, 2, kind)
    ids = serve(project, log, frame, per_request=10)
    before = len(raw(project))
    # ground truth for rows 3..26, in another order than served, labelled against the model
    labels = pd.DataFrame(
        {"request_id": np.repeat(ids, 10), "record": np.tile(np.arange(10), 3)}
    ).iloc[3:27]
    labels["label"] = frame["label"].iloc[3:27].to_numpy()[::-1]
    labels = labels.sample(frac=1, random_state=0)
    out = feedback(project, labels, log, tmp_path, "--append-to-training")
    assert out["joined"] == out["appended"] == 24

    appended = raw(project).iloc[before:].reset_index(drop=True)
    served = frame.iloc[3:27].reset_index(drop=True)  # the log's order: request, then record
    assert appended["x1"].tolist() == served["x1"].tolist()
    assert appended["color"].tolist() == served["color"].tolist()
    assert appended["income"].isna().all()  # `log: false`: never logged, so never appended
    assert appended["label"].tolist() == [str(v) for v in frame["label"].iloc[3:27][::-1]]

    if kind == "str":  # live metrics on string labels, against the logged predictions
        monitored = sail(
            project, "monitor", "--log", str(log), key=None,
            SAIL_VERIFY_KEY=SIGNER.verify_key.text(),
        )  # fmt: skip
        assert "Traceback" not in monitored.stderr, monitored.stderr
        live = json.loads((project / "reports" / "monitor.json").read_text())["live"]
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        predicted = [p for line in lines for p in line["outputs"]["prediction"]][3:27]
        assert live["accuracy"] == pytest.approx(
            accuracy_score(frame["label"].iloc[3:27][::-1], predicted)
        )


def test_the_later_label_wins_and_no_label_is_appended_twice(projects, tmp_path):
    """Requests of one record each, labelled without a `record` column."""
    project, log = projects["int"], tmp_path / "p.jsonl"
    frame = draw(20, 3, "int")
    ids = serve(project, log, frame, per_request=1)
    truth = frame["label"].to_numpy()
    start = len(raw(project))
    (project / "data" / "feedback" / "labels.csv").unlink(missing_ok=True)  # a fresh store

    first = pd.DataFrame({"request_id": ids[:10], "label": 1 - truth[:10]})  # all wrong
    out = feedback(project, first, log, tmp_path, "--append-to-training")
    assert out["labels"] == out["joined"] == out["appended"] == 10

    # the next batch: rows 10..19, and row 0 corrected (after a wrong line in the same file)
    second = pd.DataFrame(
        {"request_id": [ids[0], *ids[10:], ids[0]], "label": [1 - truth[0], *truth[10:], truth[0]]}
    )
    out = feedback(project, second, log, tmp_path, "--append-to-training")
    assert out["labels"] == 20 and out["appended"] == 11  # 10 new records, 1 changed label

    stored = pd.read_csv(project / "data" / "feedback" / "labels.csv", dtype={"request_id": str})
    assert len(stored) == 20 and set(stored["record"]) == {0}
    by_id = dict(zip(stored["request_id"], stored["label"], strict=True))
    assert by_id[ids[0]] == truth[0] and by_id[ids[1]] == 1 - truth[1]
    assert [by_id[i] for i in ids[10:]] == truth[10:].tolist()

    appended = raw(project).iloc[start:]
    # each call appends in the log's order
    assert appended["label"].astype(int).tolist() == [*(1 - truth[:10]), truth[0], *truth[10:]]
    x1 = frame["x1"].tolist()
    assert appended["x1"].tolist() == [*x1[:10], x1[0], *x1[10:]]

    # sail monitor scores the live model on the stored labels: row 0's later one
    sail(project, "monitor", "--log", str(log), key=None, SAIL_VERIFY_KEY=SIGNER.verify_key.text())
    live = json.loads((project / "reports" / "monitor.json").read_text())["live"]
    predicted = [
        json.loads(line)["outputs"]["prediction"][0] for line in log.read_text().splitlines()
    ]
    expected = [truth[0], *(1 - truth[1:10]), *truth[10:]]
    assert live["accuracy"] == pytest.approx(accuracy_score(expected, predicted))
