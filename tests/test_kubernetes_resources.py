"""Every manifest `sail deploy --target kubernetes` renders, for each strategy and environment,
validated offline: the Kubernetes kinds against the JSON schemas kubernetes-validate ships (strict:
an unknown field fails) for several minor versions, the KServe and Prometheus Operator kinds
against the schemas in tests/schemas/ (see its README for their sources). A resource broken on
purpose (an unknown field, a wrong type) fails, one case per kind. No cluster runs here: `kubectl
apply --dry-run=client` needs an API server (it downloads the OpenAPI document), so it is not used.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml

from sail_pipelines.clients.kubernetes import STRATEGIES, Workload
from sail_pipelines.delivery import kube_render
from sail_pipelines.errors import SailError

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = Path(__file__).resolve().parent / "schemas"
TEMPLATE = REPO / "cookiecutter-sail" / "{{cookiecutter.project_slug}}"
# Minor versions the manifests must be valid for (kubernetes-validate 1.37 ships 1.25 to 1.37).
K8S_VERSIONS = ("1.33", "1.35", "1.37")
ENVIRONMENTS = {"staging": 1, "production": 2}
CRDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve/inferenceservice-v1beta1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "prometheus-operator/servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheus-operator/prometheusrule_v1.json",
}
IMAGE = "127.0.0.1:5000/demo/inference@sha256:" + "ab" * 32
STABLE = "127.0.0.1:5000/demo/inference@sha256:" + "cd" * 32


@functools.lru_cache(maxsize=None)
def _k8s_file(version: str, name: str) -> dict:
    folder = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    return json.loads((folder / f"v{version}.0-local-strict" / name).read_text())


def validator(document: dict, version: str) -> jsonschema.protocols.Validator:
    """kubernetes-validate's own lookup (kind-group-version.json in the strict set), cached."""
    definitions = referencing.Resource.from_contents(_k8s_file(version, "_definitions.json"))
    key = (document["apiVersion"], document["kind"])
    if key in CRDS:
        schema = json.loads((SCHEMAS / CRDS[key]).read_text())
    else:
        # networking.k8s.io/v1 -> networking-v1, as kubernetes_validate.utils.validate names it
        group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", document["apiVersion"])
        schema = _k8s_file(version, f"{document['kind'].lower()}-{group_version}.json")
    registry = referencing.Registry().with_resource(definitions.id(), definitions)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def check(document: dict, version: str = K8S_VERSIONS[-1]) -> None:
    key = (document["apiVersion"], document["kind"])
    validator(document, version).validate(document)
    if key in CRDS:  # the CRD schemas take any apiVersion and kind strings
        assert document["kind"] == key[1] and document["apiVersion"] == key[0]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A project folder with the template's alert rules (the slug filled in)."""
    folder = tmp_path_factory.mktemp("project")
    rules = (TEMPLATE / "monitoring" / "prometheus-rules.yml").read_text()
    (folder / "monitoring").mkdir()
    (folder / "monitoring" / "prometheus-rules.yml").write_text(
        rules.replace("{{ cookiecutter.project_slug }}", "demo")
    )
    return folder


def workload(strategy: str, environment: str, **fields) -> Workload:
    defaults = dict(
        verify_key="public-key-text",
        replicas=ENVIRONMENTS[environment],
        strategy=strategy,
        weight=20,
        stable_image=STABLE,
    )
    return Workload("demo", environment, IMAGE, **{**defaults, **fields})


