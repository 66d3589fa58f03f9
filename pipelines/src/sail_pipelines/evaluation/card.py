"""The model card: one page on what a judged model is for, what it was measured on, how well
(with intervals and slices), what the gate decided and where it came from.

Built only from reports/gate.json, reports/validation.json and the template answers in
.cruft.json, it is written as reports/model_card.md and .json by the gate, which also logs it
to the candidate's MLflow run under model_card/ (the accepted bundle's metadata, and so the
server's /metadata, link there), and again by `sail report`, so it always sits beside the
report it agrees with.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sail_pipelines.config import Params, ProjectPaths
from sail_pipelines.evaluation import slices
from sail_pipelines.files import read_json, write_atomic, write_json

ARTIFACT = "model_card"  # the folder in the MLflow run
MARKDOWN = "model_card.md"
JSON = "model_card.json"


def template_answers(root: Path) -> dict[str, Any]:
    """The answers the project was generated with (cookiecutter, recorded in .cruft.json)."""
    try:
        state = json.loads((root / ".cruft.json").read_text())
        return dict(state["context"]["cookiecutter"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def number(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    return "nan" if math.isnan(value) else f"{value:.4f}"


def known(value: Any) -> str:
    return "?" if value is None else str(value)


def interval(bounds: Any, signed: bool = False) -> str:
    """'[0.9812, 0.9990]', or '–' when there is none."""
    if not bounds:
        return "–"
    return (
        f"[{bounds[0]:+.4f}, {bounds[1]:+.4f}]" if signed else f"[{bounds[0]:.4f}, {bounds[1]:.4f}]"
    )


def algorithm(scheme: str) -> str:
    """The signature algorithm of params.yaml's `signing.scheme`, as SIGNATURE.json names it."""
    from sail_pipelines.integrity import signing

    return {signing.ED25519: "Ed25519", signing.HMAC_SHA256: "HMAC-SHA256"}[scheme]


def _slices(entries: list[dict[str, Any]], primary: str) -> list[dict[str, Any]]:
    return [
        {
            "slice": slices.label(e),
            "rows": e["rows"],
            "judged": e["judged"],
            "reason": e["reason"],
            primary: (e.get("candidate") or {}).get(primary),
            "interval": ((e.get("intervals") or {}).get(primary) or {}).get("candidate"),
        }
        for e in entries
    ]


def build(paths: ProjectPaths, params: Params) -> dict[str, Any]:
    gate = read_json(paths.gate_report)
    validation = read_json(paths.validation_report) if paths.validation_report.is_file() else {}
    answers = template_answers(paths.root)
    intervals = gate.get("intervals") or {}
    champion = gate.get("champion") or {}
    primary = gate["primary_metric"]
    return {
        "model": {
            "registered_model": params.gate.registered_model,
            "version": gate.get("registered_version"),
            "candidate": gate["candidate"],
            "estimator": gate.get("estimator"),
            "task": gate.get("task", params.task),
        },
        "intended_use": {
            "description": answers.get("description"),
            "project": answers.get("project_name"),
            "owner": answers.get("author_name"),
            "source": ".cruft.json (template answers)"
            if answers
            else "no .cruft.json in the project",
        },
        "data": {
            "hash": gate.get("data_hash"),
            "rows": validation.get("rows"),
            "columns": validation.get("columns"),
            "train_rows": gate.get("train_rows"),
            "test_rows": gate.get("test_rows"),
        },
        "metrics": {
            name: {"value": value, "interval": (intervals.get(name) or {}).get("candidate")}
            for name, value in gate["metrics"].items()
        },
        "primary_metric": primary,
        "bootstrap": gate.get("bootstrap"),
        "slices": _slices(gate.get("slices") or [], primary),
        "importance": _importance(paths, gate["candidate"]),
        "verdict": {
            "result": gate["verdict"],
            "judged_at": gate.get("judged_at"),
            "rules": [
                {"rule": r["rule"], "status": status(r), "detail": r["detail"]}
                for r in gate["rules"]
            ],
        },
        "signing": {"algorithm": algorithm(params.signing_scheme), "key_id": gate.get("key_id")},
        "lineage": {
            "git_commit": gate.get("git_commit"),
            "parent_champion": champion.get("version"),
            "candidate_bundle_id": gate.get("bundle_id"),
            "accepted_bundle_id": gate.get("accepted_bundle_id"),
            "mlflow_run_id": gate.get("mlflow_run_id"),
        },
    }


def _importance(paths: ProjectPaths, candidate: str) -> dict[str, Any] | None:
    """The metric step's importance per source column (evaluation/importance.py), when it is
    this candidate's."""
    if not paths.evaluation_report.is_file():
        return None
    found = read_json(paths.evaluation_report).get("importance")
    return found if found and found.get("candidate") == candidate else None


