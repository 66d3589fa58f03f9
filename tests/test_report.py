"""`sail report`: the Markdown report of a gate verdict, the job summary, and the one pull-request
comment it keeps up to date, against a local stand-in for the GitHub REST API on 127.0.0.1."""

from __future__ import annotations

import json
import re
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from conftest import ok, sail
from sail_pipelines.inference.smoke import free_port
from servers import QuietHandler, serving

TOKEN = "ghs_testtoken0123456789abcdefSECRET"
REPO = "acme/churn"
PR = 7
MARKER = "<!-- sail-report:sail_model -->"


class FakeGitHub(ThreadingHTTPServer):
    """Issue comments of one pull request, paginated like GitHub (Link: rel="next"), recording every
    request."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.comments: list[dict] = []
        self.requests: list[dict] = []
        self.fail: dict[str, tuple[int, str]] = {}  # method -> (status, message)
        self.next_id = 1000

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, body: str) -> dict:
        self.next_id += 1
        comment = {
            "id": self.next_id,
            "body": body,
            "html_url": f"https://github.example/{REPO}/pull/{PR}#issuecomment-{self.next_id}",
        }
        self.comments.append(comment)
        return comment


class Handler(QuietHandler):
    server: FakeGitHub

    def _send(self, status: int, payload, headers: dict | None = None):
        data = json.dumps(payload).encode()
        self.reply(status, {"Content-Type": "application/json", **(headers or {})}, data)

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        url = urlparse(self.path)
        self.server.requests.append(
            {
                "method": self.command,
                "path": url.path,
                "query": parse_qs(url.query),
                "auth": self.headers.get("Authorization"),
                "body": body,
            }
        )
        if self.command in self.server.fail:
            status, message = self.server.fail[self.command]
            return self._send(status, {"message": message})
        list_path = f"/repos/{REPO}/issues/{PR}/comments"
        if self.command == "GET" and url.path == list_path:
            query = parse_qs(url.query)
            per_page, page = int(query["per_page"][0]), int(query.get("page", ["1"])[0])
            chunk = self.server.comments[(page - 1) * per_page : page * per_page]
            headers = {}
            if page * per_page < len(self.server.comments):
                headers["Link"] = (
                    f"<{self.server.url}{list_path}?per_page={per_page}&page={page + 1}>; "
                    'rel="next"'
                )
            return self._send(200, chunk, headers)
        if self.command == "POST" and url.path == list_path:
            return self._send(201, self.server.add(body["body"]))
        match = re.fullmatch(rf"/repos/{REPO}/issues/comments/(\d+)", url.path)
        if self.command == "PATCH" and match:
            comment = next(c for c in self.server.comments if c["id"] == int(match.group(1)))
            comment["body"] = body["body"]
            return self._send(200, comment)
        return self._send(404, {"message": "Not Found"})

    do_GET = do_POST = do_PATCH = _handle


@pytest.fixture
def github():
    server = FakeGitHub()
    with serving(server):
        yield server


def env_for(server: FakeGitHub, **extra: str) -> dict[str, str]:
    return {
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_API_URL": server.url,
        "SAIL_PR_NUMBER": str(PR),
        "GITHUB_STEP_SUMMARY": "",
        **extra,
    }


def one_line_error(result, text):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sail report: error:") and text in last, result.stderr
    return last


def fail_the_gate(project):
    """Impossible thresholds: the same candidate now fails, and gate.json says so."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["gate"]["thresholds"]["roc_auc"] = {"min": 0.9999}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = sail(project, "gate")
    assert result.returncode == 1 and "GATE FAILED" in result.stderr


