"""Live evidence: what a candidate image did on real traffic, for `sail promote` to show and
(with `promotion.require_live_evidence`) to require.

`sail canary analyze` and `sail shadow report` each leave `reports/live/<kind>-<environment>.json`
(and a Markdown twin): the candidate and stable images (ref and id), a decision (pass, hold or
fail), one line for humans, when, and on how many requests. A promotion takes the newest one
whose candidate is the version's packaged image (model-version tag `sail.image`):

- by image id, when that image is on this host (the id is the image's config digest: the same
  bits whatever the tag, and the same after a push and a pull);
- else by ref (the tag, bare or under the registry), as written by the deploy that ran it.

Evidence written before the version was registered is stale: it cannot be about that version.
The audit record names the file, its sha256 and its decision, so a file edited afterwards no
longer matches the record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from sail_pipelines.clients import containers
from sail_pipelines.config import ProjectPaths, Settings
from sail_pipelines.delivery import release
from sail_pipelines.errors import SailError
from sail_pipelines.files import write_atomic

KINDS = ("canary", "shadow")
DECISIONS = ("pass", "hold", "fail")
LIVE_DIR = "live"
SUMMARY_FILE = "evidence.json"  # `sail evidence`'s answer, for the Jenkins input message


def live_dir(paths: ProjectPaths) -> Path:
    return paths.reports / LIVE_DIR


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write(reports: Path, record: Mapping[str, Any], markdown: str) -> Path:
    """`<kind>-<environment>.json` and `.md` under reports/live/, each replaced atomically."""
    if record["kind"] not in KINDS or record["decision"] not in DECISIONS:
        raise ValueError(f"not live evidence: {record['kind']!r}, {record['decision']!r}")
    target = reports / LIVE_DIR / f"{record['kind']}-{record['environment']}.json"
    text = json.dumps(dict(record), indent=2, sort_keys=True, default=str) + "\n"
    write_atomic(target.with_suffix(".md"), lambda tmp: tmp.write_text(markdown))
    write_atomic(target, lambda tmp: tmp.write_text(text))
    return target


@dataclass(frozen=True)
class Evidence:
    path: Path
    sha256: str
    record: dict[str, Any]
    created: datetime

    @property
    def decision(self) -> str:
        return str(self.record["decision"])

    def line(self, root: Path) -> str:
        r = self.record
        return (
            f"{r.get('kind')} in {r.get('environment')}: {r['decision']} ({r.get('summary')}; "
            f"{r.get('requests')} requests, {r['created']}) [{self.where(root)}]"
        )

    def where(self, root: Path) -> str:
        inside = self.path.is_relative_to(root)
        return str(self.path.relative_to(root)) if inside else str(self.path)

    def audit(self, root: Path) -> dict[str, Any]:
        return {"report": self.where(root), "sha256": self.sha256, "decision": self.decision}


def read_all(paths: ProjectPaths) -> list[Evidence]:
    """Every well-formed evidence file; anything else in reports/live/ names no candidate."""
    found = []
    for path in sorted(live_dir(paths).glob("*.json")):
        data = path.read_bytes()
        try:
            record = json.loads(data)
            candidate = record["candidate"]
            ok = record["decision"] in DECISIONS and isinstance(candidate, dict)
            created = _when(record["created"])
        except (ValueError, KeyError, TypeError):
            continue
        if ok and created is not None:
            found.append(Evidence(path, hashlib.sha256(data).hexdigest(), record, created))
    return found


def _when(text: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def latest(paths: ProjectPaths, image_id: str | None, refs: tuple[str, ...]) -> Evidence | None:
    """The newest evidence whose candidate is this image: by id when it is known here, else by
    ref."""

    def matches(e: Evidence) -> bool:
        candidate = e.record["candidate"]
        if image_id:
            return candidate.get("image_id") == image_id
        return bool(refs) and candidate.get("image") in refs

    found = [e for e in read_all(paths) if matches(e)]
    return max(found, key=lambda e: e.created, default=None)


def candidate_image(settings: Settings, ref: str | None) -> tuple[str | None, tuple[str, ...]]:
    """(image id on this host or None, the refs that name it) for a version's `sail.image`."""
    if not ref:
        return None, ()
    refs = (ref, release.in_registry(ref, settings.registry)) if settings.registry else (ref,)
    try:
        docker = containers.docker_client()
    except SailError:
        return None, refs
    for name in refs:
        found = release.image_id(docker, name)
        if found:
            return found, refs
    return None, refs


def for_version(paths: ProjectPaths, settings: Settings, version: Any) -> Evidence | None:
    image_id, refs = candidate_image(settings, version.tags.get(release.IMAGE_TAG))
    return latest(paths, image_id, refs)


def require(evidence: Evidence | None, version: Any, root: Path) -> None:
    """promotion.require_live_evidence: a passing report on the version's image, written after
    the version was registered; else one line, and nothing changes."""
    v = f"v{version.version}"
    setting = "promotion.require_live_evidence is true; nothing was changed"
    if not version.tags.get(release.IMAGE_TAG):
        raise SailError(
            f"{v} has no packaged image ({release.IMAGE_TAG}), so no live evidence can name it: "
            f"{setting}"
        )
    if evidence is None:
        raise SailError(
            f"no live evidence for {v}'s image in reports/live/ (run `sail canary analyze` or "
            f"`sail shadow report` on it): {setting}"
        )
    where = evidence.where(root)
    # to the second, as the files say their time
    registered = datetime.fromtimestamp(version.creation_timestamp // 1000, timezone.utc)
    if evidence.created < registered:
        raise SailError(
            f"{where} ({evidence.record['created']}) is older than {v} "
            f"({registered.isoformat(timespec='seconds')}): stale evidence; {setting}"
        )
    if evidence.decision != "pass":
        raise SailError(
            f"{where} says {evidence.decision} for {v}: {evidence.record.get('summary')}; "
            f"a pass is needed: {setting}"
        )


def markdown(evidence: Evidence | None, version: str, root: Path) -> str:
    if evidence is None:
        return f"### Live evidence\n\nNo canary or shadow report for v{version}'s image.\n"
    r = evidence.record
    return (
        f"### Live evidence for v{version}: {r['decision']}\n\n"
        f"{r.get('kind')} in {r.get('environment')}, {r.get('requests')} requests, "
        f"{r['created']}: {r.get('summary')}\n\n`{evidence.where(root)}` sha256 "
        f"`{evidence.sha256}`\n"
    )
