"""Tiny and degenerate data: series too short to train on, constant series, a single spike.

A forecast is on a series' scale when it lies within one span of the series' range (the span:
max - min, or a tenth of the largest magnitude where that is more, as for a single value or a
constant): the five-point series 1..5 once got 146 (issue 37)."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pytest
import torch
from gluonts.dataset.common import ListDataset

from titans_ts import TitansForecaster
from titans_ts.gluonts import TitansEstimator

SMALL = dict(patch_len=4, stride=2, d_model=16, batch_size=16, max_epochs=2, limit_train_batches=2,
             memory=dict(heads=2, depth=1, expansion=1.0, chunk_size=4))
EST = dict(num_samples=20, batch_size=16, d_model=16, memory={"heads": 2, "chunk_size": 4},
           num_batches_per_epoch=2, trainer_kwargs={"max_epochs": 2})


def _on_scale(forecast, history, spans=1):
    y, f = np.asarray(history, dtype=np.float64), np.asarray(forecast, dtype=np.float64)
    span = spans * max(y.max() - y.min(), 0.1 * np.abs(y).max())
    return bool(np.isfinite(f).all() and (f >= y.min() - span).all() and (f <= y.max() + span).all())


def _frame(series: dict, freq="D"):
    return pd.concat([pd.DataFrame({"unique_id": sid, "ds": pd.date_range("2024-01-01", periods=len(y), freq=freq),
                                    "y": np.asarray(y, dtype=np.float64)}) for sid, y in series.items()],
                     ignore_index=True)


def _long(n=60, seed=0):
    t = np.arange(n)
    return 10 + 3 * np.sin(2 * np.pi * t / 7) + 0.3 * np.random.default_rng(seed).standard_normal(n)


@pytest.mark.parametrize("n, h", [(1, 4), (2, 4), (5, 4), (7, 6)])
def test_a_series_too_short_to_train_on_alone_is_refused(n, h):
    # 5 points at h = 4 (h + 1) once trained on one window of one past step and forecast ~146
    df = _frame({"a": np.arange(1.0, n + 1)})
    with pytest.raises(ValueError, match=rf"every series is too short to train on \(fewer than h \+ 2 = {h + 2} steps"):
        TitansForecaster(h=h, **SMALL).fit(df)


def test_short_series_in_a_panel_get_their_naive_with_a_warning(tmp_path):
    h = 6
    series = {"long": _long(), "one": [4.0], "two": [3.0, 5.0], "five": [1.0, 2, 3, 4, 5],
              "h+1": [1.0, 2, 3, 4, 5, 6, 7]}
    df = _frame(series)
    with pytest.warns(UserWarning, match=r"4 of 5 series too short to train on \(fewer than h \+ 2 = 8 steps.*"
                                         r"'one' \(1 steps, repeat_last\)"):
        f = TitansForecaster(h=h, head="quantile", **SMALL).fit(df)
    assert f.short_series_ == {"one": "repeat_last", "two": "repeat_last", "five": "repeat_last",
                               "h+1": "seasonal_naive"}
    out = f.predict(levels=[80])
    got = {sid: g for sid, g in out.groupby("unique_id")}
    np.testing.assert_array_equal(got["one"]["y_hat"], [4.0] * h)
    np.testing.assert_array_equal(got["two"]["y_hat"], [5.0] * h)
    np.testing.assert_array_equal(got["five"]["y_hat"], [5.0] * h)
    # a whole week (daily data: season 7): the seasonal naive repeats it
    np.testing.assert_array_equal(got["h+1"]["y_hat"], [1.0, 2, 3, 4, 5, 6])
    for sid in ("one", "two", "five", "h+1"):  # no spread to learn from: the interval is the point
        np.testing.assert_array_equal(got[sid]["lo-80"], got[sid]["y_hat"])
        np.testing.assert_array_equal(got[sid]["hi-80"], got[sid]["y_hat"])
    assert _on_scale(got["long"]["y_hat"], series["long"])
    assert (got["long"]["lo-80"] <= got["long"]["hi-80"]).all()
    # kept by save / load (a timedelta budget kept as its seconds)
    f.set_params(time_budget=datetime.timedelta(minutes=2))
    with pytest.warns(UserWarning, match="too short to train on"):
        f.fit(df)
    assert f.time_budget == 120.0
    f.save(tmp_path / "m.pt")
    g = TitansForecaster.load(tmp_path / "m.pt")
    assert g.short_series_ == f.short_series_ and g.time_budget == 120.0
    out = f.predict(levels=[80])
    pd.testing.assert_frame_equal(g.predict(levels=[80]), out)


@pytest.mark.parametrize("kind", ["constant", "spike", "spike_last"])
def test_constant_and_spiky_series_are_forecast_on_their_scale(kind):
    y = np.full(60, 7.0)
    if kind == "spike":
        y[30] = 100.0
    elif kind == "spike_last":
        y[-1] = 100.0
    f = TitansForecaster(h=6, **SMALL).fit(_frame({"a": y, "b": _long()}))
    out = f.predict()
    a = out[out["unique_id"] == "a"]["y_hat"].to_numpy()
    if kind == "constant":  # a constant series has no spread: its forecast stays near its value
        np.testing.assert_allclose(a, 7.0, rtol=0.05)
    else:
        assert _on_scale(a, y)


def _gluonts(series: dict):
    return ListDataset([{"start": pd.Period("2024-01-01", freq="D"), "item_id": sid,
                         "target": np.asarray(y, dtype=np.float64)} for sid, y in series.items()], freq="D")


@pytest.mark.parametrize("n, h", [(1, 4), (2, 4), (5, 4), (7, 6)])
def test_the_estimator_refuses_data_too_short_to_train_on(n, h):
    with pytest.raises(ValueError, match=rf"every series is shorter than prediction_length \+ 2 = {h + 2} values"):
        TitansEstimator(freq="D", prediction_length=h, **EST).train(_gluonts({"a": np.arange(1.0, n + 1)}))


def test_the_estimator_forecasts_short_constant_and_spiky_series_on_their_scale():
    spike = np.zeros(60)
    spike[30] = 50.0
    series = {"long": _long(), "one": [4.0], "two": [3.0, 5.0], "five": [1.0, 2, 3, 4, 5],
              "constant": np.full(60, 7.0), "spike": spike}
    est = TitansEstimator(freq="D", prediction_length=6, **EST)
    with pytest.warns(UserWarning, match=r"3 of 6 series of training_data are too short to train on \(fewer "
                                         r"than prediction_length \+ 2 = 8 values\): entry 1 \(item_id 'one'\)"):
        predictor = est.train(_gluonts(series))
    torch.manual_seed(0)  # the sample paths
    # series shorter than h + 2 give no training window; the network forecasts them from their
    # context, scaled by it: the median on the series' scale, the 80% interval (sampled from a
    # network trained for two epochs) within three spans
    for fc, (sid, y) in zip(predictor.predict(_gluonts(series)), series.items(), strict=True):
        assert fc.item_id == sid
        assert _on_scale(fc.quantile(0.5), y), (sid, fc.quantile(0.5))
        for q in (0.1, 0.9):
            assert _on_scale(fc.quantile(q), y, spans=3), (sid, q, fc.quantile(q))
