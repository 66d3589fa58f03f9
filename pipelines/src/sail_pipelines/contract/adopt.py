"""`sail adopt PATH --target COLUMN`: make the project train on the user's own data file.

Everything is decided before anything is written, so a file that cannot train (no such target,
one class, no usable feature, unreadable) is refused in one line and the project is untouched.
Then the file is copied to data/raw/ and tracked by DVC, contracts/schema.yaml is inferred
(`contract/infer.py`), params.yaml gets the task, target and gate thresholds derived from a
dummy baseline on the split, and contracts/profile.json becomes this data's reference profile.
"""

from __future__ import annotations

import io
import math
import shutil
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import yaml

from sail_pipelines.clients.dvc import dvc
from sail_pipelines.config import HIGHER_IS_BETTER, Params, ProjectPaths, parse_params
from sail_pipelines.contract import infer as inference
from sail_pipelines.contract.data import kind, read_table
from sail_pipelines.contract.validate import profile_frame
from sail_pipelines.errors import SailError
from sail_pipelines.files import write_atomic, write_json
from sail_pipelines.provenance import file_md5

NULL_MARGIN = 0.05  # added to a null rate the data already has when its limit is raised
MARGIN = 0.1  # share of the gap between the dummy baseline and a perfect score the model must close
PRIMARY = {"classification": "roc_auc", "regression": "r2"}
GATED = {"classification": ("roc_auc", "accuracy"), "regression": ("r2", "rmse")}
PERFECT = {"roc_auc": 1.0, "accuracy": 1.0, "r2": 1.0, "rmse": 0.0}
# The candidates a project gets when adoption changes its task (the template ships the same).
CANDIDATES = {
    "classification": [
        {
            "name": "logistic_regression",
            "estimator": "sklearn.linear_model.LogisticRegression",
            "params": {"C": 1.0, "max_iter": 2000},
            "search": {
                "trials": 8,
                "space": {
                    "C": {"type": "float", "low": 0.001, "high": 100.0, "log": True},
                    "class_weight": {"type": "choice", "values": [None, "balanced"]},
                },
            },
        },
        {
            "name": "random_forest",
            "estimator": "sklearn.ensemble.RandomForestClassifier",
            "params": {"n_estimators": 100, "max_depth": 6, "random_state": 42, "n_jobs": 1},
        },
        {
            "name": "gradient_boosting",
            "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
            "params": {"max_iter": 100, "random_state": 42},
        },
    ],
    "regression": [
        {
            "name": "ridge",
            "estimator": "sklearn.linear_model.Ridge",
            "params": {"alpha": 1.0},
            "search": {
                "trials": 8,
                "space": {"alpha": {"type": "float", "low": 0.001, "high": 1000.0, "log": True}},
            },
        },
        {
            "name": "random_forest",
            "estimator": "sklearn.ensemble.RandomForestRegressor",
            "params": {"n_estimators": 100, "max_depth": 6, "random_state": 42, "n_jobs": 1},
        },
        {
            "name": "gradient_boosting",
            "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
            "params": {"max_iter": 100, "random_state": 42},
        },
    ],
}


def baseline_thresholds(
    frame: pd.DataFrame, target: str, task: str, params: Params
) -> dict[str, dict[str, float]]:
    """Thresholds a model must meet to beat predicting the majority class (or the mean) on the same
    split the pipeline will make: close MARGIN of the gap between that dummy and a perfect score."""
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.model_selection import train_test_split

    from sail_pipelines import model_metrics as metrics

    labelled = frame[frame[target].notna()]
    stratify = labelled[target] if task == "classification" else None
    try:
        train, test = train_test_split(
            labelled,
            test_size=params.split.test_size,
            random_state=params.split.seed,
            stratify=stratify,
        )
    except ValueError as exc:
        raise SailError(f"cannot split the data into train and test: {exc}") from exc
    empty = pd.DataFrame(index=range(len(train)))
    if task == "classification":
        dummy = DummyClassifier(strategy="prior").fit(empty, train[target])
        ahead = pd.DataFrame(index=range(len(test)))
        scores = metrics.classification(
            test[target], dummy.predict(ahead), dummy.predict_proba(ahead), list(dummy.classes_)
        )
    else:
        dummy = DummyRegressor(strategy="mean").fit(empty, train[target])
        scores = metrics.regression(
            test[target], dummy.predict(pd.DataFrame(index=range(len(test))))
        )
    thresholds = {}
    for metric in GATED[task]:
        base = scores[metric]
        if metric == "r2":
            # the mean of the training split can score a little below 0 on the test split
            base = max(base, 0.0)
        bound = base + MARGIN * (PERFECT[metric] - base)
        thresholds[metric] = {"min" if HIGHER_IS_BETTER[metric] else "max": round(float(bound), 4)}
    return thresholds


