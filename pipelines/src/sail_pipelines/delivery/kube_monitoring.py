"""Prometheus Operator resources of an environment (monitoring.coreos.com/v1): a ServiceMonitor
that scrapes every pod's /metrics, and the project's alert rules (monitoring/prometheus-rules.yml,
the file `promtool` checks) as a PrometheusRule, so the cluster alerts on what the file says.

They are written to deploy/<environment>/monitoring/ and applied only where the cluster has the
Prometheus Operator's resource types.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sail_pipelines.clients.kubernetes import CONTAINER_PORT, Workload
from sail_pipelines.delivery import kube_workload as kw
from sail_pipelines.errors import SailError

RULES_FILE = Path("monitoring") / "prometheus-rules.yml"


def service_monitor(w: Workload, services: dict[str, Any]) -> dict[str, Any]:
    """Scrapes the pods behind the Services `services` selects, on the container's port (KServe
    puts its proxies on the Service ports; the container port is the server's own)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": w.name, "labels": kw.labels(w)},
        "spec": {
            "selector": services,
            "endpoints": [{"targetPort": CONTAINER_PORT, "path": "/metrics", "interval": "30s"}],
        },
    }


def alert_groups(root: Path) -> list[dict[str, Any]]:
    path = root / RULES_FILE
    try:
        rules = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return []
    except yaml.YAMLError as exc:
        raise SailError(f"{RULES_FILE} is not valid YAML: {exc}") from exc
    groups = rules.get("groups") if isinstance(rules, dict) else None
    if not isinstance(groups, list):
        raise SailError(f"{RULES_FILE} has no `groups:` list (Prometheus' rule file format)")
    return groups


def prometheus_rule(w: Workload, groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The rule file's groups, named per environment (two environments in one namespace would
    otherwise define the same group twice)."""
    named = [{**group, "name": f"{group.get('name', 'sail')}-{w.environment}"} for group in groups]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": w.name, "labels": kw.labels(w)},
        "spec": {"groups": named},
    }
