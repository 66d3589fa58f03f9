"""The container flow for real: a Docker daemon, images built from the template's Dockerfile,
candidates trained in parallel containers, the metric container choosing, the inference image
packaged, smoke-tested and pushed to a local registry."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import docker
import pytest
import requests
import yaml

from conftest import bake, ok, sail
from sail_pipelines.clients import containers
from sail_pipelines.config import ProjectPaths, Settings
from sail_pipelines.errors import SailError
from sail_pipelines.evaluation.evaluate import same_transformation_layer
from sail_pipelines.inference import smoke
from sail_pipelines.integrity import signing
from sail_pipelines.integrity.bundle import MANIFEST, TRANSFORMER, LoadedBundle

REGISTRY = "127.0.0.1:5000"
# The first test builds the module's `flow` (sail run --container, 1500 s at most, then publish,
# 600 s): pytest-timeout must wait longer than those, so theirs are the timeouts that fire.
# Group "containers" (tests/conftest.py): beside the deploy tests, after one another.
pytestmark = [pytest.mark.timeout(2400), pytest.mark.docker, pytest.mark.xdist_group("containers")]


@pytest.fixture(scope="module")
def client(base_image):
    return docker.from_env()


@pytest.fixture(scope="module")
def flow(tmp_path_factory, base_image, client):
    """A default project after `sail run --container` and `sail publish`."""
    project = bake(tmp_path_factory.mktemp("containers"))
    env = {"SAIL_BASE_IMAGE": base_image, "SAIL_REGISTRY": REGISTRY}
    run = ok(sail(project, "run", "--container", timeout=1500, **env))
    published = ok(sail(project, "publish", **env))
    return {"project": project, "env": env, "run": run, "publish": json.loads(published.stdout)}


def images_of(project: Path) -> dict:
    return json.loads((project / ".sail" / "images.json").read_text())


def package_of(project: Path) -> dict:
    return json.loads((project / "reports" / "package.json").read_text())


def copy_of(project: Path, tmp_path: Path) -> Path:
    dest = tmp_path / project.name
    shutil.copytree(project, dest, symlinks=True)
    return dest


def test_the_whole_flow_runs_in_containers(flow):
    out = flow["run"].stdout
    for phase in (
        "== build",
        "== dvc repro",
        "== gate",
        "== push",
        "== package",
        "in the inference container",
    ):
        assert phase in out
    gate = json.loads((flow["project"] / "reports" / "gate.json").read_text())
    assert gate["verdict"] == "pass"
    package = package_of(flow["project"])
    assert (
        package["image"]
        == f"{REGISTRY}/sail-model/inference:{images_of(flow['project'])['code']}-v1"
    )
    assert package["bundle_id"] == gate["accepted_bundle_id"]
    assert "smoke test passed: 20 holdout rows" in out


def test_metric_container_evaluated_every_candidate_and_chose(flow):
    evaluation = json.loads((flow["project"] / "reports" / "evaluation.json").read_text())
    assert set(evaluation["candidates"]) == {
        "logistic_regression",
        "random_forest",
        "gradient_boosting",
    }
    best = evaluation["best"]
    scores = {n: c["metrics"]["roc_auc"] for n, c in evaluation["candidates"].items()}
    assert scores[best] == max(scores.values())


def test_candidates_train_in_parallel_containers(flow, tmp_path, client):
    project = copy_of(flow["project"], tmp_path)
    result = ok(sail(project, "train", "--container", **flow["env"]))
    ran = json.loads(result.stdout)["containers"]
    assert len(ran) == 3

    def parse(stamp: str) -> datetime:
        """Docker's timestamps carry nanoseconds; fromisoformat takes microseconds."""
        return datetime.fromisoformat(stamp[:26].rstrip("Z"))

    latest_start = max(parse(r["started"]) for r in ran.values())
    earliest_finish = min(parse(r["finished"]) for r in ran.values())
    assert latest_start < earliest_finish, f"the candidates ran one after another: {ran}"
    assert not client.containers.list(all=True, filters={"label": "sail.step"}), (
        "step containers were left behind"
    )


def test_containers_fit_one_identical_transformation_layer(flow):
    candidates = flow["project"] / "models" / "candidates"
    manifests = [
        json.loads((d / MANIFEST).read_text())["files"][TRANSFORMER] for d in candidates.iterdir()
    ]
    assert len(manifests) == 3 and len(set(manifests)) == 1


def test_candidates_with_different_transformation_layers_are_refused():
    def fake(name: str, transformer: bytes) -> LoadedBundle:
        return LoadedBundle(Path(name), name, {"name": name}, {TRANSFORMER: transformer})

    same_transformation_layer({"a": fake("a", b"one"), "b": fake("b", b"one")})
    with pytest.raises(SailError, match="different transformation layers"):
        same_transformation_layer({"a": fake("a", b"one"), "b": fake("b", b"two")})


