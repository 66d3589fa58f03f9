"""`sail smoke --url`: the accepted bundle's holdout rows checked against a server that is already
running (a deployed one), instead of a server the smoke test starts itself. It passes on a server
of the accepted bundle, and fails in one line on a server of another model."""

from __future__ import annotations

import json

import pytest

import try_bundle
from conftest import TEST_VERIFY_KEY, ok, sail
from sail_pipelines.inference.smoke import local_server
from sail_pipelines.integrity import signing


@pytest.fixture(scope="module")
def servers(pipeline_project, tmp_path_factory):
    """The accepted bundle's server, and a server of another model (try_bundle's)."""
    other = try_bundle.build(tmp_path_factory.mktemp("other") / "bundle")
    accepted = pipeline_project / "models" / "accepted"
    with (
        local_server(accepted, signing.public_key(TEST_VERIFY_KEY, "test")) as url,
        local_server(other, try_bundle.KEY) as other_url,
    ):
        yield url, other_url


def test_smoke_url_checks_the_running_server_without_starting_one(pipeline_project, servers):
    url, _ = servers
    holdout = json.loads((pipeline_project / "models" / "accepted" / "holdout.json").read_text())
    result = json.loads(ok(sail(pipeline_project, "smoke", "--url", url + "/")).stdout)
    assert result["rows"] == len(holdout["records"]) and result["matched"] is True
    assert 400 <= result["bad_input_status"] < 500
    assert "url" not in result  # started nothing: the server checked is the one named


def test_smoke_url_fails_on_a_server_of_another_model(pipeline_project, servers):
    _, other_url = servers
    result = sail(pipeline_project, "smoke", "--url", other_url)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("sail smoke: error: smoke test: /predict answered 422: "), line