def _threshold_comment(thresholds: dict[str, dict[str, float]], task: str) -> str:
    dummy = (
        "always predicting the class shares of the training split"
        if task == "classification"
        else "always predicting the mean of the training split"
    )
    return (
        f"derived by `sail adopt` from a dummy baseline ({dummy}) on the test split: the model "
        "must close\n"
        f"{MARGIN:.0%} of the gap between that baseline and a perfect score. Raise them as you "
        "learn what is good."
    )


def evidence_minimums(
    labels: pd.Series, task: str, test_size: float, params: Params
) -> dict[str, int]:
    """The gate's minimum-evidence settings, lowered to what this data's test split can hold, so a
    small dataset is judged (with wide intervals) instead of refused on its first run."""
    test_rows = max(1, int(len(labels) * test_size))
    minimums = {"min_test_rows": min(params.gate.min_test_rows, test_rows)}
    if task == "classification":
        smallest = max(1, int(labels.value_counts().min() * test_size))
        minimums["min_rows_per_class"] = min(params.gate.min_rows_per_class, smallest)
    return minimums


def validation_limits(frame: pd.DataFrame, target: str, params: Params) -> dict[str, float]:
    """The null-rate limits, raised where this data already has more gaps than the template's
    defaults allow (a column 36% empty), so the data it was adopted from passes its own validation;
    what it has now plus NULL_MARGIN, so a real change in the gaps still fails."""
    rates = {
        "max_null_rate": float(frame.drop(columns=[target]).isna().mean().max()),
        "max_missing_target": float(frame[target].isna().mean()),
    }
    current = {
        "max_null_rate": params.validation.max_null_rate,
        "max_missing_target": params.validation.max_missing_target,
    }
    return {
        key: min(1.0, math.ceil((rate + NULL_MARGIN) * 100) / 100)
        for key, rate in rates.items()
        if rate > current[key]
    }


