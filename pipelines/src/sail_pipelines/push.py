"""`sail push`: send the accepted bundle and the data it was trained on to the DVC remote.

Only a bundle the gate passed is pushed: the gate report and the bundle on disk must agree.
SAIL_DVC_REMOTE_URL points the push at team storage without touching the committed config.
"""

from __future__ import annotations

from typing import Any

from .bundle import bundle_id
from .config import Params, ProjectPaths, Settings
from .dvc import dvc
from .errors import SailError
from .files import read_json

TEAM_REMOTE = "sail-env"


def run(paths: ProjectPaths, params: Params, settings: Settings) -> dict[str, Any]:
    if not paths.gate_report.is_file():
        raise SailError("nothing to push: no reports/gate.json, run `sail gate` first")
    gate = read_json(paths.gate_report)
    if gate.get("verdict") != "pass":
        raise SailError("nothing to push: the last gate verdict was 'fail'")
    if bundle_id(paths.accepted_dir) != gate.get("accepted_bundle_id"):
        raise SailError("models/accepted does not match the last gate verdict: run `sail gate` again")
    remote: list[str] = []
    if settings.dvc_remote_url:
        dvc(paths.root, "remote", "add", "--local", "--force", TEAM_REMOTE, settings.dvc_remote_url)
        remote = ["--remote", TEAM_REMOTE]
    accepted = str(paths.accepted_dir.relative_to(paths.root))
    dvc(paths.root, "add", "--quiet", accepted)
    targets = [f"{params.raw_data}.dvc", f"{accepted}.dvc"]
    missing = [t for t in targets if not (paths.root / t).is_file()]
    if missing:
        raise SailError(f"not tracked by DVC: {', '.join(missing)} (run `dvc add` on the data)")
    dvc(paths.root, "push", "--quiet", *remote, *targets)
    return {"pushed": targets, "bundle_id": gate["accepted_bundle_id"], "remote": TEAM_REMOTE if remote else "default"}
