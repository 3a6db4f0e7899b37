"""``TitansForecaster``: an sklearn-style estimator on pandas / polars frames.

    from titans_ts import TitansForecaster
    fc = TitansForecaster(h=24, context_length=96).fit(df)      # long or wide, pandas or polars
    fc.predict()                                                # the next 24 steps of every series
    fc.update(new_rows)                                         # memorise new data, no retraining
    fc.predict()                                                # continues from the latest data
    fc.fit(more_rows, warm_start=True)                          # continue training from here

One global model is trained on every series (windows of ``context_length`` past steps and ``h``
future steps; series shorter than a full window are left-padded with unobserved steps). Missing
values are explicit: NaN / null become unobserved steps (masked in the input, the loss and the
memory writes); nothing is filled or dropped.

**Memory across windows.** Every forecast runs the backbone's neural memory at test time over the
last ``context_length`` steps (it memorises them, then is read). With ``test_time_memory=True``
each series also carries a Titans memory *across* windows (:class:`titans_ts.model.stream_memory.StreamMemory`,
the carried mode of ``titans-ts benchmark online``): every window of the history whose target has
fully arrived is written into it with the error the forecast made there, oldest first, and each
forecast reads it for a correction. ``update`` writes the windows the new rows complete, without
touching a trained parameter. It pays where the series drift away from the training data
(docs/benchmarks/online.md: the online benchmark's test streams) and costs one backbone forecast
per history step at ``fit`` / ``update`` (docs/benchmarks/test_time_memory.md).

**Covariates** (:mod:`.exog`, neuralforecast's names): ``hist_exog_list`` (past-only columns;
``covariates=`` is its alias), ``futr_exog_list`` (future-known columns; ``predict(futr_df=...)``
gives their next ``h`` values), ``time_features`` (calendar features, future-known) and
``stat_exog_list`` (columns of ``fit(df, static_df=...)``, one row per series).

**Continued training**: ``fit(df, warm_start=True)`` trains the current weights further on
``df`` with its own budget (the parameters' ``max_epochs`` / ``limit_train_batches`` /
``patience``, or the data-aware budget of ``df``; ``set_params`` of these and of ``lr``,
``weight_decay``, ``batch_size`` keeps the fit), keeping everything that fixes what the
network reads: the context length, the learned cycle, the covariates and their vocabularies and
units, and each known series' units (a series new to the model gets the units of its history).
The optimiser starts afresh (its moments are not saved), at ``lr`` on the cosine schedule of
the new budget. The same after :meth:`TitansForecaster.load`.

The parts: this module (parameters, fit, predict, update), :mod:`.guard` (the model against
the naive forecasts on the validation tail: ``validation_report_``, ``naive_fallback``), :mod:`.evaluation`
(cross-validation, score), :mod:`.persistence` (save, load), :mod:`.memory_store` (the carried
states), ``titans_ts.tuning`` (``tune``), and ``titans_ts.datasets`` (frames in and out, windows).
"""

from __future__ import annotations

import datetime
import os
import time
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from .. import defaults as _defaults
from ..datasets.forecast_frames import first_steps, forecast_frame, level_quantiles
from ..datasets.frames import DataValidationError, SeriesCollection, from_frame
from ..datasets.timeindex import in_zone_of
from ..datasets.windows import SeriesWindows, collate_windows, window_loader
from ..defaults import (
    MIN_PAST,
    ROBUST,
    TIME_BUDGET,
    batches_per_epoch,
    budget_steps,
    data_defaults,
    ensemble_size,
    epochs_for,
    min_train_length,
    parse_time_budget,
    tail_sizes,
    time_steps,
)
from ..model.config import MemoryConfig, SettingsError, TitansConfig, TrainingConfig, check_keys
from . import guard, state
from .exog import ExogSpec, calendar, check_names, make_spec, read_future, read_static
from .guard import short_series
from .inference import forecast_arrays, scaled_inputs
from .scaling import series_stats
from .validation import check_levels, check_params, check_quantiles, plain

__all__ = ["TitansForecaster", "NETWORK_SETTINGS", "TRAINING_PARAMS"]

# the forecaster sets these itself: seq_len = context_length, horizon = h, channels from the data
_DERIVED = ("seq_len", "horizon", "n_channels", "n_hist_exog", "n_futr_exog", "n_stat_exog",
            "stat_cat_cardinalities")
#: the network settings (:class:`titans_ts.model.config.TitansConfig` fields) the forecaster takes
NETWORK_SETTINGS = tuple(f for f in TitansConfig.fields() if f not in _DERIVED)
_NETWORK_DEFAULTS = {f: (None if f == "memory" else getattr(TitansConfig, f, None))
                     for f in NETWORK_SETTINGS}
# the forecaster's own default of a network setting: a learned cycle chosen from the data (None)
_NETWORK_DEFAULTS["cycle_len"] = None
#: the forecaster's own parameters, with their defaults
TRAINING_PARAMS = dict(
    h=24, context_length=None, loss=ROBUST["loss"], lr=TrainingConfig.lr,
    weight_decay=TrainingConfig.weight_decay, batch_size=TrainingConfig.batch_size,
    max_epochs=None, patience=None, limit_train_batches=None, time_budget=f"{TIME_BUDGET / 60:g}min",
    val_size=None, naive_fallback=False, test_time_memory=False, ensemble=None,
    memory_pace=(-8.0, -4.0, -5.0),
    freq=None, id_col="unique_id", time_col=None, target_col="y", covariates=None,
    futr_exog_list=None, hist_exog_list=None, stat_exog_list=None, time_features="data", seed=0,
    accelerator="cpu", verbose=False)
