"""Each series' units: the affine scaling that makes :class:`TitansForecaster` unit-free.

The network never sees a series in its own units. Every series and channel (targets and
covariates) is mapped to ``(x - centre) / scale`` first, with the centre and scale of its
observed history (the mean and the standard deviation; a constant channel takes ``|centre|``,
or 1 when that is 0 too, so that it is still equivariant), and every forecast (point,
quantiles; the location and the spread of a Student-t alike) is mapped back by
``y * scale + centre``. So the same series in other units gets the same forecast in those units
(to floating-point accuracy): the network's own constants (RevIN's variance floor, the memory's
spread floors) act on numbers of order one whatever the units, and values far from zero in
float32 (``1e6 + small changes``, ``1e-6 * x``) are centred before any float32 arithmetic.

The statistics are computed in float64: at ``fit`` from each series' training history, kept
fixed across ``update`` (so new rows are read in the units the series was fitted in), and, for
``predict(df=...)`` / ``score`` / ``cross_validation``, from each given series' own history.
"""

from __future__ import annotations

import numpy as np

__all__ = ["series_stats", "scale_values", "unscale", "Stats"]

#: per series, the centre and scale of every input channel ([C + K] float64 each)
Stats = tuple[list[np.ndarray], list[np.ndarray]]


def _one(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.where(mask, values.astype(np.float64), 0.0)
    n = mask.sum(0)
    centre = v.sum(0) / np.maximum(n, 1)
    # a constant channel is one whose observed values are all equal (its mean may differ from
    # that value by rounding, which would leave a spread of a few ulps): its centre is the value
    lo = np.where(mask, v, np.inf).min(0, initial=np.inf)
    hi = np.where(mask, v, -np.inf).max(0, initial=-np.inf)
    constant = (n > 0) & (hi == lo)
    centre = np.where(constant, lo, centre)
    spread = np.sqrt((np.where(mask, v - centre, 0.0) ** 2).sum(0) / np.maximum(n, 1))
    fallback = np.where(np.abs(centre) > 0, np.abs(centre), 1.0)
    ok = np.isfinite(spread) & (spread > 0) & ~constant
    return centre, np.where(ok, spread, fallback)


def series_stats(values: list[np.ndarray], masks: list[np.ndarray]) -> Stats:
    """Centre and scale [D] (float64) of every series' observed values, channel by channel
    (a channel without an observed value: centre 0, scale 1)."""
    pairs = [_one(v, m) for v, m in zip(values, masks, strict=True)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def scale_values(values: np.ndarray, centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(values - centre) / scale`` as float32 (computed in float64; NaN stays NaN)."""
    return ((values.astype(np.float64) - centre) / scale).astype(np.float32)


def unscale(x: np.ndarray, centres: list[np.ndarray], scales: list[np.ndarray]) -> np.ndarray:
    """Forecasts [N, H, C] in scaled units back to each series' units (float64); ``centres`` /
    ``scales`` per series hold at least C channels (the targets come first)."""
    C = x.shape[-1]
    c = np.stack([np.asarray(m[:C]) for m in centres])[:, None, :]
    s = np.stack([np.asarray(v[:C]) for v in scales])[:, None, :]
    return x.astype(np.float64) * s + c
