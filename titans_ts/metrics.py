"""Forecast metrics shared by every evaluation in titans-ts (benchmarks, backtests, ``score``).

All functions take numpy-compatible arrays (torch tensors are converted) of matching shape and an
optional observed ``mask`` (True = observed); unobserved points are excluded, never filled. Means
are over all observed points (the long-horizon tables' convention: the mean over windows,
horizon steps and channels).

Definitions:

* ``mse``, ``mae``: mean squared / absolute error.
* ``mase``: MAE of the forecast divided by the in-sample MAE of the seasonal naive forecast of
  period ``m`` (Hyndman & Koehler, 2006), per series, then averaged over series.
* ``smape``: ``200 * mean(|y - f| / (|y| + |f|))`` in percent (M4 convention; 0/0 counts as 0).
* ``weighted_quantile_loss``: ``2 * sum(pinball_q) / sum(|y|)`` per quantile level, averaged over
  levels (GluonTS's ``mean_wQuantileLoss``).
* ``coverage``: share of observed points inside ``[lower, upper]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["mse", "mae", "rmse", "mase", "smape", "quantile_loss", "weighted_quantile_loss",
           "coverage", "evaluate_point"]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _mask(y: np.ndarray, mask) -> np.ndarray:
    m = ~np.isnan(y)
    if mask is not None:
        m = m & _np(mask).astype(bool).reshape(y.shape)
    if not m.any():
        raise ValueError("no observed value to evaluate (the mask is all False)")
    return m


def _check(y, f):
    y, f = _np(y), _np(f)
    if y.shape != f.shape:
        raise ValueError(f"truth has shape {y.shape} but the forecast has shape {f.shape}")
    return y, f


def mse(y_true, y_pred, mask=None) -> float:
    y, f = _check(y_true, y_pred)
    m = _mask(y, mask)
    return float(np.mean((y[m] - f[m]) ** 2))


def mae(y_true, y_pred, mask=None) -> float:
    y, f = _check(y_true, y_pred)
    m = _mask(y, mask)
    return float(np.mean(np.abs(y[m] - f[m])))


def rmse(y_true, y_pred, mask=None) -> float:
    return float(np.sqrt(mse(y_true, y_pred, mask)))


def mase(y_true, y_pred, insample: Sequence, season: int = 1, mask=None) -> float:
    """Mean absolute scaled error, averaged over series.

    Args:
        y_true, y_pred: [N, H] (N series) or [H] (one series).
        insample: the history of each series: a list of N 1-D arrays, or an [N, T] / [T] array.
        season: seasonal period ``m`` of the scaling naive forecast (1 = non-seasonal).
    """
    y, f = _check(y_true, y_pred)
    if y.ndim == 1:
        y, f = y[None], f[None]
        insample = [insample]
    m = _mask(y, mask)
    scores = []
    for i in range(y.shape[0]):
        hist = _np(insample[i]).ravel()
        hist = hist[~np.isnan(hist)]
        if hist.size <= season:
            raise ValueError(f"series {i}: history of {hist.size} points is too short for the "
                             f"season-{season} naive scale")
        scale = np.mean(np.abs(hist[season:] - hist[:-season]))
        if not m[i].any():
            continue
        err = np.mean(np.abs(y[i][m[i]] - f[i][m[i]]))
        if scale == 0:
            scores.append(0.0 if err == 0 else np.inf)
        else:
            scores.append(err / scale)
    return float(np.mean(scores))


def smape(y_true, y_pred, mask=None) -> float:
    y, f = _check(y_true, y_pred)
    m = _mask(y, mask)
    num = np.abs(y[m] - f[m])
    den = np.abs(y[m]) + np.abs(f[m])
    ratio = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return float(200.0 * np.mean(ratio))


def quantile_loss(y_true, q_pred, q: float, mask=None) -> float:
    """Sum of the pinball loss at level ``q`` over observed points."""
    y, f = _check(y_true, q_pred)
    m = _mask(y, mask)
    diff = y[m] - f[m]
    return float(np.sum(np.maximum(q * diff, (q - 1) * diff)))


def weighted_quantile_loss(y_true, q_preds, quantiles: Sequence[float], mask=None) -> float:
    """Mean over levels of ``2 * pinball_sum / sum(|y|)``.

    Args:
        q_preds: [..., Q] forecasts whose last axis follows ``quantiles``.
    """
    y = _np(y_true)
    qp = _np(q_preds)
    if qp.shape[:-1] != y.shape or qp.shape[-1] != len(quantiles):
        raise ValueError(f"quantile forecasts must be {y.shape + (len(quantiles),)}, got {qp.shape}")
    m = _mask(y, mask)
    denom = np.sum(np.abs(y[m]))
    if denom == 0:
        raise ValueError("weighted quantile loss is undefined when sum(|y|) is 0")
    losses = [2.0 * quantile_loss(y, qp[..., j], q, m) / denom for j, q in enumerate(quantiles)]
    return float(np.mean(losses))


def coverage(y_true, lower, upper, mask=None) -> float:
    """Share of observed points with ``lower <= y <= upper``."""
    y, lo = _check(y_true, lower)
    _, hi = _check(y_true, upper)
    m = _mask(y, mask)
    return float(np.mean((y[m] >= lo[m]) & (y[m] <= hi[m])))


def evaluate_point(y_true, y_pred, mask=None) -> dict[str, float]:
    """MSE and MAE together (the long-horizon tables' pair)."""
    return {"mse": mse(y_true, y_pred, mask), "mae": mae(y_true, y_pred, mask)}