def test_report_of_a_passing_gate(project_copy):
    result = json.loads(ok(sail(project_copy, "report", GITHUB_STEP_SUMMARY="")).stdout)
    assert result == {"verdict": "pass", "report": "reports/report.md", "job_summary": False}
    text = (project_copy / "reports" / "report.md").read_text()
    gate = json.loads((project_copy / "reports" / "gate.json").read_text())
    assert text.startswith(MARKER + "\n## SAIL report: sail_model, gate PASSED ✅")
    assert "Registered as **sail_model v1** with alias `candidate`" in text
    assert "| ✅ | roc_auc >= 0.95 | roc_auc = " in text and "| ✅ | f1 >= 0.9 |" in text
    low, high = gate["intervals"]["roc_auc"]["candidate"]
    roc_auc = gate["metrics"]["roc_auc"]
    assert (
        f"| **roc_auc** (primary) | {roc_auc:.4f} [{low:.4f}, {high:.4f}] | – | – | "
        f"≥ 0.95 ✅ (+{roc_auc - 0.95:.4f}) |"
    ) in text
    assert "Intervals: paired bootstrap over the 114 test rows, 1000 resamples, seed 42." in text
    assert "Model card: [model_card.md](model_card.md)" in text
    assert (project_copy / "reports" / "model_card.md").is_file()
    assert "No champion yet: the thresholds alone decide." in text
    best = json.loads((project_copy / "reports" / "evaluation.json").read_text())["best"]
    assert f"| **{best}** (best) |" in text and text.count("(best)") == 1
    assert f"`{gate['data_hash']}`" in text and "passed ✅, 569 rows, 31 columns" in text
    images = re.findall(r"!\[[^]]*\]\((plots/[^)]+\.png)\)", text)
    assert sorted(images) == [
        "plots/confusion_matrix.png",
        "plots/importance.png",
        "plots/roc.png",
    ]
    # relative to report.md
    assert all((project_copy / "reports" / image).is_file() for image in images)
    assert "Served by **ONNX Runtime** (compiled), which agrees with scikit-learn on " in text
    assert text.count(" | onnx |") == 3  # every example candidate takes the compiled path


def test_report_says_why_scikit_learn_serves(project_copy):
    gate_file = project_copy / "reports" / "gate.json"
    gate = json.loads(gate_file.read_text())
    gate["inference"] = {
        "runtime": "sklearn",
        "reason": "no compiled model: skl2onnx cannot convert it: X",
    }
    gate_file.write_text(json.dumps(gate))
    ok(sail(project_copy, "report", GITHUB_STEP_SUMMARY=""))
    text = (project_copy / "reports" / "report.md").read_text()
    assert "Served by **scikit-learn**: no compiled model: skl2onnx cannot convert it: X." in text


def test_report_of_a_gate_that_passed_without_registering(project_copy):
    """A pull request's gate (`sail gate --no-register`) passes and registers nothing."""
    gate_file = project_copy / "reports" / "gate.json"
    gate = json.loads(gate_file.read_text())
    gate.update(registered_version=None, accepted_bundle_id=None, registered=False)
    gate_file.write_text(json.dumps(gate))
    ok(sail(project_copy, "report", GITHUB_STEP_SUMMARY=""))
    text = (project_copy / "reports" / "report.md").read_text()
    assert "gate PASSED ✅" in text and "Registered as" not in text and "vNone" not in text
    assert "Judged only, nothing was registered: **sail_model** keeps its current champion." in text


@pytest.mark.slow
def test_report_of_a_failing_gate_against_the_champion(project_copy, tmp_path):
    ok(sail(project_copy, "promote", "--expect-champion", "none", "--approver", "alice"))
    fail_the_gate(project_copy)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step output\n")
    result = json.loads(
        ok(
            sail(
                project_copy,
                "report",
                GITHUB_STEP_SUMMARY=str(summary),
                GITHUB_RUN_ID="42",
                GITHUB_REPOSITORY=REPO,
                GITHUB_SERVER_URL="https://github.example",
            )
        ).stdout
    )
    assert result["verdict"] == "fail" and result["job_summary"] is True
    text = (project_copy / "reports" / "report.md").read_text()
    assert (
        "gate FAILED ❌" in text
        and "Nothing was registered: **sail_model** keeps its current champion." in text
    )
    assert "| ❌ | roc_auc >= 0.9999 | roc_auc = " in text
    assert "| ✅ | no regression on roc_auc vs champion v1 |" in text
    assert "| metric | candidate (95% CI) | champion v1 (95% CI) | Δ vs champion (95% CI) |" in text
    # the same model re-scored: no change, below the threshold
    assert "| ±0 [+0.0000, +0.0000] |" in text and "≥ 0.9999 ❌ (-" in text
    assert "### Champion v1's signed holdout" in text
    assert "On the 114 rows the candidate never trained on:" in text
    assert "Champion metrics: rescored on this test set" in text
    written = summary.read_text()
    assert written.startswith("earlier step output\n" + MARKER)  # appended, not replaced
    # no image links that cannot resolve there
    assert "gate FAILED ❌" in written and "](plots/" not in written
    assert "- `reports/plots/roc.png`" in written
    assert "[this workflow run](https://github.example/acme/churn/actions/runs/42)" in written


