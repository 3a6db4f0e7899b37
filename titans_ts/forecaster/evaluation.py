"""Evaluation of a :class:`TitansForecaster`: rolling-origin cross-validation and scores."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from ..datasets.forecast_frames import as_pandas, head_rows, to_flavour, truth_rows
from . import state
from .exog import check_names
from .inference import forecast_arrays

__all__ = ["cross_validation", "score", "plot", "SCORES"]

SCORES = ("mae", "mase", "mse", "rmse", "smape")


def _fresh(est):
    return type(est)(**est.get_params())


def cross_validation(est, df: Any, n_windows: int = 1, step: int | None = None,
                     refit: bool | int = False, h: int | None = None, static_df: Any = None) -> Any:
    """Rolling-origin evaluation on the end of every series.

    Cutoffs: the last ``n_windows`` origins, ``step`` steps apart (default ``h``), the last one
    ``h`` steps before the end. ``refit=False``: train once on the data before the first cutoff
    and forecast every window from the history up to its cutoff (memory included);
    ``refit=True``: retrain before every window on the data up to its cutoff; ``refit=k``:
    retrain before windows 0, k, 2k, ... Returns the forecasts with ``cutoff`` and the true
    values (column ``<target>``, or the channel names with ``_true`` appended for wide frames).
    Future-known covariates are read from ``df`` after each cutoff (their known future; ``h``
    must then be the trained horizon), static ones from ``static_df``.
    """
    est._check_params()
    h = est.h if h is None else h
    step = h if step is None else step
    if not isinstance(n_windows, (int, np.integer)) or n_windows < 1:
        raise ValueError(f"n_windows must be a positive integer, got {n_windows!r}")
    if not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be a positive integer, got {step!r}")
    if isinstance(refit, bool):
        every = 1 if refit else 0
    elif isinstance(refit, (int, np.integer)) and refit >= 1:
        every = int(refit)
    else:
        raise ValueError(f"refit must be True, False or a positive integer k, got {refit!r}")
    coll = est._collection(df)
    futr = check_names(est)[1]
    if futr and h != est.h:
        raise ValueError(f"cross_validation with future-known covariates forecasts the trained horizon "
                         f"(h={est.h}): their values after each cutoff are read from df; got h={h}")
    back = h + (n_windows - 1) * step
    coll.check_min_length(back + h + 1, what="h + (n_windows - 1) * step + h + 1")
    pdf = as_pandas(df)
    cut_frames = []
    model = None
    for w in range(n_windows):
        trim = back - w * step  # steps removed from the end: the history ends at the cutoff
        hist = head_rows(pdf, coll, trim)
        if model is None or (every and w % every == 0):
            model = _fresh(est).fit(hist, static_df=static_df)
        truth = truth_rows(pdf, coll, trim, h)
        futr_df = None
        if futr:
            keep = ([est.id_col] if coll.layout == "long" else []) + [coll.time_col, *futr]
            futr_df = to_flavour(truth[keep].reset_index(drop=True), coll.flavour)
        # forecast from this window's history (memory rebuilt from it), trained parameters of
        # the last refit
        fc = as_pandas(model.predict(h=h, df=hist, futr_df=futr_df, static_df=static_df))
        # each series' last time step before the cutoff, read as fit reads it (zone, integers)
        hc = est._collection(hist)
        fc["cutoff"] = hc.output_times(np.repeat(
            np.asarray([idx[-1] for idx in hc.index], dtype=object), h))
        if coll.layout == "wide":
            for ch in coll.channels:
                fc[f"{ch}_true"] = truth[ch].to_numpy()
        else:
            fc[est.target_col] = truth[est.target_col].to_numpy()
        cut_frames.append(fc)
    dtypes = dict(coll.polars_dtypes or {})
    if coll.time_col in dtypes:  # the cutoff is a time of the input's column: its dtype too
        dtypes["cutoff"] = dtypes[coll.time_col]
    return to_flavour(pd.concat(cut_frames, ignore_index=True), coll.flavour, dtypes)


def score(est, df: Any, metric: str = "mae", season: int = 1, static_df: Any = None) -> float:
    """The error of forecasting the last ``h`` steps of every series of ``df`` from the rest (with
    the trained parameters): ``metric`` one of "mae", "mse", "rmse", "smape", "mase". Lower is
    better (unlike scikit-learn regressors' R^2). Future-known covariates are read from the
    last ``h`` rows of ``df`` (their known future), past-only ones from the rest only; static
    ones from ``static_df`` (default: those of ``fit``, for fitted series)."""
    from .. import metrics

    est._check_fitted()
    fns = {"mae": metrics.mae, "mse": metrics.mse, "rmse": metrics.rmse, "smape": metrics.smape}
    if metric not in SCORES:
        raise ValueError(f"metric must be one of {sorted(SCORES)}, got {metric!r}")
    coll = est._check_new(est._collection(df), same_ids=False)
    coll.check_min_length(est.h + 1, what="h + 1")
    values, masks = est._inputs(coll)
    h, C = est.h, est.n_targets_
    hist_v = [v[:-h] for v in values]
    hist_m = [m[:-h] for m in masks]
    firsts = est._firsts(coll.index, est.freq_)
    stats = est._series_stats(hist_v, hist_m)  # each series in the units of its own history
    static = est._static_for(list(coll.ids), static_df, " (score)")
    future = est._future_from_rows([v[-h:] for v in values])
    point, _ = forecast_arrays(est, hist_v, hist_m, stats, coll.ids,
                               state.memory_for(est, hist_v, hist_m, stats, firsts), firsts,
                               future=future, static=static)
    y = np.stack([v[-h:, :C] for v in values])
    m = np.stack([mk[-h:, :C] for mk in masks])
    if metric == "mase":
        vals = [metrics.mase(y[i][:, c], point[i][:, c], hist_v[i][:, c], season=season,
                             mask=m[i][:, c]) for i in range(len(values)) for c in range(C)]
        return float(np.mean(vals))
    return float(fns[metric](np.nan_to_num(y), point, mask=m))


def plot(est, forecast: Any = None, df: Any = None, ids=None, levels=None, out=None,
         history_steps: int | None = None, max_series: int = 4):
    """History, forecast and intervals of ``est`` with matplotlib (see ``TitansForecaster.plot``).

    ``ids`` chooses what is drawn: series ids of a long frame, channel names of a wide one
    (default: the first ``max_series``); one that the forecast does not hold is an error."""
    from ..datasets.frames import to_frame
    from ..plotting import plot_forecast_frame

    est._check_fitted()
    if forecast is None:
        forecast = est.predict(df=df, levels=levels if est.head != "point" else None)
    fc = as_pandas(forecast)
    hist = as_pandas(df) if df is not None else to_frame(est._history_collection(), "pandas")
    steps = history_steps if history_steps is not None else 3 * est.context_length_
    time_col = est.time_col_
    if est.layout_ == "wide":
        known = list(est.channels_)
        what = "channels"
    else:
        known = list(pd.unique(fc[est.id_col]))
        what = "series ids"
    if ids is not None:
        ids = list(ids)
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ValueError(f"ids {unknown} are not among the forecast's {what}: {known[:10]}"
                             f"{' ...' if len(known) > 10 else ''}")
    if est.layout_ == "wide":  # one panel per chosen channel, as long frames with the channel as id
        chans = ids if ids is not None else known[:max_series]
        suffix = re.compile(r"(q[0-9.]+|lo-[0-9.]+|hi-[0-9.]+)$")

        def own(ch: str) -> dict[str, str]:
            cols = {ch: "y_hat"}
            cols.update({c: c[len(ch) + 1:] for c in fc.columns
                         if c.startswith(ch + "_") and suffix.fullmatch(c[len(ch) + 1:])})
            return cols

        hist = pd.concat([hist[[time_col, ch]].rename(columns={ch: "y"}).assign(**{est.id_col: ch})
                          for ch in chans], ignore_index=True)
        fc = pd.concat([fc[[time_col, *own(ch)]].rename(columns=own(ch)).assign(**{est.id_col: ch})
                        for ch in chans], ignore_index=True)
        target, point = "y", "y_hat"
        max_series = len(chans)
    else:
        target, point = est.target_col, f"{est.target_col}_hat"
        if ids is not None:
            hist = hist[hist[est.id_col].isin(ids)]
            fc = fc[fc[est.id_col].isin(ids)]
            max_series = len(ids)
    hist = hist.groupby(est.id_col, sort=False).tail(steps)
    return plot_forecast_frame(hist, fc, out, id_col=est.id_col, time_col=time_col,
                               target_col=target, point_col=point, max_series=max_series,
                               levels=tuple(levels) if levels else None)
