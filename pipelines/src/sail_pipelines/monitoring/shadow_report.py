"""The shadow report's files: `reports/live/shadow-<environment>.json` (what `sail promote`
reads as live evidence), `.md` beside it for people, and `.png` (the score differences and the
confusion between live and shadow, or shadow against live values). Each is written atomically.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sail_pipelines.config import Params, ProjectPaths
from sail_pipelines.delivery import bluegreen
from sail_pipelines.errors import SailError
from sail_pipelines.files import write_atomic, write_json
from sail_pipelines.monitoring import answers
from sail_pipelines.monitoring import shadow as compare

LIVE = Path("reports") / "live"


def build(
    paths: ProjectPaths, params: Params, state: dict[str, Any], stable: answers.Side
) -> dict[str, Any]:
    """The report's content from the live container's lines and the shadow's log."""
    slot, live = state["shadow"], state["live"]
    shadow = answers.read_log_file(Path(slot["log"]), "shadow")
    tolerance = params.promotion.shadow_tolerance
    paired = compare.pair(stable, shadow, params.task, tolerance)
    ids = {k[0] for k in paired.keys}
    labels = compare.labelled(paths, params, paired, stable, shadow)
    decision, summary = compare.decide(params, paired, labels)
    scores = paired.scores
    return {
        "kind": "shadow",
        "environment": state.get("environment") or "",
        "candidate": {"image": slot["image"], "image_id": slot["image_id"]},
        "stable": {"image": live["image"], "image_id": live["image_id"]},
        "decision": decision,
        "summary": summary,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "requests": paired.requests,
        "records": len(paired.keys),
        "agreement": round(float(paired.agree.mean()), 6) if paired.keys else None,
        "task": params.task,
        "thresholds": params.promotion.model_dump(),
        "confusion": compare.confusion(paired) if params.task == "classification" else None,
        "correlation": _correlation(paired) if params.task == "regression" else None,
        "score_differences": _summary(scores),
        "latency": {
            "stable": compare.latency(stable, ids),
            "shadow": compare.latency(shadow, ids),
        },
        "errors": {"stable": stable.errors, "shadow": shadow.errors},
        "unpaired": {
            "stable": len({k[0] for k in stable.predictions} - ids),
            "shadow": len({k[0] for k in shadow.predictions} - ids),
        },
        "disagreements": compare.disagreements(paired, stable),
        "live_metrics": labels,
        "_paired": paired,
    }


def _correlation(paired: compare.Paired) -> float | None:
    if len(paired.keys) < 2 or np.std(paired.stable) == 0 or np.std(paired.shadow) == 0:
        return None
    return round(float(np.corrcoef(paired.stable, paired.shadow)[0, 1]), 6)


def _summary(scores: np.ndarray | None) -> dict[str, float] | None:
    if scores is None or not np.isfinite(scores).any():
        return None
    finite = scores[np.isfinite(scores)]
    quantiles = np.percentile(finite, [1, 50, 99])
    return {
        "mean": round(float(finite.mean()), 6),
        "mean_abs": round(float(np.abs(finite).mean()), 6),
        "p01": round(float(quantiles[0]), 6),
        "p50": round(float(quantiles[1]), 6),
        "p99": round(float(quantiles[2]), 6),
    }


