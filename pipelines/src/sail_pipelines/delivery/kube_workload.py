"""The plain-Kubernetes resources of an environment: its pods and what keeps them safe.

Pure functions from a Workload to manifests (dicts PyYAML dumps, so every value is quoted
correctly). The pods run the image as its non-root user with a read-only root file system; the
server writes only to emptyDir volumes: /tmp (HOME, gunicorn's worker files) and the Prometheus
multiprocess folder (in memory). The prediction log goes to stdout, as the image sets it: the
cluster's log collector keeps it, where an emptyDir would die with the pod. Pods are ready only
when the model answers (/ready) and restarted when the server hangs (/health). They get the
public key (SAIL_VERIFY_KEY: no secret), or with HMAC the shared secret from the cluster's
Secret, never a private key.
"""

from __future__ import annotations

from typing import Any

from sail_pipelines.clients.kubernetes import CONTAINER_PORT, RUN_AS, Workload

METRICS_DIR = "/tmp/sail-metrics"  # the image's PROMETHEUS_MULTIPROC_DIR
CPU_TARGET = 70  # percent of the request the autoscaler keeps the pods at


def labels(w: Workload) -> dict[str, str]:
    """Every resource's labels; the selector is their first two (plus the color)."""
    return {
        "app.kubernetes.io/name": w.model,
        "app.kubernetes.io/instance": w.name,
        "app.kubernetes.io/component": "inference",
        "app.kubernetes.io/managed-by": "sail-pipelines",
        "sail/environment": w.environment,
    }


def selector(w: Workload, color: bool = True) -> dict[str, str]:
    base = {"app.kubernetes.io/name": w.model, "app.kubernetes.io/instance": w.name}
    return {**base, "sail/color": w.color} if color else base


def _key_env(w: Workload) -> dict[str, Any]:
    if w.verify_key:
        return {"name": "SAIL_VERIFY_KEY", "value": w.verify_key}
    return {
        "name": "SAIL_VERIFY_KEY",
        "valueFrom": {"secretKeyRef": {"name": w.secret, "key": "signing-key"}},
    }


def _probe(path: str, delay: int, period: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": CONTAINER_PORT, "scheme": "HTTP"},
        "initialDelaySeconds": delay,
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }


def container(w: Workload, image: str, name: str = "inference") -> dict[str, Any]:
    """The inference container: probes, limits, non-root, read-only, the public key only."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": [
            {"name": "SAIL_HOST", "value": "0.0.0.0"},
            {"name": "SAIL_PORT", "value": str(CONTAINER_PORT)},
            {"name": "PROMETHEUS_MULTIPROC_DIR", "value": METRICS_DIR},
            _key_env(w),
        ],
        "readinessProbe": _probe("/ready", 5, 5),
        "livenessProbe": _probe("/health", 20, 10),
        "resources": {
            "requests": {"cpu": w.cpu_request, "memory": w.memory_request},
            "limits": {"cpu": w.cpu_limit, "memory": w.memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "metrics", "mountPath": METRICS_DIR},
        ],
    }


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def volumes() -> list[dict[str, Any]]:
    return [
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "metrics", "emptyDir": {"medium": "Memory", "sizeLimit": "32Mi"}},
    ]


def deployment(w: Workload) -> dict[str, Any]:
    """One color's Deployment (blue-green keeps the other one for an instant switch back)."""
    pod_labels = {**labels(w), "sail/color": w.color}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{w.name}-{w.color}", "labels": pod_labels},
        "spec": {
            # The autoscaler's floor: a deploy starts at it, the autoscaler takes it from there.
            "replicas": w.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(w)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(),
                    "containers": [container(w, w.image)],
                    "volumes": volumes(),
                },
            },
        },
    }


def service(w: Workload) -> dict[str, Any]:
    """The environment's Service; its color selector is the blue-green switch."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": w.name, "labels": labels(w)},
        "spec": {
            "type": "ClusterIP",
            "selector": selector(w),
            "ports": [
                {"name": "http", "port": w.service_port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def autoscaler(w: Workload) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": f"{w.name}-{w.color}", "labels": labels(w)},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": f"{w.name}-{w.color}",
            },
            "minReplicas": w.replicas,
            "maxReplicas": max(w.max_replicas, w.replicas),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": CPU_TARGET},
                    },
                }
            ],
        },
    }


def disruption_budget(w: Workload, pods: dict[str, Any]) -> dict[str, Any]:
    """A node drain takes one pod at a time (maxUnavailable, so a one-pod staging never blocks
    a drain for good)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": w.name, "labels": labels(w)},
        "spec": {"maxUnavailable": 1, "selector": pods},
    }


def network_policy(w: Workload, pods: dict[str, Any], port: int | None) -> dict[str, Any]:
    """In: the serving port only (every port where KServe's proxies sit in front, port None).
    Out: DNS only; the server calls nothing, so a compromised pod reaches nothing either."""
    inbound: dict[str, Any] = {"from": [{"namespaceSelector": {}}]}
    if port is not None:
        inbound["ports"] = [{"protocol": "TCP", "port": port}]
    dns = [{"protocol": protocol, "port": 53} for protocol in ("UDP", "TCP")]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": w.name, "labels": labels(w)},
        "spec": {
            "podSelector": pods,
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [inbound],
            "egress": [{"ports": dns}],
        },
    }
