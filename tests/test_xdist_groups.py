"""`make test` runs on pytest-xdist workers: the tests marked docker or workflows run one after
another within their group (tests/conftest.py: "docker" unless a module names its own, as the
"containers" modules do), or two Docker builds, registry pushes and image clean-ups of one group
would race each other."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SAMPLE = """
import time

import pytest


@pytest.mark.docker
@pytest.mark.parametrize("i", ["a", "b", "registry:5000/m@sha256:ab"])
def test_serial(i):
    time.sleep(0.3)


@pytest.mark.workflows
def test_workflow_run():
    time.sleep(0.3)


@pytest.mark.docker
@pytest.mark.xdist_group("containers")
@pytest.mark.parametrize("i", range(3))
def test_in_containers(i):
    time.sleep(0.3)


@pytest.mark.parametrize("i", range(4))
def test_spread(i):
    time.sleep(0.3)
"""


@pytest.mark.slow  # two xdist workers, each loading tests/conftest.py
def test_each_docker_group_runs_on_one_worker(tmp_path):
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    docker: d\n    workflows: w\n")
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "conftest",
        "-p",
        "no:cacheprovider",
        "-v",
        "-n",
        "2",
        "--dist",
        "loadgroup",
        "test_sample.py",
    ]
    proc = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = re.findall(r"^\[(gw\d)\] .*PASSED test_sample\.py::(\w+)", proc.stdout, re.M)
    assert len(ran) == 11, proc.stdout
    serial = {worker for worker, name in ran if name in ("test_serial", "test_workflow_run")}
    assert len(serial) == 1, proc.stdout
    assert len({worker for worker, name in ran if name == "test_in_containers"}) == 1, proc.stdout
    # a test that names its group is in that group alone, not also in "docker"
    groups = re.findall(r"PASSED test_sample\.py::test_in_containers\[\d\]@(\S+)", proc.stdout)
    assert groups == ["containers"] * 3, proc.stdout
