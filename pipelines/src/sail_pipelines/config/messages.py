"""One-line messages from pydantic's validation errors: the file, the key path, the problem and
the fix, never pydantic's multi-line dump. The models raise `refuse(...)` for their own checks;
the few built-in error kinds they can still meet get a message here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import yaml

from sail_pipelines.errors import SailError

# contract/schema.py takes yaml_problem on the serving path, which has no pydantic
if TYPE_CHECKING:
    from pydantic import ValidationError
    from pydantic_core import PydanticCustomError


def refuse(
    text: str, sep: str = " ", *, leaf: str | None = None, at: str | None = None
) -> PydanticCustomError:
    """A problem and its fix, e.g. "= 1.5 is outside [0, 1]; set a number from 0 to 1", shown
    after the key path (joined by `sep`). `leaf` is a key under the failing one (an unknown key),
    `at` a whole path when a check of the file as a whole blames one key."""
    from pydantic_core import PydanticCustomError

    ctx = {"text": text, "sep": sep, "leaf": leaf, "at": at}
    return PydanticCustomError("sail", "{text}", ctx)


def key_path(loc: tuple[int | str, ...]) -> str:
    """('candidates', 0, 'search', 'trials') -> 'candidates[0].search.trials'."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f"{'.' if path else ''}{part}"
    return path


def _problem(error: Any) -> tuple[str, str, str]:
    """(key path, separator, problem and fix) of one pydantic error."""
    ctx, got = error.get("ctx") or {}, error.get("input")
    path, kind = key_path(error["loc"]), error["type"]
    if kind == "sail":
        if ctx["leaf"] is not None:
            path = key_path((*error["loc"], ctx["leaf"]))
        return ctx["at"] or path, ctx["sep"], ctx["text"]
    generic = {
        "missing": "is missing; add it",
        "bool_type": f"= {got!r} is not true or false; write true or false",
        "string_type": f"= {got!r} is not text; write a string",
        "list_type": f"must be a list, got {got!r}; write it as [a, b, ...]",
        "dict_type": f"must be a mapping, got {got!r}; write it as key: value lines",
        "model_type": f"must be a mapping, got {got!r}; write it as key: value lines",
        "too_short": "is empty; give at least one entry",
        "string_too_short": "is empty; write a value",
        "literal_error": f"= {got!r} is not allowed; use {ctx.get('expected')}",
    }
    return path, " ", generic.get(kind, f"is refused ({error['msg']}); fix it")


def one_line(
    exc: ValidationError,
    where: str,
    shown: Callable[[str], str] = lambda text: text,
    keyed: bool = True,
) -> SailError:
    """`where: key problem; fix` for the first error (the count of any others appended);
    `shown` redacts what a message must not carry. Unkeyed, `where` (an environment variable)
    names the key itself."""
    errors = exc.errors()
    path, sep, text = _problem(errors[0])
    if not keyed:
        message = f"{where}{sep}{text}"
    else:
        message = f"{where}: {path}{sep}{text}" if path else f"{where}: {text}"
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if errors[1:] else ""
    return SailError(shown(message + more))


def yaml_problem(exc: yaml.YAMLError) -> str:
    """'line N: problem' from a YAML error, instead of its multi-line dump."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}: {problem}" if mark else problem
