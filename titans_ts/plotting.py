"""Plots of forecasts against the truth (matplotlib, written to files; no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .atomic import save_figure
from .datasets.windows import exog_of

__all__ = ["plot_test_forecast", "plot_forecast_frame"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_test_forecast(model, datamodule, out: str | os.PathLike, windows: tuple[int, ...] | None = None,
                       channel: int | str = -1, band: tuple[torch.Tensor, torch.Tensor, str] | None = None) -> Path:
    """Context, truth, forecast and interval of a few test windows of one channel (default: the
    target).

    Args:
        model: a ``TitansLightningModule`` (or anything with ``.net``).
        datamodule: an ``LTSFDataModule`` after ``setup``.
        windows: test window indices (default: three spread over the test split).
        band: an interval for a point head: offsets ``(low, high)`` of shape [H, C] added to the
            point forecast, and the legend's label (``titans_ts.recipes.residual_band``). A
            probabilistic head shades its own quantiles (its ``band_levels``) when no band is given.
    """
    plt = _plt()
    test = datamodule.splits.test
    if windows is None:
        n = len(test)
        windows = (0, n // 2, n - 1)
    ch = test.columns.index(channel) if isinstance(channel, str) else channel % test.n_channels
    net = model.net if hasattr(model, "net") else model
    net.eval()
    fig, axes = plt.subplots(len(windows), 1, figsize=(9, 2.4 * len(windows)), squeeze=False)
    with torch.no_grad():
        for ax, w in zip(axes[:, 0], windows, strict=True):
            item = test[w]
            ti = item.get("time_index")
            exog = exog_of(item)
            out_ = net(item["past"].unsqueeze(0), item["past_mask"].unsqueeze(0),
                       time_index=None if ti is None else ti.view(1),
                       exog=None if exog is None else {k: v.unsqueeze(0) for k, v in exog.items()})
            pred = net.point_forecast(out_)[0, :, ch].cpu()
            L, H = item["past"].shape[0], item["future"].shape[0]
            ax.plot(range(L), item["past"][:, ch], color="0.4", lw=1, label="context")
            ax.plot(range(L, L + H), item["future"][:, ch], color="k", lw=1, label="truth")
            ax.plot(range(L, L + H), pred, color="tab:red", lw=1.2, label="titans-ts")
            if band is not None:
                lo, hi, label = band
                ax.fill_between(range(L, L + H), pred + lo[:H, ch].cpu(), pred + hi[:H, ch].cpu(),
                                color="tab:red", alpha=0.2, label=label)
            elif net.head.band_levels is not None:
                levels = net.head.band_levels
                q = net.head.quantiles(out_, levels)[0, :, ch].cpu()
                ax.fill_between(range(L, L + H), q[:, 0], q[:, -1], color="tab:red", alpha=0.2,
                                label=f"{levels[0]:g}-{levels[1]:g} quantiles")
            start = test.timestamps[test.window_start(w)] if test.timestamps is not None else w
            ax.set_title(f"{datamodule.dataset} test window {w} (from {start}), channel "
                         f"{test.columns[ch]}, scaled", fontsize=9)
            ax.axvline(L - 0.5, color="0.7", lw=0.8, ls="--")
        axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    out = save_figure(fig, out, dpi=110)
    plt.close(fig)
    return out


def plot_forecast_frame(history, forecast, out: str | os.PathLike | None = None, *, id_col="unique_id",
                        time_col="ds", target_col="y", point_col="titans", max_series: int = 4,
                        levels: tuple | None = None, ax=None):
    """History, forecast and prediction intervals of frames in the long layout, one panel per
    series (the function behind ``TitansForecaster.plot``). Returns the figure; saved if ``out``.

    Args:
        history: the observed rows (pandas or polars): ``id_col``, ``time_col``, ``target_col``.
        forecast: the forecast rows: ``id_col``, ``time_col``, ``point_col`` and, for intervals,
            ``lo-<level>`` / ``hi-<level>`` or quantile columns ``q0.1`` ... (the widest pair
            is shaded when there are no ``lo-`` / ``hi-`` columns).
        levels: the interval levels shaded (default: every ``lo-`` / ``hi-`` pair).
        max_series: panels drawn (the forecast's first series).
        ax: a matplotlib axis to draw one series on (then ``max_series=1`` or one series' rows).
    """
    plt = _plt()
    import pandas as pd

    hist = history.to_pandas() if hasattr(history, "to_pandas") else history
    fc = forecast.to_pandas() if hasattr(forecast, "to_pandas") else forecast
    ids = list(pd.unique(fc[id_col]))[:max_series] if id_col in fc.columns else [None]
    if ax is None:
        fig, axes = plt.subplots(len(ids), 1, figsize=(9, 2.6 * len(ids)), squeeze=False)
        axes = axes[:, 0]
    elif len(ids) > 1:
        raise ValueError(f"ax draws one series, this call would draw {len(ids)}: pass max_series=1 (or one "
                         f"series' rows), or leave ax out for one axis per series")
    else:
        fig, axes = ax.figure, [ax]
    for a, sid in zip(axes, ids, strict=True):
        h = hist[hist[id_col] == sid] if sid is not None else hist
        f = fc[fc[id_col] == sid] if sid is not None else fc
        a.plot(h[time_col], h[target_col], color="k", lw=1, label="history")
        a.plot(f[time_col], f[point_col], color="tab:red", lw=1.2, label="forecast")
        for lo, hi in _interval_columns(f.columns, levels):
            label = f"{lo[3:]} % interval" if lo.startswith("lo-") else f"{lo} to {hi}"
            a.fill_between(f[time_col], f[lo], f[hi], color="tab:red", alpha=0.15, label=label)
        a.set_title(str(sid) if sid is not None else "", fontsize=9)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    if out is not None:
        save_figure(fig, out, dpi=110)
    return fig


def _interval_columns(columns, levels):
    cols = list(columns)
    pairs = []
    for c in cols:
        if c.startswith("lo-"):
            hi = "hi-" + c[3:]
            if hi in cols and (levels is None or float(c[3:]) in [float(x) for x in levels]):
                pairs.append((c, hi))
    qs = sorted(c for c in cols if c.startswith("q") and c[1:].replace(".", "").isdigit())
    if not pairs and len(qs) >= 2:
        pairs.append((qs[0], qs[-1]))
    return pairs
