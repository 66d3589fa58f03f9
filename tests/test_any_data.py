"""A project generated from a user's own data file goes green on its first `sail run`, or the user
gets one line saying why and nothing is written. Real files, real bakes, real `sail run`."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml

from conftest import TEMPLATE, TEST_VERIFY_KEY, bake, ok, sail
from datasets import SKLEARN, messy_csv, messy_frame, sklearn_csv
from sail_pipelines.contract.data import json_records
from sail_pipelines.inference.smoke import local_server
from sail_pipelines.integrity import signing
from test_public_serving import assert_candidates_compiled, assert_serves_compiled

pytestmark = pytest.mark.slow

DATASETS = {"customers": ("tier", "classification"), **SKLEARN}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("user-data")
    messy_csv(folder)
    for name in SKLEARN:
        sklearn_csv(name, folder)
    return folder


def data_file(data_dir: Path, name: str) -> Path:
    return data_dir / f"{name}.csv"


# Projects this worker built, by data file: the messy-table tests below reuse the `customers`
# project of `adopted` rather than baking and training the same file again.
BUILT: dict[str, Path] = {}


def built(name: str, data_dir: Path, tmp_path_factory) -> Path:
    """A project baked around one data file, after one `sail run` with no hand edits."""
    if name not in BUILT:
        started = time.monotonic()
        project = bake(
            tmp_path_factory.mktemp(name),
            project_name=name.replace("_", " "),
            data_file=str(data_file(data_dir, name)),
            target=DATASETS[name][0],
        )
        ok(sail(project, "run"))
        print(f"\n{name}: baked and green in {time.monotonic() - started:.0f} s")
        BUILT[name] = project
    return BUILT[name]


@pytest.fixture(scope="module", params=list(DATASETS))
def adopted(request, data_dir, tmp_path_factory) -> tuple[str, Path]:
    return request.param, built(request.param, data_dir, tmp_path_factory)


def test_goes_green_with_the_right_task_and_metrics(adopted):
    name, project = adopted
    target, task = DATASETS[name]
    params = (project / "params.yaml").read_text()
    assert f"task: {task}" in params and "derived by `sail adopt` from a dummy baseline" in params
    gate = json.loads((project / "reports" / "gate.json").read_text())
    assert gate["verdict"] == "pass" and gate["registered"]
    ok(sail(project, "report"))
    report = (project / "reports" / "report.md").read_text()
    if task == "regression":
        assert (
            "| **r2** (primary)" in report
            and "| rmse |" in report
            and "Confusion matrix" not in report
        )
    else:
        assert "| **roc_auc** (primary)" in report and "| f1_weighted |" in report
        assert "Confusion matrix" in report
        classes = json.loads((project / "reports" / "evaluation.json").read_text())["candidates"][
            gate["candidate"]
        ]["metrics"]["classes"]
        assert all(f"| **{c}** |" in report for c in classes)


def test_served_predictions_equal_batch_predictions(adopted):
    name, project = adopted
    test = pd.read_csv(project / "data" / "split" / "test.csv")
    ok(
        sail(
            project,
            "predict",
            "--input",
            str(project / "data" / "split" / "test.csv"),
            "--output",
            str(project / "reports" / "batch.csv"),
        )
    )
    batch = pd.read_csv(project / "reports" / "batch.csv")
    sent = test.drop(columns=[DATASETS[name][0]])
    with local_server(
        project / "models" / "accepted", signing.public_key(TEST_VERIFY_KEY, "test")
    ) as url:
        served = requests.post(f"{url}/predict", json=json_records(sent), timeout=60)
    assert served.status_code == 200, served.text
    assert list(map(str, served.json()["predictions"])) == list(map(str, batch["prediction"]))
    assert set(sent.columns) <= set(batch.columns)  # ignored columns come back, to join rows on


def test_the_projects_own_tests_pass(adopted):
    _, project = adopted
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.fixture(scope="module")
def customers(data_dir, tmp_path_factory) -> Path:
    return built("customers", data_dir, tmp_path_factory)


def test_messy_data_decisions_are_printed_and_kept_in_the_schema(customers):
    text = (customers / "contracts" / "schema.yaml").read_text()
    columns = {c["name"]: c for c in yaml.safe_load(text)["columns"]}
    # one line per column, in the file's order
    assert text.count("\n  - {name: ") == len(columns) == 9
    assert (columns["customer_id"]["role"], columns["notes"]["role"]) == ("ignore", "ignore")
    assert columns["notes"]["reason"].startswith("free text")
    assert (columns["signup"]["type"], columns["is_member"]["type"]) == ("datetime", "bool")
    assert columns["city"]["other"] and columns["tier"]["values"] == [
        "bronze",
        "gold",
        "platinum",
        "silver",
    ]
    validation = json.loads((customers / "reports" / "validation.json").read_text())
    assert validation["rows_without_label"] == 30
    holdout = json.loads((customers / "reports" / "evaluation.json").read_text())["holdout"][
        "records"
    ]
    assert "NaN" not in json.dumps(holdout) and any(v is None for r in holdout for v in r.values())


def test_batch_passes_ignored_columns_through_and_flags_extremes(customers, tmp_path):
    rows = messy_frame(rows=40, seed=3).drop(columns=["tier"])
    rows["income"], rows["score"] = 40_000.0, 0.0  # in range, but for the one extreme below
    rows.loc[0, "income"] = 1e308
    source = tmp_path / "batch.parquet"
    rows.to_parquet(source)
    ok(
        sail(
            customers, "predict", "--input", str(source), "--output", str(tmp_path / "out.parquet")
        )
    )
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["customer_id"].tolist() == rows["customer_id"].tolist()
    assert (
        out.loc[0, "out_of_range"] == "income" and (out["out_of_range"].iloc[1:] != "income").all()
    )
    assert out["prediction"].isin(["bronze", "silver", "gold", "platinum"]).all()


def test_bad_batch_rows_are_named_by_their_line(customers, tmp_path):
    rows = messy_frame(rows=30, seed=4).drop(columns=["tier"])
    rows["age"] = rows["age"].astype(object)
    rows.loc[9, "age"] = "forty"
    rows.to_csv(tmp_path / "bad.csv", index=False)
    result = sail(
        customers,
        "predict",
        "--input",
        str(tmp_path / "bad.csv"),
        "--output",
        str(tmp_path / "o.csv"),
    )
    assert result.returncode == 1 and "'forty' (line 11)" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "o.csv").exists()


def test_the_messy_table_is_served_compiled(customers, tmp_path):
    """A date with times, booleans, an "other" bucket, ignored text and gaps: every candidate
    compiles and agrees, and ONNX Runtime serves what batch and scikit-learn give."""
    assert_candidates_compiled(customers)
    verify = signing.public_key(TEST_VERIFY_KEY, "test")
    with local_server(customers / "models" / "accepted", verify) as url:
        assert_serves_compiled(customers, url, tmp_path)


def test_fuzzing_with_finite_extremes_never_gets_a_5xx(customers):
    """At least 10 000 requests of valid, extreme and broken values against real gunicorn."""
    import random

    rng = random.Random(11)
    base = json_records(messy_frame(rows=50, seed=5).drop(columns=["tier"]))
    extremes = [
        1e308,
        -1e308,
        1.7976931348623157e308,
        5e-324,
        -5e-324,
        0.0,
        -0.0,
        int("9" * 400),
        -int("9" * 400),
        2**63,
        1e-300,
        "1e308",
        None,
        True,
        "",
        [],
        {},
    ]
    statuses: dict[int, int] = {}
    with (
        local_server(
            customers / "models" / "accepted",
            signing.public_key(TEST_VERIFY_KEY, "test"),
            workers=2,
        ) as url,
        requests.Session() as http,
    ):
        for i in range(10_000):
            record = dict(rng.choice(base))
            for field in rng.sample(sorted(record), rng.randint(1, 3)):
                record[field] = rng.choice(extremes)
            body = json.dumps(record if i % 4 else [record, rng.choice(base)])
            status = http.post(
                f"{url}/predict",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=60,
            ).status_code
            statuses[status] = statuses.get(status, 0) + 1
        assert http.get(f"{url}/health", timeout=10).status_code == 200
    print(f"\nfuzz: {statuses}")
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses.get(200, 0) > 1000 and statuses.get(422, 0) > 1000


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize(
    "data, target, message",
    [
        ("customers.csv", "loyalty", "target column 'loyalty' is not in the data"),
        ("one_class.csv", "y", "target 'y' has one class"),
        ("ids_only.csv", "y", "no usable feature in the data"),
        ("broken.parquet", "y", "is not a readable PARQUET file"),
    ],
)
def test_data_that_cannot_train_is_refused_in_one_line_with_nothing_written(
    data_dir, tmp_path, pipeline_project, data, target, message
):
    pd.DataFrame({"x": range(60), "y": [1] * 60}).to_csv(data_dir / "one_class.csv", index=False)
    pd.DataFrame({"id": [f"r{i}" for i in range(60)], "y": [0, 1] * 30}).to_csv(
        data_dir / "ids_only.csv", index=False
    )
    (data_dir / "broken.parquet").write_bytes(b"PAR1 not really")
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "-o",
            str(out),
            str(TEMPLATE),
            f"data_file={data_dir / data}",
            f"target={target}",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR: data_file")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert not out.exists() or not any(out.iterdir())
    # The same refusal from `sail adopt` inside an existing project, which stays as it was.
    project = tmp_path / "project"
    shutil.copytree(pipeline_project, project, symlinks=True)
    before = _tree_digest(project)
    result = sail(project, "adopt", str(data_dir / data), "--target", target)
    assert result.returncode == 1 and message in result.stderr.strip().splitlines()[-1]
    assert len(result.stderr.strip().splitlines()) == 1
    assert _tree_digest(project) == before


def test_a_copied_project_writes_only_into_its_own_stores(pipeline_project, tmp_path):
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(pipeline_project), str(copy)], check=True)
    original = {
        p: p.stat().st_mtime_ns for p in (pipeline_project / ".mlflow").rglob("*") if p.is_file()
    }
    remote = sorted((pipeline_project / "dvc-storage").rglob("*"))
    ok(sail(copy, "evaluate"))
    ok(sail(copy, "gate"))
    ok(sail(copy, "push"))
    assert {
        p: p.stat().st_mtime_ns for p in (pipeline_project / ".mlflow").rglob("*") if p.is_file()
    } == original
    assert sorted((pipeline_project / "dvc-storage").rglob("*")) == remote
    runs = json.loads((copy / "reports" / "evaluation.json").read_text())["candidates"]
    for info in runs.values():
        assert (
            copy / ".mlflow" / "artifacts" / info["mlflow_run_id"] / "artifacts" / "bundle"
        ).is_dir(), info
        assert not (pipeline_project / ".mlflow" / "artifacts" / info["mlflow_run_id"]).exists(), (
            info
        )
