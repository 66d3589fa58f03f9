"""The sections of `sail report`: each a list of Markdown lines computed from the step reports
(gate.json, evaluation.json, validation.json and the plots), joined into the pieces that
report.md.j2 places."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sail_pipelines.config import HIGHER_IS_BETTER, Params
from sail_pipelines.evaluation import card, charts, slices
from sail_pipelines.evaluation import markdown as md

MAX_PROBLEMS = (
    20  # the validation problems listed; a comment must stay readable (and under 65536 chars)
)
MAX_TRIAL_ROWS = 20  # a longer search lists only the trials that improved its best


@dataclass(frozen=True)
class Reports:
    gate: dict[str, Any]
    evaluation: dict[str, Any]
    validation: dict[str, Any] | None
    plots: tuple[str, ...]  # PNG file names in reports/plots/


def _metrics_table(reports: Reports, params: Params) -> list[str]:
    gate = reports.gate
    champion = gate.get("champion")
    primary = gate["primary_metric"]
    theirs = champion["metrics"] if champion else {}
    intervals = gate.get("intervals") or {}
    level = md.level(gate)
    head = f"champion v{champion['version']}" if champion else "champion"
    metrics = [primary] + sorted(m for m in gate["metrics"] if m != primary)
    lines = [
        f"| metric | {md.ci_columns(level, 'candidate', head, 'Δ vs champion')} "
        "| threshold (margin) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for m in metrics:
        name = f"**{m}** (primary)" if m == primary else m
        mine = gate["metrics"].get(m)
        cells = md.compared(m, mine, theirs.get(m), intervals)
        lines.append(f"| {name} | {cells} | {md.thresholds(params, m, mine)} |")
    boot = gate.get("bootstrap")
    if boot and intervals:
        lines.append(
            f"\nIntervals: paired bootstrap over the {gate.get('test_rows', '?')} test rows, "
            f"{boot['resamples']} resamples, seed {boot['seed']}."
        )
    if champion:
        rule = gate.get("regression_rule", "point")
        how = (
            "fails only when the whole interval of Δ lies beyond it"
            if rule == "confidence"
            else "fails when the point estimate of Δ lies beyond it"
        )
        lines.append(
            f"\nChampion metrics: {md.cell(champion.get('metrics_source', 'recorded'))}; "
            f"the no-regression rule allows a tolerance of {gate.get('tolerance', 0):g} on "
            f"{primary} and {how} ({rule} rule)."
        )
    elif gate.get("tracking_missing"):  # CI on the job's own MLflow store: nothing to find
        lines.append(
            "\nNo champion: no team tracking server configured (MLFLOW_TRACKING_URI), so this "
            "run could not look one up; the thresholds alone decide."
        )
    else:
        lines.append("\nNo champion yet: the thresholds alone decide.")
    return lines


def _holdout_section(gate: dict[str, Any]) -> list[str]:
    """The second yardstick: both models on the champion's signed holdout."""
    champion = gate.get("champion") or {}
    holdout = champion.get("holdout")
    if not holdout:
        return []
    primary = gate["primary_metric"]
    lines = ["", f"### Champion v{champion['version']}'s signed holdout", ""]
    mine_all = (holdout.get("champion_all_rows") or {}).get(primary)
    if mine_all is not None:
        lines.append(
            f"The champion scores {primary} {md.num(mine_all)} on all {holdout['rows']} rows of "
            f"its holdout ({md.num((holdout.get('recorded') or {}).get(primary))} when it was "
            "accepted)."
        )
    if not holdout.get("judged"):
        return lines + [f"Candidate against champion: not judged, {md.cell(holdout['reason'])}."]
    level = md.level(gate)
    lines += [
        f"On the {holdout['unseen_rows']} rows the candidate never trained on:",
        "",
        f"| metric | {md.ci_columns(level, 'candidate', 'champion', 'Δ')} |",
        "| --- | ---: | ---: | ---: |",
    ]
    for m in [primary] + sorted(m for m in holdout["candidate"] if m != primary):
        mine, theirs = holdout["candidate"].get(m), holdout["champion"].get(m)
        lines.append(f"| {m} | {md.compared(m, mine, theirs, holdout['intervals'])} |")
    return lines