@pytest.mark.slow
def test_missing_or_stale_reports_are_one_line_errors(project_copy):
    gate = project_copy / "reports" / "gate.json"
    complete = gate.read_text()
    gate.write_text(json.dumps({k: v for k, v in json.loads(complete).items() if k != "rules"}))
    one_line_error(
        sail(project_copy, "report"),
        "reports/gate.json or evaluation.json lacks what the steps write (KeyError: 'rules')",
    )
    gate.write_text("{not json")
    one_line_error(sail(project_copy, "report"), "a report in reports/ is not valid JSON")
    gate.write_text(complete)
    evaluation = project_copy / "reports" / "evaluation.json"
    data = json.loads(evaluation.read_text())
    data["candidates"][data["best"]]["bundle_id"] = "0000000000000000"
    evaluation.write_text(json.dumps(data))
    one_line_error(
        sail(project_copy, "report"),
        "does not judge the candidate of reports/evaluation.json: run `sail gate` again",
    )
    (project_copy / "reports" / "gate.json").unlink()
    one_line_error(sail(project_copy, "report"), "no reports/gate.json: run `sail gate` first")
    assert not (project_copy / "reports" / "report.md").exists()


@pytest.mark.slow
def test_post_creates_one_comment_then_updates_it(project_copy, github):
    github.add("LGTM")  # someone else's comment stays untouched
    first = json.loads(ok(sail(project_copy, "report", "--post", **env_for(github))).stdout)
    assert first["comment"]["action"] == "created"
    fail_the_gate(project_copy)
    second = json.loads(ok(sail(project_copy, "report", "--post", **env_for(github))).stdout)
    assert second["comment"] == {**first["comment"], "action": "updated"}
    assert [c["body"] for c in github.comments][0] == "LGTM" and len(github.comments) == 2
    body = github.comments[1]["body"]
    assert body.startswith(MARKER) and "gate FAILED ❌" in body
    assert [(r["method"], r["path"]) for r in github.requests] == [
        ("GET", f"/repos/{REPO}/issues/{PR}/comments"),
        ("POST", f"/repos/{REPO}/issues/{PR}/comments"),
        ("GET", f"/repos/{REPO}/issues/{PR}/comments"),
        ("PATCH", f"/repos/{REPO}/issues/comments/{first['comment']['id']}"),
    ]
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in github.requests)


@pytest.mark.slow
def test_post_finds_its_comment_on_a_later_page(project_copy, github):
    for i in range(230):
        github.add(f"comment {i}")
    mine = github.add(MARKER + "\nan old report")
    github.add("a reply after it")
    result = json.loads(ok(sail(project_copy, "report", "--post", **env_for(github))).stdout)
    assert result["comment"]["action"] == "updated" and result["comment"]["id"] == mine["id"]
    assert [r["query"].get("page", ["1"])[0] for r in github.requests if r["method"] == "GET"] == [
        "1",
        "2",
        "3",
    ]
    assert len(github.comments) == 232 and "gate PASSED" in mine["body"]


@pytest.mark.slow
def test_forbidden_post_falls_back_to_the_job_summary(project_copy, github, tmp_path):
    github.fail["POST"] = (403, "Resource not accessible by integration")
    summary = tmp_path / "summary.md"
    result = sail(
        project_copy, "report", "--post", **env_for(github, GITHUB_STEP_SUMMARY=str(summary))
    )
    ok(result)
    assert json.loads(result.stdout)["comment"] == {
        "action": "refused",
        "fallback": "the job summary",
    }
    [warning] = result.stderr.strip().splitlines()
    assert warning.startswith("sail report: warning: the pull-request comment was refused")
    assert (
        "403: Resource not accessible by integration" in warning
        and "the report is in the job summary" in warning
    )
    assert summary.read_text().startswith(MARKER) and not github.comments


@pytest.mark.slow
@pytest.mark.parametrize("status", [500, 502])
def test_server_errors_are_clear_and_never_show_the_token(project_copy, github, status):
    github.fail["GET"] = (status, f"upstream broke while checking {TOKEN}")
    result = sail(project_copy, "report", "--post", **env_for(github))
    last = one_line_error(result, f"answered {status}: upstream broke while checking ***")
    assert (
        TOKEN not in result.stdout + result.stderr
        and TOKEN not in (project_copy / "reports" / "report.md").read_text()
    )
    assert last.count("\n") == 0


@pytest.mark.slow
def test_unreachable_api_is_a_clear_error(project_copy):
    env = {
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": REPO,
        "SAIL_PR_NUMBER": "7",
        "GITHUB_API_URL": f"http://127.0.0.1:{free_port()}",
    }
    result = sail(project_copy, "report", "--post", **env)
    one_line_error(result, "GitHub API at http://127.0.0.1:")
    assert "is unreachable" in result.stderr and TOKEN not in result.stdout + result.stderr