def picture(path: Path, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    paired: compare.Paired = report["_paired"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    scores = paired.scores
    if scores is not None and np.isfinite(scores).any():
        left.hist(scores[np.isfinite(scores)], bins=40, color="#4477aa", log=True)
    left.set_title("score difference (shadow - live), records (log)")
    left.set_xlabel("class probability" if report["task"] == "classification" else "value")
    if report["confusion"]:
        matrix = np.array(report["confusion"]["matrix"])
        classes = report["confusion"]["classes"]
        right.imshow(matrix, cmap="Blues")
        right.set_xticks(range(len(classes)), classes)
        right.set_yticks(range(len(classes)), classes)
        for (i, j), n in np.ndenumerate(matrix):
            dark = n > matrix.max() / 2
            right.text(j, i, str(n), ha="center", va="center", color="white" if dark else "black")
        right.set_xlabel("shadow")
        right.set_ylabel("live")
        right.set_title("live vs shadow labels")
    elif len(paired.keys):
        right.scatter(paired.stable, paired.shadow, s=4)
        right.set_xlabel("live")
        right.set_ylabel("shadow")
        right.set_title("shadow against live values")
    fig.suptitle(report["summary"], fontsize=9)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight"))
    plt.close(fig)


def markdown(report: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        return "–" if value is None else str(value)

    lines = [
        f"# Shadow report: {report['environment']}",
        "",
        f"**{report['decision']}**: {report['summary']}",
        "",
        f"- live: `{report['stable']['image']}` ({report['stable']['image_id'][:19]})",
        f"- shadow: `{report['candidate']['image']}` ({report['candidate']['image_id'][:19]})",
        f"- paired requests {report['requests']:,}, records {report['records']:,}; "
        f"unpaired live {report['unpaired']['stable']}, shadow {report['unpaired']['shadow']}",
        f"- errors (5xx) live {report['errors']['stable']}, shadow {report['errors']['shadow']}",
        "",
        "| | p50 ms | p99 ms |",
        "|---|---|---|",
    ]
    for who, name in (("stable", "live"), ("shadow", "shadow")):
        measured = report["latency"][who]
        lines.append(f"| {name} | {cell(measured['p50_ms'])} | {cell(measured['p99_ms'])} |")
    if report["score_differences"]:
        shown = ", ".join(f"{k} {v:+.4f}" for k, v in report["score_differences"].items())
        lines += ["", f"Score differences (shadow - live): {shown}"]
    if report["correlation"] is not None:
        lines += ["", f"Correlation of the values: {report['correlation']}"]
    if report["confusion"]:
        classes = report["confusion"]["classes"]
        lines += ["", "Confusion (rows live, columns shadow):", ""]
        lines += ["| live \\ shadow | " + " | ".join(classes) + " |"]
        lines += ["|---" * (len(classes) + 1) + "|"]
        for c, row in zip(classes, report["confusion"]["matrix"], strict=True):
            lines.append(f"| {c} | " + " | ".join(str(n) for n in row) + " |")
    lines += ["", "## Disagreements worth a look", ""]
    for d in report["disagreements"] or [{"none": True}]:
        if "none" in d:
            lines.append("None.")
            continue
        lines.append(
            f"- `{d['request_id']}` record {d['record']}: live {d['stable']}, shadow "
            f"{d['shadow']}, score difference {cell(d['score_difference'])}; inputs {d['inputs']}"
        )
    live = report["live_metrics"]
    lines += ["", "## Live metrics (feedback labels)", ""]
    if not live:
        lines.append("No feedback labels for the paired requests yet (`sail feedback`).")
    else:
        lines.append(
            f"{live['rows']} labelled records; shadow {live['candidate']}, live "
            f"{live['champion']}; intervals {live['intervals']}"
        )
        lines += [f"- worse: {w}" for w in live["worse"]]
    return "\n".join(lines) + "\n"


def run(
    paths: ProjectPaths, params: Params, environment: str, output_dir: Path | None = None
) -> dict[str, Any]:
    """Compare the running shadow with the live container and write the three files."""
    prefix = bluegreen.router_dir(paths, environment)
    state = bluegreen.read_state(prefix)
    if not state.get("shadow") or not state.get("live"):
        raise SailError(
            f"no shadow runs in {environment}: `sail deploy --environment {environment} "
            "--strategy shadow` first"
        )
    state = {**state, "environment": environment}
    lines = answers.container_lines(state["live"], state["shadow"]["started_at"], "live")
    report = build(paths, params, state, answers.parse(lines))
    out = output_dir or paths.root / LIVE
    name = f"shadow-{environment}"
    picture(out / f"{name}.png", report)
    del report["_paired"]
    write_atomic(out / f"{name}.md", lambda tmp: tmp.write_text(markdown(report)))
    write_json(out / f"{name}.json", report)
    files = [str(out / f"{name}.{ext}") for ext in ("json", "md", "png")]
    return {"decision": report["decision"], "summary": report["summary"], "files": files}
