"""The layout of a generated project, known in one place so no step builds a path itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProjectPaths:
    """Where every step reads and writes inside a generated project."""

    root: Path

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def schema(self) -> Path:
        return self.root / "contracts" / "schema.yaml"

    @property
    def profile(self) -> Path:
        return self.root / "contracts" / "profile.json"

    @property
    def split_dir(self) -> Path:
        return self.root / "data" / "split"

    @property
    def train_csv(self) -> Path:
        return self.split_dir / "train.csv"

    @property
    def test_csv(self) -> Path:
        return self.split_dir / "test.csv"

    @property
    def candidates_dir(self) -> Path:
        return self.root / "models" / "candidates"

    @property
    def accepted_dir(self) -> Path:
        return self.root / "models" / "accepted"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def validation_report(self) -> Path:
        return self.reports / "validation.json"

    @property
    def evaluation_report(self) -> Path:
        return self.reports / "evaluation.json"

    @property
    def metrics(self) -> Path:
        return self.reports / "metrics.json"

    @property
    def plots(self) -> Path:
        return self.reports / "plots"

    @property
    def gate_report(self) -> Path:
        return self.reports / "gate.json"

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def pyproject(self) -> Path:
        return self.root / "pyproject.toml"