def visible(client, image: str, mounts: list, paths: list[Path]) -> dict[str, bool]:
    """Which paths a container started with these mounts can see."""
    script = "import json, os, sys; print(json.dumps({p: os.path.exists(p) for p in sys.argv[1:]}))"
    out = client.containers.run(
        image,
        ["-c", script, *map(str, paths)],
        entrypoint="python3",
        remove=True,
        network_mode="host",
        mounts=containers._docker_mounts(mounts),
    )
    return json.loads(out)


def test_the_training_container_never_sees_the_test_split(flow, client):
    paths = ProjectPaths(flow["project"])
    seen = visible(
        client,
        images_of(paths.root)["train"],
        containers.train_mounts(paths),
        [
            paths.train_csv,
            paths.test_csv,
            paths.root / "data" / "raw" / "data.csv",
            paths.root / ".git",
        ],
    )
    assert seen == {
        str(paths.train_csv): True,
        str(paths.test_csv): False,
        str(paths.root / "data" / "raw" / "data.csv"): False,
        str(paths.root / ".git"): False,
    }


def test_the_hyperparameter_search_ran_inside_the_training_container(flow):
    """So it ran where the test split cannot be seen: every trial's worker is pid 1."""
    bundle = flow["project"] / "models" / "candidates" / "logistic_regression"
    history = json.loads((bundle / "metadata.json").read_text())["search"]["history"]
    assert len(history) == 8 and all(":1-" in trial["worker"] for trial in history)


def test_the_metric_container_sees_the_test_split_but_not_the_training_split(flow, client):
    paths = ProjectPaths(flow["project"])
    mounts = containers.metric_mounts(paths, Settings.from_env(paths, {}))
    seen = visible(
        client,
        images_of(paths.root)["metric"],
        mounts,
        [paths.test_csv, paths.train_csv, paths.candidates_dir],
    )
    assert seen == {
        str(paths.test_csv): True,
        str(paths.train_csv): False,
        str(paths.candidates_dir): True,
    }
    assert all(not m.writable for m in mounts if m.path in (paths.test_csv, paths.candidates_dir))


def test_the_inference_image_is_non_root_single_threaded_and_health_checked(flow, client):
    image = client.images.get(package_of(flow["project"])["image"])
    config = image.attrs["Config"]
    assert config["User"] == "10001:10001"
    assert "/health" in " ".join(config["Healthcheck"]["Test"])
    env = dict(item.split("=", 1) for item in config["Env"])
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        assert env[name] == "1"
    assert config["Entrypoint"] == ["sail", "--project", "/app"] and config["Cmd"] == ["serve"]
    assert config["Labels"]["sail.model_version"] == "1"
    assert config["Labels"]["sail.runtime"] == "onnx"
    # only what serving needs: no pip, no MLflow, no DVC, no training data; and for a compiled
    # model no scikit-learn (nor scipy, nor the ONNX converter), no pandas (batch files are read
    # without it) and no pydantic (serving reads no configuration file).
    listing = client.containers.run(
        image.id,
        [
            "-c",
            "import importlib.util as u, os, json; print(json.dumps("
            "[m for m in ('pip', 'mlflow', 'dvc', 'matplotlib', 'sklearn', 'scipy',"
            " 'skl2onnx', 'onnx', 'pandas', 'pydantic', 'pydantic_settings', 'pyarrow')"
            " if u.find_spec(m)] + "
            "[p for p in ('/app/data', '/app/models/candidates') if os.path.exists(p)]))",
        ],
        entrypoint="python3",
        remove=True,
        network_mode="host",
    )
    assert json.loads(listing) == []


def test_the_same_image_runs_batch_inference(flow, client, tmp_path):
    project = flow["project"]
    tmp_path.chmod(0o777)  # the image runs as its own non-root user
    client.containers.run(
        package_of(project)["image"],
        ["predict", "--input", "/data/test.csv", "--output", "/out/predictions.csv"],
        environment={},
        network_mode="host",
        remove=True,  # the image verifies with the public key baked into it
        volumes={
            str(project / "data" / "split"): {"bind": "/data", "mode": "ro"},
            str(tmp_path): {"bind": "/out", "mode": "rw"},
        },
    )
    host = tmp_path / "host.csv"
    ok(
        sail(
            project,
            "predict",
            "--input",
            str(project / "data" / "split" / "test.csv"),
            "--output",
            str(host),
        )
    )
    assert (tmp_path / "predictions.csv").read_text() == host.read_text()


