"""A headless Chromium for the tests (Debian `chromium` + `chromium-driver`), and Mermaid's own
parser running in it: the report's charts are checked by the grammar GitHub renders them with.

Mermaid comes from the npm registry (`npm pack`, cached under ~/.cache/sail-tests); without
chromium, chromedriver or npm the tests that need them skip, except under CI (tests/ci_rules.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Iterator

from ci_rules import missing

MERMAID_VERSION = "11.17.2"  # GitHub renders xychart-beta since Mermaid 10.5
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sail-tests"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--window-size=1200,1600",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)


@contextlib.contextmanager
def chromium() -> Iterator:
    """A selenium driver on headless Chromium, quit on exit."""
    binary, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and chromedriver):
        missing(
            "chromium and chromedriver are not installed (docker/prepare-machine installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def mermaid_script() -> Path:
    """dist/mermaid.min.js of the pinned Mermaid release, fetched once with `npm pack`."""
    script = CACHE / f"mermaid-{MERMAID_VERSION}" / "package" / "dist" / "mermaid.min.js"
    if script.is_file():
        return script
    npm = shutil.which("npm")
    if npm is None:
        missing("npm is not installed: it fetches Mermaid to check the report's charts")
    scratch = CACHE / f"mermaid-{MERMAID_VERSION}.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    proc = subprocess.run(
        [npm, "pack", f"mermaid@{MERMAID_VERSION}", "--silent"],
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        missing(f"npm pack mermaid@{MERMAID_VERSION} failed: {proc.stderr.strip()[-300:]}")
    with tarfile.open(next(scratch.glob("mermaid-*.tgz"))) as archive:
        archive.extractall(scratch, filter="data")
    shutil.rmtree(script.parents[2], ignore_errors=True)
    scratch.rename(script.parents[2])  # whole or not at all, for the next run
    return script


class MermaidParser:
    """mermaid.parse() in a page that loaded mermaid.min.js: None when a diagram parses, else
    Mermaid's message."""

    def __init__(self, driver, script: Path):
        self.driver = driver
        page = script.parent / "parse.html"
        page.write_text(f'<!doctype html><script src="{script.as_uri()}"></script>')
        driver.get(page.as_uri())

    def error(self, diagram: str) -> str | None:
        return self.driver.execute_async_script(
            """const [text, done] = arguments;
            mermaid.parse(text).then(
                () => done(null), (e) => done(String(e && e.message || e)));""",
            diagram,
        )