#: parameters a fitted forecaster may change without losing its fit: what predict reports, and
#: how a later ``fit(warm_start=True)`` trains (its optimiser and budget)
KEEP_FIT = ("verbose", "naive_fallback", "lr", "weight_decay", "batch_size", "max_epochs", "patience",
            "limit_train_batches", "accelerator")


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) if not isinstance(a, np.ndarray) else np.array_equal(a, b)
    except (TypeError, ValueError):
        return a is b


def _check_keys(network: dict) -> None:
    """Unknown settings, at every depth, are a :class:`SettingsError` at construction (the values
    are checked by ``fit``; nothing is stored changed)."""
    unknown = sorted(set(network) - set(NETWORK_SETTINGS))
    if unknown:
        raise SettingsError(f"unknown TitansForecaster setting(s) {unknown}; allowed: "
                            f"{sorted(set(TRAINING_PARAMS) | set(NETWORK_SETTINGS))}")
    memory = network.get("memory")
    if isinstance(memory, Mapping):
        check_keys(memory, MemoryConfig.fields(), "memory")


class TitansForecaster(BaseEstimator):
    """A Titans forecaster with the ``fit`` / ``predict`` interface of scikit-learn.

    Args:
        h: forecast horizon (steps); ``predict(h=...)`` may ask for fewer.
        context_length: past steps the network reads (L). None: chosen from the data at ``fit``
            (:mod:`titans_ts.defaults`: the longer of ``2 h`` and 1.25 x the longest season the
            series are long enough to show twice, e.g. 210 for long hourly series; at most the
            typical series' length). The choice is ``context_length_``.
        loss: point-head loss: "mse", "mae" (the default: the median, which the scale-free
            errors MASE / sMAPE reward, robust to outliers) or "huber".
        lr, weight_decay, batch_size: training (:class:`titans_ts.model.config.TrainingConfig`,
            whose defaults these are; AdamW with a cosine schedule over ``max_epochs`` and the
            gradients' norm clipped to 1).
        max_epochs, patience: None: a budget sized to the number of training windows (ten
            passes, at least 600 steps, epochs of at most 50 batches, within ``time_budget``)
            and early stopping after 250 steps without a better validation loss on the last
            ``h`` steps of every series (``val_size=0`` disables it); the best epoch's weights
            are kept.
        limit_train_batches: cap on training batches per epoch (None: at most 50, the data-aware
            budget's epochs, or every window when ``max_epochs`` is given; 1.0: every window).
        time_budget: the wall-clock target of the data-aware budget (``max_epochs`` None):
            ``"5min"`` (the default), ``"90s"``, ``"1h"``, seconds, a ``timedelta``, or None
            (no target: the passes alone). ``fit`` times a few steps first and trains the steps
            that fit (:mod:`titans_ts.defaults`); training stops at the target in any case. The
            steps then depend on the machine's speed: give ``max_epochs`` for a fit that must
            repeat exactly. Not used with ``max_epochs`` given (that is the budget then).
        val_size: steps per series held out for early stopping (None: ``h``, and a series too
            short to keep ``h + 2`` steps beside it trains whole; 0: none). On it,
            ``fit`` also scores the model against the seasonal naive and repeat-last forecasts
            (``validation_report_``, one row per series) and warns when the model does not beat
            the better naive (see :mod:`.guard`).
        naive_fallback: ``predict`` forecasts each series the model lost on in
            ``validation_report_`` with that series' better naive (point replaced, quantiles
            shifted by the same difference); may be switched after ``fit`` without refitting.
        test_time_memory: keep each series' memory state across windows (see module docs).
        ensemble: networks whose mean is the forecast, network ``k`` trained alone with seed
            ``seed + k`` (its own initialisation, window order and early stopping); None
            (default): as many as the time budget holds, up to three
            (:func:`titans_ts.defaults.ensemble_size`; one when ``max_epochs`` is given, for the
            Student-t head and with ``test_time_memory``); ``ensemble_`` says how many.
        memory_pace: the carried memory's (forgetting, momentum, inner learning rate) gate logits:
            how fast it learns and forgets (the default is the slow pace the online benchmark's
            validation streams chose most: it remembers the drift, not the noise).
        freq: pandas frequency alias; inferred from the data if None.
        id_col, time_col, target_col: column names of long frames (``time_col`` None: ``ds``,
            or ``date`` in wide frames).
        covariates: an alias of ``hist_exog_list`` (give one of them).
        hist_exog_list: past-only covariates: numeric columns of the frame (long, or wide where
            they are not channels) known up to the forecast origin; the network reads them over
            the context only.
        futr_exog_list: future-known covariates: numeric columns of the frame whose future values
            are known too; ``predict(futr_df=...)`` gives them over the next ``h`` steps.
        stat_exog_list: static covariates: the columns of ``fit(df, static_df=...)`` (one row per
            series); numeric columns are standardised across the series, text / categorical /
            boolean columns are categories (a category unseen at fit is refused).
        time_features: calendar features as future-known covariates: "data" (default: "auto"
            where the series are too short for the context to hold the year of daily, weekly,
            monthly or quarterly data, else off: :func:`titans_ts.defaults.calendar_needed`),
            None (off), "auto" (the frequency's usual ones: hour of day, day of week, day of
            month, ...) or a list of names of :data:`titans_ts.datasets.TIME_FEATURES`. The
            names used are in ``chosen_defaults_["time_features"]``.
        seed: seed of initialisation, shuffling and dropout.
        accelerator: Lightning accelerator ("cpu", "gpu", "auto").
        verbose: progress bar and Lightning's messages.
        **network: the network's settings, the fields of :class:`titans_ts.model.config.TitansConfig`
            but the lengths and channel count, with its defaults: ``variant`` ("lmm", "mac",
            "mag", "mal", "none", "attention"), ``tokenizer``, ``patch_len`` / ``stride`` (None: derived from
            ``context_length``; a patch longer than the context is clipped to it), ``d_model``,
            ``n_layers``, ``memory`` (a mapping of :class:`titans_ts.model.config.MemoryConfig`
            fields), ``attn_heads``, ``window``, ``n_persistent``, ``segment_len``,
            ``mlp_expansion``, ``dropout``, ``head`` ("point", "quantile" or "student_t"),
            ``quantiles`` (the quantile head's levels; for "student_t", those ``predict``
            reports), ``revin``, ``revin_affine``, ``revin_center``, ``exog_center`` ("mean":
            covariates minus their context mean per window, their changes rather than their
            levels; default "none"), ``exog_dropout`` (in training, each covariate of a window
            hidden as missing with this probability; default 0), and ``cycle_len`` (the
            period in steps of a learned cycle per channel, e.g. 24 for a daily cycle of hourly
            data; each step's phase is its time counted in ``freq`` steps from 1970-01-01; None,
            the default: the frequency's shortest season the data show twice when the data are
            one series, none for a panel of series, whose channels would share one cycle).
            ``dropout`` defaults to the configuration's 0.2 (the value the benchmark recipes'
            selection chose most).

    Every data-aware choice of ``fit`` and the facts it rests on are in ``chosen_defaults_``.

    **Series too short to train on** (fewer than ``h + 2`` steps: no training window of two past
    steps and ``h`` future ones, :func:`titans_ts.defaults.min_train_length`) are forecast by a
    naive rule, with a warning at ``fit`` naming them: their seasonal naive (the season of
    :func:`titans_ts.forecaster.guard.season_length`) where they hold one whole season, else
    their last observed value repeated; quantile / interval columns are that point (a series so
    short has no spread to learn from). The ids and rules are ``short_series_``, decided at
    ``fit`` (refit once they are longer). When no series is long enough, ``fit`` raises a
    ``ValueError``.
    """

    # fitted state set by fit / load (declared for the type checker: fit reads a warm start's
    # before it assigns the new; no class attribute is created)
    model_: Any
    exog_: ExogSpec
    statics_: tuple[np.ndarray, np.ndarray] | None
    context_length_: int
    cycle_len_: int

    def __init__(self, h: int = 24, context_length: int | None = None, loss: str = ROBUST["loss"],
                 lr: float = TrainingConfig.lr, weight_decay: float = TrainingConfig.weight_decay,
                 batch_size: int = TrainingConfig.batch_size,
                 max_epochs: int | None = None, patience: int | None = None,
                 limit_train_batches: int | float | None = None, time_budget: Any = TRAINING_PARAMS["time_budget"],
                 val_size: int | None = None, naive_fallback: bool = False, test_time_memory: bool = False,
                 ensemble: int | None = None, memory_pace: Sequence[float] = (-8.0, -4.0, -5.0),
                 freq: str | None = None,
                 id_col: str = "unique_id", time_col: str | None = None, target_col: str = "y",
                 covariates: Sequence[str] | None = None, futr_exog_list: Sequence[str] | None = None,
                 hist_exog_list: Sequence[str] | None = None, stat_exog_list: Sequence[str] | None = None,
                 time_features: str | Sequence[str] | None = "data", seed: int = 0,
                 accelerator: str = "cpu", verbose: bool = False, **network: Any) -> None:
        _check_keys(network)
        self.h = h
        self.context_length = context_length
        self.loss = loss
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.limit_train_batches = limit_train_batches
        self.time_budget = time_budget
        self.val_size = val_size
        self.naive_fallback = naive_fallback
        self.test_time_memory = test_time_memory
        self.ensemble = ensemble
        self.memory_pace = memory_pace
        self.freq = freq
        self.id_col = id_col
        self.time_col = time_col
        self.target_col = target_col
        self.covariates = covariates
        self.futr_exog_list = futr_exog_list
        self.hist_exog_list = hist_exog_list
        self.stat_exog_list = stat_exog_list
        self.time_features = time_features
        self.seed = seed
        self.accelerator = accelerator
        self.verbose = verbose
        for name, default in _NETWORK_DEFAULTS.items():
            setattr(self, name, network.get(name, default))

    @classmethod
    def _get_param_names(cls) -> list[str]:
        # scikit-learn reads the parameters off __init__'s signature; the network's settings
        # come through **network, so they are listed from the configuration
        return sorted(set(TRAINING_PARAMS) | set(NETWORK_SETTINGS))

    def set_params(self, **params: Any) -> "TitansForecaster":
        """Set parameters (scikit-learn's contract). Changing a parameter of a fitted forecaster
        un-fits it (its trained state belongs to the old values, so ``predict`` / ``save`` then
        ask for ``fit`` again instead of mixing the two), but for those of :data:`KEEP_FIT`:
        ``verbose`` and ``naive_fallback`` choose what ``predict`` reports, and ``lr``,
        ``weight_decay``, ``batch_size``, ``max_epochs``, ``patience``,
        ``limit_train_batches`` and ``accelerator`` how a later ``fit(warm_start=True)`` trains
        (``model.set_params(max_epochs=3).fit(new, warm_start=True)``)."""
        before = self.get_params(deep=False)
        super().set_params(**params)
        after = self.get_params(deep=False)
        changed = sorted(k for k in after if k not in KEEP_FIT
                         and not _same(before.get(k), after[k]))
        if changed and hasattr(self, "model_"):
            for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
                delattr(self, name)
            self._unfitted_by = changed
        return self

    # ------------------------------------------------------------------ checks
    def _lengths(self) -> tuple[Any, int]:
        """(context length, cycle length) in use: the fitted choices, else the parameters (a
        context left to the data is checked as ``2 h`` and a cycle left to it as none)."""
        L = getattr(self, "context_length_", None)
        if L is None:
            L = self.context_length if self.context_length is not None else (
                2 * self.h if isinstance(self.h, (int, np.integer)) else self.h)
        cycle = getattr(self, "cycle_len_", None)
        return L, (cycle if cycle is not None else (self.cycle_len or 0))

    def _config(self, n_targets: int | None = None) -> TitansConfig:
        """The network's configuration (validated), for ``n_targets`` target channels and the
        fitted covariates (``exog_``; none before ``fit``)."""
        L, cycle = self._lengths()
        net = {name: plain(getattr(self, name)) for name in NETWORK_SETTINGS}
        net["cycle_len"] = cycle
        if net["patch_len"] is not None and isinstance(L, (int, np.integer)) and L >= 1:
            net["patch_len"] = min(net["patch_len"], int(L))
        net["quantiles"] = tuple(net["quantiles"]) if net["quantiles"] is not None else None
        spec = getattr(self, "exog_", None) or ExogSpec()
        return TitansConfig.from_dict(net, seq_len=L, horizon=self.h, n_channels=n_targets,
                                      n_hist_exog=spec.n_hist, n_futr_exog=spec.n_futr,
                                      n_stat_exog=len(spec.stat_real),
                                      stat_cat_cardinalities=spec.cardinalities)

    def _check_params(self) -> None:
        check_params(self)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            changed = getattr(self, "_unfitted_by", None)
            why = (f" Its parameters {changed} changed after fit, which discards the trained "
                   f"state; call 'fit' again." if changed else " Call 'fit' with a data frame first.")
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet.{why}")

    def _collection(self, df: Any) -> SeriesCollection:
        freq = getattr(self, "freq_", None)
        spec = getattr(self, "exog_", None)
        if spec is None:
            hist, futr, _ = check_names(self)
            columns = [*hist, *futr]
        else:
            columns = spec.columns
        return from_frame(df, id_col=self.id_col, time_col=self.time_col, target_col=self.target_col,
                          covariates=columns, freq=freq if freq is not None else self.freq)

    def _inputs(self, coll: SeriesCollection) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per series [T, C + K] values and masks: the targets, the past-only covariates, the
        future-known ones, then the calendar features (``exog_``); float64: each series is
        centred and scaled in float64 before the network's float32 (:mod:`.scaling`)."""
        spec = getattr(self, "exog_", None)
        if coll.covariates is None and not (spec and spec.time_features):
            return [v.astype(np.float64) for v in coll.values], [m.copy() for m in coll.masks]
        vals = []
        for i, v in enumerate(coll.values):
            parts = [v] if coll.covariates is None else [v, coll.covariates[i]]
            if spec and spec.time_features:
                parts.append(calendar(spec, coll.index[i], v.shape[0]))
            vals.append(np.concatenate(parts, 1).astype(np.float64))
        return vals, [~np.isnan(v) for v in vals]

    def _series_stats(self, values: list[np.ndarray], masks: list[np.ndarray]):
        """Each series' units (:func:`.scaling.series_stats`); calendar features keep theirs
        (centre 0, scale 1: they are in [-0.5, 0.5] already, the same for every series)."""
        loc, scale = series_stats(values, masks)
        spec = getattr(self, "exog_", None)
        k = len(spec.time_features) if spec is not None else 0
        if k:
            for a, b in zip(loc, scale, strict=True):
                a[-k:], b[-k:] = 0.0, 1.0
        return loc, scale

    @property
    def _spec(self) -> ExogSpec:
        """The fitted covariates (none before ``fit``)."""
        return getattr(self, "exog_", None) or ExogSpec()

    def _window_kwargs(self, static: tuple | None = None) -> dict:
        """The covariate arguments of :class:`SeriesWindows` (``static``: the series' static
        values and codes; None: the stored series')."""
        spec = self._spec
        if not spec.any:
            return {}
        kw: dict[str, Any] = dict(n_targets=self.n_targets_, n_hist=spec.n_hist, n_futr=spec.n_futr)
        if not spec.static:
            return kw
        given = self.statics_ if static is None else static
        assert given is not None  # (fit stores the statics of a forecaster that reads them)
        real, codes = given
        if spec.stat_real:
            kw["static"] = list(real)
        if spec.stat_cat:
            kw["static_cat"] = list(codes)
        return kw

    def _stored_static(self, which) -> tuple | None:
        """The static values and codes of the stored series ``which`` (None: no statics)."""
        statics = getattr(self, "statics_", None)
        if statics is None:
            return None
        which = list(which)
        return statics[0][which], statics[1][which]

    def _static_for(self, ids: list, static_df: Any, where: str) -> tuple | None:
        """Static values and codes of the series ``ids``: from ``static_df``, else the stored
        ones (every id must then be a fitted series)."""
        spec = self._spec
        if not spec.static:
            if static_df is not None:
                raise DataValidationError(f"static_df was given{where} but this forecaster has no static "
                                          f"covariates (stat_exog_list is empty); leave it out")
            return None
        if static_df is not None:
            return read_static(spec, static_df, ids, self.id_col, where)
        pos = {sid: k for k, sid in enumerate(self.history_["ids"])}
        new = [sid for sid in ids if sid not in pos]
        if new:
            raise DataValidationError(f"series {new[:5]} are new to this forecaster, which reads the static "
                                      f"covariates {spec.static}: give static_df{where} with their rows")
        return self._stored_static([pos[sid] for sid in ids])

    def _future(self, coll: SeriesCollection, futr_df: Any) -> list[np.ndarray] | None:
        """Per series the input rows of the ``h`` steps after its end [h, C + K] (raw units):
        the future-known covariates from ``futr_df`` and the calendar, NaN elsewhere (None: the
        network reads no future-known covariate)."""
        spec = self._spec
        given = read_future(spec, futr_df, coll, self.h, self.id_col, self.time_col_)
        if not spec.n_futr:
            return None
        C, Kh, Kf = self.n_targets_, spec.n_hist, len(spec.futr)
        rows = []
        for i, g in enumerate(given):
            r = np.full((self.h, self.n_inputs_), np.nan, np.float64)
            r[:, C + Kh:C + Kh + Kf] = g
            if spec.time_features:
                r[:, C + Kh + Kf:] = calendar(spec, coll.future_index(i, self.h), self.h)
            rows.append(r)
        return rows

    def _future_from_rows(self, rows: list[np.ndarray]) -> list[np.ndarray] | None:
        """Future input rows from rows of the data (targets and past-only covariates hidden)."""
        if not self._spec.n_futr:
            return None
        cut = self.n_targets_ + self._spec.n_hist
        out = []
        for r in rows:
            r = r.astype(np.float64)  # (a copy)
            r[:, :cut] = np.nan
            out.append(r)
        return out

    def _firsts(self, index: list, freq: Any) -> list[int] | None:
        return first_steps(index, freq) if self._lengths()[1] else None

    # ------------------------------------------------------------------ fit
    def _training(self, budget: dict | None = None) -> TrainingConfig:
        """The training settings (validated): the parameters, and the budget of ``fit``."""
        budget = budget or {}
        return TrainingConfig(loss=self.loss, lr=self.lr, weight_decay=self.weight_decay,
                              batch_size=self.batch_size, scheduler="cosine", gradient_clip_val=1.0,
                              max_epochs=budget.get("max_epochs", self.max_epochs),
                              patience=budget.get("patience", self.patience),
                              limit_train_batches=budget.get("limit_train_batches", self.limit_train_batches))

    def _module(self, n_targets: int | None = None, training: TrainingConfig | None = None,
                ensemble: int | None = None):
        """The Lightning module of the network for ``n_targets`` target channels (None: the
        fitted ones) and the fitted covariates: ``ensemble`` networks (None: the fitted count)."""
        from ..model.lightning_module import TitansLightningModule

        n_targets = self.n_targets_ if n_targets is None else n_targets
        ensemble = getattr(self, "ensemble_", 1) if ensemble is None else ensemble
        return TitansLightningModule.from_configs(self._config(n_targets), training or self._training(),
                                                  ensemble=ensemble)

    def _fixed_ensemble(self, warm_start: bool) -> int | None:
        """The networks ``fit`` trains where known before timing a step: the fitted count when
        continuing, the parameter where given, one for the Student-t head and the test-time
        memory (they need a single network); None: as many as the time budget holds
        (:func:`titans_ts.defaults.ensemble_size`)."""
        if warm_start:
            return int(getattr(self, "ensemble_", 1))
        single = self.head == "student_t" or self.test_time_memory
        if self.ensemble is not None:
            if self.ensemble > 1 and single:
                why = ("head='student_t' (a mean of Student-t parameters is not a mixture)"
                       if self.head == "student_t" else "test_time_memory=True (the memory corrects one network)")
                raise ValueError(f"ensemble={self.ensemble} needs one network with {why}; use ensemble=1 "
                                 f"or None")
            return int(self.ensemble)
        return 1 if single else None

    def _train_windows(self, values, masks, val_sizes):
        """Training and validation window ends; ``val_sizes``: each series' held-out tail."""
        L, h = self.context_length_, self.h
        train, val = [], []
        for i, (v, vs) in enumerate(zip(values, val_sizes, strict=True)):
            T = v.shape[0]
            t_end = T - vs
            first = max(MIN_PAST, min(L, t_end - h))
            train += [(i, e) for e in range(first, t_end - h + 1)]
            if vs:
                val += [(i, e) for e in range(max(t_end, 1), T - h + 1)]
        val_size = max(val_sizes, default=0)
        if val and not any(masks[i][e:e + h].any() for i, e in val):
            warnings.warn(f"no observed target value in the validation steps (the last {val_size} of "
                          f"every series): early stopping is off and best_val_loss_ is None",
                          UserWarning, stacklevel=4)
            val = []
        return train, val

    def _budget(self, chosen, n_train: int, validated: bool, step_s: float | None = None) -> dict:
        """max_epochs, batches per epoch and patience: the parameters where given, else the
        data-aware budget (:mod:`titans_ts.defaults`, sized to the ``n_train`` windows and, at
        ``step_s`` seconds per step, to the time budget) in epochs of the batches actually run.
        A given ``max_epochs`` keeps whole passes over the windows unless
        ``limit_train_batches`` says otherwise."""
        n_batches = max(1, -(-n_train // self.batch_size))
        limit = self.limit_train_batches
        if limit is None:
            limit = min(chosen.num_batches_per_epoch, n_batches) if self.max_epochs is None else 1.0
        per_epoch = batches_per_epoch(limit, n_batches)
        steps = by_data = budget_steps(n_train, self.batch_size)
        seconds = parse_time_budget(self.time_budget) if self.max_epochs is None else None
        by_time = time_steps(seconds, step_s)
        if by_time is not None and by_time < steps:
            steps = by_time
        epochs, patience = epochs_for(steps, per_epoch)
        budget = {"max_epochs": self.max_epochs or epochs, "limit_train_batches": limit,
                  "patience": patience if self.patience is None else self.patience}
        self.chosen_defaults_ = {**chosen.to_dict(), **budget, "batches_per_epoch": per_epoch,
                                 "n_windows": n_train, "steps": steps,
                                 "passes": round(steps * self.batch_size / max(n_train, 1), 3),
                                 "time_budget_s": seconds,
                                 "seconds_per_step": None if step_s is None else round(step_s, 5),
                                 "limited_by": ("given" if self.max_epochs is not None else
                                                "time budget" if steps < by_data else
                                                "minimum steps" if by_data == _defaults.MIN_STEPS else "passes"),
                                 "budget": "data-aware" if self.max_epochs is None else "given",
                                 "cycle_len": self.cycle_len_, "loss": self.loss,
                                 "dropout": self.dropout, "revin_center": self.revin_center}
        if not validated:
            self.chosen_defaults_["validation"] = "none"
        del self.chosen_defaults_["num_batches_per_epoch"]
        return budget

    def fit(self, df: Any, static_df: Any = None, *, warm_start: bool = False,
            callbacks: list | None = None, trial: Any = None) -> "TitansForecaster":
        """Train on every series of ``df`` (pandas or polars; long or wide). Returns ``self``.

        Args:
            df: the series, with the columns of ``hist_exog_list`` / ``futr_exog_list``.
            static_df: the static covariates (``stat_exog_list``): ``unique_id`` and one row
                per series of ``df``, no other series.
            warm_start: continue training the current weights on ``df`` (a fitted or loaded
                forecaster; see the module documentation) instead of starting afresh.
            callbacks: extra Lightning callbacks.
            trial: an optuna trial: adds median pruning on the validation loss.
        """
        if not isinstance(warm_start, (bool, np.bool_)):
            raise ValueError(f"warm_start must be True or False, got {warm_start!r}")
        if warm_start:
            if not hasattr(self, "model_"):
                changed = getattr(self, "_unfitted_by", None)
                why = (f"its parameters {changed} changed after fit, which discards the trained state"
                       if changed else "it has not been fitted or loaded")
                raise NotFittedError(f"fit(warm_start=True) continues training a fitted forecaster; {why}. "
                                     f"Call fit without warm_start first (or load a saved forecaster).")
            saved = dict(vars(self))  # a warm start that fails leaves the forecaster as it was
            try:
                return self._fit(df, static_df, True, callbacks, trial)
            except BaseException:
                self.__dict__.clear()
                self.__dict__.update(saved)
                raise
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, name)  # a refit starts from its parameters, not the last fit's state
        return self._fit(df, static_df, False, callbacks, trial)

    def _fit(self, df: Any, static_df: Any, warm_start: bool, callbacks, trial) -> "TitansForecaster":
        import lightning.pytorch as pl

        from ..training import fit_module, step_seconds, training_device

        if warm_start:
            previous = self.model_
            units = {sid: (loc, scale) for sid, loc, scale in
                     zip(self.history_["ids"], self.history_["loc"], self.history_["scale"], strict=True)}
        self._check_params()
        hist, futr, stat = check_names(self)
        if self.test_time_memory and (hist or futr or stat or self.time_features not in (None, False, "data")):
            raise ValueError("test_time_memory=True does not read covariates yet (the carried memory "
                             "corrects forecasts from the targets alone); use covariates or "
                             "test_time_memory, not both")
        coll = self._collection(df)
        if warm_start:
            state.check_new(self, coll, same_ids=False)
            spec = self.exog_
        else:
            spec = make_spec(self, hist, futr, stat, coll, static_df)
        h = self.h
        val_size = h if self.val_size is None else int(self.val_size)
        if self.val_size is not None:
            coll.check_min_length(min_train_length(h) + val_size,
                                  what=f"h + {MIN_PAST} (+ val_size for early stopping)")
        coll.check_observed()
        statics = read_static(spec, static_df, coll.ids, self.id_col) if spec.static else None
        if not spec.static and static_df is not None:
            raise DataValidationError("static_df was given but this forecaster has no static covariates "
                                      "(stat_exog_list is empty)")
        self.exog_ = spec
        short = short_series(coll, h)  # forecast by a naive rule (a warning names them)
        raw, masks = self._inputs(coll)
        val_sizes = tail_sizes([v.shape[0] for v in raw], h, val_size)
        chosen = data_defaults(coll.freq, h, [v.shape[0] for v in raw], self.batch_size,
                               val_size=val_sizes,
                               context=self.context_length_ if warm_start else self.context_length)
        if not warm_start:
            self.context_length_ = chosen.context_length
            self.cycle_len_ = chosen.cycle_len if self.cycle_len is None else int(self.cycle_len)
        L = self.context_length_

        stats = self._series_stats(raw, masks)
        if warm_start:  # the known series keep the units they were fitted in
            for i, sid in enumerate(coll.ids):
                if sid in units:
                    stats[0][i], stats[1][i] = units[sid]
        values = scaled_inputs(raw, stats)
        train_idx, val_idx = self._train_windows(values, [m[:, :coll.n_channels] for m in masks], val_sizes)
        firsts = self._firsts(coll.index, coll.freq)
        C = coll.n_channels
        n_in = values[0].shape[1]
        self.n_targets_ = C
        self.statics_ = statics
        kw = self._window_kwargs()

        def windows(ends):
            if kw:
                return SeriesWindows(values, L, h, ends, masks=masks, first_index=firsts, **kw)
            return SeriesWindows(values, L, h, ends, masks=masks, n_targets=C, first_index=firsts)

        step_s = None
        fixed = self._fixed_ensemble(warm_start)
        if self.max_epochs is None and parse_time_budget(self.time_budget) is not None:
            # the time budget's measure: a few steps of a copy, before the seeded initialisation
            probe = windows(train_idx[:self.batch_size])
            step_s = step_seconds(self._module(C, ensemble=fixed or 1),
                                  collate_windows([probe[k] for k in range(len(probe))]),
                                  lambda m, b: m._train_loss(b), device=training_device(self.accelerator))
        budget = self._budget(chosen, len(train_idx), bool(val_idx), step_s)
        members = fixed if fixed is not None else ensemble_size(
            self.chosen_defaults_["steps"], self.chosen_defaults_["time_budget_s"], step_s)
        self.chosen_defaults_["ensemble"] = members
        self.chosen_defaults_["time_features"] = list(spec.time_features)
        if warm_start:
            self.chosen_defaults_["warm_start"] = True
        training = self._training(budget)
        train_set = windows(train_idx)
        val_dl = window_loader(windows(val_idx), max(self.batch_size, 256), False) if val_idx else None
        cbs = list(callbacks or [])
        if trial is not None:
            from ..tuning import pruning_callback

            cbs.append(pruning_callback(trial, "val_loss"))
        # a fresh ensemble: each network trained alone (seed + k: its own initialisation, window
        # order, dropout draws and early stopping), then gathered; a warm start continues the
        # gathered networks together
        alone = members > 1 and not warm_start
        limits: dict[str, Any] = {}
        if self.chosen_defaults_["time_budget_s"] is not None:  # stop at the target in any case
            share = self.chosen_defaults_["time_budget_s"] / (members if alone else 1)
            limits["max_time"] = datetime.timedelta(seconds=share)
        started = time.perf_counter()
        pl.seed_everything(self.seed, verbose=False)
        module = self._module(C, training, members)
        if warm_start:
            module.load_state_dict(previous.state_dict())
        runs = []
        for k in range(members if alone else 1):
            net_module = module
            if alone:
                pl.seed_everything(self.seed + k, verbose=False)
                net_module = self._module(C, training, 1)
            gen = torch.Generator().manual_seed(self.seed + k)
            train_dl = window_loader(train_set, self.batch_size, True, generator=gen)
            runs.append(fit_module(net_module, train_dl, val_dl, training, verbose=self.verbose, callbacks=cbs,
                                   accelerator=self.accelerator, devices=1, **limits))
            if alone:
                module.net.members[k].load_state_dict(net_module.net.state_dict())
        self.chosen_defaults_["train_seconds"] = round(time.perf_counter() - started, 2)
        self.chosen_defaults_["steps_run"] = sum(int(r.trainer.global_step) for r in runs)
        if alone:
            self.chosen_defaults_["member_epochs"] = [r.epochs for r in runs]
        scores = [r.best_score for r in runs if r.best_score is not None]  # (an ensemble: its networks' mean)
        self.best_val_loss_ = float(np.mean(scores)) if len(scores) == len(runs) else None
        self.n_epochs_ = max(r.epochs for r in runs)
        self.model_ = module.cpu().eval()
        self.ensemble_ = members
        self.freq_ = coll.freq
        self.n_inputs_ = n_in
        self.channels_ = list(coll.channels)
        self.covariate_names_ = list(coll.covariate_names)
        self.layout_ = coll.layout
        self.flavour_ = coll.flavour
        self.time_col_ = coll.time_col
        self.id_dtype_ = coll.id_dtype
        self.time_dtype_ = coll.time_dtype
        self.polars_dtypes_ = coll.polars_dtypes
        self._set_history(coll, stats, trained_until=val_sizes)
        self.short_series_ = short
        guard.assess(self, values, masks, val_idx, firsts, warn=trial is None)  # (quiet in a search)
        self.__dict__.pop("_unfitted_by", None)
        return self

    # ------------------------------------------------------------------ state
    def _set_history(self, coll: SeriesCollection, stats=None, trained_until: int | list | None = None) -> None:
        state.set_history(self, coll, stats, trained_until)

    def _history_collection(self) -> SeriesCollection:
        """The stored history as the series collection it was read from."""
        coll = state.history_collection(self)
        coll.polars_dtypes = getattr(self, "polars_dtypes_", None)  # (polars frames out: the input's dtypes)
        return coll

    # ------------------------------------------------------------------ predict
    def predict(self, h: int | None = None, df: Any = None, levels: Sequence[float] | None = None,
                quantiles: Sequence[float] | None = None, futr_df: Any = None,
                static_df: Any = None) -> Any:
        """Forecast the next ``h`` steps (default: the trained horizon) of every series.

        Args:
            h: steps to forecast, 1 .. the trained ``h``.
            df: forecast from the end of these series instead of the stored history (same
                columns as in ``fit``; any series ids; each series is read in the units of its
                own history); the stored state is left unchanged.
            levels: prediction-interval levels in percent (e.g. ``[80, 95]``) -> ``lo-80`` /
                ``hi-80`` columns (probabilistic heads only).
            quantiles: quantile levels to report (default: the estimator's ``quantiles`` for
                probabilistic heads) -> ``q0.1`` ... columns.
            futr_df: the future-known covariates (``futr_exog_list``) over the next steps of
                every series forecast: ``unique_id``, ``ds`` and those columns (wide frames:
                ``ds`` and those columns), exactly the trained horizon's ``h`` steps after each
                series' end (the network reads them over its whole horizon, also when ``h`` asks
                for fewer); NaN marks an unknown value. Calendar features need nothing.
            static_df: the static covariates of the series forecast (default: those given to
                ``fit``; needed for series new to the forecaster).

        Returns a frame in the flavour of the training data (pandas or polars): long frames get
        ``unique_id``, ``ds`` and ``<target>_hat`` (plus quantile / interval columns); wide
        frames one column per channel (plus ``<channel>_q0.1`` ...). Ids keep their type and
        timestamps their zone. A series whose context holds no observed value is forecast as
        NaN, with a warning; a forecast that would not be finite is an error.
        """
        self._check_fitted()
        h = self.h if h is None else h
        if not isinstance(h, (int, np.integer)) or isinstance(h, bool) or not 1 <= h <= self.h:
            raise ValueError(f"h must be an integer in 1..{self.h} (the trained horizon), got {h!r}; "
                             f"refit with a larger h for longer forecasts")
        levels, quantiles = check_levels(levels), check_quantiles(quantiles)
        if self.head == "point" and (levels or quantiles):
            raise ValueError("levels / quantiles need a probabilistic head ('quantile' or 'student_t'); "
                             "this forecaster was trained with head='point'")
        if quantiles is None and self.head != "point":
            quantiles = [] if levels else [float(q) for q in self.quantiles]
        quantiles = quantiles or []
        if df is None:
            coll = self._history_collection()
            hist = self.history_
            values, masks, stats = hist["values"], hist["masks"], (hist["loc"], hist["scale"])
            memory = self.memory_ if self.test_time_memory else None
            firsts = hist.get("firsts")
        else:
            coll = self._check_new(self._collection(df), same_ids=False)
            coll.check_observed()
            values, masks = self._inputs(coll)
            stats = self._series_stats(values, masks)
            firsts = self._firsts(coll.index, self.freq_)
            memory = state.memory_for(self, values, masks, stats, firsts)
        static = self._static_for(list(coll.ids), static_df, " (predict)")
        future = self._future(coll, futr_df)
        point, qs = forecast_arrays(self, values, masks, stats, coll.ids, memory, firsts,
                                    sorted(set(quantiles) | set(level_quantiles(levels))),
                                    future=future, static=static)
        point, qs = guard.apply_fallback(self, coll.ids, values, masks, point, qs)
        return forecast_frame(coll, point[:, :h], {q: a[:, :h] for q, a in qs.items()},
                              quantiles, levels, h)

    # ------------------------------------------------------------------ update
    def _check_new(self, coll: SeriesCollection, same_ids: bool) -> SeriesCollection:
        return state.check_new(self, coll, same_ids)

    def update(self, df: Any) -> "TitansForecaster":
        """Append newly observed rows (the steps right after each series' last timestamp) and
        write them into the series' memories. No trained parameter changes. Returns ``self``.

        Series not in ``df`` are left as they are; ``df`` may hold any subset of the known ids.
        The new rows are read in the units each series was fitted in; rows that would make a
        forecast non-finite are refused, and nothing is changed then. Timestamps in another
        zone than the series' are converted to its zone (the same instants); naive timestamps
        for a zoned series, or zoned ones for a naive series, are refused."""
        self._check_fitted()
        coll = self._check_new(self._collection(df), same_ids=True)
        # the rows' timestamps in each series' own zone (the same instants in another zone are
        # converted; naive against zoned is refused): appended as they are, they would turn the
        # history's index into one of mixed zones that no later call can use
        known = dict(zip(self.history_["ids"], self.history_["index"], strict=True))
        coll.index = [in_zone_of(known[sid], idx, sid, coll.time_col)
                      for sid, idx in zip(coll.ids, coll.index, strict=True)]
        state.update(self, coll)
        return self

    # ------------------------------------------------------------------ the other parts
    def plot(self, forecast: Any = None, df: Any = None, ids: Sequence[str] | None = None,
             levels: Sequence[float] | None = None, out: str | os.PathLike | None = None,
             history_steps: int | None = None, max_series: int = 4):
        """History, forecast and prediction intervals with matplotlib: one panel per series
        (returns the figure; saved if ``out``).

        Args:
            forecast: what to draw (default: ``predict(levels=levels)``, or ``predict()`` for a
                point head, which has no interval).
            df: the history drawn, and forecast from (default: the stored history).
            ids: the series drawn: ids of a long frame, channel names of a wide one (default:
                the first ``max_series``).
            levels: the intervals shaded, in percent (e.g. ``[80]``; default: the widest pair of
                the forecast's quantiles).
            out: a file to write (PNG, SVG, PDF: matplotlib's formats).
            history_steps: history steps drawn before the forecast (default: 3 x
                ``context_length_``).
            max_series: panels drawn when ``ids`` is not given.
        """
        from .evaluation import plot

        return plot(self, forecast, df, ids, levels, out, history_steps, max_series)

    def cross_validation(self, df: Any, n_windows: int = 1, step: int | None = None,
                         refit: bool | int = False, h: int | None = None, static_df: Any = None) -> Any:
        """Rolling-origin evaluation on the end of every series (see
        :func:`titans_ts.forecaster.evaluation.cross_validation`)."""
        from .evaluation import cross_validation

        return cross_validation(self, df, n_windows=n_windows, step=step, refit=refit, h=h,
                                static_df=static_df)

    def score(self, df: Any, metric: str = "mae", season: int = 1, static_df: Any = None) -> float:
        """The error of forecasting the last ``h`` steps of every series of ``df`` from the rest
        (see :func:`titans_ts.forecaster.evaluation.score`). Lower is better."""
        from .evaluation import score

        return score(self, df, metric=metric, season=season, static_df=static_df)

    def save(self, path: str | os.PathLike):
        """Write the parameters, trained weights and history to one file that loads with
        ``torch.load(weights_only=True)`` (see :mod:`titans_ts.forecaster.persistence`)."""
        from .persistence import save

        return save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TitansForecaster":
        """Read a file written by :meth:`save`; the memory states are rebuilt from the saved
        history, exactly as ``fit`` built them."""
        from .persistence import load

        return load(cls, path)

    def tune(self, df: Any, space: dict | str | os.PathLike, n_trials: int = 20,
             storage: str | None = None, study_name: str | None = None, refit: bool = True,
             seed: int = 0, grace_period: int | None = None, static_df: Any = None):
        """Search hyper-parameters with optuna and set the best ones on ``self`` (see
        :func:`titans_ts.tuning.tune_forecaster`; ``grace_period`` None: its default,
        ``titans_ts.tuning.GRACE_PERIOD``). Returns the study."""
        from ..tuning import GRACE_PERIOD, tune_forecaster

        return tune_forecaster(self, df, space, n_trials=n_trials, storage=storage,
                               study_name=study_name, refit=refit, seed=seed,
                               grace_period=GRACE_PERIOD if grace_period is None else grace_period,
                               static_df=static_df)
