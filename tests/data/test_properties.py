"""Property-based tests (hypothesis) of the frame layer and TitansForecaster over random frames:
pandas and polars, long and wide, random units, time zones, id dtypes, gaps and NaN runs. Each
frame either gets a clear DataValidationError (a gap: a missing row) or goes through, and then
its values, ids (with their dtype) and times (with their zone) come back unchanged; a forecast is
finite, in the input's zone and id dtype, scale-equivariant and identical after save / load
(issue 22, acceptance)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from titans_ts import TitansForecaster
from titans_ts.datasets import DataValidationError, from_frame, to_frame

ZONES = [None, "UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]
TINY = dict(h=4, context_length=16, patch_len=8, stride=4, d_model=16, max_epochs=1, limit_train_batches=2,
            batch_size=16, memory=dict(heads=2, depth=1, expansion=1.0, chunk_size=4))


@st.composite
def frames(draw, min_len=2, max_len=40, nan_tail_free=0, gaps=True):
    """(frame as pandas, spec): a long or wide frame of 1-3 series with random units, times
    (hourly / daily in a random zone, or integer steps), ids, NaN runs and perhaps a gap."""
    n = draw(st.integers(1, 3))
    T = draw(st.integers(min_len, max_len))
    times = draw(st.sampled_from(["h", "D", "int"]))
    tz = draw(st.sampled_from(ZONES)) if times != "int" else None
    start = draw(st.sampled_from(["2024-03-09", "2024-10-26", "2023-12-31 22:00"]))  # DST changes, new year
    ds = (np.arange(100, 100 + T, dtype=np.int64) if times == "int"
          else pd.date_range(start, periods=T, freq=times, tz=tz))
    scale = 10.0 ** draw(st.integers(-6, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    ys = []
    for k in range(n):
        y = scale * (5 + k + np.sin(np.arange(T) / 3.0) + 0.1 * rng.standard_normal(T))
        if T - nan_tail_free > 2 and draw(st.booleans()):  # a NaN run, away from the last steps
            a = draw(st.integers(0, T - nan_tail_free - 2))
            b = draw(st.integers(a + 1, min(T - nan_tail_free, a + 1 + T // 3)))
            y[a:b] = np.nan
            if np.isnan(y).all():
                y[-1] = scale
        ys.append(y)
    layout = draw(st.sampled_from(["long", "wide"]))
    id_kind = draw(st.sampled_from(["str", "int64", "int32"]))
    ids = [f"s{k}" for k in range(n)] if id_kind == "str" else [10 * (k + 1) for k in range(n)]
    if layout == "long":
        df = pd.concat([pd.DataFrame({"unique_id": sid, "ds": ds, "y": y}) for sid, y in zip(ids, ys, strict=True)],
                       ignore_index=True)
        if id_kind != "str":
            df = df.astype({"unique_id": id_kind})
    else:
        df = pd.DataFrame({"ds": ds, **{f"c{k}": y for k, y in enumerate(ys)}})
    gap = gaps and T > 3 and draw(st.integers(0, 4)) == 0
    if gap:  # one missing row inside the series
        drop = draw(st.integers(1, T - 2))
        df = df[(df["ds"] != ds[drop])].reset_index(drop=True)
    flavour = draw(st.sampled_from(["pandas", "polars"]))
    return df, dict(n=n, T=T, layout=layout, gap=gap, flavour=flavour, scale=scale, ids=ids, times=times, tz=tz)


def _flavoured(df, spec):
    return pl.from_pandas(df) if spec["flavour"] == "polars" else df


def _pandas(out):
    return out.to_pandas() if isinstance(out, pl.DataFrame) else out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_frames_are_refused_clearly_or_come_back_unchanged(case):
    df, spec = case
    try:
        coll = from_frame(_flavoured(df, spec))
    except DataValidationError as err:
        assert spec["gap"], f"refused without a gap: {err}"
        assert "irregular" in str(err) and "missing step" in str(err)
        return
    assert not spec["gap"], "a frame with a missing row was accepted"
    back = _pandas(to_frame(coll))
    assert isinstance(to_frame(coll), pl.DataFrame) == (spec["flavour"] == "polars")
    expected = df.copy()  # the values exactly as given (float64: no float32 rounding on the way)
    assert str(back["ds"].dtype) == str(expected["ds"].dtype)
    if spec["layout"] == "long":
        assert str(back["unique_id"].dtype) == str(expected["unique_id"].dtype)
        assert list(coll.ids) == spec["ids"]
    pd.testing.assert_frame_equal(back, expected, check_dtype=False, check_exact=True)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(min_len=40, max_len=48, nan_tail_free=17, gaps=False))
def test_forecasts_are_finite_in_the_inputs_zone_and_ids_scale_free_and_survive_save_load(tmp_path_factory, case):
    df, spec = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # (validation steps without observed values)
        f = TitansForecaster(**TINY).fit(_flavoured(df, spec))
        out = _pandas(f.predict())
        value = "y_hat" if spec["layout"] == "long" else [c for c in out.columns if c != "ds"]
        assert np.isfinite(out[value].to_numpy(dtype=float)).all()
        assert str(out["ds"].dtype) == str(df["ds"].dtype)
        last = df["ds"].iloc[-1]
        step = 1 if spec["times"] == "int" else pd.Timedelta(1, unit=spec["times"].lower())
        assert out["ds"].iloc[0] == last + step
        if spec["layout"] == "long":
            assert str(out["unique_id"].dtype) == str(df["unique_id"].dtype)
            assert list(pd.unique(out["unique_id"])) == spec["ids"]
        # the same data in other units: the same forecast in those units
        c = 1e3
        scaled = df.assign(**{col: df[col] * c for col in df.columns if col not in ("unique_id", "ds")})
        g = TitansForecaster(**TINY).fit(_flavoured(scaled, spec))
        np.testing.assert_allclose(_pandas(g.predict())[value].to_numpy(dtype=float) / c,
                                   out[value].to_numpy(dtype=float), rtol=2e-4, atol=1e-6 * spec["scale"])
        path = f.save(tmp_path_factory.mktemp("save") / "m.pt")
        pd.testing.assert_frame_equal(_pandas(TitansForecaster.load(path).predict()), out)


# ------------------------------------------------------------------ the online API (issue 35)


def _split_tail(df, spec, k):
    """(all but the last ``k`` steps of every series, those steps)."""
    if spec["layout"] == "wide":
        return df.iloc[:-k].reset_index(drop=True), df.iloc[-k:].reset_index(drop=True)
    pos = df.groupby("unique_id", sort=False).cumcount(ascending=False)
    return df[pos >= k].reset_index(drop=True), df[pos < k].reset_index(drop=True)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(min_len=40, max_len=48, nan_tail_free=17, gaps=False), st.integers(1, 6), st.booleans(), st.booleans())
def test_fit_update_predict_is_finite_on_the_datas_scale_and_survives_save_load(tmp_path_factory, case, k,
                                                                                 memory, other_zone):
    """fit on all but the last ``k`` steps, update() with them (for zoned timestamps, perhaps
    given in UTC: the same instants), predict: finite, continuing from the last step, on the
    data's scale; and the updated model saves and loads to the same forecast."""
    df, spec = case
    head, tail = _split_tail(df, spec, k)
    if other_zone and spec["tz"] is not None:
        tail = tail.assign(ds=tail["ds"].dt.tz_convert("UTC"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # (validation steps without observed values)
        f = TitansForecaster(test_time_memory=memory, **TINY).fit(_flavoured(head, spec))
        f.update(_flavoured(tail, spec))
        out = _pandas(f.predict())
    value = "y_hat" if spec["layout"] == "long" else [c for c in out.columns if c != "ds"]
    got = out[value].to_numpy(dtype=float)
    assert np.isfinite(got).all()
    assert str(out["ds"].dtype) == str(df["ds"].dtype)
    step = 1 if spec["times"] == "int" else pd.Timedelta(1, unit=spec["times"].lower())
    assert out["ds"].iloc[0] == df["ds"].iloc[-1] + step
    numbers = df[[c for c in df.columns if c not in ("unique_id", "ds")]].to_numpy(dtype=float)
    centre, spread = np.nanmean(numbers), np.nanstd(numbers)
    assert np.abs(got - centre).max() <= 50 * max(spread, 1e-12 * abs(centre)), (centre, spread, got)
    assert len(f.history_["values"][0]) == spec["T"]
    path = f.save(tmp_path_factory.mktemp("online") / "m.pt")
    pd.testing.assert_frame_equal(_pandas(TitansForecaster.load(path).predict()), out)


# ------------------------------------------------------------- GluonTS entry fields (issue 35)

_PREDICTOR = {}


def _quantile_predictor():
    """A tiny quantile-head predictor, trained once (prediction is what the property checks)."""
    if "p" not in _PREDICTOR:
        import torch

        from titans_ts.gluonts import TitansEstimator

        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        data = [{"item_id": f"s{i}", "start": pd.Period("2024-01-01", "D"),
                 "target": 10 + np.sin(np.arange(60) / 3) + 0.1 * rng.standard_normal(60)} for i in range(3)]
        _PREDICTOR["p"] = TitansEstimator(
            freq="D", prediction_length=4, context_length=16, head="quantile", patch_len=8, stride=4, d_model=16,
            n_layers=1, memory={"heads": 2, "chunk_size": 4}, batch_size=8, num_batches_per_epoch=1,
            trainer_kwargs={"max_epochs": 1}).train(data)
    return _PREDICTOR["p"]


@st.composite
def gluonts_entries(draw):
    """(entry, the reason it must be refused or None): targets empty, all NaN, NaN in the context,
    with +/-inf, or ordinary with NaN runs, at magnitudes 1e-30 .. 1e30; starts as periods,
    timestamps, text or datetimes; perhaps a covariate field the estimator does not read; with or
    without an item_id."""
    T = draw(st.integers(1, 40))
    kind = draw(st.sampled_from(["ok", "ok", "ok", "empty", "all_nan", "nan_context", "inf"]))
    scale = 10.0 ** draw(st.sampled_from([-30, -6, 0, 6, 30]))
    level = draw(st.sampled_from([0.0, 1.0, 1e8]))
    y = level + np.sin(np.arange(T) / 3.0) + 2.0
    if draw(st.booleans()) and T > 3:  # a NaN run inside the series
        a = draw(st.integers(0, T - 3))
        y[a:a + draw(st.integers(1, 2))] = np.nan
    y[-1] = level + 1.5  # the newest value observed (unless the kind says otherwise)
    reason = None  # (a regular expression the refusal must match)
    if kind == "empty":
        y, reason = y[:0], "has an empty target"
    elif kind == "all_nan":
        y[:], reason = np.nan, re.escape("has no observed value (its target is all NaN)")
    elif kind == "nan_context":
        y = np.r_[np.ones(5), np.full(16, np.nan)] if T < 22 else np.r_[y[:-16], np.full(16, np.nan)]
        reason = "has no observed value in its last 16 values"
    elif kind == "inf":
        y[draw(st.integers(0, T - 1))], reason = np.inf, r"has \+/-inf in its target"
    entry = {"target": y * scale}
    day = pd.Timestamp("2024-02-01")
    entry["start"] = draw(st.sampled_from([pd.Period(day, "D"), day, "2024-02-01", day.to_pydatetime()]))
    if draw(st.booleans()):
        entry["item_id"] = "x"
    field = draw(st.sampled_from([None, None, None, "feat_dynamic_real", "past_feat_dynamic_real",
                                  "feat_static_cat", "feat_static_real"]))
    if field is not None:
        entry[field] = [1.0] if field.startswith("feat_static") else np.ones((1, len(y)))
        # a covariate field the estimator was not told to read (after the target's checks)
        reason = reason or rf"has {field} but the estimator reads none \(num_{field}"
    return entry, reason, scale


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gluonts_entries())
def test_gluonts_entries_are_refused_clearly_or_forecast_on_their_own_scale(case):
    entry, reason, scale = case
    predictor = _quantile_predictor()
    try:
        (fc,) = predictor.predict([entry])
    except ValueError as err:
        assert reason is not None, f"refused without a reason: {err}"
        assert re.search(reason, str(err)), (reason, str(err))
        assert "entry" in str(err) and ("'x'" in str(err)) == ("item_id" in entry)
        return
    assert reason is None, f"accepted although it {reason}"
    arr = fc.forecast_array
    assert np.isfinite(arr).all() and arr.shape == (9, 4)
    assert fc.start_date == pd.Period("2024-02-01", "D") + len(entry["target"])
    # on the data's own scale: the same entry in other units forecasts the same in those units
    (other,) = predictor.predict([{**entry, "target": entry["target"] * 1e3}])
    np.testing.assert_allclose(other.forecast_array / 1e3, arr, rtol=1e-4, atol=1e-9 * scale)
