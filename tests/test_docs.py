"""The documentation: README.md is the front door (at most 150 lines, every relative link
resolves), docs/ is an MkDocs site that builds with --strict (so a broken link or anchor fails
`make test`), every package path and module the two name exists, and the generated project's
README points at the docs."""

import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml

from conftest import bake

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SRC = ROOT / "pipelines" / "src"
PACKAGE = SRC / "sail_pipelines"
README_MAX_LINES = 150

# The subpackages of sail_pipelines: a `<subpackage>/<file>.py` in the docs is a package path.
SUBPACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
# Repository folders whose files the docs name by their path from the repository root.
REPO_FOLDERS = ("tests", "benchmarks", "shared-library")
# Module paths the README named before the package was reorganised; none may come back.
GONE = ("integrations/", "mlflow_model", "evaluation/metrics.py", "delivery/build.py")

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def mkdocs_build(config_dir: Path, site_dir: Path) -> subprocess.CompletedProcess:
    """The venv's MkDocs, as a developer runs it: strict, so every warning is an error."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=config_dir,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension (MkDocs' default) gives a heading."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def broken_links(page: Path) -> list[str]:
    """The relative links of a Markdown file that name no file (or no heading of that file)."""
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(target)
    return broken


def module_exists(dotted: str) -> bool:
    """`sail_pipelines.a.b` is a module or package, or `b` is defined at the top of module `a`."""
    parts = dotted.split(".")
    base = SRC.joinpath(*parts)
    if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
        return True
    parent = SRC.joinpath(*parts[:-1])
    source = parent / "__init__.py" if parent.is_dir() else parent.with_suffix(".py")
    if not source.is_file():
        return False
    name = re.escape(parts[-1])
    return bool(re.search(rf"^(def|class) {name}\b|^{name}\b.*=", source.read_text(), re.M))


def missing_paths(text: str) -> list[str]:
    """Every package path, dotted module, package-relative module and repository file a text
    names (in code spans) that does not exist."""
    missing = []
    spans = re.findall(r"`([^`\n]+)`", text)
    words = [w.rstrip(".,;:)") for span in spans for w in re.split(r"[\s(),]+", span) if w]
    for word in words:
        if "pipelines/src/sail_pipelines" in word:
            path = ROOT / word[word.index("pipelines/src/sail_pipelines") :]
        elif word.startswith("sail_pipelines/"):
            path = SRC / word
        elif re.fullmatch(r"sail_pipelines(\.\w+)+", word):
            if not module_exists(word):
                missing.append(word)
            continue
        elif word.split("/")[0] in SUBPACKAGES and re.search(r"\.(py|j2)$", word):
            path = PACKAGE / word
        elif word.split("/")[0] in REPO_FOLDERS and "/" in word and "<" not in word:
            path = ROOT / word
        else:
            continue
        if not path.exists():
            missing.append(word)
    # A table row whose first cell is a subpackage lists that subpackage's modules.
    for row in re.finditer(r"^\| `(\w+)/` \|(.*)\|\s*$", text, re.M):
        folder, cells = row.groups()
        if folder in SUBPACKAGES:
            for module in re.findall(r"`(\w+\.py)`", cells):
                if not (PACKAGE / folder / module).is_file():
                    missing.append(f"{folder}/{module}")
    missing += [name for name in GONE if name in text]
    return missing


def test_the_site_builds_strict(tmp_path):
    result = mkdocs_build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    pages = {Path(next(iter(item.values()))).stem for item in nav}
    assert pages == {p.stem for p in DOCS.glob("*.md")}, pages
    for page in pages - {"index"}:
        assert (tmp_path / "site" / page / "index.html").is_file(), page


def test_the_site_is_configured_as_documented():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["site_name"] == "sail-pipelines"
    assert config["theme"]["name"] == "material"
    assert config["site_dir"] == "build/site"
    assert "build/" in (ROOT / ".gitignore").read_text().split()
    for kind in ("nav", "links"):
        assert set(config["validation"][kind].values()) == {"warn"}, kind


@pytest.mark.parametrize(
    "link",
    [
        "no-such-page.md",  # a page that does not exist
        "gate.md#no-such-heading",  # a page that exists, an anchor that does not
        "../ARCHITECTURE.md",  # a file outside docs/: not part of the site
    ],
)
def test_a_broken_link_fails_the_strict_build(tmp_path, link):
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    (tmp_path / "docs" / "broken.md").write_text(f"# Broken\n\nSee [this page]({link}).\n")
    config = tmp_path / "mkdocs.yml"
    text = config.read_text()
    assert "\nnav:\n" in text
    config.write_text(text.rstrip("\n") + "\n  - Broken: broken.md\n")
    result = mkdocs_build(tmp_path, tmp_path / "site")
    assert result.returncode != 0, result.stderr[-3000:]
    assert link.split("#")[-1] in result.stderr, result.stderr[-3000:]


def test_the_readme_is_a_front_door():
    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= README_MAX_LINES
    assert broken_links(readme) == []
    text = readme.read_text()
    for command in ("make demo", "make test", "cookiecutter cookiecutter-sail data_file="):
        assert command in text, command
    linked = {Path(t.partition("#")[0]).name for t in LINK.findall(text)}
    assert {p.name for p in DOCS.glob("*.md")} - {"architecture.md"} <= linked


def test_the_docs_links_resolve_where_github_shows_them():
    """MkDocs checks the site; this checks the same files as GitHub renders them."""
    assert {str(p.relative_to(ROOT)): broken_links(p) for p in documents()} == {
        str(p.relative_to(ROOT)): [] for p in documents()
    }


def test_a_broken_readme_link_is_caught(tmp_path):
    (tmp_path / "there.md").write_text("# There\n\n## A heading\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#a-heading) [web](https://example.com)\n"
        "[gone](docs/nothing.md) [anchor](there.md#nowhere)\n"
    )
    assert broken_links(page) == ["docs/nothing.md", "there.md#nowhere"]


def test_every_path_and_module_the_docs_name_exists():
    assert {str(p.relative_to(ROOT)): missing_paths(p.read_text()) for p in documents()} == {
        str(p.relative_to(ROOT)): [] for p in documents()
    }
    # the docs do name such paths, so the check above checks something
    named = " ".join(p.read_text() for p in documents())
    assert "pipelines/src/sail_pipelines/" in named and "sail_pipelines.inference.pyfunc" in named


def test_a_made_up_path_is_caught():
    text = (
        "`pipelines/src/sail_pipelines/evaluation/gate.py` `sail_pipelines.inference.pyfunc` "
        "`sail_pipelines.config.team.Settings` `training/search.py` `tests/conftest.py`\n"
        "`pipelines/src/sail_pipelines/evaluation/nowhere.py`, `sail_pipelines.nowhere.module` "
        "`sail_pipelines/inference/nowhere/` `inference/nowhere.py` `benchmarks/nowhere.py` "
        "`evaluation/metrics.py`\n"
        "| `delivery/` | `push.py`, `nowhere.py` |\n"
    )
    assert missing_paths(text) == [
        "pipelines/src/sail_pipelines/evaluation/nowhere.py",
        "sail_pipelines.nowhere.module",
        "sail_pipelines/inference/nowhere/",
        "inference/nowhere.py",
        "benchmarks/nowhere.py",
        "evaluation/metrics.py",
        "delivery/nowhere.py",
        "evaluation/metrics.py",
    ]


def test_the_generated_readme_points_at_the_docs(tmp_path):
    readme = (bake(tmp_path) / "README.md").read_text()
    section = readme.split("## Documentation", 1)[1].split("\n## ", 1)[0]
    assert "`docs/`" in section and "sail-pipelines repository" in section
    assert "mkdocs serve" in section