def rendered(root: Path, strategy: str, environment: str, **fields) -> dict[str, dict]:
    directory = root / "deploy" / strategy / environment
    paths = kube_render.render(directory, workload(strategy, environment, **fields), root)
    return {str(p.relative_to(directory)): yaml.safe_load(p.read_text()) for p in paths}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_rendered_resource_validates(root, strategy, environment):
    files = rendered(root, strategy, environment)
    kinds = {doc["kind"] for doc in files.values()}
    expected = {
        "blue-green": {"Deployment", "Service", "HorizontalPodAutoscaler"},
        "canary": {"InferenceService"},
        "shadow": {"InferenceService", "Ingress"},
    }[strategy] | {"PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor", "PrometheusRule"}
    assert kinds == expected
    for name, document in files.items():
        if (document["apiVersion"], document["kind"]) not in CRDS:
            # kubernetes-validate's own entry point agrees with the cached lookup below.
            assert kubernetes_validate.validate(document, K8S_VERSIONS[-1], strict=True)
        for version in K8S_VERSIONS:
            try:
                check(document, version)
            except jsonschema.ValidationError as exc:
                pytest.fail(f"{strategy}/{environment}/{name} on Kubernetes {version}: {exc}")


def _pod(doc: dict) -> dict:
    spec = doc["spec"]
    return spec["template"]["spec"] if doc["kind"] == "Deployment" else spec["predictor"]


def _container(doc: dict) -> dict:
    return _pod(doc)["containers"][0]


# One resource per kind, broken twice: a field no schema has, and a value of the wrong type.
BROKEN = {
    "Deployment": [
        lambda d: _container(d).update(readinesProbe=_container(d)["readinessProbe"]),
        lambda d: d["spec"].update(replicas="two"),
    ],
    "Service": [
        lambda d: d["spec"].update(selectors=d["spec"]["selector"]),
        lambda d: d["spec"]["ports"][0].update(port="eighty"),
    ],
    "HorizontalPodAutoscaler": [
        lambda d: d["spec"].update(targetCPUUtilizationPercentage=70),  # autoscaling/v1's field
        lambda d: d["spec"].update(maxReplicas="4"),
    ],
    "PodDisruptionBudget": [
        lambda d: d["spec"].update(maxUnavailables=1),
        lambda d: d["spec"].update(selector=["app"]),
    ],
    "NetworkPolicy": [
        lambda d: d["spec"].update(egres=d["spec"]["egress"]),
        lambda d: d["spec"].update(policyTypes="Ingress"),
    ],
    "Ingress": [
        lambda d: d["spec"].update(ingressClass="nginx"),
        lambda d: d["spec"]["rules"][0]["http"].update(paths={"path": "/"}),
    ],
    "InferenceService": [
        lambda d: d["spec"]["predictor"].update(canaryTraficPercent=20),
        lambda d: d["spec"]["predictor"].update(minReplicas="one"),
        lambda d: _container(d).update(securityContext={"readOnlyRootFS": True}),
        lambda d: d.update(spec={}),  # the predictor is required
    ],
    "ServiceMonitor": [
        lambda d: d["spec"]["endpoints"][0].update(metricsPath="/metrics"),
        lambda d: d["spec"]["endpoints"][0].update(interval=30),
        lambda d: d["spec"].pop("selector"),
    ],
    "PrometheusRule": [
        lambda d: d["spec"]["groups"][0]["rules"][0].update(expression="up"),
        lambda d: d["spec"]["groups"][0]["rules"][0].update(labels=["page"]),
        lambda d: d["spec"]["groups"][0]["rules"][-1].update(**{"for": "ten minutes"}),
    ],
}


def test_a_resource_broken_on_purpose_fails_validation(root):
    documents = {}
    for strategy in STRATEGIES:
        for document in rendered(root, strategy, "production").values():
            documents.setdefault(document["kind"], document)
    assert set(documents) == set(BROKEN)
    for kind, breakers in BROKEN.items():
        check(documents[kind])
        for number, breaker in enumerate(breakers):
            broken = copy.deepcopy(documents[kind])
            breaker(broken)
            with pytest.raises(jsonschema.ValidationError):
                check(broken)
                pytest.fail(f"{kind}: broken case {number} validated")


