"""The package is built bottom-up, in the order of the flow: a module imports only from its own
layer or lower ones. Every import counts, lazy ones and those under TYPE_CHECKING too, in every
spelling (`import sail_pipelines.x`, `from sail_pipelines.x import y`, `from sail_pipelines import
x`, relative forms). ARCHITECTURE.md draws the same order."""

from __future__ import annotations

import ast
import functools
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipelines" / "src" / "sail_pipelines"
ROOT = "sail_pipelines"

# Bottom first. The base modules and config may import only each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "files", "polling", "provenance", "model_metrics", "config"),
    ("clients",),
    ("contract",),
    ("integrity",),
    ("inference",),
    ("training",),
    ("evaluation",),
    ("delivery",),
    ("monitoring",),
    ("cli",),
)
LAYER = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """The dotted name of a module file and whether it is a package's `__init__`."""
    parts = path.relative_to(root).with_suffix("").parts
    package = parts[-1] == "__init__"
    return ".".join((ROOT, *(parts[:-1] if package else parts))), package


def imported(node: ast.Import | ast.ImportFrom, module: str, package: bool) -> list[str]:
    """The dotted names of the package's own modules that one import statement reaches."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        here = module.split(".") if package else module.split(".")[:-1]
        anchor = here[: len(here) - node.level + 1]
        base = ".".join([*anchor, *([base] if base else [])])
    if base == ROOT:  # `from sail_pipelines import x`: each x is a part of its own
        return [f"{ROOT}.{alias.name}" for alias in node.names]
    return [base]


@functools.cache  # a file parsed once per test run, however many copies of the package hold it
def upward_imports(source: str, module: str, package: bool = False) -> tuple[str, ...]:
    """Every import of `source` (the module `module`) that reaches above its own layer, or into a
    part of the package the layer order does not name, as 'module:line imports name (why)'."""
    own = LAYER.get(module.split(".")[1]) if "." in module else 0
    problems = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        for name in imported(node, module, package):
            parts = name.split(".")
            if parts[0] != ROOT or len(parts) < 2 or parts[1].startswith("__"):
                continue  # not ours, or the root package's own base (`__version__`)
            level = LAYER.get(parts[1])
            if level is None or own is None:
                why = f"{parts[1] if level is None else module} has no layer"
            elif level > own:
                why = f"{parts[1]} is above {module.split('.')[1]}"
            else:
                continue
            problems.append(f"{module}:{node.lineno} imports {name} ({why})")
    return tuple(problems)


def package_violations(root: Path) -> list[str]:
    problems: list[str] = []
    for path in sorted(root.rglob("*.py")):
        module, package = module_name(path, root)
        problems += upward_imports(path.read_text(), module, package)
    return problems


def test_no_module_imports_from_a_higher_layer():
    assert package_violations(PACKAGE) == []


def test_every_part_of_the_package_has_a_layer():
    parts = {
        p.stem if p.suffix == ".py" else p.name
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert parts == set(LAYER)


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory):
    copy = tmp_path_factory.mktemp("layers") / ROOT
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


# (file, what is added to it, the name the checker must report)
UPWARD = [
    pytest.param(
        "integrity/bundle.py",
        "from sail_pipelines.inference.onnx import CompiledModel\n",
        "sail_pipelines.inference.onnx",
        id="from-module",
    ),
    pytest.param(
        "integrity/bundle.py",
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from sail_pipelines.inference.onnx import Prediction\n",
        "sail_pipelines.inference.onnx",
        id="type-checking",
    ),
    pytest.param(
        "training/train.py",
        "def later():\n    from sail_pipelines.evaluation import gate\n    return gate\n",
        "sail_pipelines.evaluation",
        id="lazy-in-function",
    ),
    pytest.param(
        "contract/schema.py",
        "import sail_pipelines.evaluation.report\n",
        "sail_pipelines.evaluation.report",
        id="import-dotted",
    ),
    pytest.param(
        "inference/serve.py",
        "from sail_pipelines import monitoring\n",
        "sail_pipelines.monitoring",
        id="from-package-root",
    ),
    pytest.param(
        "inference/serve.py",
        "from ..delivery import package\n",
        "sail_pipelines.delivery",
        id="relative-up",
    ),
    pytest.param(
        "clients/containers.py",
        "from . import images\nfrom ..contract import schema\n",
        "sail_pipelines.contract",
        id="clients-below-contract",
    ),
    pytest.param(
        "files.py",
        "from sail_pipelines.clients import dvc\n",
        "sail_pipelines.clients",
        id="base-imports-clients",
    ),
    pytest.param(
        "config/paths.py",
        "from .. import contract\n",
        "sail_pipelines.contract",
        id="config-relative-from-root",
    ),
    pytest.param(
        "monitoring/logs.py",
        "from sail_pipelines.plugins import extra\n",
        "sail_pipelines.plugins",
        id="part-without-layer",
    ),
]


@pytest.mark.parametrize(("file", "added", "name"), UPWARD)
def test_an_upward_import_added_to_the_package_is_reported(package_copy, file, added, name):
    target = package_copy / file
    original = target.read_text()
    target.write_text(original + "\n" + added)
    try:
        problems = package_violations(package_copy)
    finally:
        target.write_text(original)
    assert len(problems) == 1 and f" imports {name} (" in problems[0], problems
    assert problems[0].startswith(module_name(target, package_copy)[0] + ":"), problems


@pytest.mark.parametrize(
    ("module", "package", "source"),
    [
        ("sail_pipelines.cli.run", False, "from sail_pipelines import training, delivery"),
        ("sail_pipelines.inference.serve", False, "from . import model\nfrom ..integrity import x"),
        ("sail_pipelines.inference", True, "from .model import predict"),
        ("sail_pipelines.config.paths", False, "from sail_pipelines import errors, model_metrics"),
        ("sail_pipelines", True, "from sail_pipelines import errors\nimport json"),
        ("sail_pipelines.cli.run", False, "from sail_pipelines import __version__"),
        ("sail_pipelines.contract.adopt", False, "from sail_pipelines import model_metrics"),
    ],
)
def test_imports_along_or_down_the_order_pass(module, package, source):
    assert upward_imports(source, module, package) == ()
