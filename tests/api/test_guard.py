"""TitansForecaster's baseline guard: the model against seasonal naive and repeat-last on the
validation tail (``validation_report_``, the warning, ``naive_fallback``)."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from titans_ts import TitansForecaster
from titans_ts.forecaster import guard

TINY = dict(h=6, context_length=24, patch_len=8, stride=4, d_model=16, max_epochs=1,
            limit_train_batches=2, batch_size=16, memory=dict(heads=2, depth=1, expansion=1.0, chunk_size=4))
COLUMNS = ["unique_id", "model", "seasonal_naive", "repeat_last", "best_naive", "model_wins"]
GUARD = "does not beat the naive baselines"


def _walk(n_series=8, T=120, ids=None, seed=0):
    """Random walks (hourly): repeat-last is the best forecast there is."""
    rng = np.random.default_rng(seed)
    ids = ids if ids is not None else [f"w{i}" for i in range(n_series)]
    return pd.concat([pd.DataFrame({"unique_id": sid, "ds": pd.date_range("2024-01-01", periods=T, freq="h"),
                                    "y": 100 + np.cumsum(rng.standard_normal(T))}) for sid in ids],
                     ignore_index=True)


def _fit(df, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f = TitansForecaster(**{**TINY, **kw}).fit(df)
    return f, [str(w.message) for w in caught if issubclass(w.category, UserWarning) and GUARD in str(w.message)]


@pytest.fixture(scope="module")
def walk_fit():
    df = _walk()
    f, msgs = _fit(df, head="quantile", quantiles=(0.1, 0.5, 0.9))
    return df, f, msgs


def test_warning_on_a_random_walk_names_the_share_and_margin(walk_fit):
    df, f, msgs = walk_fit
    assert len(msgs) == 1
    rep = f.validation_report_
    n_lose = int((~rep["model_wins"]).sum())
    assert re.search(rf"on {n_lose} of 8 series \({100 * n_lose / 8:.0f}%\)", msgs[0])
    best = rep[["seasonal_naive", "repeat_last"]].min(axis=1)
    margin = 100 * (rep["model"].mean() / best.mean() - 1)
    assert f"({margin:+.1f}%)" in msgs[0]
    assert "validation_report_" in msgs[0] and "naive_fallback=True" in msgs[0]
    assert "season 24" in msgs[0]
    # on a random walk repeat-last beats the seasonal naive overall
    assert rep["repeat_last"].mean() < rep["seasonal_naive"].mean()


def test_report_columns_ids_dtypes_and_values(walk_fit):
    df, f, _ = walk_fit
    rep = f.validation_report_
    assert list(rep.columns) == COLUMNS
    assert rep["unique_id"].tolist() == [f"w{i}" for i in range(8)]
    assert rep["model_wins"].dtype == bool
    assert set(rep["best_naive"]) <= {"seasonal_naive", "repeat_last"}
    assert f.validation_season_ == 24
    h = 6
    for k, (_, g) in enumerate(df.groupby("unique_id", sort=False)):
        y = g["y"].to_numpy()
        T, scale = len(y), y.std()
        truth = y[T - h:]
        assert rep["repeat_last"][k] == pytest.approx(np.abs(truth - y[T - h - 1]).mean() / scale, rel=1e-4)
        assert rep["seasonal_naive"][k] == pytest.approx(np.abs(truth - y[T - h - 24:T - 24]).mean() / scale,
                                                         rel=1e-4)
        better = "seasonal_naive" if rep["seasonal_naive"][k] < rep["repeat_last"][k] else "repeat_last"
        assert rep["best_naive"][k] == better
        assert rep["model_wins"][k] == (rep["model"][k] <= rep[better][k])
    # integer ids keep their dtype
    f2, _ = _fit(_walk(3, ids=[10, 11, 12]))
    assert f2.validation_report_["unique_id"].dtype == np.int64
    assert f2.validation_report_["unique_id"].tolist() == [10, 11, 12]


def test_missing_values_count_only_observed_steps_and_skip_to_an_observed_past():
    df = _walk(2)
    y0 = df.loc[df.unique_id == "w0", "y"].to_numpy().copy()
    T, h = len(y0), 6
    idx = df.index[df.unique_id == "w0"]
    df.loc[idx[T - h - 1], "y"] = np.nan  # the step before the window: repeat-last reads one earlier
    df.loc[idx[T - 2], "y"] = np.nan  # a missing validation step does not count
    f, _ = _fit(df)
    obs = np.r_[y0[T - h:T - 2], y0[T - 1:]]
    kept = np.delete(y0, [T - h - 1, T - 2])
    assert f.validation_report_["repeat_last"][0] == pytest.approx(np.abs(obs - y0[T - h - 2]).mean() / kept.std(),
                                                                   rel=1e-4)
    # no observed past value: that naive is unavailable (NaN), never made up
    v = np.full((10, 1), np.nan, dtype=np.float32)
    assert np.isnan(guard.naive_forecast(v, ~np.isnan(v), 3, 4, "repeat_last")).all()
    v[5] = 2.0
    np.testing.assert_array_equal(guard.naive_forecast(v, ~np.isnan(v), 5, 4, "seasonal_naive")[:, 0],
                                  [np.nan, np.nan, np.nan, 2.0, np.nan])  # step 13: the phase of step 5
    np.testing.assert_array_equal(guard.naive_forecast(v, ~np.isnan(v), 3, 4, "repeat_last")[:, 0], [2, 2, 2])
    # a season longer than the history: repeat-last
    np.testing.assert_array_equal(guard.naive_forecast(v, ~np.isnan(v), 3, 50, "seasonal_naive")[:, 0], [2, 2, 2])


def test_the_warning_rule_on_constructed_reports():
    def report(model, sn, rl):
        class Est:
            id_col, id_dtype_ = "unique_id", None
        return guard._frame(Est, list(range(len(model))), model, sn, rl)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert guard.check_report(report([0.5, 0.5, 0.5, 0.5], [1.0] * 4, [0.9] * 4), 24) is None  # wins everywhere
        # loses on one series of four by a little: quiet
        assert guard.check_report(report([0.5, 0.5, 0.5, 0.95], [1.0] * 4, [0.9] * 4), 24) is None
        # no naive available anywhere: nothing to compare with
        assert guard.check_report(report([0.5], [np.nan], [np.nan]), 1) is None
    with pytest.warns(UserWarning, match=r"on 3 of 4 series \(75%\)"):  # loses on most series
        guard.check_report(report([1.0, 1.0, 1.0, 0.1], [0.9] * 4, [2.0] * 4), 24)
    with pytest.warns(UserWarning, match=r"on 1 of 4 series \(25%\).*\(\+2\.5%\)"):  # loses badly on one
        guard.check_report(report([0.1, 0.1, 0.1, 7.9], [2.0] * 4, [2.0] * 4), 24)
    rep = report([0.5, np.nan, 1.0], [0.7, 0.7, np.nan], [np.nan, 0.8, np.nan])
    assert rep["best_naive"].tolist() == ["seasonal_naive", "seasonal_naive", None]
    assert rep["model_wins"].tolist() == [True, False, True]  # no forecast loses; no naive: nothing lost


def test_seasonal_period_from_the_frequency():
    assert [guard.season_length(f) for f in ("h", "2h", "D", "B", "W-SUN", "MS", "QS-JAN", "YE", "15min")] == \
        [24, 12, 7, 5, 1, 12, 4, 1, 96]
    assert guard.season_length(None) == guard.season_length(1) == guard.season_length("5h") == 1


def _frames(f, **kw):
    return f.predict(**kw).sort_values(["unique_id", "ds"]).reset_index(drop=True)


def _naive_of(y, kind, h=6, season=24):
    return np.full(h, y[-1]) if kind == "repeat_last" else y[len(y) - season:len(y) - season + h]


def test_fallback_gives_the_naive_on_losing_series_only(walk_fit):
    df, f, _ = walk_fit
    rep = f.validation_report_
    assert 0 < (~rep["model_wins"]).sum() < len(rep)  # (both kinds of series are checked)
    try:
        base = _frames(f)
        f.set_params(naive_fallback=True)  # switched after fit: the fit is kept
        assert hasattr(f, "model_")
        out = _frames(f)
        for sid, wins, kind in zip(rep["unique_id"], rep["model_wins"], rep["best_naive"], strict=True):
            got, was = out[out.unique_id == sid], base[base.unique_id == sid]
            if wins:
                pd.testing.assert_frame_equal(got, was)
                continue
            naive = _naive_of(df.loc[df.unique_id == sid, "y"].to_numpy(), kind)
            np.testing.assert_allclose(got["y_hat"], naive, rtol=1e-6)
            delta = got["y_hat"].to_numpy() - was["y_hat"].to_numpy()
            for q in ("q0.1", "q0.5", "q0.9"):  # the model's spread kept around the naive point
                np.testing.assert_allclose(got[q].to_numpy() - was[q].to_numpy(), delta, atol=1e-9)
        # predict(df=...) for the fitted series, from the frame given
        pd.testing.assert_frame_equal(_frames(f, df=df), out)
    finally:
        f.set_params(naive_fallback=False)


def test_fallback_after_update(walk_fit, tmp_path):
    df, f, _ = walk_fit
    g = TitansForecaster.load(f.save(tmp_path / "m.pt"))
    g.naive_fallback = True
    new = _walk(seed=5, T=30)
    new["ds"] = new["ds"] + pd.Timedelta(hours=120)
    g.update(new)
    out = _frames(g)
    rep = g.validation_report_
    full = pd.concat([df, new]).sort_values(["unique_id", "ds"])
    for sid, wins, kind in zip(rep["unique_id"], rep["model_wins"], rep["best_naive"], strict=True):
        if not wins:
            naive = _naive_of(full.loc[full.unique_id == sid, "y"].to_numpy(), kind)
            np.testing.assert_allclose(out.loc[out.unique_id == sid, "y_hat"], naive, rtol=1e-6)


def test_save_load_keeps_the_report_and_old_files_load_without_one(walk_fit, tmp_path):
    _, f, _ = walk_fit
    path = f.save(tmp_path / "m.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = TitansForecaster.load(path)
    pd.testing.assert_frame_equal(g.validation_report_, f.validation_report_)
    assert g.validation_season_ == 24 and g.naive_fallback is False
    f.naive_fallback = g.naive_fallback = True
    try:
        pd.testing.assert_frame_equal(_frames(g), _frames(f))
        k = TitansForecaster.load(f.save(tmp_path / "on.pt"))
        assert k.naive_fallback is True
        pd.testing.assert_frame_equal(_frames(k), _frames(f))
    finally:
        f.naive_fallback = False
    # a file written before the guard: no report, no naive_fallback parameter (and, as then,
    # format 2: no content digest)
    payload = torch.load(path, weights_only=True)
    del payload["digest"]
    payload["format"] = "titans-ts-forecaster/2"
    fitted = json.loads(payload["fitted"])
    del fitted["validation_report_"], fitted["validation_season_"]
    params = json.loads(payload["params"])
    del params["naive_fallback"]
    torch.save({**payload, "fitted": json.dumps(fitted), "params": json.dumps(params)}, tmp_path / "old.pt")
    old = TitansForecaster.load(tmp_path / "old.pt")
    assert old.validation_report_ is None and old.validation_season_ is None
    old.naive_fallback = True  # nothing to fall back on
    pd.testing.assert_frame_equal(_frames(old), _frames(f))
    # a malformed report is refused like any other bad content
    fitted = json.loads(payload["fitted"])
    fitted["validation_report_"]["best_naive"][0] = "drift"
    torch.save({**payload, "fitted": json.dumps(fitted)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a valid TitansForecaster file"):
        TitansForecaster.load(tmp_path / "bad.pt")


def test_naive_fallback_must_be_a_bool(walk_fit):
    with pytest.raises(ValueError, match=r"naive_fallback must be True or False, got 'yes'"):
        TitansForecaster(**TINY, naive_fallback="yes").fit(_walk(2))
    _, f, _ = walk_fit
    f.naive_fallback = "yes"
    try:
        with pytest.raises(ValueError, match=r"naive_fallback must be True or False, got 'yes'"):
            f.predict()
    finally:
        f.naive_fallback = False


def test_no_validation_tail_no_report_no_warning():
    f, msgs = _fit(_walk(3), val_size=0, naive_fallback=True)
    assert f.validation_report_ is None and f.validation_season_ is None and msgs == []
    assert np.isfinite(f.predict()["y_hat"]).all()
