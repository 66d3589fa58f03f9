"""Regenerate the datasets and schemas shipped in the cookiecutter-sail template (run once, commit
them).

classification: scikit-learn's breast-cancer data, snake_case columns, label `target` (0/1).
regression:     scikit-learn's diabetes data unscaled, `age` and `sex` as integers, label `target`.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from sklearn.datasets import load_breast_cancer, load_diabetes

TASK_DIR = (
    Path(__file__).resolve().parents[1]
    / "cookiecutter-sail"
    / "{{cookiecutter.project_slug}}"
    / "_task"
)


def snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


SCHEMA_HEADER = """\
# The feature contract: what every row of data/raw/data.csv, every batch file and every
# API request must look like. `sail validate` checks the raw data against it at training
# time and the server checks each request against it, so both sides share one definition.
#   target:   the label column ({label})
#   features: every input column, in order; type is float, int or category
#             (a category lists its allowed `values`; add `nullable: true` to allow blanks)
# Edit it when you bring your own data, then run `sail validate --baseline`.
"""


def write_schema(path: Path, target: dict, features: list[dict], label: str) -> None:
    def flow(item: dict) -> str:
        return yaml.safe_dump(item, sort_keys=False, default_flow_style=True).strip()

    lines = [f"target: {flow(target)}", "features:"]
    for f in features:
        lines.append(f"  - {flow(f)}")
    path.write_text(SCHEMA_HEADER.format(label=label) + "\n".join(lines) + "\n")


def main() -> None:
    cancer = load_breast_cancer(as_frame=True).frame
    cancer.columns = [snake(c) for c in cancer.columns]
    cancer["target"] = cancer["target"].astype(int)

    diabetes = load_diabetes(scaled=False, as_frame=True).frame
    diabetes["age"] = diabetes["age"].round().astype(int)
    diabetes["sex"] = diabetes["sex"].round().astype(int)
    diabetes["target"] = diabetes["target"].astype(float)

    for task, frame in (("classification", cancer), ("regression", diabetes)):
        out = TASK_DIR / task / "data.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        print(f"{out}: {frame.shape[0]} rows, columns {list(frame.columns)}")

    write_schema(
        TASK_DIR / "classification" / "schema.yaml",
        {"name": "target", "type": "int", "values": [0, 1]},
        [{"name": c, "type": "float"} for c in cancer.columns if c != "target"],
        "0 = malignant, 1 = benign",
    )
    types = {"age": {"type": "int"}, "sex": {"type": "category", "values": [1, 2]}}
    write_schema(
        TASK_DIR / "regression" / "schema.yaml",
        {"name": "target", "type": "float"},
        [{"name": c, **types.get(c, {"type": "float"})} for c in diabetes.columns if c != "target"],
        "disease progression one year after baseline",
    )


if __name__ == "__main__":
    main()
