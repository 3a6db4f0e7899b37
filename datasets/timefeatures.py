"""Calendar features: future-known covariates computed from the timestamps.

``time_features="auto"`` picks the usual ones for the data's frequency, GluonTS's table
(``gluonts.time_feature.time_features_from_frequency_str``, which is what GluonTS's own
estimators, DeepAR among them, use by default): minute of hour (sub-hourly), hour of day
(sub-daily), day of week, day of month and day of year (daily and shorter), week of year and day
of month (weekly), month of year (monthly and quarterly), none for yearly data. A list picks by
name among :data:`TIME_FEATURES`. Every feature is GluonTS's encoding: the position in its cycle
mapped linearly onto [-0.5, 0.5] (e.g. day of week: Monday -0.5 ... Sunday 0.5), read on the
timestamps' own wall clock (a zoned series is read in its zone).

    >>> import pandas as pd
    >>> resolve_time_features("auto", "D")
    ['day_of_week', 'day_of_month', 'day_of_year']
    >>> time_feature_values(pd.date_range("2024-01-01", periods=2, freq="D"), ["day_of_week"])
    array([[-0.5       ],
           [-0.33333334]], dtype=float32)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = ["TIME_FEATURES", "resolve_time_features", "time_feature_values", "time_feature_functions"]

#: the calendar features by name (GluonTS's functions of the same names)
TIME_FEATURES = ("second_of_minute", "minute_of_hour", "hour_of_day", "day_of_week", "day_of_month",
                 "day_of_year", "week_of_year", "month_of_year")


def time_feature_functions(names: Sequence[str]) -> list:
    """GluonTS's feature functions of ``names`` (what ``AddTimeFeatures`` and DeepAR take)."""
    import gluonts.time_feature as tf

    return [getattr(tf, name) for name in names]


def resolve_time_features(spec: Any, freq: Any) -> list[str]:
    """The feature names of a ``time_features`` setting: None / False (none), "auto" (the
    frequency's usual ones) or a sequence of names of :data:`TIME_FEATURES`."""
    if spec is None or spec is False:
        return []
    if isinstance(spec, str):
        if spec != "auto":
            raise ValueError(f"time_features must be None, 'auto' or a list of names among "
                             f"{list(TIME_FEATURES)}, got {spec!r}")
        if freq is None or not isinstance(freq, str):
            have = "none" if freq is None else f"integer steps ({freq})"
            raise ValueError("time_features='auto' needs the data's frequency (timestamps with a "
                             f"pandas frequency); these data have {have}. Pass freq=... or leave "
                             "time_features off")
        from gluonts.time_feature import time_features_from_frequency_str

        try:
            return [f.__name__ for f in time_features_from_frequency_str(freq)]
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"time_features='auto' has no table for frequency {freq!r} ({err}); "
                             f"name the features instead, among {list(TIME_FEATURES)}") from None
    if not isinstance(spec, (list, tuple)) or not spec:
        raise ValueError(f"time_features must be None, 'auto' or a non-empty list of names among "
                         f"{list(TIME_FEATURES)}, got {spec!r}")
    unknown = [s for s in spec if s not in TIME_FEATURES]
    if unknown:
        raise ValueError(f"unknown time feature(s) {unknown}; known: {list(TIME_FEATURES)}")
    if len(set(spec)) != len(spec):
        raise ValueError(f"time_features names a feature twice: {list(spec)}")
    return list(spec)


def time_feature_values(index: Any, names: Sequence[str]) -> np.ndarray:
    """[T, K] float32 values of the features ``names`` at the timestamps ``index``."""
    if not names:
        return np.zeros((len(index), 0), np.float32)
    if index is None or not isinstance(index, (pd.DatetimeIndex, pd.PeriodIndex)):
        kind = "no timestamps" if index is None else f"{type(index).__name__} steps"
        raise ValueError(f"time features need timestamps; this series has {kind}. Leave "
                         f"time_features off for data without a calendar")
    cols = [np.asarray(f(index), dtype=np.float64) for f in time_feature_functions(names)]
    return np.stack(cols, 1).astype(np.float32)
