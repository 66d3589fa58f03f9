"""The gate's paired bootstrap: the vectorised metrics equal scikit-learn's, for binary, multiclass
with string labels and regression; resamples are seeded and paired; evidence minimums refuse."""

from __future__ import annotations

import numpy as np
import pytest

from sail_pipelines import model_metrics as metrics
from sail_pipelines.config import METRICS_BY_TASK, BootstrapConfig
from sail_pipelines.evaluation import bootstrap
from sail_pipelines.evaluation.bootstrap import Outputs
from sail_pipelines.evaluation.evidence import compare, too_few

RNG = np.random.default_rng(7)
N = 150


def binary(labels=(0, 1)):
    y = RNG.choice(labels, N)
    positive = (y == labels[1]).astype(float)
    # rounded: ties in the scores
    p = np.round(np.clip(0.35 * positive + 0.65 * RNG.random(N), 0, 1), 2)
    return y, Outputs(np.where(p > 0.5, labels[1], labels[0]), np.c_[1 - p, p], tuple(labels))


def multiclass(classes=("cat", "dog", "eel")):
    y = RNG.choice(classes, N)
    p = RNG.dirichlet([1, 1, 1], N)
    p[np.arange(N), [classes.index(c) for c in y]] += 0.6
    p /= p.sum(axis=1, keepdims=True)
    return y, Outputs(np.array(classes)[p.argmax(axis=1)], p, classes)


def regression():
    y = RNG.normal(150, 60, N)
    return y, Outputs(y + RNG.normal(0, 40, N))


# Binary (numbers and strings), multiclass with string labels, and regression outputs.
TABLES = [
    ("classification", binary),
    ("classification", lambda: binary(("no", "yes"))),
    ("classification", multiclass),
    ("regression", regression),
]


def sklearn_values(task, y, outputs):
    if task == "regression":
        return metrics.regression(y, outputs.predictions)
    return metrics.classification(
        y, outputs.predictions, outputs.probabilities, list(outputs.classes)
    )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
@pytest.mark.parametrize("task,make", TABLES)
def test_unit_weights_give_the_scikit_learn_metrics(task, make):
    y, outputs = make()
    ours = bootstrap.weighted_metrics(task, y, outputs, np.ones((1, len(y))))
    theirs = sklearn_values(task, y, outputs)
    assert set(ours) == set(METRICS_BY_TASK[task])
    for name, values in ours.items():
        assert values[0] == pytest.approx(theirs[name], abs=1e-12), name


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
@pytest.mark.parametrize("task,make", TABLES)
def test_one_metric_alone_is_its_value_among_all(task, make):
    """Permutation importance and the search score one metric hundreds of times, alone."""
    y, outputs = make()
    every = sklearn_values(task, y, outputs)
    classes = None if task == "regression" else list(outputs.classes)
    for name in METRICS_BY_TASK[task]:
        alone = metrics.score(name, y, outputs.predictions, outputs.probabilities, classes)
        assert alone == every[name], name
    if classes is not None:  # without probabilities, as in classification(): no ROC AUC
        assert np.isnan(metrics.score("roc_auc", y, outputs.predictions, None, classes))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_resample_weights_give_the_metrics_of_the_resampled_rows():
    """A weight of k is the row drawn k times, also for classes absent from a resample."""
    for task, (y, outputs) in (
        ("classification", multiclass()),
        ("classification", binary()),
        ("regression", regression()),
    ):
        [weights] = list(bootstrap.resample_weights(len(y), 1, seed=3))
        rows = np.repeat(np.arange(len(y)), weights[0].astype(int))
        ours = bootstrap.weighted_metrics(task, y, outputs, weights)
        theirs = sklearn_values(task, y[rows], outputs.subset(rows))
        for name, values in ours.items():
            assert values[0] == pytest.approx(theirs[name], abs=1e-12, nan_ok=True), name


def test_intervals_are_seeded_paired_and_hold_the_point():
    y, candidate = binary()
    config = BootstrapConfig(level=0.9, resamples=400, seed=11)
    first = bootstrap.intervals("classification", y, candidate, candidate, config)
    assert first == bootstrap.intervals("classification", y, candidate, candidate, config)
    assert first != bootstrap.intervals(
        "classification",
        y,
        candidate,
        candidate,
        BootstrapConfig(level=0.9, resamples=400, seed=12),
    )
    point = compare("classification", y, candidate, None, config)["candidate"]
    for name, interval in first.items():
        assert interval["difference"] == [0.0, 0.0]  # the same model on the same resamples
        low, high = interval["candidate"]
        assert low <= point[name] <= high
    wider = bootstrap.intervals(
        "classification", y, candidate, None, BootstrapConfig(level=0.99, resamples=400, seed=11)
    )
    assert wider["roc_auc"]["champion"] is None and wider["roc_auc"]["difference"] is None
    assert (
        wider["roc_auc"]["candidate"][1] - wider["roc_auc"]["candidate"][0]
        > first["roc_auc"]["candidate"][1] - first["roc_auc"]["candidate"][0]
    )


def test_chunks_cover_every_resample():
    chunks = list(bootstrap.resample_weights(n=1_000_000, resamples=9, seed=0))
    assert sum(len(c) for c in chunks) == 9 and len(chunks) > 1
    assert all((c.sum(axis=1) == 1_000_000).all() for c in chunks)


def test_too_few_rows_or_rows_of_a_class_are_named():
    assert (
        too_few(
            [0, 1] * 20,
            "classification",
            [0, 1],
            50,
            10,
            "gate.min_test_rows",
            "gate.min_rows_per_class",
        )
        == "40 rows, fewer than gate.min_test_rows = 50"
    )
    assert (
        too_few(["a"] * 60 + ["b"] * 3, "classification", ["a", "b", "c"], 50, 10, "r", "c")
        == "3 rows of class 'b', 0 rows of class 'c', fewer than c = 10"
    )
    assert too_few([1.5] * 60, "regression", [], 50, 10, "r", "c") is None