@pytest.mark.slow
def test_pull_request_number_from_the_event_file_or_jenkins(project_copy, github, tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"action": "synchronize", "pull_request": {"number": PR}}))
    env = env_for(github, SAIL_PR_NUMBER="", GITHUB_EVENT_PATH=str(event))
    assert (
        json.loads(ok(sail(project_copy, "report", "--post", **env)).stdout)["comment"]["action"]
        == "created"
    )
    env = env_for(github, SAIL_PR_NUMBER="", CHANGE_ID=str(PR))
    assert (
        json.loads(ok(sail(project_copy, "report", "--post", **env)).stdout)["comment"]["action"]
        == "updated"
    )
    assert len(github.comments) == 1
    event.write_text(json.dumps({"ref": "refs/heads/main"}))
    one_line_error(
        sail(
            project_copy,
            "report",
            "--post",
            **env_for(github, SAIL_PR_NUMBER="", GITHUB_EVENT_PATH=str(event)),
        ),
        "is not a pull_request event: set SAIL_PR_NUMBER",
    )


@pytest.mark.parametrize(
    "env,text",
    [
        ({"GITHUB_TOKEN": ""}, "GITHUB_TOKEN is not set"),
        ({"GITHUB_REPOSITORY": "churn"}, "GITHUB_REPOSITORY must be owner/name, got 'churn'"),
        (
            {"SAIL_PR_NUMBER": "", "GITHUB_EVENT_PATH": "", "CHANGE_ID": ""},
            "no pull request number: set SAIL_PR_NUMBER",
        ),
        ({"SAIL_PR_NUMBER": "7abc"}, "SAIL_PR_NUMBER is not a pull request number: '7abc'"),
        (
            {"SAIL_PR_NUMBER": "", "GITHUB_EVENT_PATH": "/nonexistent/event.json"},
            "cannot read the GitHub event file",
        ),
    ],
)
@pytest.mark.slow
def test_post_refuses_an_incomplete_environment(project_copy, github, env, text):
    result = sail(project_copy, "report", "--post", **env_for(github, **env))
    one_line_error(result, text)
    assert not github.requests and TOKEN not in result.stderr


@pytest.mark.slow
def test_report_and_comment_show_intervals_slices_and_the_holdout(regression_copy, github):
    project = regression_copy
    ok(sail(project, "promote"))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["gate"]["slices"]["min_rows"] = 45  # sex=2 has 41 test rows: too small to judge
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ok(sail(project, "gate", "--no-register"))
    gate = json.loads((project / "reports" / "gate.json").read_text())
    [big] = [s for s in gate["slices"] if s["judged"]]
    low, high = big["intervals"]["r2"]["candidate"]
    ok(sail(project, "report", "--post", **env_for(github)))
    [comment] = github.comments
    for text in (comment["body"], (project / "reports" / "report.md").read_text()):
        assert (
            "| metric | candidate (95% CI) | champion v1 (95% CI) | Δ vs champion (95% CI) |"
            in text
        )
        low_all, high_all = gate["intervals"]["r2"]["candidate"]
        assert (
            f"| **r2** (primary) | {gate['metrics']['r2']:.4f} [{low_all:.4f}, {high_all:.4f}] |"
            in text
        )
        assert "### Slices (r2)" in text
        assert (
            f"| sex={big['value']} | {big['rows']} | "
            f"{big['candidate']['r2']:.4f} [{low:.4f}, {high:.4f}] |" in text
        )
        assert (
            "| sex=2 | 41 | too small to judge: 41 rows, fewer than gate.slices.min_rows = 45 "
            "| – | – |" in text
        )
        assert "### Champion v1's signed holdout" in text and "(confidence rule)" in text
    assert "Model card: `reports/model_card.md`" in comment["body"]
    card = (project / "reports" / "model_card.md").read_text()
    assert "| sex=2 | 41 | too small to judge" in card and "parent champion: v1" in card


# --- the template and its charts ---------------------------------------------------------------


@pytest.fixture(scope="module")
def mermaid():
    """Mermaid's own parser, in headless Chromium."""
    from browser import MermaidParser, chromium, mermaid_script

    script = mermaid_script()
    with chromium() as driver:
        yield MermaidParser(driver, script)


