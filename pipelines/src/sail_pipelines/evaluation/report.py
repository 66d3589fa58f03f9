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

import re
import sys
import traceback
from pathlib import Path
from typing import Any, Mapping

import jinja2

from sail_pipelines.clients import github
from sail_pipelines.config import Params, ProjectPaths
from sail_pipelines.errors import SailError
from sail_pipelines.evaluation import card, sections
from sail_pipelines.evaluation import markdown as md
from sail_pipelines.evaluation.sections import Reports
from sail_pipelines.files import read_json, write_atomic

REPORT = "report.md"
TEMPLATE = "report.md.j2"  # in the package's templates/, or the project's own TEMPLATES folder
TEMPLATES = "templates"


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
    env.filters.update(num=md.num, cell=md.cell)
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
    summary: computed once, the two differ only in inline_plots and the pieces
    sections.placed() makes."""
    shared = {
        "marker": marker(params),
        "model": params.gate.registered_model,
        "passed": reports.gate["verdict"] == "pass",
        "gate": reports.gate,
        "evaluation": reports.evaluation,
        "validation": reports.validation,
        "params": params,
        "charts": sections.chart_blocks(reports),
    }
    pieces = sections.sections(reports, params)
    local, remote = (
        {
            **shared,
            "inline_plots": inline,
            "sections": {**pieces, **sections.placed(reports, inline, artifacts)},
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
