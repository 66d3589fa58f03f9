"""The JSON Schemas of params.yaml and infrastructure.yaml, generated from the models that check
them and shipped in the template (schemas/), so that an editor with the YAML language server
completes and checks both files. Rewrite them after changing a model:

    python -m sail_pipelines.config.schema cookiecutter-sail/{{cookiecutter.project_slug}}/schemas
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sail_pipelines.config.params import Params
from sail_pipelines.config.team_file import TeamFile

SCHEMAS: dict[str, type[BaseModel]] = {
    "params.schema.json": Params,
    "infrastructure.schema.json": TeamFile,
}


def by_title(schema: dict[str, Any]) -> dict[str, Any]:
    """The definitions named by their models' titles (GateFile, ...), not by the Python classes
    (GateConfig): the file's names are what an editor shows, and the published schema keeps them."""
    defs = schema.get("$defs", {})
    names = {f"#/$defs/{name}": f"#/$defs/{d['title']}" for name, d in defs.items()}

    def renamed(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: names.get(v, v) if k == "$ref" else renamed(v) for k, v in node.items()}
        return [renamed(v) for v in node] if isinstance(node, list) else node

    result = renamed({k: v for k, v in schema.items() if k != "$defs"})
    if defs:
        titled = {d["title"]: renamed(d) for d in defs.values()}
        result = {"$defs": dict(sorted(titled.items())), **result}
    return result


def schemas() -> dict[str, str]:
    """{file name: its text}, stable so that the shipped files can be compared."""
    return {
        name: json.dumps(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                **by_title(model.model_json_schema()),
            },
            indent=2,
        )
        + "\n"
        for name, model in SCHEMAS.items()
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m sail_pipelines.config.schema FOLDER")
    folder = Path(args[0])
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in schemas().items():
        (folder / name).write_text(text)
        print(folder / name)


if __name__ == "__main__":
    main()
