"""What the prediction log costs: requests/s of the real Flask app with and without it.

    .venv/bin/python benchmarks/prediction_log.py [--requests 200] [--rounds 40]

A compiled (ONNX Runtime) logistic regression on 8 numbers and a category, the fastest model the
server runs and so the worst case for the log's share, answers one-row /predict requests through
Flask's test client in this process: no network, and timed in CPU seconds of this process (other
load on the machine does not count), so the figure is requests per CPU-second of a worker. Short
rounds, in a new random order each time, run with no log, a file and a directory (one rotating
file per process); the median of each is printed with the overhead in percent. Goal: < 10%.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sail_pipelines.contract.schema import Column, Schema
from sail_pipelines.inference import onnx
from sail_pipelines.inference.prediction_log import LogSettings
from sail_pipelines.inference.serve import create_app
from sail_pipelines.integrity.bundle import (
    MODEL,
    ONNX_MODEL,
    TRANSFORMER,
    dump_object,
    load_bundle,
    write_bundle,
)
from sail_pipelines.integrity.signing import HmacKey

KEY = HmacKey(b"benchmark")
NUMBERS = [f"x{i}" for i in range(8)]
SCHEMA = Schema(
    target=Column("label", "category", values=(0, 1)),
    features=(
        *(Column(n, "float") for n in NUMBERS),
        Column("color", "category", values=("a", "b")),
    ),
)


def bundle(folder: Path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(500, 8)), columns=NUMBERS)
    frame["color"] = rng.choice(["a", "b"], size=500)
    frame["label"] = (frame.x0 + frame.x1 > 0).astype(int)
    features = frame[SCHEMA.feature_names]
    transformer = ColumnTransformer(
        [("n", StandardScaler(), NUMBERS), ("c", OneHotEncoder(handle_unknown="ignore"), ["color"])]
    ).fit(features)
    model = LogisticRegression().fit(transformer.transform(features), frame["label"])
    metadata = {
        "task": "classification",
        "schema": SCHEMA.to_dict(),
        "name": "bench",
        "classes": [0, 1],
        "probabilities": True,
        "registry": {"model": "bench", "version": "1"},
        "inference": {"runtime": "onnx"},
    }
    files = {
        MODEL: dump_object(model),
        TRANSFORMER: dump_object(transformer),
        ONNX_MODEL: onnx.convert(transformer, model, SCHEMA, classification=True),
    }
    write_bundle(folder, files, metadata, KEY)
    return load_bundle(folder, KEY)


def rate(app, body: bytes, n: int) -> float:
    client = app.test_client()
    for _ in range(50):  # warm up
        client.post("/predict", data=body, content_type="application/json")
    started = time.process_time()
    for _ in range(n):
        client.post("/predict", data=body, content_type="application/json")
    return n / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        served = bundle(Path(tmp) / "bundle")
        body = json.dumps({**{n: 0.25 for n in NUMBERS}, "color": "a"}).encode()
        (Path(tmp) / "dir").mkdir()
        apps = {
            "no log": create_app(served),
            "file": create_app(served, log_settings=LogSettings(str(Path(tmp) / "p.jsonl"))),
            "directory": create_app(served, log_settings=LogSettings(str(Path(tmp) / "dir"))),
        }
        figures: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(args.rounds):
            for name, app in random.sample(list(apps.items()), len(apps)):
                figures[name].append(rate(app, body, args.requests))
    base = statistics.median(figures["no log"])
    print(
        f"runtime: {served.runtime}, one-row /predict, {args.rounds} rounds of {args.requests} "
        "requests"
    )
    for name, rates in figures.items():
        median = statistics.median(rates)
        print(
            f"{name:>10}: {median:8.0f} requests/s  overhead {100 * (base - median) / base:5.1f}%"
        )


if __name__ == "__main__":
    main()
