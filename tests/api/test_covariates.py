"""Covariates (past-only, future-known, static, calendar) and continued training, in every front-end:
the network, the window builder, ``TitansForecaster``, ``TitansEstimator``, the LTSF data module
and the tuning spaces (issue 36)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import polars as pl_
import pytest
import torch
from gluonts.dataset.common import ListDataset
from sklearn.exceptions import NotFittedError

from titans_ts import TitansForecaster, TitansNet
from titans_ts.datasets import DataValidationError, SeriesWindows, collate_windows, resolve_time_features
from titans_ts.datasets.windows import exog_of
from titans_ts.gluonts import TitansEstimator

H, L = 6, 24
TINY = dict(h=H, context_length=L, patch_len=8, stride=4, d_model=16, max_epochs=1, limit_train_batches=2,
            batch_size=16, dropout=0.0, cycle_len=0, memory=dict(heads=2, depth=1, expansion=1.0, chunk_size=4))
COVS = dict(hist_exog_list=["temp"], futr_exog_list=["promo"], stat_exog_list=["size", "kind"],
            time_features="auto")


def _frame(n=3, T=80, seed=0):
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n):
        t = np.arange(T)
        promo = (rng.random(T) < 0.3).astype(float)
        temp = rng.standard_normal(T)
        parts.append(pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2024-01-01", periods=T, freq="h"),
                                   "y": 10 + i + np.sin(t / 3) + 2 * promo + 0.5 * np.roll(temp, 1),
                                   "temp": temp, "promo": promo}))
    return pd.concat(parts, ignore_index=True)


def _static(ids=("s0", "s1", "s2")):
    sizes, kinds = [1.0, 2.0, 4.0, 3.0], ["a", "b", "a", "b"]
    return pd.DataFrame({"unique_id": list(ids), "size": sizes[:len(ids)], "kind": kinds[:len(ids)]})


def _split(df, h=H):
    hist = df.groupby("unique_id").head(len(df) // df["unique_id"].nunique() - h).reset_index(drop=True)
    futr = df.groupby("unique_id").tail(h)[["unique_id", "ds", "promo"]].reset_index(drop=True)
    return hist, futr


@pytest.fixture(scope="module")
def fitted():
    hist, futr = _split(_frame())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TitansForecaster(**TINY, **COVS).fit(hist, static_df=_static())
    return model, hist, futr


def _yhat(frame):
    return frame["y_hat"].to_numpy()


def _per_series(a, b):
    """{series: whether its forecast changed}."""
    return {f"s{i}": not np.array_equal(a[i * H:(i + 1) * H], b[i * H:(i + 1) * H]) for i in range(len(a) // H)}


# ------------------------------------------------------------------------------------ network


def _net(tokenizer="patch", **kw):
    torch.manual_seed(0)
    return TitansNet(seq_len=L, horizon=H, tokenizer=tokenizer, d_model=16, patch_len=8, stride=4, dropout=0.0,
                     memory=dict(heads=2, depth=1, chunk_size=4), n_hist_exog=1, n_futr_exog=2, n_stat_exog=1,
                     stat_cat_cardinalities=(3,), **kw).eval()


@pytest.mark.parametrize("tokenizer", ["patch", "variate"])
def test_past_covariates_cannot_see_the_horizon_but_the_others_reach_the_forecast(tokenizer):
    """Leak test at the windows + network level: a past-only covariate's values after a window's
    origin are not in the window (the forecast is bit-identical when they change); its context
    values, the future-known covariates (context and horizon) and the statics reach it."""
    rng = np.random.default_rng(1)
    T = 60
    values = rng.standard_normal((T, 4)).astype(np.float32)  # target | hist | futr x 2
    net = _net(tokenizer)
    ends = [(0, 30), (0, 40)]

    def forecast(v, static=(0.5,), code=1):
        ds = SeriesWindows([v], L, H, ends, n_targets=1, n_hist=1, n_futr=2, static=[np.array(static)],
                           static_cat=[np.array([code])])
        b = collate_windows([ds[i] for i in range(len(ends))])
        assert b["hist_exog"].shape == (2, L, 1) and b["futr_exog"].shape == (2, L + H, 2)
        with torch.no_grad():
            return net(b["past"], b["past_mask"], exog=exog_of(b)).numpy()

    base = forecast(values)
    after = values.copy()
    after[30:36, 1] += 100.0  # the past covariate over the first window's horizon
    out = forecast(after)
    assert np.array_equal(out[0], base[0])  # window (0, 30) cannot see it
    assert not np.array_equal(out[1], base[1])  # window (0, 40) has it in its context
    for col, rows in ((2, slice(30, 36)), (3, slice(10, 20))):  # future-known: horizon, context
        v = values.copy()
        v[rows, col] += 1.0
        assert not np.array_equal(forecast(v)[0], base[0])
    assert not np.array_equal(forecast(values, static=(1.5,))[0], base[0])
    assert not np.array_equal(forecast(values, code=2)[0], base[0])
    assert np.array_equal(forecast(values), base)  # nothing changed: bit-identical


@pytest.mark.parametrize("tokenizer", ["patch", "variate"])
def test_centred_covariates_read_changes_not_levels(tokenizer):
    """``exog_center="mean"``: each window's past-only and future-known covariates minus their
    observed context mean, so a constant shift of a covariate leaves the forecast unchanged (it
    changes it with the default "none"); a change within the window still reaches it, missing
    values stay masked out of the mean, and an unknown centre is refused."""
    past = torch.randn(2, L, 1)
    hist, futr = torch.randn(2, L, 1), torch.randn(2, L + H, 2)
    stat = {"stat_exog": torch.randn(2, 1), "stat_cat": torch.tensor([[0], [2]])}
    shifted = {"hist_exog": hist + 3.0, "futr_exog": futr - 7.0, **stat}
    base = {"hist_exog": hist, "futr_exog": futr, **stat}
    with torch.no_grad():
        centred = _net(tokenizer, exog_center="mean")
        torch.testing.assert_close(centred(past, exog=shifted), centred(past, exog=base), atol=2e-5, rtol=0)
        plain = _net(tokenizer)
        assert (plain(past, exog=shifted) - plain(past, exog=base)).abs().max() > 1e-3
        step = futr.clone()
        step[:, L:, 0] += 1.0  # the horizon rises against the context: a change, not a level
        assert (centred(past, exog={**base, "futr_exog": step}) - centred(past, exog=base)).abs().max() > 1e-4
        # a missing context value is out of the mean: filling it with anything changes nothing
        gap = torch.ones_like(futr, dtype=torch.bool)
        gap[:, 3, 1] = False
        a, b = futr.clone(), futr.clone()
        a[:, 3, 1], b[:, 3, 1] = 50.0, -50.0
        torch.testing.assert_close(centred(past, exog={**base, "futr_exog": a, "futr_exog_mask": gap}),
                                   centred(past, exog={**base, "futr_exog": b, "futr_exog_mask": gap}))
    with pytest.raises(ValueError, match=r"covariate center must be one of \('none', 'mean'\), got 'last'"):
        _net(tokenizer, exog_center="last")


def test_covariate_dropout_hides_whole_covariates_in_training_only():
    """``exog_dropout``: in training each past-only / future-known covariate of a window is
    hidden as a missing one (values and mask 0) with the given probability; a training forecast
    is the evaluation forecast with some covariates masked, both outcomes occur, statics are never
    hidden, and evaluation reads every covariate (the same forecast as without dropout)."""
    torch.manual_seed(3)
    past = torch.randn(1, L, 1)
    exog = {"hist_exog": torch.randn(1, L, 1), "futr_exog": torch.randn(1, L + H, 2),
            "stat_exog": torch.randn(1, 1), "stat_cat": torch.tensor([[1]])}
    net, plain = _net(exog_dropout=0.5), _net()
    with torch.no_grad():
        torch.testing.assert_close(net(past, exog=exog), plain(past, exog=exog), atol=0, rtol=0)
        # every pattern of hidden covariates, read in evaluation through the masks
        patterns = {}
        for hide in range(8):
            ex = dict(exog)
            for bit, (key, j) in enumerate((("hist_exog", 0), ("futr_exog", 0), ("futr_exog", 1))):
                if hide >> bit & 1:
                    m = torch.ones_like(ex[key])
                    m[..., j] = 0
                    ex[key + "_mask"] = m * ex.get(key + "_mask", torch.ones_like(ex[key]))
            patterns[hide] = net(past, exog=ex)
        net.train()
        seen = set()
        for _ in range(40):
            out = net(past, exog=exog)
            match = [k for k, p in patterns.items() if torch.allclose(out, p, atol=1e-6, rtol=0)]
            assert match, "a training forecast must be the forecast with some covariates hidden"
            seen.add(match[0])
    assert 0 in seen and 7 in seen and len(seen) >= 4
    with pytest.raises(ValueError, match="exog_dropout"):
        _net(exog_dropout=1.0)


def test_network_refuses_covariates_it_was_not_built_for():
    net = _net()
    past = torch.randn(2, L, 1)
    exog = {"hist_exog": torch.randn(2, L, 1), "futr_exog": torch.randn(2, L + H, 2),
            "stat_exog": torch.randn(2, 1), "stat_cat": torch.tensor([[0], [2]])}
    net(past, exog=exog)
    with pytest.raises(ValueError, match=r"futr_exog must be \[2, 30, 2\], got \[2, 24, 2\]"):
        net(past, exog={**exog, "futr_exog": torch.randn(2, L, 2)})
    with pytest.raises(ValueError, match="reads 1 covariate.*as stat_exog"):
        net(past, exog={k: v for k, v in exog.items() if k != "stat_exog"})
    with pytest.raises(ValueError, match=r"stat_cat column 0 holds code 3; its codes are 0 \.\. 2"):
        net(past, exog={**exog, "stat_cat": torch.tensor([[3], [0]])})
    with pytest.raises(ValueError, match="built without hist_exog"):
        TitansNet(seq_len=L, horizon=H, d_model=16, memory=dict(heads=2))(past, exog={"hist_exog": exog["hist_exog"]})


# --------------------------------------------------------------------------------- forecaster


def test_each_covariate_kind_changes_the_forecast_when_its_values_change_and_only_then(fitted):
    model, hist, futr = fitted
    assert model.exog_.time_features == ["hour_of_day", "day_of_week", "day_of_month", "day_of_year"]
    assert model.model_.net.config.n_futr_exog == 5 and model.model_.net.config.n_hist_exog == 1
    base = _yhat(model.predict(futr_df=futr))
    assert np.array_equal(base, _yhat(model.predict(futr_df=futr)))
    assert np.array_equal(base, _yhat(model.predict(df=hist, futr_df=futr)))  # the same rows, the same units
    edited = futr.copy()
    edited.loc[edited["unique_id"] == "s1", "promo"] = 1 - edited["promo"]
    assert _per_series(base, _yhat(model.predict(futr_df=edited))) == {"s0": False, "s1": True, "s2": False}
    past = hist.copy()
    last = past.groupby("unique_id").tail(3).index
    past.loc[[i for i in last if past.loc[i, "unique_id"] == "s2"], "temp"] += 3.0
    assert _per_series(base, _yhat(model.predict(df=past, futr_df=futr))) == {"s0": False, "s1": False, "s2": True}
    static = _static()
    static.loc[0, "size"] = 9.0
    assert _per_series(base, _yhat(model.predict(futr_df=futr, static_df=static))) == \
        {"s0": True, "s1": False, "s2": False}
    static = _static()
    static.loc[1, "kind"] = "a"
    assert _per_series(base, _yhat(model.predict(futr_df=futr, static_df=static))) == \
        {"s0": False, "s1": True, "s2": False}


def test_missing_covariate_values_are_masked_not_filled(fitted):
    """NaN in a covariate is an unobserved value (masked, as for targets): the forecast stays
    finite, and differs from reading any number there (nothing is filled in)."""
    model, hist, futr = fitted
    base = _yhat(model.predict(futr_df=futr))
    unknown = futr.copy()
    unknown.loc[unknown["unique_id"] == "s0", "promo"] = np.nan
    out = _yhat(model.predict(futr_df=unknown))
    assert np.isfinite(out).all() and _per_series(base, out) == {"s0": True, "s1": False, "s2": False}
    for value in (0.0, 1.0):
        filled = unknown.fillna(value)
        assert not np.array_equal(out, _yhat(model.predict(futr_df=filled)))
    gaps = hist.copy()
    gaps.loc[gaps.index[-3:], "temp"] = np.nan
    assert np.isfinite(_yhat(model.predict(df=gaps, futr_df=futr))).all()


def test_calendar_features_read_the_timestamps():
    df = _frame(n=1, T=80)[["unique_id", "ds", "y"]]
    later = df.assign(ds=df["ds"] + pd.Timedelta(hours=5))
    out = {}
    for names in (None, ["hour_of_day"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = TitansForecaster(**TINY, time_features=names).fit(df)
        out[names is None] = (_yhat(m.predict(df=df)), _yhat(m.predict(df=later)))
    assert np.array_equal(*out[True])  # no calendar: the timestamps do not matter
    assert not np.array_equal(*out[False])  # the hour of day moved by five hours


def test_past_covariate_horizon_values_do_not_leak_into_score(fitted):
    """``score`` forecasts the last h rows of df from the rest: the past-only covariate's values in
    those rows are not read (the score is bit-identical), the future-known ones are."""
    model, hist, futr = fitted
    full = _frame()
    tail = full.groupby("unique_id").tail(H).index
    leak = full.copy()
    leak.loc[tail, "temp"] = 1e3
    assert model.score(full) == model.score(leak)
    known = full.copy()
    known.loc[tail, "promo"] = 1 - known.loc[tail, "promo"]
    assert model.score(full) != model.score(known)


def test_pandas_and_polars_give_identical_forecasts():
    hist, futr = _split(_frame())
    out = []
    for conv, kind in ((lambda d: d, pd.DataFrame), (pl_.from_pandas, pl_.DataFrame)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = TitansForecaster(**TINY, **COVS).fit(conv(hist), static_df=conv(_static()))
        fc = m.predict(futr_df=conv(futr))
        assert isinstance(fc, kind)  # the training frame's flavour
        out.append(fc.to_pandas() if isinstance(fc, pl_.DataFrame) else fc)
    pd.testing.assert_frame_equal(out[0], out[1])


def test_save_and_load_round_trip_the_covariates(fitted, tmp_path):
    model, hist, futr = fitted
    g = TitansForecaster.load(model.save(tmp_path / "m.pt"))
    assert g.exog_ == model.exog_ and g.exog_.vocab == {"kind": ["a", "b"]}
    assert np.array_equal(g.statics_[0], model.statics_[0]) and np.array_equal(g.statics_[1], model.statics_[1])
    pd.testing.assert_frame_equal(g.predict(futr_df=futr), model.predict(futr_df=futr))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert "static_cat" in payload


def test_a_file_of_the_covariates_as_channels_era_is_refused_clearly(fitted, tmp_path):
    """Files saved before covariates had their own path read past covariates as extra channels of
    the network: their weights do not fit today's network, so loading says so (a format-3 file
    with its intact digest, as the earlier version wrote it, and a format-2 file without one)."""
    import json

    from titans_ts.integrity import content_digest

    model, hist, futr = fitted
    payload = torch.load(model.save(tmp_path / "m.pt"), weights_only=True)
    fitted_json = json.loads(payload["fitted"])
    del fitted_json["exog_"]
    payload["fitted"] = json.dumps(fitted_json)
    payload["digest"] = content_digest({k: v for k, v in payload.items() if k != "digest"})
    torch.save(payload, tmp_path / "old.pt")
    v2 = {**{k: v for k, v in payload.items() if k != "digest"}, "format": "titans-ts-forecaster/2"}
    torch.save(v2, tmp_path / "v2.pt")
    for name in ("old.pt", "v2.pt"):
        with pytest.raises(ValueError, match=r"saved by an earlier titans-ts.*\['temp', 'promo'\] as extra channels"):
            TitansForecaster.load(tmp_path / name)


class _FirstLoss(pl.Callback):
    """The loss of the first training batch (computed before any optimiser step) and the batch."""

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if not hasattr(self, "loss"):
            self.loss, self.batch = float(outputs["loss"]), {k: v.clone() for k, v in batch.items()}


def test_warm_start_continues_from_the_loaded_weights(fitted, tmp_path):
    model, hist, futr = fitted
    path = model.save(tmp_path / "m.pt")
    loaded = TitansForecaster.load(path)
    before = {k: v.clone() for k, v in loaded.model_.state_dict().items()}
    more = _frame(n=3, T=90, seed=0)  # the same series, ten more rows each
    first = _FirstLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded.set_params(max_epochs=1, limit_train_batches=1, lr=5e-4)  # the budget: keeps the fit
        loaded.fit(more, static_df=_static(), warm_start=True, callbacks=[first])
    reference = TitansForecaster.load(path).model_
    with torch.no_grad():
        expected = float(reference._train_loss(first.batch))
    assert first.loss == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert any(not torch.equal(before[k], v) for k, v in loaded.model_.state_dict().items())  # it trained
    # the known series kept their units; the history is the new data
    for a, b in zip(loaded.history_["loc"], model.history_["loc"], strict=True):
        assert np.array_equal(a, b)
    assert len(loaded.history_["values"][0]) == 90 and loaded.chosen_defaults_["warm_start"] is True
    # a fresh fit on the same data starts elsewhere
    fresh = _FirstLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        TitansForecaster(**{**TINY, "limit_train_batches": 1}, **COVS).fit(more, static_df=_static(),
                                                                             callbacks=[fresh])
    assert fresh.loss != pytest.approx(expected, rel=1e-3)


def test_warm_start_needs_a_fitted_model_and_fails_without_a_trace(fitted):
    with pytest.raises(NotFittedError, match="continues training a fitted forecaster"):
        TitansForecaster(**TINY).fit(_frame(), warm_start=True)
    model, hist, futr = fitted
    before = model.predict(futr_df=futr)
    with pytest.raises(DataValidationError, match="static_df has no row for series"):
        model.fit(hist, static_df=_static(["s0", "s1"]), warm_start=True)
    pd.testing.assert_frame_equal(model.predict(futr_df=futr), before)  # untouched


def test_bad_covariate_inputs_name_the_series_the_column_and_what_is_accepted(fitted):
    model, hist, futr = fitted
    with pytest.raises(DataValidationError, match=r"futr_df lacks \['promo'\] for series 's1' at 2 of its next 6"):
        model.predict(futr_df=futr.drop(index=[7, 8]))
    with pytest.raises(DataValidationError, match="predict needs futr_df"):
        model.predict()
    with pytest.raises(DataValidationError, match=r"static_df \(predict\) has no row for series \['s2'\]"):
        model.predict(futr_df=futr, static_df=_static(["s0", "s1"]))
    with pytest.raises(DataValidationError,
                       match=r"static_df \(predict\) has rows for series \['s3'\] that are not in"):
        model.predict(futr_df=futr, static_df=_static(["s0", "s1", "s2", "s3"]))
    bad = _static()
    bad.loc[2, "kind"] = "c"
    with pytest.raises(DataValidationError, match=r"static_df \(predict\) column 'kind': series 's2' has "
                                                  r"category 'c', unseen at fit; the categories known "
                                                  r"from fit are \['a', 'b'\]"):
        model.predict(futr_df=futr, static_df=bad)
    text = hist.astype({"temp": object})
    text.loc[5, "temp"] = "warm"
    with pytest.raises(DataValidationError, match=r"column 'temp' \(a covariate\) must be numeric; row 5 "
                                                  r"\(series 's0'\) holds 'warm'"):
        model.predict(df=text, futr_df=futr)
    with pytest.raises(DataValidationError, match=r"covariate column\(s\) \['temp'\] not in the frame"):
        model.predict(df=hist.drop(columns="temp"), futr_df=futr)
    with pytest.raises(DataValidationError, match="new to this forecaster.*give static_df"):
        model.predict(df=hist.assign(unique_id=hist["unique_id"] + "x"),
                      futr_df=futr.assign(unique_id=futr["unique_id"] + "x"))


def test_covariate_settings_are_checked():
    df = _frame()
    with pytest.raises(ValueError, match="alias of hist_exog_list"):
        TitansForecaster(**TINY, covariates=["temp"], hist_exog_list=["temp"]).fit(df)
    with pytest.raises(ValueError, match="'promo' is in both hist_exog_list and futr_exog_list"):
        TitansForecaster(**TINY, hist_exog_list=["promo"], futr_exog_list=["promo"]).fit(df)
    with pytest.raises(ValueError, match="test_time_memory=True does not read covariates"):
        TitansForecaster(**TINY, hist_exog_list=["temp"], test_time_memory=True).fit(df)
    with pytest.raises(ValueError, match="unknown time feature"):
        TitansForecaster(**TINY, time_features=["hour"]).fit(df[["unique_id", "ds", "y"]])
    with pytest.raises(DataValidationError, match="fit needs static_df"):
        TitansForecaster(**TINY, stat_exog_list=["size"]).fit(df[["unique_id", "ds", "y"]])
    with pytest.raises(DataValidationError, match=r"exactly the columns \['unique_id', 'size'\].*unknown \['kind'\]"):
        TitansForecaster(**TINY, stat_exog_list=["size"]).fit(df[["unique_id", "ds", "y"]], static_df=_static())
    with pytest.raises(DataValidationError, match="column 'kind' \\(categorical\\) is missing for series 's1'"):
        TitansForecaster(**TINY, stat_exog_list=["kind"]).fit(
            df[["unique_id", "ds", "y"]], static_df=_static()[["unique_id", "kind"]].assign(kind=["a", None, "b"]))


def test_covariates_alias_wide_frames_and_cross_validation():
    df = _frame(n=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = TitansForecaster(**TINY, covariates=["temp"]).fit(df[["unique_id", "ds", "y", "temp"]])
        b = TitansForecaster(**TINY, hist_exog_list=["temp"]).fit(df[["unique_id", "ds", "y", "temp"]])
        pd.testing.assert_frame_equal(a.predict(), b.predict())
        assert a.exog_.hist == ["temp"]
        wide = df[df["unique_id"] == "s0"][["ds", "y", "temp", "promo"]].reset_index(drop=True)
        w = TitansForecaster(**TINY, hist_exog_list=["temp"], futr_exog_list=["promo"]).fit(wide.iloc[:-H])
        fc = w.predict(futr_df=wide.iloc[-H:][["ds", "promo"]])
        assert list(fc.columns) == ["ds", "y"] and len(fc) == H
        cv = TitansForecaster(**TINY, futr_exog_list=["promo"]).cross_validation(
            df[["unique_id", "ds", "y", "promo"]], n_windows=2)
    assert len(cv) == 2 * 2 * H and np.isfinite(cv["y_hat"]).all()


def test_time_feature_names():
    assert resolve_time_features("auto", "h") == ["hour_of_day", "day_of_week", "day_of_month", "day_of_year"]
    assert resolve_time_features("auto", "MS") == ["month_of_year"]
    assert resolve_time_features(None, "h") == []
    with pytest.raises(ValueError, match="needs the data's frequency"):
        resolve_time_features("auto", None)
    with pytest.raises(ValueError, match="None, 'auto' or a list"):
        resolve_time_features("calendar", "h")


# ----------------------------------------------------------------------------------- GluonTS

G = dict(freq="D", prediction_length=H, context_length=12, patch_len=4, stride=2, d_model=16, head="quantile",
         memory=dict(heads=2, depth=1, chunk_size=4), batch_size=8, num_batches_per_epoch=2,
         trainer_kwargs=dict(max_epochs=1))
GCOV = dict(num_feat_dynamic_real=1, num_past_feat_dynamic_real=1, num_feat_static_real=1, num_feat_static_cat=1,
            cardinality=[3], time_features="auto")


def _entries(future=0, n=4, T=50, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        promo = (rng.random(T + H) < 0.3).astype(float)
        out.append({"start": pd.Period("2024-01-01", freq="D"), "item_id": f"s{i}",
                    "target": (10 + i + 3 * promo[:T] + rng.standard_normal(T)).astype(np.float32),
                    "feat_dynamic_real": promo[None, :T + future],
                    "past_feat_dynamic_real": rng.standard_normal((1, T)),
                    "feat_static_real": [float(i)], "feat_static_cat": [i % 3]})
    return out


@pytest.fixture(scope="module")
def gluonts_fit():
    est = TitansEstimator(**G, **GCOV)
    return est, est.train(ListDataset(_entries(), freq="D"))


def _median(predictor, entries):
    return np.stack([f.quantile(0.5) for f in predictor.predict(ListDataset(entries, freq="D"))])


def test_estimator_reads_every_gluonts_covariate_field(gluonts_fit, tmp_path):
    est, predictor = gluonts_fit
    assert predictor.prediction_net.net.config.n_futr_exog == 1 + 3  # feat_dynamic_real + calendar
    assert set(predictor.prediction_net.hparams["exog_scaling"]) == {"futr", "hist", "static"}
    entries = _entries(future=H)
    base = _median(predictor, entries)
    assert np.array_equal(base, _median(predictor, entries))
    changed = [dict(e) for e in entries]
    changed[1]["feat_dynamic_real"] = changed[1]["feat_dynamic_real"].copy()
    changed[1]["feat_dynamic_real"][0, -H:] += 1.0  # its horizon values
    out = _median(predictor, changed)
    assert not np.array_equal(out[1], base[1]) and np.array_equal(out[0], base[0])
    changed[2] = dict(changed[2], feat_static_cat=[0])  # (it had 2)
    assert not np.array_equal(_median(predictor, changed)[2], base[2])
    from gluonts.model.predictor import Predictor

    predictor.serialize(Path(tmp_path))
    assert np.array_equal(_median(Predictor.deserialize(Path(tmp_path)), entries), base)


def test_estimator_refuses_covariates_it_cannot_read(gluonts_fit):
    est, predictor = gluonts_fit
    entries = _entries(future=H)
    with pytest.raises(ValueError, match=r"item_id 's3'.*feat_static_cat\[0\] = 5 is not a category of the "):
        _median(predictor, entries[:3] + [dict(entries[3], feat_static_cat=[5])])
    with pytest.raises(ValueError, match="feat_dynamic_real has 50 steps; it needs 56"):
        _median(predictor, _entries(future=0))
    plain = TitansEstimator(**G)
    with pytest.raises(ValueError, match="has feat_dynamic_real but the estimator reads none .num_feat_dynamic_real"):
        plain.train(ListDataset(_entries(), freq="D"))
    with pytest.raises(ValueError, match="has no past_feat_dynamic_real field"):
        TitansEstimator(**G, **GCOV).train(ListDataset([{k: v for k, v in e.items() if k != "past_feat_dynamic_real"}
                                                        for e in _entries()], freq="D"))
    with pytest.raises(ValueError, match="cardinality must list"):
        TitansEstimator(**G, num_feat_static_cat=1)


def _shifted(entries, level):
    """The entries with every real-valued covariate moved by ``level``."""
    return [dict(e, feat_dynamic_real=e["feat_dynamic_real"] + level,
                 past_feat_dynamic_real=e["past_feat_dynamic_real"] + level,
                 feat_static_real=[v + level for v in e["feat_static_real"]]) for e in entries]


def test_estimator_covariates_are_standardised_in_float64(gluonts_fit):
    """The covariates get the care the target gets: their units over the training data are
    computed in float64 in two passes and applied in float64, so covariates on a level of 1e8
    keep their unit-size signal and forecast as the same covariates without the level."""
    from titans_ts.gluonts import TitansGluonTSModule, _exog_scaling

    est, predictor = gluonts_fit
    level = 1e8
    base, moved = _exog_scaling(_entries(), est), _exog_scaling(_shifted(_entries(), level), est)
    for kind in ("futr", "hist", "static"):
        np.testing.assert_allclose(np.array(moved[kind][0]) - level, base[kind][0], atol=1e-6)
        np.testing.assert_allclose(moved[kind][1], base[kind][1], rtol=1e-6)
    hp = dict(predictor.prediction_net.hparams)
    module = TitansGluonTSModule(**{**hp, "exog_scaling": {k: [[c + level for c in loc], spread]
                                                           for k, (loc, spread) in hp["exog_scaling"].items()}})
    module.load_state_dict(predictor.prediction_net.state_dict())
    moved_predictor = est.create_predictor(est.create_transformation(), module.eval())
    entries = _entries(future=H)  # (plain entries: ListDataset would store them in float32)

    def median(p, data):
        return np.stack([f.quantile(0.5) for f in p.predict(data)])

    np.testing.assert_allclose(median(moved_predictor, _shifted(entries, level)), median(predictor, entries),
                               atol=1e-4)


def test_estimator_refuses_infinite_covariates_naming_the_entry(gluonts_fit):
    est, predictor = gluonts_fit
    entries = _entries(future=H)
    bad = entries[:2] + [dict(entries[2], past_feat_dynamic_real=np.where(np.arange(50) == 7, np.inf, 0.0)[None])]
    with pytest.raises(ValueError, match=r"item_id 's2'\): past_feat_dynamic_real holds \+/-inf at \(row, step\) "
                                         r"\[\(0, 7\)\]; use NaN for a missing value"):
        _median(predictor, bad)
    train = _entries()
    train[1] = dict(train[1], feat_static_real=[-np.inf])
    with pytest.raises(ValueError, match=r"^training_data: entry 1 \(item_id 's1'\): feat_static_real holds \+/-inf "
                                         r"at position\(s\) \[0\]"):
        TitansEstimator(**G, **GCOV).train(ListDataset(train, freq="D"))


def test_train_from_continues_from_the_predictor(gluonts_fit):
    est, predictor = gluonts_fit
    still = TitansEstimator(**{**G, "lr": 1e-12}, **GCOV)
    again = still.train_from(predictor, ListDataset(_entries(seed=1), freq="D"))
    for (k, a), b in zip(predictor.prediction_net.state_dict().items(), again.prediction_net.state_dict().values(),
                         strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)  # started there (and hardly moved)
    assert again.prediction_net is not predictor.prediction_net
    with pytest.raises(ValueError, match=r"train_from: the predictor's network differs.*d_model: 32 here, 16"):
        TitansEstimator(**{**G, "d_model": 32}, **GCOV).train_from(predictor, ListDataset(_entries(), freq="D"))


# ------------------------------------------------------------------- data module, tuning spaces


def test_data_module_and_recipe_read_covariates(data_root, tmp_path):
    from titans_ts.recipes import build_in_dir, load_recipe

    cfg = load_recipe(Path(__file__).resolve().parents[2] / "recipes/ltsf/ETTh1_96_96.yaml",
                      ["data.features=S", "data.hist_exog=[HUFL,HULL]", "data.futr_exog=[MUFL]",
                       "data.time_features=[hour_of_day]", "model.d_model=16"])
    cfg["data"]["root"] = str(data_root)
    cli = build_in_dir(cfg, tmp_path)
    c = cli.model.net.config
    assert (c.n_channels, c.n_hist_exog, c.n_futr_exog) == (1, 2, 2)
    cli.datamodule.setup()
    batch = next(iter(cli.datamodule.val_dataloader()))
    assert batch["past"].shape[-1] == 1 and batch["hist_exog"].shape[1:] == (96, 2)
    assert batch["futr_exog"].shape[1:] == (192, 2)
    with torch.no_grad():
        assert cli.model(batch["past"], batch["past_mask"], batch["time_index"], exog_of(batch)).shape[1:] == (96, 1)


def test_tuning_spaces_choose_among_lists_of_columns():
    import optuna

    from titans_ts.tuning.space import suggest

    space = {"hist_exog_list": {"type": "categorical", "choices": [[], ["temp"]]},
             "time_features": {"type": "categorical", "choices": [None, "auto"]}}
    values = suggest(optuna.trial.FixedTrial({"hist_exog_list": '["temp"]', "time_features": "auto"}), space)
    assert values == {"hist_exog_list": ["temp"], "time_features": "auto"}


# ------------------------------------------------------------------------------- user guide


def test_the_user_guide_covariate_examples_run(tmp_path, monkeypatch):
    """Every Python block of the user guide's covariate sections runs as written."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "user-guide.md").read_text()
    sections = [text[text.index("### Covariates\n"):text.index("## 2. Lightning CLI")],
                text[text.index("### Covariates in GluonTS"):text.index("## 5. Online evaluation")]]
    blocks = [b for section in sections for b in re.findall(r"```python\n(.*?)```", section, flags=re.S)]
    assert len(blocks) == 7  # the shared data, one per kind (four), continued training, GluonTS
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in blocks:
            exec(compile(block, "user-guide.md", "exec"), scope)  # noqa: S102 - the doc's own examples


