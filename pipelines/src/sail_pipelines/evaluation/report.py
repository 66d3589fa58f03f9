"""`sail report`: the gate's verdict as Markdown, for the people reviewing the change.

Built only from what the steps already wrote (reports/gate.json, evaluation.json,
validation.json, plots/), so it works as well after a failed gate, which is when it is read
most. It goes to reports/report.md (plots shown inline, relative to the file), to the job
summary when GITHUB_STEP_SUMMARY is set, and with --post to one pull-request comment. The
model card (card.py) is written again beside it, from the same gate.json.

The layout is a Jinja2 template, templates/report.md.j2, which a project replaces or extends
with its own templates/report.md.j2; this module computes what it places.

GitHub cannot show the PNG plots in a comment or a job summary: the comments API takes no
uploads, images from a CI workspace have no public URL, and data: URIs are stripped. So those
two list the PNG files and say where the run's artifacts keep them, and draw the curves as
Mermaid charts, which GitHub renders (charts.py).
"""

from __future__ import annotations

import math
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jinja2

from sail_pipelines.config import HIGHER_IS_BETTER, Params, ProjectPaths
from sail_pipelines.errors import SailError
from sail_pipelines.evaluation import card, charts, slices
from sail_pipelines.files import read_json, write_atomic
from sail_pipelines.integrations import github

REPORT = "report.md"
TEMPLATE = "report.md.j2"  # in the package's templates/, or the project's own TEMPLATES folder
TEMPLATES = "templates"
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


def load(paths: ProjectPaths) -> Reports:
    """The step reports, refusing a gate verdict that does not belong to the evaluation beside
    it."""
    for path, step in ((paths.gate_report, "gate"), (paths.evaluation_report, "evaluate")):
        if not path.is_file():
            raise SailError(
                f"no {path.relative_to(paths.root)}: run `sail {step}` first (the report explains "
                "a gate verdict)"
            )
    try:
        gate, evaluation = read_json(paths.gate_report), read_json(paths.evaluation_report)
        validation = (
            read_json(paths.validation_report) if paths.validation_report.is_file() else None
        )
    except ValueError as exc:
        raise SailError(
            f"a report in {paths.reports.relative_to(paths.root)}/ is not valid JSON: {exc}"
        ) from exc
    judged = evaluation.get("candidates", {}).get(gate.get("candidate"), {}).get("bundle_id")
    if judged is None or judged != gate.get("bundle_id"):
        raise SailError(
            "reports/gate.json does not judge the candidate of reports/evaluation.json: run `sail "
            "gate` again"
        )
    plots = tuple(sorted(p.name for p in paths.plots.glob("*.png"))) if paths.plots.is_dir() else ()
    return Reports(gate, evaluation, validation, plots)


def marker(params: Params) -> str:
    """Hidden in the Markdown; finds this model's comment again (a repository may hold several
    models)."""
    return f"<!-- sail-report:{params.gate.registered_model} -->"