def _importance_lines(card: dict[str, Any]) -> list[str]:
    found = card.get("importance")
    lines = ["", "## What the model relies on", ""]
    if not found:
        return lines + ["Not measured (the metric step recorded no importance for this model)."]
    mean_abs = found["contributions"].get("mean_abs") or {}
    space = found["contributions"].get("space")
    permuted = found["permutation"]
    lines += [
        f"Permutation importance on the test split: the loss of {found['metric']} when a source "
        f"column is shuffled ({found['repeats']} repeats, 95% interval); mean |contribution|: the "
        + (f"average absolute explanation ({space})." if mean_abs else "model has no explainer."),
        "",
        f"| source column | loss of {found['metric']} | 95% interval | mean abs contribution |",
        "| --- | ---: | --- | ---: |",
    ]
    for column in sorted(permuted, key=lambda c: -permuted[c]["mean"]):
        p = permuted[column]
        lines.append(
            f"| {column} | {number(p['mean'])} | {interval([p['low'], p['high']])} "
            f"| {number(mean_abs[column]) if column in mean_abs else '–'} |"
        )
    return lines


def status(rule: dict[str, Any]) -> str:
    if not rule.get("judged", True):
        return "not judged"
    return "passed" if rule["passed"] else "failed"


def _slice_lines(card: dict[str, Any], level: str) -> list[str]:
    if not card["slices"]:
        return ["No slices configured (`gate.slices.columns` in params.yaml)."]
    primary = card["primary_metric"]
    return [f"| slice | rows | {primary} | {level} interval |", "| --- | ---: | ---: | --- |"] + [
        f"| {s['slice']} | {s['rows']} "
        f"| {number(s[primary]) if s['judged'] else s['reason']} | {interval(s['interval'])} |"
        for s in card["slices"]
    ]


def markdown(card: dict[str, Any]) -> str:
    model, use, data, lineage = card["model"], card["intended_use"], card["data"], card["lineage"]
    name = model["registered_model"] + (
        f" v{model['version']}" if model["version"] else " (not registered)"
    )
    boot = card.get("bootstrap") or {}
    level = f"{boot.get('level', 0.95):.0%}"
    parent = lineage["parent_champion"]
    parent = f"v{parent}" if parent else "none (first model)"
    lines = [
        f"# Model card: {name}",
        "",
        f"Candidate **{model['candidate']}** (`{model['estimator']}`), {model['task']}. "
        f"Gate verdict: **{card['verdict']['result'].upper()}** ({card['verdict']['judged_at']}).",
        "",
        "## Intended use",
        "",
        use["description"] or "Not recorded.",
        "",
        f"Project {use['project'] or '?'}, owned by {use['owner'] or '?'} (from {use['source']}).",
        "",
        "## Data",
        "",
        f"- data hash (md5, as DVC records it): `{data['hash']}`",
        f"- {known(data['rows'])} rows, {known(data['columns'])} columns; "
        f"{known(data['train_rows'])} training rows, {known(data['test_rows'])} test rows",
        "",
        f"## Metrics on the test split ({level} paired bootstrap intervals, "
        f"{boot.get('resamples', '?')} resamples)",
        "",
        f"| metric | value | {level} interval |",
        "| --- | ---: | --- |",
        *(
            f"| {m}{' (primary)' if m == card['primary_metric'] else ''} | {number(v['value'])} "
            f"| {interval(v['interval'])} |"
            for m, v in card["metrics"].items()
        ),
        "",
        "## Slices",
        "",
    ]
    lines += _slice_lines(card, level) + _importance_lines(card)
    lines += ["", "## Gate rules", ""]
    lines += [f"- {r['status']}: {r['rule']}: {r['detail']}" for r in card["verdict"]["rules"]] or [
        "- (none)"
    ]
    lines += [
        "",
        "## Signing and lineage",
        "",
        f"- signing key id: `{card['signing']['key_id']}` ({card['signing']['algorithm']})",
        f"- git commit: `{lineage['git_commit']}`",
        f"- parent champion: {parent}",
        f"- candidate bundle `{lineage['candidate_bundle_id']}`, "
        f"accepted bundle `{lineage['accepted_bundle_id'] or '–'}`",
        f"- MLflow run `{lineage['mlflow_run_id']}`",
        "",
    ]
    return "\n".join(lines)


def write(paths: ProjectPaths, card: dict[str, Any]) -> tuple[Path, Path]:
    """reports/model_card.json and .md."""
    json_path, md_path = paths.reports / JSON, paths.reports / MARKDOWN
    write_json(json_path, card)
    text = markdown(card)
    write_atomic(md_path, lambda tmp: tmp.write_text(text))
    return json_path, md_path
