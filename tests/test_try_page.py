"""The try-it page (`/`) and the docs (`/docs`) in a real browser (headless Chromium through
chromedriver) against `sail serve`: the form predicts what /predict predicts, a refused value is
shown next to its field, the answer's contribution bars and outlier flag are shown, a CSV batch
comes back as a table and a CSV download, nothing is
fetched from outside the server, and the Content-Security-Policy holds with nothing blocked. The
policy itself is read directive by directive, and a probe page served under it shows Chromium
blocking an inline script and a fetch to another origin (a weakened policy, kept as a case, does
not). Without chromium and chromedriver the tests skip, except under CI (tests/ci_rules.py)."""

from __future__ import annotations

import contextlib
import csv
import json
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import requests

import try_bundle
from browser import chromium
from sail_pipelines.inference.page import CSP
from sail_pipelines.inference.smoke import local_server
from servers import QuietHandler, serving

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "build" / "artifacts"
WAIT = 15

# One worker, in file order: the browser's logs carry from one test to the next.
pytestmark = pytest.mark.xdist_group("try_page")


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return try_bundle.build(tmp_path_factory.mktemp("page") / "bundle")


@pytest.fixture(scope="module")
def server(bundle_dir):
    with local_server(bundle_dir, try_bundle.KEY) as url:
        yield url


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    """A regression model's server, and its bundle."""
    bundle_dir = try_bundle.build(
        tmp_path_factory.mktemp("regression") / "bundle", task="regression"
    )
    with local_server(bundle_dir, try_bundle.KEY) as url:
        yield url, bundle_dir


@pytest.fixture(scope="module")
def unexplained(tmp_path_factory):
    """A server of a bundle without the explainer's background (trained before explanations)."""
    bundle_dir = try_bundle.build(tmp_path_factory.mktemp("old") / "bundle", background=False)
    with local_server(bundle_dir, try_bundle.KEY) as url:
        yield url


@pytest.fixture(scope="module")
def browser(
    server, regression, unexplained
):  # quits before the servers stop: no keep-alive connection to wait for
    with chromium() as driver:
        yield driver


def _wait(browser, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT).until(condition)


def _by_id(browser, ident):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, ident)


def _holdout(bundle_dir) -> list[dict]:
    return json.loads((bundle_dir / "holdout.json").read_text())["records"]


