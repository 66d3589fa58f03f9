"""The try-it page (`/`) and the docs (`/docs`) in a real browser (headless Chromium through
chromedriver) against `sail serve`: the form predicts what /predict predicts, a refused value is
shown next to its field, a CSV batch comes back as a table and a CSV download, nothing is
fetched from outside the server, and the Content-Security-Policy holds with nothing blocked.
Without chromium and chromedriver the tests skip, except under CI (tests/ci_rules.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import requests

import try_bundle
from browser import chromium
from sail_pipelines.inference.page import CSP
from sail_pipelines.inference.smoke import local_server

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
def browser(
    server, regression
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
    operation.find_element("css selector", "button").click()
    body = operation.find_element("css selector", ".answer-body")
    answer = _wait(browser, lambda b: body.text.startswith("200") and body.text)
    assert '"predictions"' in answer


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
    """Run last in this module: it reads the logs the tests above left."""
    for path in ("/", "/docs", "/static/try.js", "/static/page.css"):
        assert requests.get(server + path, timeout=10).headers["Content-Security-Policy"] == CSP
    _open(browser, server)
    assert not _outside(browser, server)
    console = [e["message"] for e in browser.get_log("browser")]
    assert not [m for m in console if "Content Security Policy" in m or "Refused to" in m], console
    assert not [m for m in console if "Uncaught" in m], console
