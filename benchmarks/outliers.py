"""What the outlier score adds to /predict on the compiled path: requests per CPU-second of the
real Flask app serving one bundle with its outlier detector and the same bundle without it.

    .venv/bin/python benchmarks/outliers.py [--requests 200] [--rounds 20]

The bundle is benchmarks/prediction_log.py's compiled logistic regression (8 numbers and a
category, the fastest model the server runs, so the worst case for the detector's share), with
the detector training fits (`training/outliers.py`: whitened PCA and a 100-tree IsolationForest)
attached to its ONNX graph. Requests go through Flask's test client in this process, timed in CPU
seconds, one row and 100 rows a request, in short rounds of a new random order each time; the
medians are printed with the added cost per request in percent of the time without the
detector (in process, that time is the request's p50). Goal: <= 10%.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from pathlib import Path

import numpy as np

from prediction_log import KEY, NUMBERS, bundle, rate
from sail_pipelines.inference import onnx_forest
from sail_pipelines.inference.serve import create_app
from sail_pipelines.integrity.bundle import METADATA, load_bundle, read_verified, write_bundle
from sail_pipelines.training import outliers


def with_detector(folder: Path, rows: np.ndarray) -> object:
    """The benchmark bundle again, with the detector fitted on its STL's output of `rows`."""
    plain = load_bundle(folder, KEY)
    files, _ = read_verified(folder, KEY)
    metadata = json.loads(files.pop(METADATA))
    transformed = plain.transformer.transform(rows)
    detector, detector_files, described = outliers.fitted(transformed, 0.99, 0)
    graph = onnx_forest.convert(plain.transformer, detector, plain.schema)
    trained = outliers.Trained(detector_files, described, graph, None)
    assert trained.attach(files) is None  # into model.onnx, as training does
    metadata["outliers"] = described
    dest = folder.parent / "with-detector"
    write_bundle(dest, {**files, **detector_files}, metadata, KEY)
    return load_bundle(dest, KEY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        plain = bundle(Path(tmp) / "bundle")
        import pandas as pd

        rows = pd.DataFrame(rng.normal(size=(500, 8)), columns=NUMBERS)
        rows["color"] = rng.choice(["a", "b"], size=500)
        detected = with_detector(Path(tmp) / "bundle", rows)
        apps = {"without": create_app(plain), "with": create_app(detected)}
        record = {**{n: 0.25 for n in NUMBERS}, "color": "a"}
        for size in (1, 100):
            body = json.dumps(record if size == 1 else [record] * size).encode()
            figures: dict[str, list[float]] = {name: [] for name in apps}
            for _ in range(args.rounds):
                for name, app in random.sample(list(apps.items()), len(apps)):
                    figures[name].append(rate(app, body, args.requests))
            without, with_ = (statistics.median(figures[n]) for n in ("without", "with"))
            added = 1 / with_ - 1 / without
            print(
                f"{size:>3} row(s): without {without:7.0f} req/CPU-s (p50 {1e3 / without:.3f} ms), "
                f"with {with_:7.0f} req/CPU-s: +{added * 1e6:.0f} us a request, "
                f"{100 * added * without:.1f}% of p50"
            )


if __name__ == "__main__":
    main()