def _slices_section(gate: dict[str, Any]) -> list[str]:
    entries = gate.get("slices") or []
    if not entries:
        return []
    primary, level = gate["primary_metric"], md.level(gate)
    lines = [
        "",
        f"### Slices ({primary})",
        "",
        f"| slice | rows | {md.ci_columns(level, 'candidate', 'champion', 'Δ vs champion')} |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for e in entries:
        if not e["judged"]:
            lines.append(
                f"| {md.cell(slices.label(e))} | {e['rows']} | {md.cell(e['reason'])} | – | – |"
            )
            continue
        mine, theirs = e["candidate"].get(primary), (e.get("champion") or {}).get(primary)
        cells = md.compared(primary, mine, theirs, e["intervals"])
        lines.append(f"| {md.cell(slices.label(e))} | {e['rows']} | {cells} |")
    return lines


def _icon(rule: dict[str, Any]) -> str:
    if not rule.get("judged", True):
        return "➖ not judged"
    return "✅" if rule["passed"] else "❌"


def _candidates_table(reports: Reports) -> list[str]:
    evaluation = reports.evaluation
    candidates = evaluation["candidates"]
    metrics = sorted(
        {m for c in candidates.values() for m, v in c["metrics"].items() if isinstance(v, float)}
    )
    lines = [
        "| candidate | " + " | ".join(metrics) + " | served by |",
        "| --- |" + " ---: |" * len(metrics) + " --- |",
    ]
    for name in sorted(candidates):
        label = f"**{name}** (best)" if name == evaluation["best"] else name
        runtime = (candidates[name].get("inference") or {}).get("runtime", "–")
        numbers = " | ".join(md.num(candidates[name]["metrics"].get(m)) for m in metrics)
        lines.append(f"| {label} | {numbers} | {runtime} |")
    lines.append(
        f"\nScored on {evaluation.get('test_rows', '?')} test rows; the best on "
        f"{evaluation['primary_metric']} goes to the gate."
    )
    return lines


def _confusion_section(reports: Reports) -> list[str]:
    """The winner's confusion matrix as a table, one row per true class (classification only)."""
    metrics = reports.evaluation["candidates"][reports.evaluation["best"]]["metrics"]
    matrix, classes = metrics.get("confusion_matrix"), metrics.get("classes")
    if not matrix or not classes:
        return []
    lines = [
        "",
        "### Confusion matrix (rows: true class, columns: predicted)",
        "",
        "| true ↓ predicted → | " + " | ".join(md.cell(c) for c in classes) + " | recall |",
        "| --- |" + " ---: |" * (len(classes) + 1),
    ]
    for cls, row in zip(classes, matrix, strict=True):
        total = sum(row)
        hit = row[classes.index(cls)] / total if total else float("nan")
        lines.append(
            f"| **{md.cell(cls)}** | " + " | ".join(str(n) for n in row) + f" | {md.num(hit)} |"
        )
    return lines


def _trial_rows(search: dict[str, Any]) -> list[tuple[bool, str]]:
    """A row per trial: its CV score, the best so far and a bar from the worst score to the best;
    with whether it improved the best (only finished trials can: a pruned score is partial)."""
    higher = HIGHER_IS_BETTER.get(search["metric"], True)
    scores = [t["score"] for t in search["history"] if t["score"] is not None]
    low, high = min(scores, default=0.0), max(scores, default=0.0)
    rows, best = [], None
    for trial in search["history"]:
        score, improved = trial["score"], False
        if trial["state"] == "COMPLETE" and score is not None:
            improved = best is None or (score > best if higher else score < best)
            best = score if improved else best
        share = (score - low) / (high - low) if score is not None and high > low else 1.0
        bar = "·" if score is None else "█" * max(1, round(10 * share))
        shown = md.cell(md.params_text(trial["params"]))
        rows.append(
            (
                improved,
                f"| {trial['number']} | {trial['state'].lower()} | {md.num(score)} | "
                f"{md.num(best)} | `{bar}` | {shown} |",
            )
        )
    return rows


def _search_section(reports: Reports) -> list[str]:
    """Per searched candidate: the winning values, and score against trials (a long search
    lists only the trials that improved the best)."""
    lines: list[str] = []
    for name, entry in sorted(reports.evaluation["candidates"].items()):
        search = entry.get("search")
        if not search:
            continue
        metric, best = search["metric"], search["best"]
        lines += [
            f"**{name}**: best cv {metric} {md.num(best['score'])} ({search['folds']}-fold) "
            f"at trial {best['number']} of {search['trials']}, searched in "
            f"{search['seconds']:.1f} s: {md.cell(md.params_text(best['params']))}",
            "",
            f"| trial | state | cv {metric} | best so far | score | params |",
            "| ---: | --- | ---: | ---: | --- | --- |",
        ]
        rows = _trial_rows(search)
        if len(rows) > MAX_TRIAL_ROWS:
            kept = [row for improved, row in rows[:-1] if improved] + [rows[-1][1]]
            lines += kept + [
                f"\n{len(kept)} of {len(rows)} trials: those that improved the best, and the last."
            ]
        else:
            lines += [row for _, row in rows]
        lines.append("")
    return lines[:-1]


def _data_section(reports: Reports) -> list[str]:
    gate, validation = reports.gate, reports.validation
    lines = [f"- data hash (md5, as DVC records it): `{gate.get('data_hash', '?')}`"]
    if validation is None:
        return lines + ["- validation: no reports/validation.json in this run"]
    status = "passed ✅" if validation.get("passed") else "failed ❌"
    lines.append(
        f"- validation of `{validation.get('data', '?')}`: {status}, "
        f"{validation.get('rows', '?')} rows, {validation.get('columns', '?')} columns"
        + (", new reference profile created" if validation.get("baseline_created") else "")
    )
    if validation.get("data_hash") != gate.get("data_hash"):
        lines.append(
            f"- ⚠️ validation checked data `{validation.get('data_hash')}`, not the data the gate "
            "judged"
        )
    problems = validation.get("problems") or []
    lines += [f"  - {md.cell(p)}" for p in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"  - … and {len(problems) - MAX_PROBLEMS} more in reports/validation.json")
    return lines


def _serving_section(reports: Reports) -> list[str]:
    """Which runtime will serve the candidate and, when it is not the compiled one, why."""
    inference = reports.gate.get("inference")
    if not inference:
        return ["No serving runtime recorded: run `sail evaluate` and `sail gate` again."]
    if inference["runtime"] != "onnx":
        reason = md.cell(inference.get("reason") or "no compiled model")
        return [f"Served by **scikit-learn**: {reason}."]
    checks = inference.get("agreement") or {}
    figures = []
    for where, check in checks.items():
        rows = f"{check.get('rows')} {where.replace('_', ' ')} rows"
        gap = check.get("max_probability_diff", check.get("max_value_diff"))
        if gap is not None:
            labels = check.get("label_mismatches", 0)
            rows += f" (largest difference {gap:.2g}, {labels} labels differ)"
        figures.append(rows)
    agrees = " and ".join(figures)
    return [f"Served by **ONNX Runtime** (compiled), which agrees with scikit-learn on {agrees}."]


def _plots_section(reports: Reports, inline: bool, artifacts: str) -> list[str]:
    if not reports.plots:
        return ["No plots in reports/plots/."]
    if inline:
        return [f"![{Path(p).stem}](plots/{p})" for p in reports.plots]
    return [f"- `reports/plots/{p}`" for p in reports.plots] + [
        "\nGitHub cannot show images from a CI run in a comment or job summary: the PNG files are "
        f"in {artifacts}."
    ]


def _joined(pieces: dict[str, list[str]]) -> dict[str, str]:
    return {name: "\n".join(lines).strip("\n") for name, lines in pieces.items()}


def placed(reports: Reports, inline_plots: bool, artifacts: str) -> dict[str, str]:
    """The pieces that differ between reports/report.md (images shown, links relative to it)
    and a comment or job summary (files listed, and where the artifacts keep them)."""
    card_link = (
        f"[{card.MARKDOWN}]({card.MARKDOWN})" if inline_plots else f"`reports/{card.MARKDOWN}`"
    )
    return _joined(
        {"card_link": [card_link], "plots": _plots_section(reports, inline_plots, artifacts)}
    )


def sections(reports: Reports, params: Params) -> dict[str, str]:
    """The Markdown pieces a report template places, but for those placed() adds."""
    gate = reports.gate
    model = params.gate.registered_model
    passed = gate["verdict"] == "pass"
    if passed and gate.get("registered", True):
        outcome = (
            f"Registered as **{model} v{gate.get('registered_version')}** with alias `candidate`, "
            "awaiting promotion."
        )
    elif passed:  # `sail gate --no-register` (pull requests): judged, never registered
        outcome = f"Judged only, nothing was registered: **{model}** keeps its current champion."
    else:
        outcome = f"Nothing was registered: **{model}** keeps its current champion."
    if gate.get("tracking_missing"):
        outcome += (
            " No champion was compared: no team tracking server configured (MLFLOW_TRACKING_URI)."
        )
    rules = [
        "| | rule | detail |",
        "| --- | --- | --- |",
        *(f"| {_icon(r)} | {md.cell(r['rule'])} | {md.cell(r['detail'])} |" for r in gate["rules"]),
    ]
    if not gate["rules"]:
        rules.append("| ✅ | (none) | no thresholds and no champion |")
    pieces = {
        "outcome": [outcome],
        "rules": rules,
        "metrics": _metrics_table(reports, params),
        "confusion": _confusion_section(reports),
        "holdout": _holdout_section(gate),
        "slices": _slices_section(gate),
        "card_artifact": [card.ARTIFACT],
        "candidates": _candidates_table(reports),
        "serving": _serving_section(reports),
        "search": _search_section(reports),
        "data": _data_section(reports),
    }
    return _joined(pieces)


def chart_blocks(reports: Reports) -> dict[str, str]:
    """Mermaid blocks of the winner's curves and of the champions' history, where drawable."""
    gate, evaluation = reports.gate, reports.evaluation
    winner = evaluation["candidates"][evaluation["best"]]
    drawn = winner.get("charts") or {}
    found: dict[str, str | None] = {}
    if drawn.get("roc"):
        found["roc"] = charts.mermaid_roc(drawn["roc"], winner["metrics"].get("roc_auc"))
    if drawn.get("residuals"):
        found["residuals"] = charts.mermaid_residuals(drawn["residuals"])
    primary = gate["primary_metric"]
    history = [
        {"label": f"v{h['version']}", "value": h.get("value")}
        for h in ((gate.get("champion") or {}).get("history") or [])
    ]
    history.append({"label": "candidate", "value": gate["metrics"].get(primary)})
    found["history"] = charts.mermaid_history(primary, history)
    if evaluation.get("importance"):
        found["importance"] = charts.mermaid_importance(evaluation["importance"])
    return {name: block for name, block in found.items() if block}
