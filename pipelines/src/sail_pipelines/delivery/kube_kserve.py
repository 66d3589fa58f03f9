"""Canary and shadow on Kubernetes as KServe InferenceServices (serving.kserve.io/v1beta1).

The inference image is the predictor's own container (`kserve-container`): it already speaks
the Open Inference Protocol v2 (`/v2/models/<name>/infer`) beside its own routes, so no KServe
model server wraps it.

- canary: one InferenceService; KServe keeps the last rolled-out revision and sends
  `canaryTrafficPercent` of the requests to the new one. That needs KServe's Serverless mode
  (Knative), the default; KServe also autoscales it (min/max replicas), so no
  HorizontalPodAutoscaler of ours.
- shadow: KServe has no mirror in an InferenceService (an InferenceGraph's Ensemble would wait
  for both answers and merge them, so a slow shadow would slow every answer). So the stable
  image and the candidate are two InferenceServices in RawDeployment mode (plain Deployments and
  Services, KServe's own HPA), and the mirror is ingress-nginx's `mirror-target` on the Ingress
  that answers: nginx's `mirror`, as the local router, whose answers are thrown away. The
  candidate's predictions go to its own pods' prediction log (their stdout).
"""

from __future__ import annotations

from typing import Any

from sail_pipelines.clients.kubernetes import CONTAINER_PORT, Workload
from sail_pipelines.delivery import kube_workload as kw

ISVC_LABEL = "serving.kserve.io/inferenceservice"  # KServe puts it on every pod it makes
MODE = "serving.kserve.io/deploymentMode"
INGRESS_CLASS = "nginx"
MIRROR = "nginx.ingress.kubernetes.io/mirror-target"


def _predictor(w: Workload, image: str, canary: int | None) -> dict[str, Any]:
    container = kw.container(w, image, name="kserve-container")
    # Knative routes to the one declared port, named for its protocol.
    container["ports"] = [{"name": "http1", "containerPort": CONTAINER_PORT, "protocol": "TCP"}]
    predictor: dict[str, Any] = {
        "minReplicas": w.replicas,
        "maxReplicas": max(w.max_replicas, w.replicas),
        "scaleMetric": "cpu",
        "scaleTarget": kw.CPU_TARGET,
        "automountServiceAccountToken": False,
        "securityContext": kw.pod_security(),
        "containers": [container],
        "volumes": kw.volumes(),
    }
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    return predictor


def inference_service(
    w: Workload, name: str, image: str, canary: int | None, raw: bool
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": kw.labels(w)}
    if raw:
        metadata["annotations"] = {MODE: "RawDeployment"}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": _predictor(w, image, canary)},
    }


def pods(*services: str) -> dict[str, Any]:
    """The LabelSelector of the pods KServe runs for these InferenceServices."""
    return {"matchExpressions": [{"key": ISVC_LABEL, "operator": "In", "values": list(services)}]}


def shadow_ingress(w: Workload) -> dict[str, Any]:
    """The stable predictor answers; every request is copied to the shadow's, whose answer
    nginx discards. KServe's RawDeployment Service of `<isvc>` is `<isvc>-predictor`, port 80;
    `$namespace` is the Ingress' own, which ingress-nginx sets in every location it writes."""
    shadow = f"http://{w.name}-shadow-predictor.$namespace.svc.cluster.local"
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": w.name,
            "labels": kw.labels(w),
            "annotations": {MIRROR: f"{shadow}$request_uri"},
        },
        "spec": {
            "ingressClassName": INGRESS_CLASS,
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {
                                        "name": f"{w.name}-predictor",
                                        "port": {"number": 80},
                                    }
                                },
                            }
                        ]
                    }
                }
            ],
        },
    }