def _requested(browser) -> list[str]:
    """The URLs the browser requested since last asked."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _foreign(urls: list[str], server: str) -> list[str]:
    return [u for u in urls if not u.startswith((server + "/", "data:", "blob:", "about:blank"))]


def _outside(browser, server: str) -> list[str]:
    """The URLs the browser requested, since last asked, from anywhere but `server`."""
    urls = _requested(browser)
    assert urls, "no request in the browser's performance log"
    return _foreign(urls, server)


def _open(browser, server):
    browser.get(server + "/")
    _wait(browser, lambda b: b.execute_script("return document.body.dataset.ready") == "true")


def test_form_predicts_what_the_api_predicts(browser, server, bundle_dir):
    _open(browser, server)
    row = _holdout(bundle_dir)[0]
    # pre-filled with the holdout row
    assert _by_id(browser, "f-0").get_attribute("value") == str(row["x1"])
    _by_id(browser, "predict").click()
    shown = _wait(browser, lambda b: b.find_elements("id", "prediction"))[0].text
    api = requests.post(f"{server}/predict", json=row, timeout=10).json()
    assert shown == str(api["predictions"][0])
    bars = _by_id(browser, "probabilities").find_elements("css selector", ".fill")
    assert len(bars) == 2
    assert "churn" in _by_id(browser, "title").text
    about = _by_id(browser, "model").text
    assert "7" in about and "5ca1ab1e" in about and "runs:/" in about and "2026-11-30" in about
    assert "roc_auc" in _by_id(browser, "metrics").text


def test_the_answer_comes_with_contribution_bars_largest_first(browser, server, bundle_dir):
    _open(browser, server)
    row = _holdout(bundle_dir)[0]
    _by_id(browser, "predict").click()
    bars = _wait(browser, lambda b: b.find_elements("css selector", "#contributions .bar"))
    api = requests.post(f"{server}/predict?explain=true", json=row, timeout=10).json()
    contributions = api["explanations"][0]["contributions"]
    ranked = sorted(contributions, key=lambda name: -abs(contributions[name]))
    columns = [e.text for e in browser.find_elements("css selector", "#contributions .column")]
    assert columns == [f"{name} = {row[name]}" for name in ranked]  # largest first, with values
    signed = [e.text for e in browser.find_elements("css selector", "#contributions .signed")]
    assert [s.startswith("-") for s in signed] == [contributions[n] < 0 for n in ranked]
    fills = [bar.find_element("css selector", ".fill") for bar in bars]
    assert [f.get_attribute("class").endswith("negative") for f in fills] == [
        contributions[n] < 0 for n in ranked
    ]
    widths = [f.size["width"] for f in fills]
    assert widths == sorted(widths, reverse=True) and widths[0] > 0
    assert "log-odds of yes" in _by_id(browser, "explained").text
    if "outlier" in api:  # a server that scores outliers: the page shows its flag
        assert _by_id(browser, "outlier").text.startswith(
            "Outlier" if api["outlier"] in (True, [True]) else "Not an outlier"
        )


def test_a_model_without_explanations_still_predicts_and_is_asked_once(browser, unexplained):
    _open(browser, unexplained)
    _requested(browser)  # what came before
    for _ in range(2):
        _by_id(browser, "predict").click()
        note = _wait(browser, lambda b: b.find_elements("id", "explained"))[0]
        assert note.text.startswith("No explanation: this bundle carries no explainer background")
        assert _by_id(browser, "prediction").text in ("yes", "no")
        browser.execute_script("document.getElementById('result').textContent = ''")
    asked = [u for u in _requested(browser) if "/predict" in u]
    assert [u.endswith("?explain=true") for u in asked] == [True, False, False]


def test_an_outlier_flag_in_the_answer_is_shown_with_its_score(browser, server):
    _open(browser, server)
    browser.execute_script(
        "showResult({predictions: ['yes'], probabilities: [{no: 0.2, yes: 0.8}],"
        " outlier: true, outlier_score: 0.734})"
    )
    flag = _wait(browser, lambda b: b.find_elements("id", "outlier"))[0]
    assert flag.text == "Outlier: this record is unlike the training data (outlier score 0.734)"
    assert "error" in flag.get_attribute("class")


def test_refused_value_is_shown_next_to_its_field(browser, server):
    _open(browser, server)
    field = _by_id(browser, "f-0")  # x1, a number
    field.clear()
    field.send_keys("high")
    _by_id(browser, "predict").click()
    message = _wait(browser, lambda b: _by_id(b, "f-0-error").text)
    assert "x1" in message and "number" in message
    assert not _by_id(browser, "form-error").text
    assert "invalid" in _by_id(browser, "f-0-row").get_attribute("class")


def test_csv_batch_comes_back_as_a_table_and_a_download(browser, server, bundle_dir, tmp_path):
    rows = _holdout(bundle_dir)[:6]
    upload = tmp_path / "batch.csv"
    with upload.open("w", newline="") as out:
        # the target column comes along, as in an export of the training data
        writer = csv.DictWriter(out, fieldnames=[*rows[0], "label"])
        writer.writeheader()
        writer.writerows({**r, "label": "yes"} for r in rows)
    _open(browser, server)
    _by_id(browser, "csv").send_keys(str(upload))
    table_rows = _wait(browser, lambda b: b.find_elements("css selector", "#batch tbody tr"))
    assert len(table_rows) == len(rows)
    api = requests.post(f"{server}/predict", json=rows, timeout=10).json()["predictions"]
    headers = [th.text for th in browser.find_elements("css selector", "#batch thead th")]
    column = headers.index("prediction")
    assert [tr.find_elements("css selector", "td")[column].text for tr in table_rows] == [
        str(p) for p in api
    ]
    assert "label" in headers  # a whole row: the target goes along, and the server drops it
    assert "not sent" not in _by_id(browser, "batch-status").text
    link = _by_id(browser, "download")
    assert link.is_displayed() and link.get_attribute("href").startswith("blob:")
    _by_id(browser, "predict").click()  # the holdout row's bars too, for the screenshot
    _wait(browser, lambda b: b.find_elements("id", "probabilities"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "try-it-page.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")


def test_too_many_rows_are_refused_in_the_page(browser, server, bundle_dir, tmp_path):
    document = requests.get(f"{server}/openapi.json", timeout=10).json()
    limit = document["info"]["x-sail"]["max_records"]
    upload = tmp_path / "big.csv"
    upload.write_text("x1,x2,n,color\n" + "0.1,0.2,1,a\n" * (limit + 1))
    _open(browser, server)
    _by_id(browser, "csv").send_keys(str(upload))
    status = _wait(browser, lambda b: _by_id(b, "batch-status").text)
    assert f"at most {limit}" in status


def test_docs_page_sends_a_request(browser, server):
    browser.get(server + "/docs")
    operation = _wait(browser, lambda b: b.find_elements("id", "op-post--predict"))[0]
    operation.find_element("tag name", "summary").click()
    assert "explanation" in operation.text  # the explain parameter, described
    operation.find_element("css selector", "button").click()
    body = operation.find_element("css selector", ".answer-body")
    answer = _wait(browser, lambda b: body.text.startswith("200") and body.text)
    assert '"predictions"' in answer and '"explanations"' not in answer
    operation.find_element("css selector", "input[aria-label=explain]").send_keys("true")
    operation.find_element("css selector", "button").click()
    answer = _wait(browser, lambda b: '"explanations"' in body.text and body.text)
    assert answer.startswith("200") and '"base_value"' in answer


def test_a_regression_value_comes_with_the_test_error(browser, server, regression):
    # what the tests above fetched (none when it runs alone), before another server's
    assert not _foreign(_requested(browser), server)
    url, bundle_dir = regression
    _open(browser, url)
    _by_id(browser, "predict").click()
    answer = _wait(browser, lambda b: b.find_elements("css selector", "#result .answer"))[0].text
    api = requests.post(f"{url}/predict", json=_holdout(bundle_dir)[0], timeout=10).json()
    assert not _outside(browser, url)
    assert str(api["predictions"][0]) in answer
    assert "± 0.420 (test rmse)" in answer


def test_nothing_outside_the_server_and_no_csp_violation(browser, server):
    """Run after the tests that use the page: it reads the logs they left (and before the probe
    below, which fills the console with refusals)."""
    for path in ("/", "/docs", "/static/try.js", "/static/page.css"):
        assert requests.get(server + path, timeout=10).headers["Content-Security-Policy"] == CSP
    _open(browser, server)
    assert not _outside(browser, server)
    console = [e["message"] for e in browser.get_log("browser")]
    assert not [m for m in console if "Content Security Policy" in m or "Refused to" in m], console
    assert not [m for m in console if "Uncaught" in m], console


# --- the policy itself ---------------------------------------------------------------------------

# Where a scheme alone (https:, data:) would let in any script, connection or plugin.
NO_SCHEME = ("default-src", "script-src", "connect-src", "object-src")


def _directives(policy: str) -> dict[str, list[str]]:
    return {
        name.lower(): sources
        for name, *sources in (part.split() for part in policy.split(";") if part.strip())
    }


def weaknesses(policy: str) -> list[str]:
    """What in a Content-Security-Policy lets in what the page must never run or reach."""
    directives = _directives(policy)
    found = []
    if directives.get("script-src") != ["'self'"]:
        found.append(f"script-src is {directives.get('script-src')}, not ['self']")
    for name, wanted in (("object-src", "'none'"), ("frame-ancestors", "'none'")):
        if directives.get(name) != [wanted]:
            found.append(f"{name} is {directives.get(name)}, not [{wanted}]")
    for name, sources in directives.items():
        for source in sources:
            if source.lower().startswith("'unsafe-"):
                found.append(f"{name} allows {source}")
            elif "*" in source:
                found.append(f"{name} has the wildcard {source}")
            elif name in NO_SCHEME and source.endswith(":"):
                found.append(f"{name} allows any {source} URL")
    return found


def _weakened(old: str, new: str) -> str:
    assert old in CSP
    return CSP.replace(old, new)


WEAKENED = {
    "unsafe-inline": _weakened("script-src 'self'", "script-src 'self' 'unsafe-inline'"),
    "unsafe-eval": _weakened("script-src 'self'", "script-src 'self' 'unsafe-eval'"),
    "wildcard connect": _weakened("connect-src 'self'", "connect-src *"),
    "wildcard host": _weakened("connect-src 'self'", "connect-src 'self' *.example.com"),
    "any https script": _weakened("script-src 'self'", "script-src 'self' https:"),
    "no script-src": _weakened("script-src 'self'; ", ""),
    "plugins": _weakened("object-src 'none'", "object-src 'self'"),
}


@pytest.mark.parametrize("case", ["served", *WEAKENED])
def test_the_policy_allows_no_inline_script_no_wildcard_and_no_unsafe_source(server, case):
    """Read the directives, not the constant: each weakened policy (every case but "served") is
    found."""
    served = requests.get(server + "/", timeout=10).headers["Content-Security-Policy"]
    policy = served if case == "served" else WEAKENED[case]
    found = weaknesses(policy)
    if case == "served":
        assert found == [], found
        assert _directives(served)["default-src"] == ["'self'"]
        assert _directives(served)["connect-src"] == ["'self'"]
    else:
        assert found, f"{case}: {policy}"


# --- Chromium under the policy: an inline script and a fetch elsewhere, both blocked -------------

PROBE_PAGE = """<!doctype html><html><head>
<script src="/probe.js"></script>
<script>window.probe.inline = true;</script>
</head><body></body></html>"""
PROBE_SCRIPT = """window.probe = {inline: false, fetch: null, violations: []};
document.addEventListener("securitypolicyviolation",
    (e) => window.probe.violations.push(e.effectiveDirective));
