"""How long `sail monitor` takes on 1,000,000 logged rows.

    .venv/bin/python benchmarks/monitor.py [--rows 1000000] [--per-line 1]

Writes a prediction log as the API writes it, one request per line (`--per-line` records each:
1 is API traffic at its most expensive to read; 50000 is `sail predict`'s chunks), for a model of
8 numeric features and a category spread over three days, then times reading it back and the
whole comparison with a 10,000-row training split (drift, ranges, missing values, predictions and
the window-to-window check). Prints the seconds of each part.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sail_pipelines.config import MonitoringConfig
from sail_pipelines.contract.schema import Column, Schema
from sail_pipelines.contract.validate import profile_frame
from sail_pipelines.monitoring import logs, monitor

NUMBERS = [f"x{i}" for i in range(8)]
SCHEMA = Schema(
    target=Column("label", "category", values=(0, 1)),
    features=(
        *(Column(n, "float") for n in NUMBERS),
        Column("color", "category", values=("a", "b", "c")),
    ),
)


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(rng.normal(size=(rows, len(NUMBERS))), columns=NUMBERS)
    data["color"] = rng.choice(["a", "b", "c"], size=rows)
    data["label"] = (data.x0 > 0).astype(int)
    return data


def write_log(path: Path, rows: int, per_line: int) -> None:
    served = frame(rows, 2)
    days = np.repeat(["2026-01-01", "2026-01-02", "2026-01-03"], -(-rows // 3))[:rows]
    columns = {n: served[n].round(6).tolist() for n in [*NUMBERS, "color"]}
    p1 = (1 / (1 + np.exp(-served.x0.to_numpy()))).round(6)
    one, zero, label = p1.tolist(), (1 - p1).round(6).tolist(), (p1 > 0.5).astype(int).tolist()
    with open(path, "w") as fh:
        for start in range(0, rows, per_line):
            end = start + per_line
            line = {
                "time": f"{days[start]}T12:00:00.000+00:00",
                "request_id": f"{start:032x}",
                "model": "m",
                "version": "1",
                "bundle_id": "b",
                "route": "/predict",
                "status": 200,
                "latency_ms": 1.0,
                "inputs": {n: values[start:end] for n, values in columns.items()},
                "outputs": {
                    "prediction": label[start:end],
                    "probabilities": {"0": zero[start:end], "1": one[start:end]},
                },
            }
            fh.write(json.dumps(line, separators=(",", ":")) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--per-line", type=int, default=1)
    args = parser.parse_args()
    train = frame(10_000, 1)
    metadata = {"task": "classification", "training_profile": profile_frame(SCHEMA, train, "h")}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "predictions.jsonl"
        write_log(log, args.rows, args.per_line)
        size = log.stat().st_size / 1e6
        started = time.perf_counter()
        traffic = logs.read(str(log))
        read = time.perf_counter() - started
        started = time.perf_counter()
        report = monitor.compare(SCHEMA, metadata, train, traffic, MonitoringConfig())
        compared = time.perf_counter() - started
    print(
        f"{traffic.rows:,} rows, {args.per_line} per line ({size:.0f} MB): read {read:.1f} s, "
        f"compare {compared:.1f} s, total {read + compared:.1f} s; {len(report['breaches'])} "
        "breaches"
    )


if __name__ == "__main__":
    main()
