"""The Shared Transformation Layer (STL): the one place this project defines feature transformations.

Why it exists: training and serving must turn raw features into model inputs in exactly the
same way, or the model silently sees different data in production than it was scored on.
So the transformer built here is

* fitted ONCE, at training time, on the training split only (no test rows leak into it);
* saved, fitted, inside the signed model bundle next to the model;
* applied unchanged to the test split, to batch files and to every API request;
  it is never refitted per request or per batch.

`params.yaml` points at `build_transformer` (key `transform`), `contracts/schema.yaml` decides
which columns are numeric (float/int) and which are categorical. Only scikit-learn built-ins
are used, so the bundle loads wherever scikit-learn is installed, without this package.
Add steps here, not in training or serving code, and keep them stateless outside `fit`.
"""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def build_transformer(numeric: list[str], categorical: list[str]) -> ColumnTransformer:
    """Return an UNFITTED transformer for the given feature columns.

    numeric:     median imputation, then standardisation (statistics learned from the training split).
    categorical: most-frequent imputation, then one-hot encoding; categories never seen in
                 training encode as all zeros instead of failing a request.
    Output is a dense array whose columns are named by `get_feature_names_out()`.
    """
    numeric_steps = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
        ]
    )
    categorical_steps = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    return ColumnTransformer(
        [
            ("numeric", numeric_steps, list(numeric)),
            ("categorical", categorical_steps, list(categorical)),
        ],
        remainder="drop",
        sparse_threshold=0.0,
        verbose_feature_names_out=False,
    )
