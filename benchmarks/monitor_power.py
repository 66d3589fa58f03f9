"""How often `sail monitor` raises a false alarm, and how often it catches a real shift.

    .venv/bin/python benchmarks/monitor_power.py [--windows 200] [--sizes 100,250,1000]
        [--datasets example,penguins,economics,weather,diamonds,messy]

Per dataset (the shipped example, the public tables of tests/datasets.py and the generated
messy table): the schema `sail adopt` infers, the project's split (test_size 0.2, seed 42) as the
reference, and a plain scikit-learn model fitted on it for the predictions. Windows of each size
are drawn (seeded) from held-out rows the reference never saw, and judged by the monitor's own
comparison (`monitor.compare` over a `Traffic`, in process, default limits):
- false alarms: in-distribution windows with any breach;
- detection: windows with a breach naming the shifted feature, for a 0.5 sigma mean shift of the
  numeric feature with the most distinct values, a 15-point rise of the top category's share of
  the first category feature, and the first date feature moved by a year.
In-distribution windows are drawn without replacement: a size larger than the held-out pool is
"n/a". Shifted windows are drawn with replacement when the pool is smaller. Prints one table.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sail_pipelines.config import MonitoringConfig
from sail_pipelines.contract.infer import infer
from sail_pipelines.contract.schema import Schema
from sail_pipelines.contract.validate import profile_frame
from sail_pipelines.monitoring import monitor
from sail_pipelines.monitoring.logs import Traffic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from datasets import PUBLIC, PUBLIC_ROWS, messy_frame, public_frame  # noqa: E402

EXAMPLE = ROOT / "cookiecutter-sail" / "{{cookiecutter.project_slug}}" / "_task"
SHIFTS = ("mean 0.5 sd", "category +15 pts", "date +1 year")


def tables(name: str) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """The project's data, fresh rows from the same source when it has more, and the target."""
    if name == "example":
        return pd.read_csv(EXAMPLE / "classification" / "data.csv"), None, "target"
    if name == "messy":
        # more files like the first (a larger one would hold fewer rare cities and sentinels)
        fresh = pd.concat([messy_frame(seed=seed) for seed in range(8, 42)], ignore_index=True)
        return messy_frame(), fresh, "tier"
    frame = public_frame(name)
    rows = PUBLIC_ROWS.get(name)
    if rows is None:
        return frame, None, PUBLIC[name][0]
    sample = frame.sample(rows, random_state=0).sort_index()
    return sample, frame.drop(sample.index), PUBLIC[name][0]