def artifacts_location(env: Mapping[str, str]) -> str:
    """Where this CI run keeps reports/plots/, in words with a link when the CI says where."""
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        return (
            "the artifacts of [this workflow "
            f"run]({server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']})"
        )
    if env.get("BUILD_URL"):
        return f"the [build artifacts]({env['BUILD_URL'].rstrip('/')}/artifact/reports/plots/)"
    return "the pipeline's workspace and CI artifacts"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _num(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    return "nan" if math.isnan(value) else f"{value:.4f}"


def _delta(metric: str, mine: Any, theirs: Any) -> str:
    if (
        not isinstance(mine, (int, float))
        or not isinstance(theirs, (int, float))
        or math.isnan(mine)
        or math.isnan(theirs)
    ):
        return "–"
    diff = mine - theirs
    if diff == 0:
        return "±0"
    better = (diff > 0) == HIGHER_IS_BETTER.get(metric, True)
    return f"{diff:+.4f} {'better' if better else 'worse'}"


def _thresholds(params: Params, metric: str, value: Any) -> str:
    parts = []
    for t in params.gate.thresholds:
        if t.metric != metric:
            continue
        number = isinstance(value, (int, float)) and not math.isnan(value)
        if t.minimum is not None:
            parts.append(
                f"≥ {t.minimum:g} {'✅' if number and value >= t.minimum else '❌'} "
                f"({f'{value - t.minimum:+.4f}' if number else '–'})"
            )
        if t.maximum is not None:
            parts.append(
                f"≤ {t.maximum:g} {'✅' if number and value <= t.maximum else '❌'} "
                f"({f'{t.maximum - value:+.4f}' if number else '–'})"
            )
    return "; ".join(parts) or "–"


def _level(gate: dict[str, Any]) -> str:
    return f"{(gate.get('bootstrap') or {}).get('level', 0.95):.0%}"


def _ci_columns(level: str, *names: str) -> str:
    return " | ".join(f"{name} ({level} CI)" for name in names)


def _with_interval(value: str, intervals: dict[str, Any], metric: str, who: str) -> str:
    """'0.9937 [0.9812, 0.9998]': the value and its bootstrap interval, when there is one."""
    bounds = (intervals.get(metric) or {}).get(who)
    return (
        f"{value} {card.interval(bounds, signed=who == 'difference')}"
        if bounds and value != "–"
        else value
    )


def _compared(metric: str, mine: Any, theirs: Any, intervals: dict[str, Any]) -> str:
    """Table cells: the candidate, the champion and their difference, each with its interval."""
    return " | ".join(
        (
            _with_interval(_num(mine), intervals, metric, "candidate"),
            _with_interval(_num(theirs), intervals, metric, "champion"),
            _with_interval(_delta(metric, mine, theirs), intervals, metric, "difference"),
        )
    )


def _metrics_table(reports: Reports, params: Params) -> list[str]:
    gate = reports.gate
    champion = gate.get("champion")
    primary = gate["primary_metric"]
    theirs = champion["metrics"] if champion else {}
    intervals = gate.get("intervals") or {}
    level = _level(gate)
    head = f"champion v{champion['version']}" if champion else "champion"
    metrics = [primary] + sorted(m for m in gate["metrics"] if m != primary)
    lines = [
        f"| metric | {_ci_columns(level, 'candidate', head, 'Δ vs champion')} "
        "| threshold (margin) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for m in metrics:
        name = f"**{m}** (primary)" if m == primary else m
        mine = gate["metrics"].get(m)
        cells = _compared(m, mine, theirs.get(m), intervals)
        lines.append(f"| {name} | {cells} | {_thresholds(params, m, mine)} |")
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
            f"\nChampion metrics: {_cell(champion.get('metrics_source', 'recorded'))}; "
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
            f"The champion scores {primary} {_num(mine_all)} on all {holdout['rows']} rows of its "
            f"holdout ({_num((holdout.get('recorded') or {}).get(primary))} when it was accepted)."
        )
    if not holdout.get("judged"):
        return lines + [f"Candidate against champion: not judged, {_cell(holdout['reason'])}."]
    level = _level(gate)
    lines += [
        f"On the {holdout['unseen_rows']} rows the candidate never trained on:",
        "",
        f"| metric | {_ci_columns(level, 'candidate', 'champion', 'Δ')} |",
        "| --- | ---: | ---: | ---: |",
    ]
    for m in [primary] + sorted(m for m in holdout["candidate"] if m != primary):
        mine, theirs = holdout["candidate"].get(m), holdout["champion"].get(m)
        lines.append(f"| {m} | {_compared(m, mine, theirs, holdout['intervals'])} |")
    return lines


def _slices_section(gate: dict[str, Any]) -> list[str]:
    entries = gate.get("slices") or []
    if not entries:
        return []
    primary, level = gate["primary_metric"], _level(gate)
    lines = [
        "",
        f"### Slices ({primary})",
        "",
        f"| slice | rows | {_ci_columns(level, 'candidate', 'champion', 'Δ vs champion')} |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for e in entries:
        if not e["judged"]:
            lines.append(
                f"| {_cell(slices.label(e))} | {e['rows']} | {_cell(e['reason'])} | – | – |"
            )
            continue
        mine, theirs = e["candidate"].get(primary), (e.get("champion") or {}).get(primary)
        cells = _compared(primary, mine, theirs, e["intervals"])
        lines.append(f"| {_cell(slices.label(e))} | {e['rows']} | {cells} |")
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
        numbers = " | ".join(_num(candidates[name]["metrics"].get(m)) for m in metrics)
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
        "| true ↓ predicted → | " + " | ".join(_cell(c) for c in classes) + " | recall |",
        "| --- |" + " ---: |" * (len(classes) + 1),
    ]
    for cls, row in zip(classes, matrix, strict=True):
        total = sum(row)
        hit = row[classes.index(cls)] / total if total else float("nan")
        lines.append(
            f"| **{_cell(cls)}** | " + " | ".join(str(n) for n in row) + f" | {_num(hit)} |"
        )
    return lines


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


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
        shown = _cell(_params_text(trial["params"]))
        rows.append(
            (
                improved,
                f"| {trial['number']} | {trial['state'].lower()} | {_num(score)} | "
                f"{_num(best)} | `{bar}` | {shown} |",
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
            f"**{name}**: best cv {metric} {_num(best['score'])} ({search['folds']}-fold) "
            f"at trial {best['number']} of {search['trials']}, searched in "
            f"{search['seconds']:.1f} s: {_cell(_params_text(best['params']))}",
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
    lines += [f"  - {_cell(p)}" for p in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"  - … and {len(problems) - MAX_PROBLEMS} more in reports/validation.json")
    return lines


def _serving_section(reports: Reports) -> list[str]:
    """Which runtime will serve the candidate and, when it is not the compiled one, why."""
    inference = reports.gate.get("inference")
    if not inference:
        return ["No serving runtime recorded: run `sail evaluate` and `sail gate` again."]
    if inference["runtime"] != "onnx":
        reason = _cell(inference.get("reason") or "no compiled model")
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


def _placed(reports: Reports, inline_plots: bool, artifacts: str) -> dict[str, str]:
    """The pieces that differ between reports/report.md (images shown, links relative to it)
    and a comment or job summary (files listed, and where the artifacts keep them)."""
    card_link = (
        f"[{card.MARKDOWN}]({card.MARKDOWN})" if inline_plots else f"`reports/{card.MARKDOWN}`"
    )
    return _joined(
        {"card_link": [card_link], "plots": _plots_section(reports, inline_plots, artifacts)}
    )


def _sections(reports: Reports, params: Params) -> dict[str, str]:
    """The Markdown pieces a report template places, but for those _placed() adds."""
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
        *(f"| {_icon(r)} | {_cell(r['rule'])} | {_cell(r['detail'])} |" for r in gate["rules"]),
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


def _charts(reports: Reports) -> dict[str, str]:
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
    return {name: block for name, block in found.items() if block}


def environment(project_templates: Path | None) -> jinja2.Environment:
    """The package's templates, under their own names and as sail/<name>; a project's
    templates/ folder, when it has one, comes first (so its report.md.j2 wins and may extend
    sail/report.md.j2)."""
    package = jinja2.PackageLoader("sail_pipelines.evaluation", "templates")
    loaders: list[jinja2.BaseLoader] = [jinja2.PrefixLoader({"sail": package}), package]
    if project_templates is not None and project_templates.is_dir():
        loaders.insert(0, jinja2.FileSystemLoader(project_templates))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(num=_num, cell=_cell)
    return env


def _where(exc: jinja2.TemplateError, templates: Path | None) -> str:
    """'templates/report.md.j2 line 3': a syntax error knows its place; an error while rendering
    (an undefined name, say) is found in the traceback, whose template frames Jinja2 rewrote."""
    filename, line = getattr(exc, "filename", None), getattr(exc, "lineno", None)
    if filename is None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
        if frames:
            filename, line = frames[-1].filename, frames[-1].lineno
    if filename is None:
        return TEMPLATE
    path = Path(filename)
    inside = templates is not None and path.is_relative_to(templates)
    shown = f"{TEMPLATES}/{path.name}" if inside else f"sail/{path.name}"
    return f"{shown} line {line}" if line else shown


def contexts(
    reports: Reports, params: Params, artifacts: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What report.md.j2 is given, for reports/report.md and then for the comment and job
    summary: computed once, the two differ only in inline_plots and the pieces _placed() makes."""
    shared = {
        "marker": marker(params),
        "model": params.gate.registered_model,
        "passed": reports.gate["verdict"] == "pass",
        "gate": reports.gate,
        "evaluation": reports.evaluation,
        "validation": reports.validation,
        "params": params,
        "charts": _charts(reports),
    }
    sections = _sections(reports, params)
    local, remote = (
        {
            **shared,
            "inline_plots": inline,
            "sections": {**sections, **_placed(reports, inline, artifacts)},
        }
        for inline in (True, False)
    )
    return local, remote


def render(env: jinja2.Environment, context: dict[str, Any], templates: Path | None) -> str:
    """The whole report from report.md.j2 (the project's, else the package's); templates (the
    project's folder) names the file in an error."""
    try:
        text = env.get_template(TEMPLATE).render(context)
    except jinja2.TemplateError as exc:
        raise SailError(
            f"the report template {_where(exc, templates)} cannot be rendered: "
            f"{exc.message or type(exc).__name__}"
        ) from exc
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


def run(
    paths: ProjectPaths,
    params: Params,
    env: Mapping[str, str],
    post: github.PullRequest | None = None,
) -> dict[str, Any]:
    """Write reports/report.md, append to the job summary when there is one, and maybe comment."""
    reports = load(paths)
    artifacts = artifacts_location(env)
    try:
        templates = paths.root / TEMPLATES
        jinja = environment(templates)
        local, remote = (
            render(jinja, context, templates) for context in contexts(reports, params, artifacts)
        )
        model_card = card.build(paths, params)
    except (KeyError, TypeError, AttributeError) as exc:
        raise SailError(
            "reports/gate.json or evaluation.json lacks what the steps write "
            f"({type(exc).__name__}: {exc}): run `sail evaluate` and `sail gate` again"
        ) from exc
    target = paths.reports / REPORT
    write_atomic(target, lambda tmp: tmp.write_text(local))
    card.write(paths, model_card)
    result: dict[str, Any] = {
        "verdict": reports.gate["verdict"],
        "report": str(target.relative_to(paths.root)),
        "job_summary": False,
    }
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(remote + "\n")
        except OSError as exc:
            raise SailError(
                f"cannot append to the job summary GITHUB_STEP_SUMMARY={summary}: {exc.strerror}"
            ) from exc
        result["job_summary"] = True
    if post is not None:
        try:
            result["comment"] = github.upsert_comment(post, marker(params), remote)
        except github.CommentForbidden as exc:
            where = "the job summary" if summary else str(target.relative_to(paths.root))
            print(
                f"sail report: warning: the pull-request comment was refused ({exc}); the report "
                f"is in {where}",
                file=sys.stderr,
            )
            result["comment"] = {"action": "refused", "fallback": where}
    return result