def mermaid_blocks(text: str) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_the_comment_draws_the_roc_curve_the_champions_and_importance_as_mermaid_that_parses(
    project_copy, github, mermaid
):
    ok(sail(project_copy, "promote", "--expect-champion", "none", "--approver", "alice"))
    ok(sail(project_copy, "gate", "--no-register"))
    ok(sail(project_copy, "report", "--post", **env_for(github)))
    [comment] = github.comments
    blocks = mermaid_blocks(comment["body"])
    assert [b.splitlines()[1].split('"')[1] for b in blocks] == [
        "ROC curve (AUC {:.4f}), positive class".format(
            json.loads((project_copy / "reports" / "gate.json").read_text())["metrics"]["roc_auc"]
        ),
        "roc_auc of the champions, then this candidate",
        "Permutation importance: loss of roc_auc when a column is shuffled",
    ]
    assert 'x-axis ["v1", "candidate"]' in blocks[1]
    for block in blocks:
        assert mermaid.error(block) is None, block
    assert mermaid_blocks((project_copy / "reports" / "report.md").read_text()) == blocks
    # the parser can refuse: a chart with a broken axis is an error, not a silent pass
    assert mermaid.error(blocks[0].replace("0 --> 1", "0 -> 1", 1)) is not None


@pytest.mark.slow
def test_residuals_by_bucket_parse_and_match_the_test_split(regression_copy, mermaid):
    import numpy as np

    ok(sail(regression_copy, "report", GITHUB_STEP_SUMMARY=""))
    [block, importance] = mermaid_blocks((regression_copy / "reports" / "report.md").read_text())
    assert mermaid.error(block) is None, block
    assert mermaid.error(importance) is None, importance
    evaluation = json.loads((regression_copy / "reports" / "evaluation.json").read_text())
    drawn = evaluation["candidates"][evaluation["best"]]["charts"]["residuals"]
    assert sum(drawn["rows"]) == evaluation["test_rows"] and len(drawn["rows"]) == 10
    bars = re.search(r"bar \[(.*)\]", block).group(1)
    assert np.allclose([float(v) for v in bars.split(", ")], drawn["mean_residual"], rtol=1e-3)


@pytest.mark.slow
def test_a_project_template_extends_the_report_and_a_broken_one_is_one_line(project_copy):
    templates = project_copy / "templates"
    templates.mkdir()
    (templates / "report.md.j2").write_text(
        '{% extends "sail/report.md.j2" %}\n'
        "{% block plots %}\n### Owner\n\nOn call: {{ gate.candidate | upper }}, "
        "{{ gate.metrics.roc_auc | num }}\n{% endblock %}\n"
    )
    ok(sail(project_copy, "report", GITHUB_STEP_SUMMARY=""))
    text = (project_copy / "reports" / "report.md").read_text()
    gate = json.loads((project_copy / "reports" / "gate.json").read_text())
    assert f"On call: {gate['candidate'].upper()}, {gate['metrics']['roc_auc']:.4f}" in text
    assert "### Plots" not in text and "### Gate rules" in text and text.startswith(MARKER)

    (templates / "report.md.j2").write_text("{{ marker }}\n\n{{ gate.no_such_key }}\n")
    last = one_line_error(
        sail(project_copy, "report"), "templates/report.md.j2 line 3 cannot be rendered"
    )
    assert "no_such_key" in last
    (templates / "report.md.j2").write_text("{% block plots %}\n")
    one_line_error(sail(project_copy, "report"), "templates/report.md.j2 line")


def test_charts_of_multiclass_and_odd_labels_parse_and_degenerate_data_draws_nothing(mermaid):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from sail_pipelines.evaluation import charts

    features, labels = load_iris(return_X_y=True, as_frame=True)
    names = load_iris().target_names[labels]
    model = LogisticRegression(max_iter=500).fit(features, names)
    roc = charts.data_roc(names, model.predict_proba(features), list(model.classes_))
    assert roc["average"] == "micro-average, one-vs-rest" and roc["tpr"][-1] == 1.0
    [block] = mermaid_blocks(charts.mermaid_roc(roc, 0.99))
    assert mermaid.error(block) is None, block
    odd = [{"label": 'v1 "old"', "value": 0.5}, {"label": "candidate\nnew", "value": 0.5}]
    [block] = mermaid_blocks(charts.mermaid_history('f1 "macro"', odd))
    assert mermaid.error(block) is None, block
    assert charts.data_roc(["a"] * 5, [[1.0, 0.0]] * 5, ["a", "b"]) is None  # one class: no curve
    assert charts.data_residuals([1.0, 2.0], [1.0, 2.0]) is None  # fewer rows than buckets
    assert charts.mermaid_history("r2", [{"label": "candidate", "value": 0.4}]) is None
