"""Plots: plot_forecast_frame on a caller's axis (one series drawn, never a silent
first-of-many); the interval of a point head from its validation residuals (residual_band,
band_coverage) and the quickstart's picture that shades it."""

import re

import matplotlib
import numpy as np
import pandas as pd
import pytest

from titans_ts.plotting import plot_forecast_frame

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _frames(ids):
    ds = pd.date_range("2024-01-01", periods=12, freq="D")
    hist = pd.concat([pd.DataFrame({"unique_id": i, "ds": ds[:8], "y": np.arange(8.0) + k})
                      for k, i in enumerate(ids)])
    fc = pd.concat([pd.DataFrame({"unique_id": i, "ds": ds[8:], "titans": np.full(4, 10.0 + k)})
                    for k, i in enumerate(ids)])
    return hist, fc


def test_ax_takes_one_series():
    hist, fc = _frames(["a", "b"])
    fig, ax = plt.subplots()
    try:
        with pytest.raises(ValueError, match="ax draws one series, this call would draw 2: pass max_series=1"):
            plot_forecast_frame(hist, fc, ax=ax)
        assert plot_forecast_frame(hist, fc, ax=ax, max_series=1) is fig
        (history, forecast) = ax.get_lines()
        np.testing.assert_array_equal(history.get_ydata(), np.arange(8.0))  # series "a", nothing of "b"
        np.testing.assert_array_equal(forecast.get_ydata(), np.full(4, 10.0))
        assert ax.get_title() == "a"
    finally:
        plt.close(fig)


# ---------------------------------------------------------------- intervals for a point head


def _net_and_windows(missing: bool = False):
    import torch

    from titans_ts import TitansNet
    from titans_ts.datasets import WindowDataset

    torch.manual_seed(0)
    net = TitansNet(seq_len=16, horizon=4, n_channels=2, d_model=16, patch_len=4, stride=4)
    rng = np.random.default_rng(0)
    vals = np.cumsum(rng.normal(size=(120, 2)), axis=0)
    if missing:
        vals[60:63, 1] = np.nan
    return net, WindowDataset(vals, 16, 4, columns=["a", "b"])


def _residuals(net, ds):
    """truth - forecast of every window, [N, H, C], NaN where unobserved (computed window by window)."""
    import torch

    out = []
    with torch.no_grad():
        for k in range(len(ds)):
            item = ds[k]
            pred = net.point_forecast(net(item["past"][None], item["past_mask"][None]))[0]
            out.append(torch.where(item["future_mask"], item["future"] - pred, torch.nan).numpy())
    return np.stack(out).astype(np.float64)


@pytest.mark.parametrize("missing", [False, True])
def test_residual_band_is_the_residuals_percentiles(missing):
    from titans_ts.recipes import band_coverage, residual_band

    net, ds = _net_and_windows(missing)
    low, high = residual_band(net, ds, level=80, batch_size=7)
    r = _residuals(net, ds)
    np.testing.assert_allclose(low.numpy(), np.nanquantile(r, 0.1, axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(high.numpy(), np.nanquantile(r, 0.9, axis=0), rtol=1e-5, atol=1e-5)
    inside = (r >= low.numpy()) & (r <= high.numpy())
    observed = ~np.isnan(r)
    # the same share (up to the few values on the band's edges, which round-off puts on either side)
    assert band_coverage(net, ds, low, high, batch_size=5) == pytest.approx(inside[observed].mean(), abs=0.005)
    # on the windows it was taken from, an 80 % band holds about 80 % of the values
    assert 0.75 < band_coverage(net, ds, low, high) < 0.85


def test_residual_band_refuses_a_level_outside_0_100():
    from titans_ts.recipes import residual_band

    net, ds = _net_and_windows()
    for level in (0, 100, 180):
        with pytest.raises(ValueError, match=f"level must be a percentage strictly between 0 and 100, got {level}"):
            residual_band(net, ds, level=level)


def test_the_test_forecast_plot_shades_a_given_band(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from matplotlib.collections import PolyCollection

    from titans_ts import plotting
    from titans_ts.recipes import residual_band

    net, ds = _net_and_windows()
    low, high = residual_band(net, ds, level=80)
    figures = []
    monkeypatch.setattr(plotting, "save_figure", lambda fig, out, dpi: figures.append(fig) or out)
    dm = SimpleNamespace(splits=SimpleNamespace(test=ds), dataset="toy")
    plotting.plot_test_forecast(SimpleNamespace(net=net), dm, tmp_path / "x.png", windows=(0, 5),
                                channel="b", band=(low, high, "80 % interval (validation residuals)"))
    assert len(figures[0].axes) == 2
    for ax in figures[0].axes:
        (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert band.get_label() == "80 % interval (validation residuals)"
        forecast = next(line for line in ax.get_lines() if line.get_label() == "titans-ts").get_ydata()
        # the band's edges are the forecast plus the offsets of channel b
        ys = band.get_paths()[0].vertices[:, 1]
        for edge in (forecast + low[:, 1].numpy(), forecast + high[:, 1].numpy()):
            assert all(np.isclose(ys, y, rtol=1e-5).any() for y in edge)
    plt.close(figures[0])


@pytest.mark.slow
def test_the_quickstart_plot_shows_an_interval(data_root, tmp_path, monkeypatch, capsys):
    """``titans-ts quickstart`` (its point head, a short budget): every panel of its picture shades
    the validation residuals' 80 % interval, and it prints that interval's test coverage."""
    from matplotlib.collections import PolyCollection

    from titans_ts import plotting
    from titans_ts.cli import main

    figures = []
    save = plotting.save_figure
    monkeypatch.setattr(plotting, "save_figure", lambda fig, out, dpi: figures.append(fig) or save(fig, out, dpi=dpi))
    assert main(["quickstart", "--root", str(data_root), "--epochs", "1", "--batches", "2",
                 "--plot", str(tmp_path / "q.png")]) == 0
    assert (tmp_path / "q.png").stat().st_size > 1000
    (fig,) = figures
    for ax in fig.axes:
        labels = [c.get_label() for c in ax.collections if isinstance(c, PolyCollection)]
        assert labels == ["80 % interval (validation residuals)"]
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("80 % interval"))
    covered = float(re.search(r"it holds ([0-9.]+) % of the test values", line).group(1))
    assert 50 < covered < 100
