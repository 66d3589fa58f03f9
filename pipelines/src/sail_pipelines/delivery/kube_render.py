"""deploy/<environment>/: the manifests of one strategy, one resource per file.

- blue-green: the new color's Deployment and its HorizontalPodAutoscaler, the Service whose
  selector names the color (applied last: the switch), a PodDisruptionBudget and a
  NetworkPolicy over both colors' pods;
- canary: a KServe InferenceService with `canaryTrafficPercent`;
- shadow: two InferenceServices (stable, and `-shadow` for the candidate) behind an Ingress that
  mirrors to the candidate;
- every strategy: monitoring/ with a ServiceMonitor and the project's alert rules as a
  PrometheusRule (where the project has monitoring/prometheus-rules.yml).

A file of an earlier strategy that this one does not write is removed, so `kubectl apply -f`
never applies a stale resource.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from sail_pipelines.clients.kubernetes import COLORS, CONTAINER_PORT, SERVICE_FILE, Workload
from sail_pipelines.delivery import kube_kserve as ks
from sail_pipelines.delivery import kube_monitoring as km
from sail_pipelines.delivery import kube_workload as kw
from sail_pipelines.errors import SailError
from sail_pipelines.files import write_atomic

Manifests = dict[str, dict[str, Any]]  # file name (under deploy/<environment>/): manifest


def _blue_green(w: Workload) -> Manifests:
    both = {"matchLabels": kw.selector(w, color=False)}
    return {
        "deployment.yaml": kw.deployment(w),
        "hpa.yaml": kw.autoscaler(w),
        SERVICE_FILE: kw.service(w),
        "pdb.yaml": kw.disruption_budget(w, both),
        "networkpolicy.yaml": kw.network_policy(w, both, CONTAINER_PORT),
    }


def _canary(w: Workload) -> Manifests:
    serving = ks.pods(w.name)
    return {
        "inferenceservice.yaml": ks.inference_service(w, w.name, w.image, w.weight, raw=False),
        "pdb.yaml": kw.disruption_budget(w, serving),
        "networkpolicy.yaml": kw.network_policy(w, serving, None),
    }


def _shadow(w: Workload) -> Manifests:
    if not w.stable_image:
        raise SailError(
            f"shadow needs a stable image answering in {w.environment}: deploy one with "
            "--strategy blue-green or canary first"
        )
    both = ks.pods(w.name, f"{w.name}-shadow")
    return {
        "inferenceservice.yaml": ks.inference_service(w, w.name, w.stable_image, None, raw=True),
        "inferenceservice-shadow.yaml": ks.inference_service(
            w, f"{w.name}-shadow", w.image, None, raw=True
        ),
        "ingress.yaml": ks.shadow_ingress(w),
        "pdb.yaml": kw.disruption_budget(w, both),
        "networkpolicy.yaml": kw.network_policy(w, both, None),
    }


STRATEGIES = {"blue-green": _blue_green, "canary": _canary, "shadow": _shadow}


def manifests(w: Workload, root: Path) -> tuple[Manifests, Manifests]:
    """(the workload's files, monitoring/'s files) for the Workload's strategy."""
    workload = STRATEGIES[w.strategy](w)
    if w.strategy == "blue-green":
        services = {"matchLabels": kw.selector(w, color=False)}
    else:
        services = ks.pods(w.name, *([f"{w.name}-shadow"] if w.strategy == "shadow" else []))
    monitoring = {"servicemonitor.yaml": km.service_monitor(w, services)}
    groups = km.alert_groups(root)
    if groups:
        monitoring["prometheusrule.yaml"] = km.prometheus_rule(w, groups)
    return workload, monitoring


def _write(directory: Path, files: Manifests) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.yaml"):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, manifest in files.items():
        text = yaml.safe_dump(manifest, sort_keys=False)
        write_atomic(directory / name, functools.partial(Path.write_text, data=text))
        written.append(directory / name)
    return written


def render(directory: Path, w: Workload, root: Path) -> list[Path]:
    workload, monitoring = manifests(w, root)
    return _write(directory, workload) + _write(directory / "monitoring", monitoring)


def rendered_color(directory: Path) -> str | None:
    """The color the last rendered Service selects (what --render-only switches away from)."""
    try:
        service = yaml.safe_load((directory / SERVICE_FILE).read_text())
        color = service["spec"]["selector"]["sail/color"]
    except (OSError, yaml.YAMLError, TypeError, KeyError):
        return None
    return color if color in COLORS else None


def other(color: str | None) -> str:
    return COLORS[1] if color == COLORS[0] else COLORS[0]