def model(schema: Schema, task: str, train: pd.DataFrame):
    """A plain model on the features (dates as days): what the predictions drift is measured on."""
    numbers = schema.names("float", "int", "datetime")
    labels = schema.names("category", "bool")
    prepared = _prepare(schema, train)
    fitted = make_pipeline(
        ColumnTransformer(
            [
                ("n", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
                (
                    "c",
                    make_pipeline(
                        SimpleImputer(strategy="constant", fill_value="(missing)"),
                        OneHotEncoder(handle_unknown="ignore"),
                    ),
                    labels,
                ),
            ]
        ),
        LogisticRegression(max_iter=2000) if task == "classification" else Ridge(),
    )
    target = train[schema.target.name]
    keep = target.notna().to_numpy()
    fitted.fit(
        prepared[keep], target[keep].astype(str) if task == "classification" else target[keep]
    )
    return lambda rows: fitted.predict(_prepare(schema, rows))


def _prepare(schema: Schema, rows: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=rows.index)
    for column in schema.features:
        values = rows[column.name]
        if column.type in ("float", "int", "datetime"):
            numbers = monitor.as_numbers(column, values.to_numpy())
            out[column.name] = np.clip(np.nan_to_num(numbers, nan=np.nan), -1e12, 1e12)
        else:
            out[column.name] = (
                values.astype(object)
                .where(values.notna(), None)
                .map(lambda v: None if v is None else str(v))
            )
    return out


def traffic(schema: Schema, rows: pd.DataFrame, predictions: np.ndarray) -> Traffic:
    """A window as the prediction log gives it back: columns of plain values, None for gaps."""
    inputs = {
        c.name: [None if pd.isna(v) else v for v in rows[c.name].tolist()] for c in schema.features
    }
    n = len(rows)
    return Traffic(
        times=["2026-01-01T00:00:00.000+00:00"] * n,
        request_ids=[f"{i:032x}" for i in range(n)],
        positions=[0] * n,
        inputs=inputs,
        predictions=[p.item() if hasattr(p, "item") else p for p in predictions],
        requests=n,
    )


def shifted(schema: Schema, kind: str, rows: pd.DataFrame, train: pd.DataFrame, rng) -> str | None:
    """Applies one shift to the window in place; returns the feature it moved (None: no such
    feature in this table)."""
    if kind == SHIFTS[0]:
        spread = {
            c.name: pd.to_numeric(train[c.name], errors="coerce").std()
            for c in schema.features
            if c.type in ("float", "int")
        }
        numbers = [n for n, sd in spread.items() if np.isfinite(sd)]  # not a sentinel's
        if not numbers:
            return None
        name = max(numbers, key=lambda n: train[n].nunique())
        rows[name] = rows[name].astype(float) + 0.5 * spread[name]
        return name
    if kind == SHIFTS[1]:
        labels = schema.names("category")
        if not labels:
            return None
        name = labels[0]
        top = train[name].dropna().astype(str).value_counts().index[0]
        others = np.flatnonzero(rows[name].notna().to_numpy() & (rows[name].astype(str) != top))
        moved = round(0.15 * rows[name].notna().sum())
        rows.iloc[rng.choice(others, moved, replace=False), rows.columns.get_loc(name)] = top
        return name
    dates = schema.names("datetime")
    if not dates:
        return None
    name = dates[0]
    stamps = pd.to_datetime(rows[name], errors="coerce", format="ISO8601")
    rows[name] = (stamps + pd.Timedelta(days=365)).dt.strftime("%Y-%m-%dT%H:%M:%S")
    rows.loc[stamps.isna(), name] = None
    return name


@dataclass(frozen=True)
class Setup:
    """One dataset as a project holds it: schema, reference split, model and held-out pool."""

    name: str
    schema: Schema
    metadata: dict[str, Any]
    train: pd.DataFrame
    pool: pd.DataFrame
    predict: Callable[[pd.DataFrame], np.ndarray]
    base: monitor.Baseline


def prepare(name: str) -> Setup:
    data, fresh, target = tables(name)
    inferred = infer(data, target)
    schema, task = inferred.schema, inferred.task
    data = data[data[target].notna()]
    train, test = train_test_split(
        data,
        test_size=0.2,
        random_state=42,
        stratify=data[target] if task == "classification" else None,
    )
    predict = model(schema, task, train)
    metadata = {"task": task, "training_profile": profile_frame(schema, train, "h")}
    base = monitor.baseline(schema, metadata, train, MonitoringConfig(), predict(train))
    pool = pd.concat([test, fresh]) if fresh is not None else test
    return Setup(name, schema, metadata, train, pool, predict, base)


def breaches(setup: Setup, window: pd.DataFrame) -> list[str]:
    """The monitor's verdict on one window, with the default limits."""
    served = traffic(setup.schema, window, setup.predict(window))
    report = monitor.compare(
        setup.schema, setup.metadata, setup.train, served, MonitoringConfig(), setup.base
    )
    return report["breaches"]


def false_alarms(setup: Setup, n: int, windows: int, rng: np.random.Generator) -> float | None:
    """Share of in-distribution windows with any breach; None when the pool is smaller than n."""
    if n > len(setup.pool):
        return None
    pool = setup.pool
    return float(
        np.mean(
            [
                bool(breaches(setup, pool.iloc[rng.choice(len(pool), n, replace=False)]))
                for _ in range(windows)
            ]
        )
    )


def detection(
    setup: Setup, kind: str, n: int, windows: int, rng: np.random.Generator
) -> float | None:
    """Share of shifted windows with a breach naming the shifted feature; None: no such
    feature."""
    pool, schema = setup.pool, setup.schema
    if shifted(schema, kind, pool.iloc[:1].copy(), setup.train, rng) is None:
        return None
    caught = 0
    for _ in range(windows):
        window = pool.iloc[rng.choice(len(pool), n, replace=n > len(pool))].copy()
        feature = shifted(schema, kind, window, setup.train, rng)
        caught += any(b.startswith(f"{feature}:") for b in breaches(setup, window))
    return caught / windows


def evaluate(name: str, sizes: list[int], windows: int) -> list[list[str]]:
    setup = prepare(name)
    rows_out = []
    for n in sizes:
        rng = np.random.default_rng(n)
        rates = [false_alarms(setup, n, windows, rng)]
        rates += [detection(setup, kind, n, windows, rng) for kind in SHIFTS]
        cells = [name, str(n), str(len(setup.pool))]
        cells += ["n/a" if r is None else f"{r:.1%}" for r in rates]
        rows_out.append(cells)
        print(" | ".join(cells), flush=True)
    return rows_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--sizes", default="100,250,1000")
    parser.add_argument("--datasets", default="example,penguins,economics,weather,diamonds,messy")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    header = ["dataset", "n", "held-out pool", "false alarms", *SHIFTS]
    print(" | ".join(header))
    table = [
        row for name in args.datasets.split(",") for row in evaluate(name, sizes, args.windows)
    ]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in table:
        print("| " + " | ".join(row) + " |")
    print(f"\n{args.windows} windows per cell, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
