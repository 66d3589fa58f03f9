"""One pull-request comment kept up to date through the GitHub REST API.

The comment is found again by a hidden marker, so every run of a pull request edits the same
comment instead of piling up new ones. Everything comes from the CI environment, and the API
base from GITHUB_API_URL (GitHub Enterprise, or a local server in the tests). The token is
only ever sent in the Authorization header: no message this module writes contains it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from sail_pipelines.errors import SailError

DEFAULT_API = "https://api.github.com"
PAGE_SIZE = 100
TIMEOUT = 20


class CommentForbidden(SailError):
    """The token may not write comments (a fork's read-only token): the caller can fall back."""


@dataclass(frozen=True)
class PullRequest:
    api_url: str
    repository: str  # owner/name
    number: int
    token: str = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "PullRequest":
        token = env.get("GITHUB_TOKEN")
        if not token:
            raise SailError(
                "GITHUB_TOKEN is not set: --post needs a token that may comment on pull requests"
            )
        repository = env.get("GITHUB_REPOSITORY", "")
        if repository.count("/") != 1 or not all(repository.split("/")):
            raise SailError(f"GITHUB_REPOSITORY must be owner/name, got {repository!r}")
        return cls(
            env.get("GITHUB_API_URL") or DEFAULT_API, repository, pull_request_number(env), token
        )


def pull_request_number(env: Mapping[str, str]) -> int:
    """SAIL_PR_NUMBER, else the GitHub event's pull_request.number, else Jenkins' CHANGE_ID."""
    if env.get("SAIL_PR_NUMBER"):
        text, source = env["SAIL_PR_NUMBER"], "SAIL_PR_NUMBER"
    elif env.get("GITHUB_EVENT_PATH"):
        source = f"GITHUB_EVENT_PATH ({env['GITHUB_EVENT_PATH']})"
        try:
            event = json.loads(Path(env["GITHUB_EVENT_PATH"]).read_text())
        except (OSError, ValueError) as exc:
            raise SailError(
                f"cannot read the GitHub event file {env['GITHUB_EVENT_PATH']}: {exc}"
            ) from exc
        number = (
            (event.get("pull_request") or {}).get("number") if isinstance(event, dict) else None
        )
        if number is None:
            raise SailError(f"{source} is not a pull_request event: set SAIL_PR_NUMBER")
        text = str(number)
    elif env.get("CHANGE_ID"):
        text, source = env["CHANGE_ID"], "CHANGE_ID"
    else:
        raise SailError(
            "no pull request number: set SAIL_PR_NUMBER (or run in a GitHub pull_request event, "
            "or a Jenkins change build)"
        )
    if not text.isdigit() or int(text) < 1:
        raise SailError(f"{source} is not a pull request number: {text!r}")
    return int(text)


class Api:
    """The three calls we need, with errors turned into one line that never holds the token."""

    def __init__(self, pr: PullRequest):
        import requests

        self.pr = pr
        self.session = requests.Session()
        self.session.headers.update(
            {
                "Authorization": f"Bearer {pr.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            }
        )

    def _clean(self, text: str) -> str:
        return text.replace(self.pr.token, "***")

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        import requests

        try:
            response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise SailError(
                self._clean(
                    f"GitHub API at {self.pr.api_url} is unreachable ({method} {url}): "
                    f"{type(exc).__name__}"
                )
            ) from exc
        if response.ok:
            return response
        try:
            message = str(response.json().get("message", ""))[:200]
        except ValueError:
            message = response.text.strip()[:200]
        text = self._clean(
            f"GitHub API {method} {url} answered {response.status_code}: "
            f"{message or response.reason}"
        )
        if response.status_code == 403:
            raise CommentForbidden(text)
        raise SailError(text)

    def comments(self) -> list[dict[str, Any]]:
        """Every issue comment of the pull request, following the Link: rel="next" pages."""
        pr = self.pr
        comments = f"{pr.api_url.rstrip('/')}/repos/{pr.repository}/issues/{pr.number}/comments"
        url: str | None = f"{comments}?per_page={PAGE_SIZE}"
        found = []
        while url:
            response = self.call("GET", url)
            page = response.json()
            if not isinstance(page, list):
                raise SailError(f"GitHub API GET {url} did not answer a list of comments")
            found += page
            url = response.links.get("next", {}).get("url")
        return found


def upsert_comment(pr: PullRequest, marker: str, body: str) -> dict[str, Any]:
    """Edit the pull request's comment that carries `marker`, or create it."""
    if marker not in body:
        raise ValueError("the comment body must carry its marker, or the next run cannot find it")
    api = Api(pr)
    base = f"{pr.api_url.rstrip('/')}/repos/{pr.repository}"
    mine = [c for c in api.comments() if marker in (c.get("body") or "")]
    if mine:
        comment = api.call(
            "PATCH", f"{base}/issues/comments/{mine[0]['id']}", json={"body": body}
        ).json()
        action = "updated"
    else:
        comment = api.call(
            "POST", f"{base}/issues/{pr.number}/comments", json={"body": body}
        ).json()
        action = "created"
    return {"action": action, "id": comment.get("id"), "url": comment.get("html_url")}
