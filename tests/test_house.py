"""Rooms of a size one can hold (issue 28): no module of the package over 400 lines, no function
over 60 lines of body, counted with ast. A room that outgrows them is split along its seams."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sail_pipelines

PACKAGE = Path(sail_pipelines.__file__).parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # from the first statement of the body (its docstring too) to the last

# "module.py::function": why it stays long. Keep this list tiny.
EXCEPTIONS: dict[str, str] = {}


def functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    """Every def (methods and nested ones too) by qualified name, with its body's line count."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                found.append((name, node.end_lineno - node.body[0].lineno + 1))
            found += functions(node, f"{name}.")
        else:
            found += functions(node, prefix)
    return found


def too_big(module: str, source: str) -> list[str]:
    """What in one module's source breaks the limits, but for the named exceptions."""
    problems = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
        problems.append(f"{module}: {lines} lines (at most {MAX_MODULE_LINES})")
    for name, length in functions(ast.parse(source)):
        if length > MAX_FUNCTION_LINES and f"{module}::{name}" not in EXCEPTIONS:
            problems.append(f"{module}::{name}: {length} lines (at most {MAX_FUNCTION_LINES})")
    return problems


def modules() -> dict[str, str]:
    return {
        path.relative_to(PACKAGE).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def test_no_module_or_function_of_the_package_is_too_big():
    problems = [
        problem for module, source in modules().items() for problem in too_big(module, source)
    ]
    assert not problems, "split along the seams already there:\n" + "\n".join(problems)


def test_every_exception_names_a_long_function_that_exists():
    """An exception outlives neither its function nor the function's length."""
    sources = modules()
    for key in EXCEPTIONS:
        module, name = key.split("::")
        lengths = dict(functions(ast.parse(sources[module])))
        assert lengths.get(name, 0) > MAX_FUNCTION_LINES, f"{key}: drop it from EXCEPTIONS"


def body(lines: int, depth: int = 1) -> str:
    return "".join(f"{'    ' * depth}x{i} = {i}\n" for i in range(lines))


@pytest.mark.parametrize(
    "source,found",
    [
        ("x = 1\n" * MAX_MODULE_LINES, []),
        ("x = 1\n" * (MAX_MODULE_LINES + 1), ["big.py: 401 lines"]),
        ("def f():\n" + body(MAX_FUNCTION_LINES), []),
        ("def f():\n" + body(MAX_FUNCTION_LINES + 1), ["big.py::f: 61 lines"]),
        (
            "class C:\n    def m(self):\n        def inner():\n"
            + body(MAX_FUNCTION_LINES + 1, depth=3)
            + "        return inner\n",
            ["big.py::C.m: 63 lines", "big.py::C.m.inner: 61 lines"],
        ),
        ('async def f():\n    """Why."""\n' + body(MAX_FUNCTION_LINES), ["big.py::f: 61 lines"]),
    ],
    ids=["module-at-limit", "module-over", "function-at-limit", "function-over", "nested", "async"],
)
def test_the_check_finds_a_deliberate_violation(source, found):
    problems = too_big("big.py", source)
    assert [p.split(" (")[0] for p in problems] == found
