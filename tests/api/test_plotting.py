"""plot_forecast_frame on a caller's axis: one series drawn, never a silent first-of-many."""

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
