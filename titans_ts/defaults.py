"""Data-aware defaults: the settings a user who gives only the frequency and the horizon gets.

One set of rules, used by :class:`titans_ts.TitansForecaster` and
:class:`titans_ts.gluonts.TitansEstimator` for every setting left at ``None``:

* **Seasonal periods** from the frequency (:func:`seasonal_periods`): a day and a week of
  sub-daily data (hourly: 24, 168; 15-minute: 96, 672), a week and a year of daily data (7,
  365), a year of weekly (52), monthly (12) and quarterly (4) data; none for yearly data,
  integer steps or an unknown frequency. A multiple (``"2h"``) divides the periods it can.
* **Useful seasons** (:func:`useful_seasons`): a period is useful when the typical (median)
  training series holds at least two of its cycles beside the horizon: a context can then show
  one whole cycle and the model has seen it repeat. NN5's 735 training days make the week useful,
  not the year.
* **Context length** (:func:`context_length`): the longer of two horizons (what the GluonTS
  models and the Monash backtest use) and one and a quarter of the longest useful season (a
  context *longer* than the season, so that the step one season before each forecast step is in
  it: a week and a day of hourly data); never longer than the typical training series, since
  contexts beyond the data are padding. A season whose context would exceed 1024 steps is not
  used (a week of 10-minute or finer data, a day of 1-minute data): such contexts cost memory
  and time out of proportion for a default; give ``context_length`` to go further.
* **Learned cycle** (:func:`cycle_length`): the shortest useful season (the daily cycle of
  hourly data), only for data that are one series (its channels), because the cycle is one
  pattern per channel shared by every series (CycleNet's); a panel of unrelated series gets
  none.
* **Training budget** (:func:`training_budget`, :func:`budget_steps`): ten passes over the
  training windows (at least 600 optimiser steps), in epochs of at most 50 batches so that early
  stopping on the validation tail (the last horizon of every series, held out of training)
  checks often; it stops after 250 steps (5 epochs of 50 batches) without improvement and keeps
  the best epoch's weights. **Within a wall-clock target** (``time_budget``, default
  :data:`TIME_BUDGET`, 5 minutes: :func:`parse_time_budget`): before training, ``fit`` times a
  few optimiser steps on a copy of the network (:func:`titans_ts.training.step_seconds`; the
  estimator adds a few batches of its GluonTS loader, which draws windows as it trains) and
  trains at most the steps that fit in :data:`TIME_SHARE` of the target at that speed (the
  rest is left to validation and checkpoints); Lightning's ``max_time`` stops it at the target
  in any case. Large panels are then bounded by time, small ones by passes and early stopping.
  Where the seconds go (the hourly development panel, :func:`titans_ts.datasets.panels.hourly_panel`:
  388 series, 253 000 training windows of context 210): the network's forward and backward
  passes, about evenly, the memory op a third of them; the forecaster's window loading and the
  optimiser take a few percent, validating the tails a fraction of a second per epoch (the
  estimator's steps took 33 ms against its network's 22 ms on a loaded machine: its GluonTS
  loader and Lightning's per-step work). At the 34 ms per
  step of one quiet CPU thread, 5 minutes hold about 7000 steps, nine tenths of a pass. The
  number of steps depends on the machine's speed, so a fit that must repeat exactly gives
  ``max_epochs`` (or ``time_budget=None``: passes only).
* **An ensemble where the time budget has room** (:func:`ensemble_size`): when one network's
  steps (the passes rule) take at most half of the time budget's share at the probed speed,
  ``fit`` trains as many networks as fit in it, up to :data:`ENSEMBLE` (3), one after another,
  each alone with seed ``seed + k`` (its own initialisation, window order, dropout draws and
  early stopping), and forecasts their mean (``ensemble_`` and
  ``chosen_defaults_["ensemble"]``); large panels, bounded by time, keep one network. Evidence
  (``benchmarks/defaults_validation.py``, the benchmark's sets with their test windows removed,
  scored on the last horizon of the training data): the mean forecast of three independently
  trained networks had a lower MASE than the networks' mean MASE on every set measured
  (docs/benchmarks/defaults.md). ``ensemble=1`` (or a count) overrides it; the Student-t head
  and ``test_time_memory`` train one network.
* **Series too short to train on** (:func:`min_train_length`): a training window needs
  :data:`MIN_PAST` past steps (the network's RevIN scales each window by its context's spread,
  which one value does not have) and ``h`` future ones, so a series of fewer than ``h + 2``
  steps gives none. ``TitansForecaster`` forecasts such series (with a warning naming them) by
  their seasonal naive where they hold one whole season, else by repeating their last value;
  data where no series is long enough are refused with an error (both front-ends).
* **Calendar features** (:func:`calendar_needed`, ``TitansForecaster``'s
  ``time_features="data"``, its default): the frequency's usual features (``"auto"``) where the
  year is one of the frequency's seasons (daily, weekly, monthly, quarterly data) and the
  typical series is too short to show it twice beside the horizon, so that the context cannot
  hold the step a year before; none otherwise (sub-daily data, long series, integer steps, the
  test-time memory).
  Evidence on the validation tails (``benchmarks/defaults_validation.py``, one network, three
  seeds): ``time_features="auto"`` lowered the MASE of NN5 daily by 8.7 % and NN5 weekly by
  12.7 %, the two sets where the rule turns them on; on the sets with a year in the context
  the effect was mixed (m3_monthly +2.3 %, m1_monthly +0.2 %, m1_quarterly +0.1 %,
  m3_quarterly -2.6 %, hospital -1.9 %), so they stay off there. ``TitansEstimator`` keeps
  them off unless asked for.
* **Robust settings** (:data:`ROBUST`): dropout 0.2 and RevIN centred on the context's mean,
  the values the validation selection of the benchmark recipes (docs/benchmarks.md,
  'Configuration selection') chose most often; the point head's loss ``"mae"`` (the median:
  the scale-free errors forecasters are judged on, MASE and sMAPE, reward it and it is robust to
  outliers).

Every choice, with its reason, is returned by :func:`data_defaults` (and kept on the fitted
model as ``chosen_defaults_``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["seasonal_periods", "useful_seasons", "context_length", "cycle_length",
           "training_budget", "budget_steps", "time_steps", "parse_time_budget", "epochs_for",
           "batches_per_epoch", "tail_sizes", "min_train_length", "MAX_SEASON_CONTEXT",
           "data_defaults", "DataDefaults", "ROBUST", "MIN_STEPS", "PASSES", "MIN_PAST",
           "TIME_BUDGET", "TIME_SHARE", "BATCHES_PER_EPOCH", "PATIENCE_STEPS", "ENSEMBLE", "ensemble_size",
           "yearly_period", "calendar_needed", "typical_length"]

#: settings the benchmark recipes' validation selection chose most often
ROBUST: dict[str, Any] = {"dropout": 0.2, "revin_center": "mean", "loss": "mae"}
PASSES = 10             # passes over the training windows
MIN_STEPS = 600         # optimiser steps at least (small sets), within the time budget
TIME_BUDGET = 300.0     # seconds: the default wall-clock target of the data-aware budget
TIME_SHARE = 0.8        # of the time budget, for the optimiser steps (validation, checkpoints: the rest)
MIN_PAST = 2            # past steps a training window holds at least
BATCHES_PER_EPOCH = 50  # an epoch, for early stopping's checks
PATIENCE_STEPS = 250    # steps without a better validation loss before stopping
ENSEMBLE = 3            # networks in an ensemble at most, where the time budget has room
MAX_SEASON_CONTEXT = 1024  # longest context a season may ask for (a week of 15-minute data fits)

_DAY, _WEEK = 86_400, 7 * 86_400
# periods per frequency unit that is not a fixed duration (pandas offset names)
_CALENDAR = {"D": (7, 365), "B": (5, 260), "C": (5, 260), "W": (52,), "M": (12,), "MS": (12,),
             "ME": (12,), "BM": (12,), "BMS": (12,), "BME": (12,), "SM": (24,), "SMS": (24,),
             "SME": (24,), "Q": (4,), "QS": (4,), "QE": (4,), "BQ": (4,), "BQS": (4,), "BQE": (4,),
             "A": (), "AS": (), "Y": (), "YS": (), "YE": (), "BA": (), "BAS": (), "BY": (),
             "BYS": (), "BYE": ()}


def seasonal_periods(freq: Any) -> tuple[int, ...]:
    """Steps per natural season of ``freq``, shortest first (see the module's notes).

    >>> seasonal_periods("h"), seasonal_periods("15min"), seasonal_periods("D"), seasonal_periods("MS")
    ((24, 168), (96, 672), (7, 365), (12,))
    """
    if freq is None or not isinstance(freq, str):
        return ()
    import pandas as pd
    from pandas.tseries.frequencies import to_offset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas-1 aliases ("M", "Y") parse, with a warning
        try:
            offset = to_offset(freq)
        except (TypeError, ValueError):
            return ()
    n = max(int(getattr(offset, "n", 1)), 1)
    name = offset.name.split("-")[0]
    if name == "D":  # a Day is a Tick in pandas, but its seasons are calendar ones
        base = _CALENDAR["D"]
    elif isinstance(offset, pd.offsets.Tick):
        step = pd.Timedelta(offset).total_seconds()
        base = tuple(int(p // step) for p in (_DAY, _WEEK) if step < p and p % step == 0)
        return tuple(p for p in base if p >= 2)
    else:
        base = _CALENDAR.get(name, ())
    return tuple(p // n for p in base if p % n == 0 and p // n >= 2)


def yearly_period(freq: Any) -> int | None:
    """Steps per year of a calendar frequency (daily 365, weekly 52, monthly 12, quarterly 4);
    None for sub-daily frequencies (their seasons are a day and a week) and unknown ones."""
    periods = seasonal_periods(freq)
    if not periods:
        return None
    import pandas as pd
    from pandas.tseries.frequencies import to_offset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        offset = to_offset(freq)
    if isinstance(offset, pd.offsets.Tick) and offset.name.split("-")[0] != "D":
        return None
    return int(periods[-1])


def calendar_needed(freq: Any, typical_length: int, horizon: int) -> bool:
    """Whether the frequency's calendar features carry a season the context cannot: the year
    is a season of ``freq`` and the typical series is too short to show it twice beside the
    horizon."""
    year = yearly_period(freq)
    return year is not None and not useful_seasons((year,), typical_length, horizon)


def typical_length(lengths: Sequence[int] | np.ndarray, horizon: int,
                   val_size: int | Sequence[int] | np.ndarray | None = None) -> int:
    """The median training length of series of ``lengths`` steps once their validation tails
    (``val_size``; None: :func:`tail_sizes` of the horizon) are held out."""
    lens = np.asarray([int(n) for n in lengths], dtype=np.int64)
    if val_size is None:
        val_size = tail_sizes(lens, horizon, horizon)
    tails = np.broadcast_to(np.asarray(val_size, dtype=np.int64), lens.shape)
    return int(np.median(lens - tails))


def useful_seasons(periods: Sequence[int], typical_length: int, horizon: int) -> tuple[int, ...]:
    """The periods whose two cycles fit in a typical training series beside the horizon."""
    return tuple(p for p in periods if 2 * p + horizon <= typical_length)


def context_length(horizon: int, seasons: Sequence[int], typical_length: int) -> int:
    """max(2 horizon, 1.25 x the longest useful season of at most ``MAX_SEASON_CONTEXT`` steps),
    at most the typical training length (and at least the horizon)."""
    fits = [p for p in seasons if math.ceil(1.25 * p) <= MAX_SEASON_CONTEXT]
    L = max(2 * horizon, math.ceil(1.25 * max(fits)) if fits else 0)
    return int(max(1, min(L, max(horizon, typical_length))))


def cycle_length(seasons: Sequence[int], n_series: int) -> int:
    """The shortest useful season for data that are one series; 0 for a panel."""
    return int(seasons[0]) if seasons and n_series == 1 else 0


def budget_steps(n_windows: int, batch_size: int) -> int:
    """Optimiser steps by the data: ``PASSES`` passes over the windows, at least ``MIN_STEPS``
    (the time budget bounds them further: :func:`time_steps`)."""
    return int(max(MIN_STEPS, math.ceil(PASSES * max(n_windows, 1) / batch_size)))


def time_steps(time_budget: float | None, seconds_per_step: float | None) -> int | None:
    """The optimiser steps that fit in ``TIME_SHARE`` of ``time_budget`` seconds at
    ``seconds_per_step`` (at least 1); None without a budget or a timing."""
    if time_budget is None or not seconds_per_step or seconds_per_step <= 0:
        return None
    return max(1, int(TIME_SHARE * time_budget / seconds_per_step))


def ensemble_size(steps: int, time_budget: float | None, seconds_per_step: float | None) -> int:
    """Networks in the ensemble: as many as fit ``steps`` steps each in ``TIME_SHARE`` of
    ``time_budget`` seconds at ``seconds_per_step`` per network and step, at most
    :data:`ENSEMBLE`; 1 without a budget or a timing."""
    if time_budget is None or not seconds_per_step or seconds_per_step <= 0 or steps < 1:
        return 1
    return int(max(1, min(ENSEMBLE, TIME_SHARE * time_budget // (steps * seconds_per_step))))


_BUDGET_HELP = ("a duration such as '90s', '5min' or '1h', a number of seconds, a datetime.timedelta, "
                "or None (no wall-clock target: the passes rule alone)")


def parse_time_budget(value: Any) -> float | None:
    """A wall-clock target in seconds (> 0), or None: from a number of seconds, a duration text
    pandas reads (``"90s"``, ``"5min"``, ``"1h30min"``), a ``datetime.timedelta``, or None."""
    import datetime as _dt

    import pandas as pd

    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        seconds = float("nan")
    elif isinstance(value, (int, float, np.integer, np.floating)):
        seconds = float(value)
    elif isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        try:
            seconds = pd.Timedelta(value.strip()).total_seconds()
        except (TypeError, ValueError):
            seconds = float("nan")
    else:
        seconds = float("nan")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"time_budget must be a positive duration: {_BUDGET_HELP}; got {value!r}")
    return seconds


def batches_per_epoch(limit: int | float, n_batches: int) -> int:
    """Batches an epoch runs under Lightning's ``limit_train_batches`` (a count, or a fraction
    of the ``n_batches`` available)."""
    return min(limit, n_batches) if isinstance(limit, int) else max(1, int(limit * n_batches))


def epochs_for(steps: int, per_epoch: int) -> tuple[int, int]:
    """(max_epochs, patience in epochs) for ``steps`` optimiser steps in epochs of ``per_epoch``
    batches."""
    per_epoch = max(1, int(per_epoch))
    return int(math.ceil(steps / per_epoch)), int(math.ceil(PATIENCE_STEPS / per_epoch))


def training_budget(n_windows: int, batch_size: int,
                    cyclic: bool = False) -> tuple[int, int, int]:
    """(max_epochs, batches per epoch, patience in epochs): ``PASSES`` passes over the windows
    (at least ``MIN_STEPS`` optimiser steps), epochs of at most ``BATCHES_PER_EPOCH``
    batches (exactly that many where batches cycle over the data, ``cyclic``: GluonTS's loaders),
    patience ``PATIENCE_STEPS`` steps."""
    steps = budget_steps(n_windows, batch_size)
    per_epoch = BATCHES_PER_EPOCH if cyclic else \
        min(BATCHES_PER_EPOCH, max(1, math.ceil(max(n_windows, 1) / batch_size)))
    epochs, patience = epochs_for(steps, per_epoch)
    return epochs, int(per_epoch), patience


@dataclass(frozen=True)
class DataDefaults:
    """The data-aware choices for one training set, with the facts they rest on."""

    context_length: int
    cycle_len: int
    steps: int
    max_epochs: int
    num_batches_per_epoch: int
    patience: int
    seasons: tuple[int, ...]
    useful_seasons: tuple[int, ...]
    typical_length: int
    n_series: int
    n_windows: int
    validation: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seasons"], d["useful_seasons"] = list(self.seasons), list(self.useful_seasons)
        return d


def min_train_length(horizon: int) -> int:
    """Steps a series needs for one training window: ``MIN_PAST`` past and ``horizon`` future."""
    return int(horizon) + MIN_PAST


def tail_sizes(lengths: Iterable[int], horizon: int, val_size: int) -> list[int]:
    """The validation tail each series can hold: ``val_size`` where a training window
    (:func:`min_train_length`) stays beside it, else 0 (the series trains whole)."""
    return [int(val_size) if int(n) >= min_train_length(horizon) + val_size else 0 for n in lengths]


def data_defaults(freq: Any, horizon: int, lengths: Sequence[int], batch_size: int,
                  val_size: int | Sequence[int] | None = None, context: int | None = None,
                  cyclic: bool = False) -> DataDefaults:
    """The defaults for training series of ``lengths`` steps (before any validation tail is
    held out) at ``freq`` and ``horizon``. ``val_size`` steps are held out of each series for
    early stopping (one number, or one per series: :func:`tail_sizes`; None: the horizon where
    a series can hold it; 0: none); ``context`` is a context length the user chose;
    ``cyclic``: see :func:`training_budget`."""
    lens = np.asarray([int(n) for n in lengths], dtype=np.int64)
    if lens.size == 0:
        raise ValueError("data_defaults needs at least one series length")
    if val_size is None:
        val_size = tail_sizes(lens, horizon, horizon)
    tails = np.broadcast_to(np.asarray(val_size, dtype=np.int64), lens.shape)
    val = int(tails.max())
    typical = typical_length(lens, horizon, tails)
    periods = seasonal_periods(freq)
    useful = useful_seasons(periods, typical, horizon)
    L = context_length(horizon, useful, typical) if context is None else int(context)
    # training windows: every end with MIN_PAST past steps and a whole target before the tail
    n_windows = int(np.clip(lens - tails - horizon - (MIN_PAST - 1), 0, None).sum())
    max_epochs, per_epoch, patience = training_budget(n_windows, batch_size, cyclic)
    return DataDefaults(
        context_length=L, cycle_len=cycle_length(useful, len(lens)),
        steps=budget_steps(n_windows, batch_size), max_epochs=max_epochs,
        num_batches_per_epoch=per_epoch, patience=patience, seasons=periods,
        useful_seasons=useful, typical_length=typical, n_series=int(lens.size),
        n_windows=n_windows,
        validation=("none" if not val else f"last {val} steps of every series" if tails.min()
                    else f"last {val} steps of {int((tails > 0).sum())} of {lens.size} series"))
