"""The project's own dependencies reach its images. A project adds a LightGBM candidate: the
dependency in its pyproject.toml, the Debian package LightGBM needs (libgomp1) under
`[tool.sail] system-packages`. `sail run --container` then trains both candidates in parallel
training containers, scores them in the metric image, packages the winner and smoke-tests the
inference image. Every image carries the version installed here, and every bundle records it."""

from __future__ import annotations

import json
import re
import subprocess
from importlib import metadata
from pathlib import Path

import docker
import pytest
import yaml

from conftest import bake, ok, sail

# One full `sail run --container` with two extra build layers: longer than the suite's 900 s on a
# busy 2-core machine.
# Group "containers" (tests/conftest.py): beside the deploy tests, after one another.
pytestmark = [pytest.mark.timeout(2400), pytest.mark.docker, pytest.mark.xdist_group("containers")]
LIGHTGBM = metadata.version("lightgbm")
CANDIDATES = [
    {
        "name": "lightgbm",
        "estimator": "lightgbm.LGBMClassifier",
        "params": {
            "n_estimators": 60,
            "num_leaves": 15,
            "random_state": 0,
            "n_jobs": 1,
            "verbose": -1,
        },
    },
    {
        "name": "baseline",
        "estimator": "sklearn.dummy.DummyClassifier",
        "params": {"strategy": "prior"},
    },
]


def declare(project: Path, dependency: str, system_package: str | None) -> None:
    """Edit the project as its team would, and commit, so the images are tagged by a clean
    commit."""
    text = (project / "pyproject.toml").read_text()
    text, added = re.subn(r'(    "sail-pipelines[^"]*",\n)]', rf'\1    "{dependency}",\n]', text)
    assert added == 1, "the template's dependency list changed shape"
    if system_package:
        text = text.replace("system-packages = []", f'system-packages = ["{system_package}"]')
    (project / "pyproject.toml").write_text(text)
    subprocess.run(["git", "commit", "-qam", f"depend on {dependency}"], cwd=project, check=True)


@pytest.fixture(scope="module")
def boosted(tmp_path_factory, base_image):
    project = bake(tmp_path_factory.mktemp("dependencies"), project_name="Boosted Model")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["candidates"] = CANDIDATES
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    declare(project, "lightgbm>=4", "libgomp1")
    run = ok(sail(project, "run", "--container", timeout=2400, SAIL_BASE_IMAGE=base_image))
    return {"project": project, "run": run}


def test_a_lightgbm_candidate_trains_scores_and_serves_in_the_containers(boosted):
    project, out = boosted["project"], boosted["run"].stdout
    assert "in the inference container" in out and "smoke test passed: 20 holdout rows" in out
    evaluation = json.loads((project / "reports" / "evaluation.json").read_text())
    # both scored by the metric image
    assert set(evaluation["candidates"]) == {
        "lightgbm",
        "baseline",
    }
    assert evaluation["best"] == "lightgbm"
    staged = (project / ".sail" / "build" / "requirements-project.txt").read_text()
    # the core pins are not repeated
    assert f"lightgbm=={LIGHTGBM}\n" in staged and "scikit-learn" not in staged
    for bundle in ("candidates/lightgbm", "candidates/baseline", "accepted"):
        recorded = json.loads((project / "models" / bundle / "metadata.json").read_text())[
            "project_dependencies"
        ]
        assert recorded == {"lightgbm": LIGHTGBM}, bundle


def test_every_image_carries_the_version_that_trained_the_model(boosted):
    project = boosted["project"]
    images = json.loads((project / ".sail" / "images.json").read_text())
    inference = json.loads((project / "reports" / "package.json").read_text())["image"]
    client = docker.from_env()
    for ref in (images["train"], images["metric"], inference):
        version = (
            client.containers.run(
                ref,
                ["-c", "import lightgbm; print(lightgbm.__version__)"],
                entrypoint="python3",
                remove=True,
                network_mode="host",
            )
            .decode()
            .strip()
        )
        assert version == LIGHTGBM, ref


def test_a_dependency_missing_here_is_refused_before_any_build(tmp_path, base_image):
    project = bake(tmp_path, project_name="Missing Dependency")
    declare(project, "sail-no-such-package-3f1e", None)
    result = sail(project, "build", SAIL_BASE_IMAGE=base_image)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        "sail-no-such-package-3f1e is not installed in the environment that runs sail: pip "
        "install it (it is a dependency in pyproject.toml)"
    ) in result.stderr.strip().splitlines()[-1]


def test_a_bad_system_package_name_is_refused(tmp_path, base_image):
    project = bake(tmp_path, project_name="Bad System Package")
    declare(project, "lightgbm>=4", "libgomp1; rm -rf /")
    result = sail(project, "build", SAIL_BASE_IMAGE=base_image)
    assert (
        result.returncode == 1
        and "[tool.sail] system-packages must be Debian package names" in result.stderr
    )
