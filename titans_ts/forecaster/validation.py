"""Checks of :class:`TitansForecaster`'s parameters and arguments, in one place.

* :func:`check_params`: the forecaster's own parameters validated and normalised (NumPy scalars
  become Python numbers, so a fitted model saves, reloads and checkpoints like any other); the
  training ones through :class:`titans_ts.model.config.TrainingConfig`;
* :func:`check_levels` / :func:`check_quantiles`: ``predict``'s interval levels and quantile
  levels, validated as the constructor validates ``quantiles``.
"""

from __future__ import annotations

import datetime
import numbers
from typing import Any, Sequence

import numpy as np

from ..defaults import parse_time_budget

# (the online package's OnlineConfig imports the limit_train_batches check from here)
from ..model.config import _limit_batches  # noqa: F401

__all__ = ["check_params", "check_levels", "check_quantiles", "plain"]

_POSITIVE_INTS = ("h",)
_OPTIONAL_POSITIVE_INTS = ("context_length", "ensemble")  # None: chosen from the data


def plain(value: Any) -> Any:
    """``value`` with NumPy scalars (also inside lists, tuples and dicts) as Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def _positive_int(name: str, value: Any, none: bool = False) -> int | None:
    if value is None and none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if none else ''}, got {value!r}")
    return int(value)


def check_params(est) -> None:
    """Validate ``est``'s parameters and store them as plain Python values (NumPy integers and
    floats become ``int`` / ``float``: the same values, in a form every file format keeps)."""
    for name in est._get_param_names():
        setattr(est, name, plain(getattr(est, name)))
    for name in _POSITIVE_INTS:
        setattr(est, name, _positive_int(name, getattr(est, name)))
    for name in _OPTIONAL_POSITIVE_INTS:
        setattr(est, name, _positive_int(name, getattr(est, name), none=True))
    training = est._training()  # lr, weight_decay, loss, batch_size, max_epochs, patience, limit_train_batches
    est.lr, est.weight_decay, est.batch_size = training.lr, training.weight_decay, training.batch_size
    est.max_epochs, est.limit_train_batches = training.max_epochs, training.limit_train_batches
    if est.val_size is not None and (isinstance(est.val_size, bool) or not isinstance(
            est.val_size, numbers.Integral) or est.val_size < 0):
        raise ValueError(f"val_size must be None or an integer >= 0, got {est.val_size!r}")
    if not isinstance(est.naive_fallback, (bool, np.bool_)):
        raise ValueError(f"naive_fallback must be True or False, got {est.naive_fallback!r}")
    est.naive_fallback = bool(est.naive_fallback)
    parse_time_budget(est.time_budget)  # a ValueError naming the forms it takes
    if isinstance(est.time_budget, datetime.timedelta):  # kept as seconds: a number every file format keeps
        est.time_budget = est.time_budget.total_seconds()
    if isinstance(est.seed, bool) or not isinstance(est.seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {est.seed!r}")
    if isinstance(est.quantiles, list):
        est.quantiles = tuple(est.quantiles)
    if est.cycle_len is not None and (isinstance(est.cycle_len, bool) or not isinstance(
            est.cycle_len, numbers.Integral) or est.cycle_len < 0):
        raise ValueError(f"cycle_len must be a non-negative integer or None (chosen from the data), got "
                         f"{est.cycle_len!r}")
    est._config(1)


def _sequence(name: str, values: Any, what: str) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) and not isinstance(
            values, np.ndarray):
        example = "[80, 95]" if name == "levels" else "[0.1, 0.9]"
        raise ValueError(f"{name} must be a sequence of {what}, e.g. {name}={example}, got {values!r}")
    return list(values)


def check_levels(levels: Any) -> list[float]:
    """Interval levels in percent: a sequence of numbers strictly between 0 and 100."""
    if levels is None:
        return []
    out = []
    for lv in _sequence("levels", levels, "percentages strictly between 0 and 100"):
        if isinstance(lv, (bool, np.bool_)) or not isinstance(lv, numbers.Real) or not 0 < float(lv) < 100:
            raise ValueError(f"levels must be percentages strictly between 0 and 100, e.g. "
                             f"levels=[80, 95]; got {lv!r} in {levels!r}")
        out.append(float(lv))
    return out


def check_quantiles(quantiles: Any) -> list[float] | None:
    """Quantile levels: a sequence of numbers strictly between 0 and 1 (None stays None)."""
    if quantiles is None:
        return None
    out = []
    for q in _sequence("quantiles", quantiles, "levels strictly between 0 and 1"):
        if isinstance(q, (bool, np.bool_)) or not isinstance(q, numbers.Real) or not 0 < float(q) < 1:
            raise ValueError(f"quantiles must be levels strictly between 0 and 1, e.g. "
                             f"quantiles=[0.1, 0.9]; got {q!r} in {quantiles!r}")
        out.append(float(q))
    return out
