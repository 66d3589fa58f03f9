"""The Shared Transformation Layer (STL): the one place this project defines feature
transformations.

Why it exists: training and serving must turn raw features into model inputs in exactly the
same way, or the model silently sees different data in production than it was scored on.
So the transformer built here is

* fitted ONCE, at training time, on the training split only (no test rows leak into it);
* saved, fitted, inside the signed model bundle next to the model;
* applied unchanged to the test split, to batch files and to every API request;
  it is never refitted per request or per batch.

`params.yaml` points at `build_transformer` (key `transform`); `sail train` calls it with the
feature columns of `contracts/schema.yaml` by kind. Only scikit-learn and sail-pipelines classes
are used, so the fitted bundle loads wherever those are installed, without this package.
Add steps here, not in training or serving code, and keep them stateless outside `fit`.
"""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sail_pipelines.contract.transformers import CalendarFeatures, OutlierClipper


def build_transformer(
    numeric: list[str],
    categorical: list[str],
    datetime: list[str] = (),
    categories: dict[str, list] | None = None,
) -> ColumnTransformer:
    """Return an UNFITTED transformer for the given feature columns.

    numeric:     float, int and bool (0/1) columns: median imputation, clipping of extreme
                 outliers to a wide band around the training spread, then standardisation
                 (statistics learned from the training split).
    categorical: most-frequent imputation, then one-hot encoding of the values the schema lists
                 (`categories`, when given); a value outside them (a rare or unseen one) encodes as
                 all zeros, one shared "other" bucket, instead of failing a request.
    datetime:    ISO 8601 strings to year, month, day of week, day of year (and hour, when the
                 training data has times), then imputed and scaled like numbers.
    Output is a dense array whose columns are named by `get_feature_names_out()`.
    """
    numeric_steps = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("clip", OutlierClipper()),
            ("scale", StandardScaler()),
        ]
    )
    categorical_steps = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            (
                "one_hot",
                OneHotEncoder(
                    categories=[list(categories[c]) for c in categorical] if categories else "auto",
                    handle_unknown="ignore",
                    sparse_output=False,
                ),
            ),
        ]
    )
    datetime_steps = Pipeline(
        [
            ("calendar", CalendarFeatures()),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]
    )
    return ColumnTransformer(
        [
            ("numeric", numeric_steps, list(numeric)),
            ("categorical", categorical_steps, list(categorical)),
            ("datetime", datetime_steps, list(datetime)),
        ],
        remainder="drop",
        sparse_threshold=0.0,
        verbose_feature_names_out=False,
    )
