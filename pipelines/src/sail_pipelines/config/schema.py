"""The JSON Schemas of params.yaml and infrastructure.yaml, generated from the models that check
them and shipped in the template (schemas/), so that an editor with the YAML language server
completes and checks both files. Rewrite them after changing a model:

    python -m sail_pipelines.config.schema cookiecutter-sail/{{cookiecutter.project_slug}}/schemas
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from sail_pipelines.config.params_file import ParamsFile
from sail_pipelines.config.team_file import TeamFile

SCHEMAS: dict[str, type[BaseModel]] = {
    "params.schema.json": ParamsFile,
    "infrastructure.schema.json": TeamFile,
}


def schemas() -> dict[str, str]:
    """{file name: its text}, stable so that the shipped files can be compared."""
    return {
        name: json.dumps(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                **model.model_json_schema(),
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
