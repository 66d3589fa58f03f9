"""`sail predict` as the compiled inference image runs it: without pandas, pydantic or
scikit-learn (inference/batch_io.py). The real `sail` runs in a child process whose imports of
those libraries fail, as they would in the image; its output must match the host's batch
(predict.py, pandas) row for row, and its mistakes must be one line."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TEST_KEY, key_env, ok, sail

# What the compiled image leaves out; an import of any of them fails in the child process.
LEFT_OUT = ("pandas", "pydantic", "pydantic_core", "pydantic_settings", "sklearn", "scipy")
BLOCKER = """
import sys
LEFT_OUT = set(sys.argv[1].split(","))
class LeftOut:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in LEFT_OUT:
            raise ImportError(f"{name} is not in the image", name=name)
sys.meta_path.insert(0, LeftOut())
from sail_pipelines.cli import main
sys.exit(main(sys.argv[2:]))
"""


def as_image(project: Path, tmp_path: Path) -> Path:
    """A folder laid out as the image's /app: the accepted bundle, and no params.yaml."""
    app = tmp_path / "app"
    shutil.copytree(project / "models" / "accepted", app / "models" / "accepted")
    return app


def image_sail(app: Path, *args: str, left_out: tuple[str, ...] = LEFT_OUT):
    """The real `sail`, with the libraries the compiled image has not installed unimportable."""
    import os

    return subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(left_out), "--project", str(app), *args],
        env={**os.environ, **key_env(TEST_KEY)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def same(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-12)
    except ValueError:
        return False


# The public tables are trained first: `make test` runs those cases, not `make test-fast`.
@pytest.mark.parametrize(
    "dataset",
    [
        "example",
        pytest.param("penguins", marks=pytest.mark.slow),
        pytest.param("economics", marks=pytest.mark.slow),
    ],
)
def test_batch_without_pandas_matches_the_hosts_batch(
    dataset, pipeline_project, public_project, tmp_path
):
    project = pipeline_project if dataset == "example" else public_project(dataset)
    source = project / "data" / "split" / "test.csv"
    ok(sail(project, "predict", "--input", str(source), "--output", str(tmp_path / "host.csv")))
    ok(
        image_sail(
            as_image(project, tmp_path),
            "predict",
            "--input",
            str(source),
            "--output",
            str(tmp_path / "i.csv"),
        )
    )
    host, image = rows(tmp_path / "host.csv"), rows(tmp_path / "i.csv")
    assert len(host) == len(image) > 0 and list(host[0]) == list(image[0])
    scored = [c for c in host[0] if c == "prediction" or c.startswith("probability_")]
    for h, i in zip(host, image, strict=True):
        assert all(same(h[c], i[c]) for c in scored), (h, i)
        assert h["out_of_range"] == i["out_of_range"]


def test_batch_without_pandas_writes_json(pipeline_project, tmp_path):
    import json

    source = pipeline_project / "data" / "split" / "test.csv"
    out = tmp_path / "p.json"
    ok(
        image_sail(
            as_image(pipeline_project, tmp_path),
            "predict",
            "--input",
            str(source),
            "--output",
            str(out),
        )
    )
    body = json.loads(out.read_text())
    assert len(body["records"]) == len(rows(source))
    first = body["records"][0]
    assert isinstance(first["prediction"], int) and first["out_of_range"] == ""
    assert all(not isinstance(v, str) for k, v in first.items() if k != "out_of_range")


def test_batch_without_pandas_names_the_bad_cell_in_one_line(pipeline_project, tmp_path):
    source = pipeline_project / "data" / "split" / "test.csv"
    table = rows(source)
    schema = yaml.safe_load((pipeline_project / "contracts" / "schema.yaml").read_text())
    feature = next(c["name"] for c in schema["columns"] if c["type"] == "float")
    table[2][feature] = "not a number"
    bad = tmp_path / "bad.csv"
    with bad.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    result = image_sail(
        as_image(pipeline_project, tmp_path), "predict", "--input", str(bad), "--output", "o.csv"
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"sail predict: error: line 4: '{feature}' must be a number, got str"
    )
    assert not Path("o.csv").exists()


def test_parquet_without_pyarrow_is_one_clear_line(pipeline_project, tmp_path):
    data = tmp_path / "batch.parquet"
    shutil.copy(pipeline_project / "data" / "split" / "test.csv", data)
    result = image_sail(
        as_image(pipeline_project, tmp_path),
        "predict",
        "--input",
        str(data),
        "--output",
        str(tmp_path / "o.csv"),
        left_out=(*LEFT_OUT, "pyarrow"),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "sail predict: error: reading batch.parquet needs pyarrow, which is not installed here: "
        "send the batch as CSV"
    )


def test_the_serving_commands_import_no_configuration_models(pipeline_project, tmp_path):
    """`sail serve --help` parses the whole CLI: nothing at its import needs pydantic."""
    ok(image_sail(as_image(pipeline_project, tmp_path), "serve", "--help"))
