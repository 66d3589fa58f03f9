"""kubectl: applying an environment's rendered manifests and waiting until they serve.

The manifests are rendered by delivery/kube_render.py; this module only talks to the cluster,
through the kubectl on PATH, with none of sail's keys in its environment. With the HMAC scheme
the pods read the shared secret from a Secret the cluster already holds, which is never written
under deploy/ and must be on the cluster before anything is applied. Blue-green applies in two
steps: the new color's Deployment first, and the Service's selector only once it is ready.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sail_pipelines.errors import SailError

CONTAINER_PORT = 8000  # the inference image's SAIL_PORT
RUN_AS = 10001  # the `sail` user of the inference image
KUBECTL_TIMEOUT = 60
STRATEGIES = ("blue-green", "canary", "shadow")
COLORS = ("blue", "green")
SERVICE_FILE = "service.yaml"  # blue-green: applied last, it switches the traffic
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
    max_replicas: int = 4  # the HorizontalPodAutoscaler's (KServe's autoscaler's) ceiling
    strategy: str = "blue-green"  # one of STRATEGIES
    color: str = "blue"  # blue-green: the color this deploy starts
    weight: int = 10  # canary: percent of requests the new image takes
    stable_image: str | None = None  # shadow: the image that answers (the environment's own)

    @property
    def name(self) -> str:
        return f"{self.model}-{self.environment}"

    @property
    def waits(self) -> list[str]:
        """The new color's Deployment (blue-green), or the InferenceServices, to wait for."""
        if self.strategy == "blue-green":
            return [f"deployment/{self.name}-{self.color}"]
        shadow = [f"inferenceservice/{self.name}-shadow"] if self.strategy == "shadow" else []
        return [f"inferenceservice/{self.name}", *shadow]

    @property
    def secret(self) -> str:
        return f"{self.model}-signing-key"


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


def current_context(directory: Path) -> str:
    context = _kubectl("config", "current-context")
    if context.returncode != 0:
        raise SailError(
            f"no Kubernetes cluster configured ({_last_line(context)}): the manifests are in "
            f"{directory}, apply them with `kubectl apply -f {directory}` where a cluster is "
            "reachable"
        )
    return context.stdout.strip()


def live_color(w: Workload, context: str) -> str | None:
    """The color the environment's Service selects now (blue-green), None before the first."""
    found = _kubectl("get", "service", w.name, "--ignore-not-found", "-o", "json")
    if found.returncode != 0:
        raise SailError(
            f"cannot read service/{w.name} on context {context!r} (blue-green switches its "
            f"selector): {_last_line(found)}; nothing was applied"
        )
    try:
        service = json.loads(found.stdout) if found.stdout.strip() else {}
    except ValueError:
        service = {}
    color = ((service.get("spec") or {}).get("selector") or {}).get("sail/color")
    return color if color in COLORS else None


def _apply(paths: list[Path], context: str) -> list[str]:
    files = [arg for path in paths for arg in ("-f", str(path))]
    applied = _kubectl("apply", "--request-timeout=30s", *files)
    if applied.returncode != 0:
        named = " ".join(files)
        raise SailError(
            f"kubectl apply {named} failed on context {context!r}: {_last_line(applied)}"
        )
    return applied.stdout.strip().splitlines()


def _wait(w: Workload, context: str, timeout: float) -> None:
    if w.strategy == "blue-green":
        args = ["rollout", "status", *w.waits]
        undo = (
            f"the Service still selects the previous color, `kubectl delete {w.waits[0]}` "
            "drops the new pods"
        )
    else:  # KServe: the InferenceServices' Ready condition
        args = ["wait", "--for=condition=Ready", *w.waits]
        undo = "KServe keeps the previous revision serving; fix or delete the new one"
    waited = _kubectl(*args, f"--timeout={timeout:.0f}s", timeout=timeout + 30)
    if waited.returncode != 0:
        raise SailError(
            f"{' and '.join(w.waits)} did not become ready on context {context!r}: "
            f"{_last_line(waited)}; {undo}"
        )


def _has_prometheus_operator() -> bool:
    found = _kubectl("api-resources", "--api-group=monitoring.coreos.com", "-o", "name")
    return found.returncode == 0 and "servicemonitors" in found.stdout


def apply(directory: Path, w: Workload, timeout: float, context: str) -> dict[str, Any]:
    """Apply, wait until ready, and only then (blue-green) switch the Service: a failure at any
    step leaves the previous pods serving. monitoring/ goes where the Prometheus Operator is."""
    if w.verify_key is None:
        _require_secret(w, context)
    files = sorted(p for p in directory.iterdir() if p.suffix == ".yaml")
    switch = [p for p in files if w.strategy == "blue-green" and p.name == SERVICE_FILE]
    applied = _apply([p for p in files if p not in switch], context)
    _wait(w, context, timeout)
    if switch:
        applied += _apply(switch, context)
    result: dict[str, Any] = {"context": context, "applied": applied}
    monitoring = sorted((directory / "monitoring").glob("*.yaml"))
    if monitoring and _has_prometheus_operator():
        result["applied"] += _apply(monitoring, context)
    elif monitoring:
        result["monitoring"] = (
            f"not applied: no Prometheus Operator on {context!r} (apply "
            f"{directory / 'monitoring'} where it runs)"
        )
    return result