@pytest.mark.slow
def test_cli_fit_resumes_from_its_checkpoint(data_root, tmp_path, monkeypatch):
    """``titans-ts fit --ckpt_path last.ckpt`` continues the run (steps and epochs count on), a
    recipe with covariates included (the user guide's resuming command)."""
    from titans_ts.lightning_cli import run_lightning_cli

    monkeypatch.setenv("TITANS_TS_DATA", str(data_root))
    recipe = Path(__file__).resolve().parents[2] / "recipes/ltsf/ETTh1_96_96.yaml"
    common = ["--config", str(recipe), "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2",
              f"--trainer.default_root_dir={tmp_path}", "--data.features=S", "--data.hist_exog=[HUFL,HULL]"]
    run_lightning_cli(["fit", *common, "--trainer.max_epochs=1", "--model.d_model=16"])
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 2
    run_lightning_cli(["fit", *common, "--trainer.max_epochs=2", "--ckpt_path", str(last)])
    ckpt = torch.load(last, weights_only=True)
    assert (ckpt["global_step"], ckpt["epoch"]) == (4, 2)
    assert ckpt["hyper_parameters"]["n_hist_exog"] == 2 and ckpt["hyper_parameters"]["d_model"] == 16


@pytest.mark.slow
def test_the_estimators_time_budget_probes_a_step_with_its_covariates(monkeypatch):
    """With the default time budget (no max_epochs given), the estimator times one training step
    before it trains: that probe must feed the covariate fields too (it fed the target alone, and
    an estimator with covariates or calendar features failed before training)."""
    import titans_ts.defaults as dd

    monkeypatch.setattr(dd, "MIN_STEPS", 2)
    monkeypatch.setattr(dd, "PASSES", 0)
    kw = {k: v for k, v in G.items() if k != "trainer_kwargs"}
    est = TitansEstimator(**kw, **GCOV, time_budget="1min")
    predictor = est.train(ListDataset(_entries(), freq="D"))
    chosen = est.chosen_defaults_
    assert chosen["seconds_per_step"] is not None and chosen["seconds_per_step"] > 0
    assert len(list(predictor.predict(ListDataset(_entries(future=H), freq="D")))) == 4
