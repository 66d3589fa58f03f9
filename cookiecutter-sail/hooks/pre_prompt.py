"""Ask only the questions that apply (cookiecutter >= 2.4 runs this before its own prompts).

cookiecutter asks every variable of cookiecutter.json and has no conditional questions. So when
the `cookiecutter` command runs interactively, this hook asks first what the other questions
depend on: the data file, then its target column, or without one the example's task. Then it
rewrites cookiecutter.json in the temporary copy cookiecutter made for this run: a question
that is answered or does not apply leaves the file, and its derived `__` twin (rendered, never
asked) holds the value. With a data file, the example's thresholds do not apply (`sail adopt`
sets them from a baseline) and the task is inferred unless given on the command line; without
one, only the chosen example's threshold applies. cookiecutter then asks the rest.

--no-input, --replay and the Python API (the tests, cruft) leave the questions as they are, so
those runs get every default and given value exactly as before. Any run records the template
folder the copy was made from (`_template_dir`), for .cruft.json (post_gen_project.py).
Any failure prints ONE line starting with ERROR on stderr and exits 1.
"""

import json
import os
import re
import sys
from pathlib import Path

CONTEXT_FILE = Path("cookiecutter.json")
REMOTE_TEMPLATE = re.compile(r"^([a-zA-Z][\w+.-]*://|git@|gh:|gl:|bb:)")
# The threshold each example task's gate uses (the other one does not apply).
EXAMPLE_THRESHOLD = {"classification": "min_roc_auc", "regression": "min_r2"}
DELIMITERS = ("{" + "{", "{" + "%", "{" + "#")


def command_line(pid):
    """The options of the `cookiecutter` command with this process id, or None when something
    else runs cookiecutter (its Python API) or there is no /proc to read."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except (OSError, UnicodeDecodeError):
        return None
    if argv[1:3] == ["-m", "cookiecutter"]:
        args = argv[3:]
    elif argv and Path(argv[0]).name == "cookiecutter":
        args = argv[1:]
    elif len(argv) > 1 and Path(argv[1]).name == "cookiecutter":  # python .../bin/cookiecutter
        args = argv[2:]
    else:
        return None
    from cookiecutter.cli import main as cli

    try:
        return cli.make_context("cookiecutter", args, resilient_parsing=True).params
    except Exception:  # the command parsed them already; anything else is not ours to judge
        return None


def template_dir(options, context_bytes):
    """The local template folder this copy was made from: the one named on the command line
    whose cookiecutter.json is this copy's."""
    template = options.get("template")
    if not template or REMOTE_TEMPLATE.match(template):
        return None
    path = Path(os.path.expanduser(template)) / (options.get("directory") or "")
    if not path.is_absolute():
        path = Path(os.environ.get("PWD", ".")) / path
    found = path / "cookiecutter.json"
    return path.resolve() if found.is_file() and found.read_bytes() == context_bytes else None


def fixed(value):
    """A value for a derived `__` variable that renders to itself."""
    text = str(value)
    return "{% raw %}" + text + "{% endraw %}" if any(d in text for d in DELIMITERS) else text


def ask_first(context, given):
    """The answers the other questions depend on, given on the command line or asked now, and the
    value of every question that does not apply; {variable: value}."""
    from cookiecutter.prompt import read_user_choice, read_user_variable

    prompts = context.get("__prompts__", {})

    def answer(key, ask, problem=lambda value: None):
        """The given value (the pre-generation hook checks it), else asked until it has no
        problem."""
        if key in given:
            return given[key]
        while (why := problem(value := ask(key, context[key], prompts))) is not None:
            print(why)
        return value

    def missing_file(value):
        path = Path(os.path.expanduser(value.strip()))
        path = path if path.is_absolute() else Path(os.environ.get("PWD", ".")) / path
        return f"No such file: {value.strip()}" if value.strip() and not path.is_file() else None

    settled = {"data_file": answer("data_file", read_user_variable, missing_file)}
    if str(settled["data_file"]).strip():
        settled["target"] = answer(
            "target",
            read_user_variable,
            lambda value: None if value.strip() else "A data file needs the column to predict",
        )
        settled["task"] = given.get("task", "auto")  # `sail adopt` infers it from the target
        unused = list(EXAMPLE_THRESHOLD.values())
    else:
        settled["target"] = given.get("target", context["target"])
        settled["task"] = answer("task", read_user_choice)
        used = EXAMPLE_THRESHOLD[
            "regression" if settled["task"] == "regression" else "classification"
        ]
        unused = [key for key in EXAMPLE_THRESHOLD.values() if key != used]
    for key in unused:
        settled[key] = given.get(key, context[key])
    return settled


def main():
    raw = CONTEXT_FILE.read_bytes()
    context = json.loads(raw)
    options = command_line(os.getppid())
    if options is None:
        return
    source = template_dir(options, raw)
    if source is not None:
        context["_template_dir"] = str(source)
    if not (options.get("no_input") or options.get("replay") or options.get("replay_file")):
        for key, value in ask_first(context, dict(options.get("extra_context") or {})).items():
            del context[key]  # not asked again; its `__` twin keeps its place after the questions
            context[f"__{key}"] = fixed(value)
    CONTEXT_FILE.write_text(json.dumps(context, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, EOFError):
        print("ERROR: generation cancelled", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # anything unexpected still gets one clear line
        print(
            f"ERROR: asking the first questions failed: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        sys.exit(1)