def test_the_inference_container_refuses_a_bundle_signed_with_another_key(flow):
    with pytest.raises(SailError, match="signature does not match"):
        with smoke.container_server(
            package_of(flow["project"])["image"],
            {"SAIL_VERIFY_KEY": signing.generate().verify_key.text()},
        ):
            pass


def test_package_refuses_a_tampered_bundle(flow, tmp_path):
    project = copy_of(flow["project"], tmp_path)
    model = project / "models" / "accepted" / "model.joblib"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    result = sail(project, "package", **flow["env"])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith(
        "model.joblib does not match its signed hash; refusing to load it"
    )


def test_the_image_build_refuses_a_bundle_other_than_the_verified_one(flow, base_image, client):
    with pytest.raises(SailError, match="not the one verified"):
        containers.build_image(
            client,
            flow["project"],
            "docker/Dockerfile",
            "inference",
            "sail-model/inference:refused",
            base_image,
            labels={},
            buildargs={"BUNDLE_MANIFEST_SHA256": "0" * 64},
        )


def test_publish_pushed_every_image_to_the_registry(flow):
    pushed = flow["publish"]["images"]
    refs = [
        images_of(flow["project"])["train"],
        images_of(flow["project"])["metric"],
        package_of(flow["project"])["image"],
    ]
    assert set(pushed) == set(refs)
    for ref in refs:
        repository, _, tag = ref.removeprefix(f"{REGISTRY}/").rpartition(":")
        tags = requests.get(f"http://{REGISTRY}/v2/{repository}/tags/list", timeout=10).json()[
            "tags"
        ]
        assert tag in tags
        manifest = requests.head(
            f"http://{REGISTRY}/v2/{repository}/manifests/{tag}",
            timeout=10,
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        assert manifest.headers["Docker-Content-Digest"] == pushed[ref]


def test_publish_without_a_registry_is_refused(flow):
    result = sail(flow["project"], "publish", SAIL_BASE_IMAGE=flow["env"]["SAIL_BASE_IMAGE"])
    assert result.returncode == 1 and "no image registry configured" in result.stderr


def test_a_failing_candidate_container_is_named_and_cleaned_up(flow, tmp_path, client):
    project = copy_of(flow["project"], tmp_path)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["candidates"][1]["params"]["max_depth"] = "deep"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = sail(project, "train", "--container", **flow["env"])
    assert result.returncode == 1
    assert "random_forest (exit 1)" in result.stderr and "Traceback" not in result.stderr
    assert not client.containers.list(all=True, filters={"label": "sail.step"})


def test_container_steps_need_a_build_first(tmp_path, base_image):
    project = bake(tmp_path)
    result = sail(project, "train", "--container")
    assert result.returncode == 1 and "run `sail build` first" in result.stderr


def test_an_unreachable_docker_daemon_is_one_clear_line(tmp_path, base_image):
    project = bake(tmp_path)
    result = sail(project, "build", DOCKER_HOST="tcp://127.0.0.1:9")
    assert result.returncode == 1
    assert (
        "Docker is not reachable at tcp://127.0.0.1:9" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_the_step_environment_passes_settings_but_not_host_files():
    env = containers.step_env(
        {
            "MLFLOW_TRACKING_URI": "http://x",
            "AWS_REGION": "eu",
            "AWS_PROFILE": "me",
            "SAIL_SIGNING_KEY": "k",
            "SAIL_RUNTIME": "container",
            "HOME": "/root",
        },
        {"SAIL_DATA_HASH": "h"},
    )
    assert env == {
        "MLFLOW_TRACKING_URI": "http://x",
        "AWS_REGION": "eu",
        "SAIL_SIGNING_KEY": "k",
        "SAIL_DATA_HASH": "h",
    }
    verifying = containers.step_env(
        {"SAIL_SIGNING_KEY": "k", "SAIL_AUDIT_KEY": "a", "SAIL_REGISTRY": "r"},
        {"SAIL_VERIFY_KEY": "public"},
        private=False,
    )
    # a verifying step gets no private key
    assert verifying == {
        "SAIL_REGISTRY": "r",
        "SAIL_VERIFY_KEY": "public",
    }


def test_the_generated_dockerfile_takes_a_base_image_and_orders_layers_for_caching(tmp_path):
    dockerfile = (bake(tmp_path) / "docker" / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in dockerfile
    core = dockerfile.index("requirements-core.txt")
    assert core < dockerfile.index(".sail/build/wheels/") < dockerfile.index("COPY src/")
    assert (
        subprocess.run(
            ["git", "check-ignore", "-q", ".sail/build/x"], cwd=tmp_path / "sail-model"
        ).returncode
        == 0
    )