fetch("%s/stolen").then(() => { window.probe.fetch = "fetched"; },
                        () => { window.probe.fetch = "blocked"; });
"""


@contextlib.contextmanager
def _site(answer) -> Iterator[tuple[str, list[str]]]:
    """A server on a free loopback port: `answer(path)` -> (headers, body); the paths it was
    asked for."""
    asked: list[str] = []

    class Handler(QuietHandler):
        def do_GET(self):
            asked.append(self.path)
            self.reply(200, *answer(self.path))

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield url, asked


def _probe(browser, policy: str) -> tuple[dict, list[str]]:
    """What a page served under `policy` managed (window.probe), and what reached the other
    origin, which would answer any fetch (CORS open), so only the policy can block it."""
    with _site(lambda path: ({"Access-Control-Allow-Origin": "*"}, b"{}")) as (elsewhere, hits):

        def probe_site(path: str) -> tuple[dict, bytes]:
            if path == "/probe.js":
                return {"Content-Type": "text/javascript"}, (PROBE_SCRIPT % elsewhere).encode()
            return {"Content-Type": "text/html", "Content-Security-Policy": policy}, (
                PROBE_PAGE.encode()
            )

        with _site(probe_site) as (url, _):
            browser.get(url + "/probe")
            _wait(browser, lambda b: b.execute_script("return window.probe.fetch"))
            if not weaknesses(policy):  # both refusals reported
                _wait(
                    browser, lambda b: len(b.execute_script("return window.probe.violations")) > 1
                )
            return browser.execute_script("return window.probe"), list(hits)


# What Chromium blocks under each policy: the served one both; each weakened one lets its part in.
BLOCKED = {
    "served": {"inline script": True, "fetch elsewhere": True},
    "unsafe-inline": {"inline script": False, "fetch elsewhere": True},
    "wildcard connect": {"inline script": True, "fetch elsewhere": False},
}


@pytest.mark.parametrize("case", BLOCKED)
def test_chromium_blocks_an_inline_script_and_a_fetch_elsewhere(browser, server, case):
    policy = requests.get(server + "/", timeout=10).headers["Content-Security-Policy"]
    probe, reached = _probe(browser, policy if case == "served" else WEAKENED[case])
    blocked = {"inline script": not probe["inline"], "fetch elsewhere": not reached}
    assert blocked == BLOCKED[case], (probe, reached)
    assert probe["fetch"] == ("blocked" if blocked["fetch elsewhere"] else "fetched"), probe
    if case == "served":
        assert {"script-src-elem", "connect-src"} <= set(probe["violations"]), probe
