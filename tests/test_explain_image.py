"""serving.explanations: true for real: `sail package` builds the inference image with scikit-learn,
pandas and shap, and the container explains a random forest's answers through its compiled
(ONNX) predictions, each explanation adding up to the model's output. One image build: a project
whose only candidate is the template's random forest."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
import requests
import yaml

from conftest import bake, ok, sail
from servers import free_port, wait_until

pytestmark = [pytest.mark.timeout(3000), pytest.mark.docker]


@pytest.fixture(scope="module")
def explaining_image(tmp_path_factory, base_image) -> tuple[Path, str]:
    project = bake(tmp_path_factory.mktemp("explain-image"))
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["candidates"] = [c for c in params["candidates"] if c["name"] == "random_forest"]
    params["serving"]["explanations"] = True
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    ok(sail(project, "run", timeout=1200))
    ok(sail(project, "package", SAIL_BASE_IMAGE=base_image, timeout=1800))
    return project, json.loads((project / "reports" / "package.json").read_text())["image"]


def test_the_image_explains_a_forest_through_its_compiled_predictions(explaining_image):
    project, image = explaining_image
    client = docker.from_env()
    config = client.images.get(image).attrs["Config"]
    assert config["Labels"]["sail.runtime"] == "onnx"
    assert config["Labels"]["sail.explanations"] == "true"
    assert "SAIL_EXPLANATIONS=true" in config["Env"]
    holdout = json.loads((project / "models" / "accepted" / "holdout.json").read_text())
    port = free_port()
    container = client.containers.run(
        image, detach=True, network_mode="host", environment={"SAIL_PORT": str(port)}
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(f"{url}/ready", timeout=2).ok, 120, "the image")
        plain = requests.post(f"{url}/predict", json=holdout["records"], timeout=60).json()
        answer = requests.post(f"{url}/predict?explain=true", json=holdout["records"], timeout=60)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["predictions"] == plain["predictions"] == holdout["predictions"]
        for item in body["explanations"]:
            assert item["method"] == "tree" and item["space"] == "probability"
            total = item["base_value"] + sum(item["contributions"].values())
            assert abs(total - item["output"]) <= 1e-6
    finally:
        container.remove(force=True)