def updated_params(
    text: str,
    task: str,
    raw: str,
    target: str,
    thresholds: dict[str, dict[str, float]],
    minimums: dict[str, int],
    limits: dict[str, float] | None = None,
) -> str:
    """params.yaml with the adopted data, task, thresholds and evidence minimums; comments elsewhere
    are kept. The example's slice columns belong to the example's data, so slicing starts empty."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    editor = YAML()
    editor.preserve_quotes = True
    editor.width = 120
    doc = editor.load(text)
    if doc.get("task") != task:
        doc["candidates"] = CANDIDATES[task]
    doc["task"] = task
    doc["data"]["raw"] = raw
    doc["data"]["target"] = target
    doc["split"]["stratify"] = task == "classification"
    doc["gate"]["primary_metric"] = PRIMARY[task]
    bounds = CommentedMap()
    for metric, bound in thresholds.items():
        flow = CommentedMap(bound)
        flow.fa.set_flow_style()
        bounds[metric] = flow
    doc["gate"]["thresholds"] = bounds
    doc["gate"].yaml_set_comment_before_after_key(
        "thresholds", before=_threshold_comment(thresholds, task), indent=2
    )
    for key in ("min_test_rows", "min_rows_per_class"):
        if key in minimums:
            doc["gate"][key] = minimums[key]
        elif key in doc["gate"]:
            del doc["gate"][key]  # per class: classification only
    for key, limit in (limits or {}).items():
        doc["validation"][key] = limit
    slices = doc["gate"].get("slices")
    if slices is not None:
        slices["columns"] = []
        if task != "classification" and "min_rows_per_class" in slices:
            del slices["min_rows_per_class"]
    out = io.StringIO()
    editor.dump(doc, out)
    return out.getvalue()


def _schema_text(columns: list[Any], source: str) -> str:
    header = (
        f"# The feature contract, inferred by `sail adopt` from {source}. Every row of the data,\n"
        "# every batch file and every API request must meet it. Each column has a type\n"
        "# (float, int, bool, category, datetime, text) and a role: the target, a feature the "
        "model\n"
        "# sees, or ignore (kept out of the model; the API accepts and drops it, batch output "
        "keeps it).\n"
        "# Edit any decision here, then run `sail validate --baseline`.\n"
    )
    lines = [
        yaml.safe_dump(
            c.to_dict(), default_flow_style=True, sort_keys=False, allow_unicode=True, width=10**6
        ).strip()
        for c in columns
    ]
    return header + "columns:\n" + "".join(f"  - {line}\n" for line in lines)


def run(
    paths: ProjectPaths, source: Path, target: str, task: str | None, say: Callable[[str], None]
) -> dict[str, Any]:
    if not paths.params.is_file():
        raise SailError(
            f"no params.yaml in {paths.root}: run sail adopt inside a generated project"
        )
    frame = read_table(source)
    inferred = inference.infer(frame, target, task)
    raw = f"data/raw/data.{'csv' if kind(source) == 'csv' else 'parquet'}"
    params_text = paths.params.read_text()
    params = parse_params(yaml.safe_load(params_text))
    thresholds = baseline_thresholds(frame, target, inferred.task, params)
    labelled = frame[frame[target].notna()]
    minimums = evidence_minimums(labelled[target], inferred.task, params.split.test_size, params)
    limits = validation_limits(frame, target, params)
    new_params = updated_params(
        params_text, inferred.task, raw, target, thresholds, minimums, limits
    )
    parse_params(yaml.safe_load(new_params))  # what we write must load
    columns = inference.ordered(inferred.schema, [str(c) for c in frame.columns])

    dest = paths.root / raw
    old = paths.root / params.raw_data
    if old != dest:  # data.csv replaced by data.parquet, or the other way round
        if (paths.root / f"{params.raw_data}.dvc").is_file():
            dvc(paths.root, "remove", "--quiet", f"{params.raw_data}.dvc")
        old.unlink(missing_ok=True)
    if source.resolve() != dest.resolve():
        write_atomic(dest, lambda tmp: shutil.copyfile(source, tmp))
    write_atomic(paths.schema, lambda tmp: tmp.write_text(_schema_text(columns, source.name)))
    write_atomic(paths.params, lambda tmp: tmp.write_text(new_params))
    profile = profile_frame(inferred.schema, labelled, file_md5(dest))
    write_json(paths.profile, {"reference": profile, "last": profile})
    dvc(paths.root, "add", "--quiet", raw)
    say(inference.decisions_table(columns))
    bounds = (f"{m} {next(iter(b))} {next(iter(b.values()))}" for m, b in thresholds.items())
    raised = "".join(
        f"; validation.{k} raised to {v:g} (this data's gaps)" for k, v in limits.items()
    )
    say(
        f"task: {inferred.task} ({inferred.task_reason}); {len(frame) - len(labelled)} row(s) "
        f"without a label will be dropped; thresholds: {', '.join(bounds)}; gate evidence "
        f"minimums: {', '.join(f'{k} {v}' for k, v in minimums.items())}{raised}"
    )
    return {
        "data": raw,
        "task": inferred.task,
        "rows": len(frame),
        "features": len(inferred.schema.features),
        "ignored": [c.name for c in inferred.schema.ignored],
        "thresholds": thresholds,
        "validation": limits,
    }
