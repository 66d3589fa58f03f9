"""Building blocks for a project's Shared Transformation Layer that scikit-learn lacks.

They live in sail-pipelines, not in the generated project, because the fitted STL is pickled
into the model bundle: everything that unpickles it (the metric image, the inference image,
`sail predict`) has sail-pipelines installed, and nothing else of the project.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from sail_pipelines.contract.calendar import PARTS, calendar, has_times


class CalendarFeatures(TransformerMixin, BaseEstimator):
    """ISO 8601 date/time strings to numbers a model can use: year, month, day of week and day of
    year, plus the hour when the training data had times of day. Unparseable or missing values
    become NaN, for the imputer that follows. Times are compared in UTC. The numbers come from
    `contract.calendar`, which the compiled path's request decoder calls too."""

    def fit(self, X: Any, y: Any = None) -> "CalendarFeatures":
        frame = pd.DataFrame(X)
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        self.with_hour_ = [has_times(frame[c]) for c in frame.columns]
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "with_hour_")
        frame = (
            pd.DataFrame(X, columns=self.feature_names_in_)
            if not isinstance(X, pd.DataFrame)
            else X
        )
        parts = [
            calendar(frame[column], hour)
            for column, hour in zip(self.feature_names_in_, self.with_hour_, strict=True)
        ]
        return np.hstack(parts) if parts else np.empty((len(frame), 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "with_hour_")
        names = []
        for column, hour in zip(self.feature_names_in_, self.with_hour_, strict=True):
            names += [f"{column}_{part}" for part in PARTS] + ([f"{column}_hour"] if hour else [])
        return np.asarray(names, dtype=object)


class OutlierClipper(TransformerMixin, BaseEstimator):
    """Clip each numeric column to a wide band around its training spread: the 1st to 99th
    percentile range, widened by that range on each side (about ±7 standard deviations for normal
    data). Ordinary values pass untouched; a sentinel such as 1e308, in training data or in a
    request, cannot overflow the scaler after it or dominate a linear model."""

    def __init__(self, quantile: float = 0.01, widen: float = 1.0):
        self.quantile = quantile
        self.widen = widen

    def fit(self, X: Any, y: Any = None) -> "OutlierClipper":
        values = np.asarray(X, dtype=float)
        self.n_features_in_ = values.shape[1]
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        with np.errstate(all="ignore"):
            low, high = np.nanquantile(values, [self.quantile, 1 - self.quantile], axis=0)
            spread = np.nan_to_num(high - low, nan=0.0, posinf=0.0)
            self.lower_ = np.nan_to_num(low - self.widen * spread, nan=-np.inf)
            self.upper_ = np.nan_to_num(high + self.widen * spread, nan=np.inf)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "lower_")
        return np.clip(np.asarray(X, dtype=float), self.lower_, self.upper_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        if input_features is not None:
            return np.asarray(input_features, dtype=object)
        return getattr(
            self,
            "feature_names_in_",
            np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object),
        )
