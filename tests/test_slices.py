"""Slices (evaluation/slices.py): `measure()` on a small frame with a string column, its missing
values and a class too rare in one slice, held to scikit-learn; each mutation of it listed below
must fail that check; and the gate on the penguins table, sliced by its string columns `island`
and `sex` (which has gaps). A numeric slice column without gaps: test_gate.py."""

from __future__ import annotations

import shutil
import types

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from conftest import ok, sail
from sail_pipelines.config import BootstrapConfig, SliceConfig
from sail_pipelines.errors import SailError
from sail_pipelines.evaluation import slices
from sail_pipelines.evaluation.bootstrap import Outputs
from test_gate import QUIET, edit_params, gate_report, rules

CLASSES = ["no", "yes"]
BOOT = BootstrapConfig(resamples=200)


def frame() -> tuple[pd.DataFrame, Outputs, Outputs]:
    """40 rows: `region` north (20 rows, both classes), south (14, only 2 'yes'), missing (6);
    the candidate errs on every 5th row, the champion on every 3rd."""
    rng = np.random.default_rng(0)
    region = np.array(["north"] * 20 + ["south"] * 14 + [np.nan] * 6, dtype=object)
    label = np.array((["no", "yes"] * 10) + ["no"] * 12 + ["yes"] * 2 + ["no", "yes"] * 3)
    test = pd.DataFrame({"region": region, "label": label, "x": rng.normal(size=40)})

    def outputs(every: int) -> Outputs:
        wrong = np.arange(40) % every == 0
        predicted = np.where(wrong, np.where(label == "no", "yes", "no"), label)
        p_yes = np.where(predicted == "yes", 0.8, 0.2)
        return Outputs(predicted, np.column_stack([1 - p_yes, p_yes]), tuple(CLASSES))

    return test, outputs(5), outputs(3)


def check_measure() -> None:
    test, candidate, champion = frame()
    config = SliceConfig(columns=["region"], min_rows=5, min_rows_per_class=3)
    entries = slices.measure(
        config, BOOT, "classification", CLASSES, test, "label", candidate, champion
    )
    assert [(e["value"], e["rows"], e["judged"]) for e in entries] == [
        ("north", 20, True),
        ("south", 14, False),
        (None, 6, True),
    ]
    assert [slices.label(e) for e in entries] == [
        "region=north",
        "region=south",
        "region=(missing)",
    ]
    assert entries[1]["reason"] == (
        "too small to judge: 2 rows of class 'yes', fewer than gate.slices.min_rows_per_class = 3"
    )
    assert "candidate" not in entries[1]
    for entry, rows in ((entries[0], slice(0, 20)), (entries[2], slice(34, 40))):
        truth = test["label"].to_numpy()[rows]
        for who, outputs in (("candidate", candidate), ("champion", champion)):
            predicted = outputs.predictions[rows]
            assert entry[who]["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
            assert entry[who]["f1"] == pytest.approx(f1_score(truth, predicted, pos_label="yes"))
        low, high = entry["intervals"]["accuracy"]["candidate"]
        assert low <= entry["candidate"]["accuracy"] <= high


def _factorize_dropping_missing(values, sort, use_na_sentinel):
    return pd.factorize(values, sort=sort, use_na_sentinel=True)


MUTANTS = {
    # the rows with no value vanish: no (missing) slice
    "missing-dropped": lambda mp: mp.setattr(
        slices,
        "pd",
        types.SimpleNamespace(factorize=_factorize_dropping_missing, isna=pd.isna),
    ),
    # the per-class minimum ignored: a slice with 2 rows of a class is judged
    "no-class-minimum": lambda mp: mp.setattr(
        slices, "too_few", lambda y, task, classes, rows, per_class, *names: None
    ),
    # every slice scored on the whole split
    "whole-split": lambda mp: mp.setattr(Outputs, "subset", lambda self, rows: self, raising=True),
}


@pytest.mark.parametrize("mutant", [None, *MUTANTS])
def test_measure_holds_to_scikit_learn_and_each_mutation_fails_it(monkeypatch, mutant):
    if mutant is None:
        check_measure()
        return
    MUTANTS[mutant](monkeypatch)
    with pytest.raises((AssertionError, ValueError, IndexError)):
        check_measure()


def test_measure_refuses_a_column_that_is_missing_or_not_a_category():
    test, candidate, _ = frame()
    with pytest.raises(SailError, match="names 'city', not a column of data/split/test.csv"):
        slices.measure(
            SliceConfig(columns=["city"]), BOOT, "classification", CLASSES, test, "label",
            candidate, None,
        )  # fmt: skip
    wide = pd.DataFrame({"x": np.arange(60.0), "label": ["no", "yes"] * 30})
    with pytest.raises(SailError, match="'x' has 60 distinct values .* \\(at most 50 values\\)"):
        slices.measure(
            SliceConfig(columns=["x"]), BOOT, "classification", CLASSES, wide, "label",
            Outputs(wide["label"].to_numpy()), None,
        )  # fmt: skip


@pytest.mark.slow
def test_the_gate_slices_penguins_by_island_and_sex(public_project, tmp_path):
    """String slice values, the `(missing)` slice of `sex` (blanked in a few test rows, as the
    table's own gaps may miss the test split) and islands that lack a species."""
    project = tmp_path / "penguins"
    shutil.copytree(public_project("penguins"), project, symlinks=True)
    test_csv = project / "data" / "split" / "test.csv"
    test = pd.read_csv(test_csv)
    test.loc[test.index[::10], "sex"] = np.nan
    test.to_csv(test_csv, index=False)
    edit_params(
        project,
        lambda p: p["gate"]["slices"].update(
            columns=["island", "sex"], min_rows=5, min_rows_per_class=2,
            thresholds={"accuracy": {"min": 0.5}},
        ),
    )  # fmt: skip
    ok(sail(project, "evaluate"))
    ok(sail(project, "gate", "--no-register", **QUIET))
    report = gate_report(project)
    measured = {(s["column"], s["value"]): s for s in report["slices"]}
    assert list(measured) == [
        *(("island", v) for v in sorted(test["island"].unique())),
        ("sex", "female"),
        ("sex", "male"),
        ("sex", None),
    ]
    for (column, value), entry in measured.items():
        rows = test[test[column].isna() if value is None else test[column] == value]
        counts = rows["species"].value_counts()
        short = [c for c in ("Adelie", "Chinstrap", "Gentoo") if counts.get(c, 0) < 2]
        assert entry["rows"] == len(rows) and entry["judged"] == (len(rows) >= 5 and not short)
        if len(rows) >= 5 and short:  # the per-class minimum, naming each class short of it
            assert all(f"{counts.get(c, 0)} rows of class {c!r}" in entry["reason"] for c in short)
    assert not measured[("island", "Torgersen")]["judged"]  # Adelie only
    assert measured[("sex", "female")]["judged"]
    assert measured[("sex", None)]["rows"] == len(test.index[::10])
    detail = rules(project)["in every slice: accuracy >= 0.5"]["detail"]
    assert "not judged: island=Torgersen (too small to judge: 0 rows of class" in detail
    assert "sex=(missing)" in detail
    assert "NaN" not in (project / "reports" / "gate.json").read_text()
