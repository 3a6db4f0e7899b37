"""Forecast arrays of a fitted :class:`TitansForecaster`: network outputs from each series' last
context (in scaled units, :mod:`.scaling`), the carried memory's correction, every head read back
in the series' units, and the two rules that keep a made-up or broken number out of a forecast:

* a series / channel whose context (its last ``context_length`` steps) holds no observed value
  is forecast as NaN, with a warning naming it (nothing is made up from nothing);
* a forecast that is not finite is an error, never a return value: one that says the data's
  magnitude is the cause when it is (values far outside the units the series was fitted in),
  and the network otherwise.
"""

from __future__ import annotations

import warnings
from typing import Iterable, overload

import numpy as np
import torch

from ..datasets.frames import DataValidationError
from ..datasets.windows import PAST, PAST_MASK, TIME_INDEX, SeriesWindows, collate_windows, exog_of
from .memory_store import BATCH, SeriesMemory
from .scaling import Stats, scale_values, unscale

__all__ = ["scaled_inputs", "network_outputs", "forecast_arrays", "MAGNITUDE_LIMIT"]

#: scaled values beyond this (so many scales away from a series' centre) overflow float32
#: arithmetic in the network's normalisation (squares summed over a window)
MAGNITUDE_LIMIT = 1e15


@overload
def scaled_inputs(values: list[np.ndarray], stats: Stats, which: None = None) -> list[np.ndarray]: ...
@overload
def scaled_inputs(values: list[np.ndarray], stats: Stats, which: Iterable[int]) -> list[np.ndarray | None]: ...
def scaled_inputs(values: list[np.ndarray], stats: Stats, which: Iterable[int] | None = None) -> list:
    """Every series' inputs in its scaled units (``which``: only those series, None elsewhere)."""
    centres, scales = stats
    keep = range(len(values)) if which is None else set(which)
    return [scale_values(v, centres[i], scales[i]) if i in keep else None for i, v in enumerate(values)]


@torch.no_grad()
def network_outputs(est, values, masks, memory: SeriesMemory | None = None, firsts=None,
                    future=None, static=None) -> list:
    """Raw network outputs (scaled units) for the last L steps of each series (memory: carried
    memories, whose corrections shift each forecast; firsts: each series' first step).

    ``future``: per series the (scaled) input rows of the ``h`` steps after its end, where the
    future-known covariates are read (None: unknown, read as unobserved, e.g. the finiteness
    check of ``update``); ``static``: the series' static values and codes (None: the stored
    series', in order)."""
    net, L, C = est.model_.net, est.context_length_, est.n_targets_
    ends = [(i, v.shape[0]) for i, v in enumerate(values)]
    kw = est._window_kwargs(static)
    if kw.get("n_futr"):
        H = est.h
        if future is None:
            future = [np.full((H, v.shape[1]), np.nan, np.float32) for v in values]
        values = [np.concatenate([v, f]) for v, f in zip(values, future, strict=True)]
        masks = [np.concatenate([m, ~np.isnan(f)]) for m, f in zip(masks, future, strict=True)]
        kw["futr_horizon"] = H
    windows = SeriesWindows(values, L, 0, ends, masks=masks, first_index=firsts, **kw)
    outs = []
    for start in range(0, len(values), BATCH):
        idx = list(range(start, min(len(values), start + BATCH)))
        batch = collate_windows([windows[i] for i in idx])
        out = net(batch[PAST], batch[PAST_MASK], time_index=batch.get(TIME_INDEX), exog=exog_of(batch))
        if memory is not None:
            point = net.point_forecast(out)
            delta = torch.zeros_like(point)
            for k, i in enumerate(idx):
                delta[k, :, :C] = memory.correction(i, est.stream_memory_, batch[PAST][k, :, :C],
                                                    batch[PAST_MASK][k, :, :C], point[k, :, :C])
            out = net.head.shift(out, delta)
        outs.append(out)
    return outs


def _unobserved(est, masks, ids, channels) -> np.ndarray:
    """[N, C] True where a series' context holds no observed target value (warned about)."""
    L, C = est.context_length_, est.n_targets_
    empty = np.array([[not m[-L:, c].any() for c in range(C)] for m in masks], dtype=bool).reshape(-1, C)
    if empty.any():
        where = [f"{ids[i]!r}" + (f" (channel {channels[c]!r})" if C > 1 else "")
                 for i, c in zip(*np.nonzero(empty), strict=True)]
        listed = ", ".join(where[:5]) + (f" and {len(where) - 5} more" if len(where) > 5 else "")
        warnings.warn(f"{len(where)} series with no observed value in their last {L} steps (the "
                      f"context): {listed}. Their forecasts are NaN (there is nothing to forecast "
                      f"from); pass data with observed values in the context.", UserWarning, stacklevel=4)
    return empty


def _check_finite(arrays: list[np.ndarray], expected_nan: np.ndarray, ids, scaled, L: int) -> None:
    bad = np.zeros(expected_nan.shape, dtype=bool)
    for a in arrays:
        bad |= ~np.isfinite(a).all(1)
    bad &= ~expected_nan
    if not bad.any():
        return
    rows = sorted(set(np.nonzero(bad)[0].tolist()))
    names = [ids[i] for i in rows[:5]]
    mags = [float(np.nanmax(np.abs(scaled[i][-L:]), initial=0.0)) for i in rows]
    if max(mags) > MAGNITUDE_LIMIT:
        raise DataValidationError(
            f"the forecast of series {names} is not finite: their values reach {max(mags):.3g} times "
            f"the spread of the history their units were fixed from (at fit for the stored series, "
            f"from the frame for predict(df=...)); values that far out overflow float32. Check "
            f"the data's units (an outlier, a value in other units), or fit again on data that "
            f"includes them.")
    raise FloatingPointError(
        f"the network produced a non-finite forecast for series {names} from finite inputs of "
        f"ordinary magnitude (at most {max(mags):.3g} scales from their centre). The likeliest "
        f"cause is the neural memory diverging: refit with a lower memory max_lr or memory "
        f"surprise_clamp set.")


def forecast_arrays(est, values, masks, stats: Stats, ids, memory=None, firsts=None,
                    levels_q=(), future=None, static=None) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """Point [N, H, C] and per-level quantiles {q: [N, H, C]} (float64, the series' units) of
    forecasts from the end of ``values`` (raw units; ``stats``: the scaling of each series;
    ``future``: the raw input rows after each end, ``static``: see :func:`network_outputs`)."""
    scaled = scaled_inputs(values, stats)
    future = None if future is None else scaled_inputs(future, stats)
    outs = network_outputs(est, scaled, masks, memory, firsts, future, static)
    head = est.model_.net.head
    point = np.concatenate([head.point(o).numpy() for o in outs])[..., :est.n_targets_]
    qs = {}
    if levels_q:
        stacked = np.concatenate([head.quantiles(o, list(levels_q)).numpy() for o in outs])
        qs = {q: unscale(stacked[..., : est.n_targets_, j], *stats) for j, q in enumerate(levels_q)}
    point = unscale(point, *stats)
    empty = _unobserved(est, masks, ids, getattr(est, "channels_", ["y"]))
    _check_finite([point, *qs.values()], empty, ids, scaled, est.context_length_)
    if empty.any():
        point[np.broadcast_to(empty[:, None, :], point.shape)] = np.nan
        for a in qs.values():
            a[np.broadcast_to(empty[:, None, :], a.shape)] = np.nan
    return point, qs
