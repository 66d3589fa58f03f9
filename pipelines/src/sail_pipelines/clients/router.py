"""The environment's traffic router: nginx from the host's packages, run by `sail` itself.

One nginx master per environment, as a plain host process (not a container, not a system
service): `nginx -p <state>/ -c <state>/nginx.conf`, its pid, error log and config in the
project's `.sail/router/<environment>/`. It listens on the environment's port and passes every
request to the model container that is live (host networking, another port), or shares them
between it and a canary by weight, or mirrors every request to a shadow (`mirror`: the
shadow's answer is thrown away; only the live container answers). A switch
renders the config again (Jinja2), has nginx check it (`nginx -t`), and reloads: the master
starts workers with the new upstream and the old workers finish the requests they hold, then
exit. `reload` returns only once no old worker is left, so the model they talked to has
nothing in flight any more and can be stopped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from sail_pipelines.errors import SailError
from sail_pipelines.files import write_atomic
from sail_pipelines.polling import wait_until

DRAIN_SECONDS = 60  # worker_shutdown_timeout: how long an old worker may finish its requests
START_SECONDS = 10.0
# A shadow that is down or slow must not hold the live answers: its mirror subrequest gives up
# this soon (nginx sends the main answer without waiting, but keeps the connection until the
# mirror ends).
MIRROR_CONNECT_MS = 100
MIRROR_READ_SECONDS = 1
# With a mirror, nginx reads each body before passing it on: in memory up to the model's own
# limit (inference/serve.py's max_body_bytes), refused above it as the model refuses it.
MIRROR_BODY_BYTES = 1_000_000
# The model's gunicorn closes a connection idle for its keepalive (inference/serve.py,
# KEEPALIVE_SECONDS); nginx must drop an idle one first, else it may send a POST on a connection
# gunicorn is just closing, which it does not retry: a 502.
MODEL_KEEPALIVE_SECONDS = 5
UPSTREAM_IDLE_SECONDS = 2


@dataclass(frozen=True)
class Upstream:
    color: str  # blue or green
    container: str  # its container name, for the reader of the config
    port: int  # where it serves on 127.0.0.1
    weight: int = 1  # its share of the requests, against the other upstreams' weights


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise SailError(
            "nginx is not installed: the local deploy routes traffic through it "
            "(apt-get install nginx)"
        )
    return found


def render(
    environment: str,
    prefix: Path,
    port: int,
    upstreams: Sequence[Upstream],
    shadow: Upstream | None = None,
) -> str:
    import jinja2

    templates = jinja2.Environment(
        loader=jinja2.PackageLoader("sail_pipelines.clients", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return templates.get_template("nginx.conf.j2").render(
        environment=environment,
        prefix=str(prefix),
        port=port,
        upstreams=[u for u in upstreams if u.weight > 0],
        shadow=shadow,
        drain_seconds=DRAIN_SECONDS,
        mirror_connect_ms=MIRROR_CONNECT_MS,
        mirror_read_seconds=MIRROR_READ_SECONDS,
        mirror_body_bytes=MIRROR_BODY_BYTES,
        model_keepalive_seconds=MODEL_KEEPALIVE_SECONDS,
        upstream_idle_seconds=UPSTREAM_IDLE_SECONDS,
    )


def _nginx(prefix: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [nginx_binary(), "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf")]
    command += ["-e", str(prefix / "error.log"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def _failed(what: str, result: subprocess.CompletedProcess[str]) -> SailError:
    lines = [line for line in result.stderr.splitlines() if "[emerg]" in line or "[alert]" in line]
    detail = (lines or result.stderr.strip().splitlines() or ["no output"])[-1]
    return SailError(f"nginx {what} failed: {detail.split('] ', 1)[-1]}")


def master_pid(prefix: Path) -> int | None:
    """The running master of this prefix, if any (a stale pid file is ignored)."""
    try:
        pid = int((prefix / "nginx.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"nginx" in cmdline and str(prefix).encode() in cmdline else None


def workers(master: int) -> set[int]:
    """The master's child processes (its workers), from /proc."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == master:
            children.add(int(stat.parent.name))
    return children


def write_config(
    environment: str,
    prefix: Path,
    port: int,
    upstreams: Sequence[Upstream],
    shadow: Upstream | None = None,
) -> None:
    """Write the config and have nginx check it; a config nginx refuses is put back."""
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    before = config.read_text() if config.is_file() else None
    write_atomic(
        config, lambda tmp: tmp.write_text(render(environment, prefix, port, upstreams, shadow))
    )
    checked = _nginx(prefix, "-t", "-q")
    if checked.returncode != 0:
        if before is None:
            config.unlink()
        else:
            write_atomic(config, lambda tmp: tmp.write_text(before))
        raise _failed("config check", checked)


def apply(prefix: Path) -> dict[str, float | int | bool]:
    """Start nginx with the config written, or reload it and wait until the old workers are
    gone (their requests answered). Seconds taken, and whether it started."""
    started = time.monotonic()
    master = master_pid(prefix)
    if master is None:
        result = _nginx(prefix)
        if result.returncode != 0:
            raise _failed("start", result)
        wait_until(
            lambda: master_pid(prefix) is not None,
            START_SECONDS,
            0.05,
            lambda: SailError(f"nginx did not start; see {prefix / 'error.log'}"),
        )
        return {"started": True, "seconds": round(time.monotonic() - started, 3)}
    old = workers(master)
    result = _nginx(prefix, "-s", "reload")
    if result.returncode != 0:
        raise _failed("reload", result)

    def swapped() -> bool:
        if master_pid(prefix) != master:
            raise SailError(f"nginx exited during the reload; see {prefix / 'error.log'}")
        now = workers(master)
        return bool(now) and not now & old

    wait_until(
        swapped,
        DRAIN_SECONDS + 10,
        0.02,
        lambda: SailError(
            f"nginx did not replace its workers within {DRAIN_SECONDS + 10}s "
            f"(see {prefix / 'error.log'})"
        ),
    )
    return {"started": False, "seconds": round(time.monotonic() - started, 3), "master": master}


def stop(prefix: Path) -> bool:
    """Stop this prefix's nginx gracefully (`nginx -s quit`); whether one was running."""
    master = master_pid(prefix)
    if master is None:
        return False
    _nginx(prefix, "-s", "quit")
    wait_until(
        lambda: master_pid(prefix) is None,
        DRAIN_SECONDS + 10,
        0.05,
        lambda: SailError(f"nginx (pid {master}) did not stop"),
    )
    return True