def test_blue_green_starts_the_other_color_and_the_service_switches_to_it(root):
    first = rendered(root, "blue-green", "staging", color="blue")
    directory = root / "deploy" / "blue-green" / "staging"
    assert kube_render.rendered_color(directory) == "blue"
    color = kube_render.other(kube_render.rendered_color(directory))
    second = rendered(root, "blue-green", "staging", color=color)
    for files, expected in ((first, "blue"), (second, "green")):
        deployment, service = files["deployment.yaml"], files["service.yaml"]
        assert deployment["metadata"]["name"] == f"demo-staging-{expected}"
        assert service["spec"]["selector"]["sail/color"] == expected
        assert service["spec"]["selector"].items() <= (
            deployment["spec"]["template"]["metadata"]["labels"].items()
        )
        assert files["hpa.yaml"]["spec"]["scaleTargetRef"]["name"] == f"demo-staging-{expected}"
        # The budget and the policy cover both colors' pods.
        assert "sail/color" not in files["pdb.yaml"]["spec"]["selector"]["matchLabels"]
    assert kube_render.other(None) == "blue"


def test_the_pods_run_read_only_as_the_image_user_and_write_only_to_empty_dirs(root):
    for strategy in STRATEGIES:
        files = rendered(root, strategy, "production")
        for document in files.values():
            if document["kind"] not in ("Deployment", "InferenceService"):
                continue
            spec = document["spec"]
            pod = (
                spec["template"]["spec"] if document["kind"] == "Deployment" else spec["predictor"]
            )
            container = pod["containers"][0]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert set(mounts) == {"/tmp", "/tmp/sail-metrics"}
            assert {v["name"] for v in pod["volumes"] if "emptyDir" in v} == set(mounts.values())
            env = {e["name"]: e for e in container["env"]}
            assert env["PROMETHEUS_MULTIPROC_DIR"]["value"] == "/tmp/sail-metrics"
            assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
            assert container["livenessProbe"]["httpGet"]["path"] == "/health"
            assert container["resources"]["limits"] and container["resources"]["requests"]


def test_with_hmac_the_key_comes_from_the_clusters_secret(root):
    files = rendered(root, "canary", "staging", verify_key=None)
    env = _container(files["inferenceservice.yaml"])["env"]
    assert {
        "name": "SAIL_VERIFY_KEY",
        "valueFrom": {"secretKeyRef": {"name": "demo-signing-key", "key": "signing-key"}},
    } in env
    assert not [d for d in files.values() if d["kind"] == "Secret"]


def test_canary_and_shadow_as_kserve(root):
    canary = rendered(root, "canary", "production", weight=25)["inferenceservice.yaml"]
    predictor = canary["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 25 and predictor["minReplicas"] == 2
    assert predictor["containers"][0]["name"] == "kserve-container"
    assert predictor["containers"][0]["image"] == IMAGE
    assert "annotations" not in canary["metadata"]  # Serverless: KServe's traffic split

    shadow = rendered(root, "shadow", "staging")
    stable, candidate = shadow["inferenceservice.yaml"], shadow["inferenceservice-shadow.yaml"]
    assert _container(stable)["image"] == STABLE and _container(candidate)["image"] == IMAGE
    assert candidate["metadata"]["name"] == "demo-staging-shadow"
    ingress = shadow["ingress.yaml"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "demo-staging-predictor"  # only the stable one answers
    mirror = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/mirror-target"]
    assert mirror.startswith("http://demo-staging-shadow-predictor.")
    # A canary's files do not linger once the environment switches strategy.
    assert not (root / "deploy" / "shadow" / "staging" / "deployment.yaml").exists()
    with pytest.raises(SailError, match="shadow needs a stable image"):
        rendered(root, "shadow", "staging", stable_image=None)


def test_the_alert_rules_are_the_projects_own(root):
    files = rendered(root, "blue-green", "production")
    rule_file = yaml.safe_load((root / "monitoring" / "prometheus-rules.yml").read_text())
    [group] = files["monitoring/prometheusrule.yaml"]["spec"]["groups"]
    assert group["name"] == "demo-serving-production"
    assert group["rules"] == rule_file["groups"][0]["rules"]
    monitor = files["monitoring/servicemonitor.yaml"]["spec"]
    assert monitor["endpoints"] == [{"targetPort": 8000, "path": "/metrics", "interval": "30s"}]
