"""Kubernetes manifests for an inference environment, and applying them with kubectl.

Built as data and dumped with PyYAML, so every value is quoted correctly. The pods run the
image as a non-root user with a read-only root file system, are ready only when the model
answers (/ready) and restarted when the server hangs (/health). The pods get the public key
(SAIL_VERIFY_KEY, written into the Deployment: it is no secret) and never a private key; only
with the HMAC scheme do they need the shared secret, from a Secret the cluster already holds,
which is never written under deploy/ and must be on the cluster before anything is applied.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sail_pipelines.errors import SailError
from sail_pipelines.files import write_atomic

CONTAINER_PORT = 8000  # the inference image's SAIL_PORT
RUN_AS = 10001  # the `sail` user of the inference image
KUBECTL_TIMEOUT = 60
# kubectl (and the credential plugins it runs) needs none of sail's keys: it never gets them.
KEY_VARIABLES = frozenset(
    {"SAIL_SIGNING_KEY", "SAIL_VERIFY_KEY", "SAIL_AUDIT_KEY", "SAIL_AUDIT_VERIFY_KEY"}
)


@dataclass(frozen=True)
class Workload:
    model: str  # repository_name() of the registered model
    environment: str
    image: str  # an immutable ref: digest or versioned tag
    verify_key: str | None = None  # Ed25519 public key text; None: the HMAC secret from the Secret
    service_port: int = 80
    replicas: int = 1
    cpu_request: str = "250m"
    memory_request: str = "256Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"

    @property
    def name(self) -> str:
        return f"{self.model}-{self.environment}"

    @property
    def secret(self) -> str:
        return f"{self.model}-signing-key"


def _container(w: Workload) -> dict[str, Any]:
    """The inference container: probes on /ready and /health, non-root, read-only, no key but
    the public one (or the HMAC secret from the cluster's Secret)."""
    probe = {"port": "http", "scheme": "HTTP"}
    return {
        "name": "inference",
        "image": w.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": [
            {"name": "SAIL_HOST", "value": "0.0.0.0"},
            {"name": "SAIL_PORT", "value": str(CONTAINER_PORT)},
            {"name": "SAIL_VERIFY_KEY", "value": w.verify_key}
            if w.verify_key
            else {
                "name": "SAIL_VERIFY_KEY",
                "valueFrom": {"secretKeyRef": {"name": w.secret, "key": "signing-key"}},
            },
        ],
        "readinessProbe": {
            "httpGet": {"path": "/ready", **probe},
            "initialDelaySeconds": 5,
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", **probe},
            "initialDelaySeconds": 20,
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
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
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # HOME and gunicorn's worker files
    }


def _deployment(w: Workload, selector: dict[str, str], labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": w.name, "labels": labels},
        "spec": {
            "replicas": w.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            # A new version takes traffic only once ready; the old pods serve until then.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS,
                        "runAsGroup": RUN_AS,
                        "fsGroup": RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [_container(w)],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }


def manifests(w: Workload) -> dict[str, dict[str, Any]]:
    """{file name: manifest} for the Deployment and its Service."""
    selector = {"app.kubernetes.io/name": w.model, "app.kubernetes.io/instance": w.name}
    labels = {
        **selector,
        "app.kubernetes.io/component": "inference",
        "app.kubernetes.io/managed-by": "sail-pipelines",
        "sail/environment": w.environment,
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": w.name, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {"name": "http", "port": w.service_port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }
    return {"deployment.yaml": _deployment(w, selector, labels), "service.yaml": service}


def render(directory: Path, w: Workload) -> list[Path]:
    written = []
    for name, manifest in manifests(w).items():
        text = yaml.safe_dump(manifest, sort_keys=False)
        write_atomic(directory / name, functools.partial(Path.write_text, data=text))
        written.append(directory / name)
    return written


def _kubectl(*args: str, timeout: float = KUBECTL_TIMEOUT) -> subprocess.CompletedProcess:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SailError(
            "kubectl is not installed: install it, or use --render-only and apply the manifests "
            "elsewhere"
        )
    try:  # no stdin: kubectl must never stop to ask for a password
        return subprocess.run(
            [kubectl, *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            env={k: v for k, v in os.environ.items() if k not in KEY_VARIABLES},
        )
    except subprocess.TimeoutExpired as exc:
        raise SailError(f"kubectl {args[0]} did not finish within {timeout:.0f}s") from exc


def _last_line(result: subprocess.CompletedProcess) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit {result.returncode}"


def _require_secret(w: Workload, context: str) -> None:
    """With HMAC the pods read the shared secret from the Secret the cluster holds: without it
    they never start, so nothing is applied."""
    found = _kubectl("get", "secret", w.secret, "--ignore-not-found", "-o", "name")
    if found.returncode != 0 or not found.stdout.strip():
        why = _last_line(found) if found.returncode else "not found"
        raise SailError(
            f"the Secret {w.secret} is not on context {context!r} ({why}): the pods "
            "read the HMAC secret from it; create it first (`kubectl create secret generic "
            f"{w.secret} --from-file=signing-key=FILE`), nothing was applied"
        )


def apply(directory: Path, w: Workload, timeout: float) -> dict[str, Any]:
    """kubectl apply, then wait for the rollout: ready pods, or the old ones keep serving."""
    context = _kubectl("config", "current-context")
    if context.returncode != 0:
        raise SailError(
            f"no Kubernetes cluster configured ({_last_line(context)}): the manifests are in "
            f"{directory}, apply them with `kubectl apply -f {directory}` where a cluster is "
            "reachable"
        )
    name = context.stdout.strip()
    if w.verify_key is None:
        _require_secret(w, name)
    applied = _kubectl("apply", "--request-timeout=30s", "-f", str(directory))
    if applied.returncode != 0:
        raise SailError(
            f"kubectl apply -f {directory} failed on context {name!r}: {_last_line(applied)}"
        )
    rollout = _kubectl(
        "rollout",
        "status",
        f"deployment/{w.name}",
        f"--timeout={timeout:.0f}s",
        timeout=timeout + 30,
    )
    if rollout.returncode != 0:
        raise SailError(
            f"deployment/{w.name} did not become ready on context {name!r}: "
            f"{_last_line(rollout)}; the previous pods keep serving (maxUnavailable 0), `kubectl "
            f"rollout undo deployment/{w.name}` drops the new ones"
        )
    return {"context": name, "applied": applied.stdout.strip().splitlines()}
