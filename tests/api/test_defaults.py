"""Data-aware defaults (titans_ts.defaults): the rules, and both front-ends applying them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from gluonts.dataset.common import ListDataset

from titans_ts import TitansForecaster
from titans_ts import defaults as dd
from titans_ts.gluonts import TitansEstimator

pytestmark = pytest.mark.filterwarnings("ignore:.M. is deprecated:FutureWarning")

SMALL_NET = dict(patch_len=8, stride=4, d_model=16, batch_size=16,
                 memory=dict(heads=2, depth=1, expansion=1.0, chunk_size=4))


@pytest.mark.parametrize("freq, periods", [
    ("h", (24, 168)), ("15min", (96, 672)), ("10min", (144, 1008)), ("2h", (12, 84)),
    ("D", (7, 365)), ("B", (5, 260)), ("W-MON", (52,)), ("MS", (12,)), ("ME", (12,)),
    ("QS", (4,)), ("YS", ()), ("Y", ()), (None, ()), ("not-a-freq", ()),
])
def test_seasonal_periods(freq, periods):
    assert dd.seasonal_periods(freq) == periods


def test_context_length_follows_the_longest_season_the_data_show_twice():
    # monthly, horizon 18 (the M3 / M1 monthly sets): two horizons, longer than the year
    assert dd.data_defaults("MS", 18, [115] * 10, 32).context_length == 36
    # long hourly series: a week and a quarter (longer than the week, so the step a week before
    # every forecast step is in the context)
    long_hourly = dd.data_defaults("h", 48, [17420] * 7, 32)
    assert long_hourly.useful_seasons == (24, 168) and long_hourly.context_length == 210
    # NN5: 791 daily values hold two weeks but not two years beside the horizon
    nn5 = dd.data_defaults("D", 56, [735] * 111, 32)
    assert nn5.useful_seasons == (7,) and nn5.context_length == 112
    # short hourly series (10 days): the daily season only
    assert dd.data_defaults("h", 24, [240] * 5, 32).context_length == 48
    # short yearly series: bounded by the typical training length, at least the horizon
    assert dd.data_defaults("YS", 6, [20, 21, 15], 32).context_length == 12
    assert dd.data_defaults("YS", 6, [14, 15], 32).context_length == 8
    # series too short to keep a window beside a validation tail train whole: all 9 steps count
    too_short = dd.data_defaults("YS", 6, [9, 9], 32)
    assert too_short.context_length == 9 and too_short.validation == "none"
    assert dd.data_defaults("YS", 6, [9, 20], 32).validation == "last 6 steps of 1 of 2 series"
    assert dd.data_defaults("YS", 4, [4], 32).context_length == 4  # at least the horizon
    # a season whose context would pass 1024 steps is left out: a week of 10-minute data
    assert dd.data_defaults("10min", 96, [52696], 32).context_length == 192
    # a context the user chose is kept
    assert dd.data_defaults("h", 48, [17420], 32, context=96).context_length == 96


def test_the_configuration_carries_the_robust_settings():
    from titans_ts.model.config import TitansConfig

    cfg = TitansConfig()
    assert (cfg.dropout, cfg.revin_center) == (dd.ROBUST["dropout"], dd.ROBUST["revin_center"])


def test_cycle_for_one_series_only():
    assert dd.data_defaults("h", 24, [2000], 32).cycle_len == 24
    assert dd.data_defaults("h", 24, [2000, 2000], 32).cycle_len == 0
    assert dd.data_defaults("YS", 4, [200], 32).cycle_len == 0


def test_training_budget_grows_with_the_windows_within_bounds():
    few = dd.data_defaults("MS", 6, [30] * 3, 32)
    assert few.n_windows == 3 * (30 - 6 - 6 - 1)  # ends with two past steps, before the tail
    epochs, per_epoch, patience = dd.training_budget(few.n_windows, 32)
    assert epochs * per_epoch >= dd.MIN_STEPS and per_epoch == 2 and patience * per_epoch >= dd.PATIENCE_STEPS
    mid = dd.training_budget(32 * 100, 32)  # 100 batches of windows: ten passes, 1000 steps
    assert mid == (20, 50, 5)
    # no step cap: large panels are bounded by the time budget instead
    epochs, per_epoch, _ = dd.training_budget(10 ** 7, 32)
    assert epochs * per_epoch >= 10 * 10 ** 7 / 32
    # GluonTS's loaders cycle over the data: epochs of exactly 50 batches
    assert dd.training_budget(10, 32, cyclic=True)[1] == 50
    with pytest.raises(ValueError, match="at least one series"):
        dd.data_defaults("h", 24, [], 32)


def test_time_budget_bounds_the_steps():
    assert dd.parse_time_budget("5min") == 300.0 == dd.parse_time_budget(300)
    assert dd.parse_time_budget("1h30min") == 5400.0 and dd.parse_time_budget(None) is None
    import datetime

    assert dd.parse_time_budget(datetime.timedelta(seconds=90)) == 90.0
    for bad in ("soon", 0, -5, float("nan"), float("inf"), True, [300]):
        with pytest.raises(ValueError, match="time_budget must be a positive duration"):
            dd.parse_time_budget(bad)
    # 0.8 of five minutes at 0.04 s per step: 6000 steps; no budget or no timing: no bound
    assert dd.time_steps(300, 0.04) == 6000 and dd.time_steps(None, 0.04) is None
    assert dd.time_steps(300, None) is None and dd.time_steps(1, 100.0) == 1


def _hourly(n_series, T, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    return pd.concat([pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2024-01-01", periods=T, freq="h"),
                                    "y": 5 + np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(T)})
                      for i in range(n_series)], ignore_index=True)


def test_forecaster_takes_its_lengths_from_the_data_and_keeps_them(tmp_path):
    f = TitansForecaster(h=12, max_epochs=1, limit_train_batches=2, **SMALL_NET)
    assert f.context_length is None and f.cycle_len is None and f.dropout == 0.2 and f.loss == "mae"
    f.fit(_hourly(1, 400))
    # 388 training steps hold two weeks beside the horizon: a week and a quarter of context, and
    # the daily cycle for a single series
    assert f.context_length_ == 210 and f.cycle_len_ == 24
    assert f.model_.net.cycle_len == 24 and f.model_.hparams["seq_len"] == 210
    assert f.chosen_defaults_["useful_seasons"] == [24, 168] and f.chosen_defaults_["max_epochs"] == 1
    assert f.get_params()["context_length"] is None  # the parameter is left as given
    out = f.predict()
    assert len(out) == 12 and np.isfinite(out["y_hat"]).all()
    f.save(tmp_path / "m.pt")
    g = TitansForecaster.load(tmp_path / "m.pt")
    assert (g.context_length_, g.cycle_len_) == (210, 24)
    np.testing.assert_allclose(g.predict()["y_hat"], out["y_hat"], rtol=1e-6)
    # a panel: no shared cycle; short series: the daily season only (1.25 days)
    p = TitansForecaster(h=12, max_epochs=1, limit_train_batches=2, **SMALL_NET).fit(_hourly(3, 120))
    assert p.cycle_len_ == 0 and p.context_length_ == 30
    # given values win over the data's
    q = TitansForecaster(h=12, context_length=36, cycle_len=0, max_epochs=1, limit_train_batches=2,
                         **SMALL_NET).fit(_hourly(1, 400))
    assert (q.context_length_, q.cycle_len_) == (36, 0)


def test_forecaster_budget_when_not_given(monkeypatch):
    # 2 x 33 training windows (ends 24 .. 56: a full context, the target before the tail) of
    # batch 16: ten passes are 42 steps, so the budget is the floor, 600 steps, here in epochs of
    # the one batch asked for, stopped early on the validation tail after 250 steps without
    # progress
    assert dd.budget_steps(66, 16) == 600 and dd.epochs_for(600, 1) == (600, 250)
    # the forecaster applies that rule; trained under a lower floor and patience (the same rule:
    # still the floor, above the 42 steps of ten passes) so that the fit runs in moments
    monkeypatch.setattr(dd, "MIN_STEPS", 60)
    monkeypatch.setattr(dd, "PATIENCE_STEPS", 5)
    f = TitansForecaster(h=12, context_length=24, limit_train_batches=1, max_epochs=None, ensemble=1, **SMALL_NET)
    f.fit(_hourly(2, 80))
    chosen = f.chosen_defaults_
    assert chosen["n_windows"] == 66 and chosen["steps"] == 60 and chosen["budget"] == "data-aware"
    assert chosen["limited_by"] == "minimum steps" and chosen["time_budget_s"] == 300.0
    assert chosen["seconds_per_step"] > 0 and chosen["steps_run"] <= 60
    assert chosen["max_epochs"] == 60 and chosen["patience"] == 5 and chosen["batches_per_epoch"] == 1
    assert 1 <= f.n_epochs_ <= 60


def _gluonts_monthly(n=12, T=60, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    return ListDataset([{"start": pd.Period("2000-01", freq="M"), "item_id": str(i),
                         "target": 10 + 3 * np.sin(2 * np.pi * t / 12 + i) + rng.standard_normal(T)}
                        for i in range(n)], freq="M")


def test_estimator_takes_its_lengths_from_the_data():
    est = TitansEstimator(freq="ME", prediction_length=6, num_samples=10, batch_size=16, d_model=16,
                          memory={"heads": 2, "chunk_size": 4}, num_batches_per_epoch=2,
                          trainer_kwargs={"max_epochs": 2})
    assert est.dropout == 0.2 and est.revin_center == "mean"
    predictor = est.train(_gluonts_monthly())
    chosen = est.chosen_defaults_
    # 60 - 6 (validation tail) steps per series: the year fits twice, two horizons < 1.25 years
    assert chosen["context_length"] == 15 == est.context_length
    assert predictor.prediction_net.hparams["model_kwargs"]["seq_len"] == 15
    assert chosen["validation"] == "last 6 steps of every series" and chosen["budget"] == "given"
    assert 1 <= chosen["epochs_run"] <= 2
    forecasts = list(predictor.predict(_gluonts_monthly()))
    assert len(forecasts) == 12 and np.isfinite(forecasts[0].mean).all()
    # no early stopping: every step trains, nothing is validated
    est2 = TitansEstimator(freq="ME", prediction_length=6, context_length=12, early_stopping=False,
                           num_samples=10, batch_size=16, d_model=16, memory={"heads": 2, "chunk_size": 4},
                           num_batches_per_epoch=2, trainer_kwargs={"max_epochs": 1})
    est2.train(_gluonts_monthly())
    assert est2.chosen_defaults_["validation"] == "none" and est2.context_length == 12


def test_forecaster_trains_series_too_short_for_the_tail_whole():
    df = _hourly(3, 120)
    short = df[df["unique_id"] == "s2"].head(16)  # h + 1 = 13 <= 16 < h + 1 + h = 25
    df = pd.concat([df[df["unique_id"] != "s2"], short], ignore_index=True)
    f = TitansForecaster(h=12, context_length=24, max_epochs=1, limit_train_batches=2, **SMALL_NET).fit(df)
    assert len(f.predict()) == 36
    # the short series holds no validation window: no score in the report
    rep = f.validation_report_.set_index("unique_id")
    assert np.isnan(rep.loc["s2", "model"]) and np.isfinite(rep.loc[["s0", "s1"], "model"]).all()
    with pytest.raises(ValueError, match=r"shorter than h \+ 2 \(\+ val_size for early stopping\) = 26 rows: 's2'"):
        TitansForecaster(h=12, context_length=24, val_size=12, max_epochs=1, **SMALL_NET).fit(df)


def test_estimator_budget_in_its_own_epochs_and_short_series(monkeypatch):
    monkeypatch.setattr(dd, "MIN_STEPS", 4)
    monkeypatch.setattr(dd, "PASSES", 0)  # the floor alone: 4 steps
    monkeypatch.setattr(dd, "PATIENCE_STEPS", 2)
    est = TitansEstimator(freq="ME", prediction_length=6, num_samples=10, batch_size=16, d_model=16,
                          memory={"heads": 2, "chunk_size": 4}, num_batches_per_epoch=2)
    est.train(_gluonts_monthly(T=40))
    chosen = est.chosen_defaults_
    # 4 steps in epochs of the estimator's 2 batches; patience 2 steps = 1 epoch
    assert (chosen["max_epochs"], chosen["num_batches_per_epoch"], chosen["patience"]) == (2, 2, 1)
    assert chosen["budget"] == "data-aware" and chosen["cycle_len"] == 0
    # series of 10 values at horizon 6 cannot keep a training window beside a tail: they train
    # whole, and nothing is validated
    est.train(_gluonts_monthly(n=4, T=10))
    assert est.chosen_defaults_["validation"] == "none" and est.chosen_defaults_["patience"] is None


def test_both_front_ends_fit_their_steps_in_the_time_budget(monkeypatch):
    import titans_ts.training as training

    # a step timed at 0.5 s: 0.8 x 10 s holds 16 steps, below the floor of 600
    monkeypatch.setattr(training, "step_seconds", lambda *a, **k: 0.5)
    f = TitansForecaster(h=12, context_length=24, time_budget="10s", **SMALL_NET).fit(_hourly(2, 80))
    chosen = f.chosen_defaults_
    assert (chosen["steps"], chosen["limited_by"], chosen["time_budget_s"]) == (16, "time budget", 10.0)
    assert chosen["ensemble"] == f.ensemble_ == 1  # bounded by time: one network
    assert chosen["max_epochs"] * chosen["batches_per_epoch"] >= 16  # (whole epochs)
    assert chosen["steps_run"] <= chosen["max_epochs"] * chosen["batches_per_epoch"]
    # without a target, the passes (here one over the 66 windows in batches of 16: 5 steps)
    monkeypatch.setattr(dd, "MIN_STEPS", 3)
    monkeypatch.setattr(dd, "PASSES", 1)
    g = TitansForecaster(h=12, context_length=24, time_budget=None, **SMALL_NET).fit(_hourly(2, 80))
    chosen = g.chosen_defaults_
    assert (chosen["steps"], chosen["limited_by"], chosen["seconds_per_step"]) == (5, "passes", None)
    with pytest.raises(ValueError, match="time_budget must be a positive duration"):
        TitansForecaster(h=12, time_budget="soon").fit(_hourly(1, 80))

    monkeypatch.undo()  # the rules as they are
    monkeypatch.setattr(TitansEstimator, "_step_seconds", lambda self, data: 0.5)
    est = TitansEstimator(freq="ME", prediction_length=6, num_samples=10, batch_size=16, d_model=16,
                          memory={"heads": 2, "chunk_size": 4}, num_batches_per_epoch=2, time_budget=5)
    est.train(_gluonts_monthly(n=4, T=40))
    chosen = est.chosen_defaults_
    # 0.8 x 5 s at 0.5 s: 8 steps in epochs of 2 batches
    assert (chosen["steps"], chosen["max_epochs"], chosen["limited_by"]) == (8, 4, "time budget")
    with pytest.raises(ValueError, match="time_budget must be a positive duration"):
        TitansEstimator(freq="ME", prediction_length=6, time_budget="-1min")


def test_ensemble_size_rule():
    # as many networks as fit their steps in 0.8 of the budget, at most three
    assert dd.ensemble_size(600, 300.0, 0.01) == 3  # 6 s a network
    assert dd.ensemble_size(600, 300.0, 0.2) == 2  # 120 s: two fit in 240 s
    assert dd.ensemble_size(600, 300.0, 0.3) == 1  # 180 s
    assert dd.ensemble_size(600, None, 0.01) == dd.ensemble_size(600, 300.0, None) == 1


def test_forecaster_trains_an_ensemble_where_the_time_budget_has_room(monkeypatch, tmp_path):
    import titans_ts.training as training
    from titans_ts.model.network import EnsembleNet, TitansNet

    # 6 steps a network at 1 ms each: three networks fit in 0.8 x 60 s (the fit is moments)
    monkeypatch.setattr(training, "step_seconds", lambda *a, **k: 0.001)
    monkeypatch.setattr(dd, "MIN_STEPS", 6)
    monkeypatch.setattr(dd, "PASSES", 1)
    df = _hourly(2, 80)
    f = TitansForecaster(h=12, context_length=24, time_budget="60s", **SMALL_NET).fit(df)
    net = f.model_.net
    assert f.ensemble_ == f.chosen_defaults_["ensemble"] == 3
    assert isinstance(net, EnsembleNet) and len(net.members) == 3
    assert len(f.chosen_defaults_["member_epochs"]) == 3  # each network trained alone
    # member k is the network a single fit with seed k trains
    solo = TitansForecaster(h=12, context_length=24, time_budget="60s", ensemble=1, seed=1, **SMALL_NET).fit(df)
    for a, b in zip(net.members[1].parameters(), solo.model_.net.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    first = [p.detach().clone() for p in net.members[0].parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(first, net.members[1].parameters(), strict=True))
    fc = f.predict()
    f.save(tmp_path / "ens.pt")
    g = TitansForecaster.load(tmp_path / "ens.pt")
    assert g.ensemble_ == 3 and np.array_equal(g.predict()["y_hat"].to_numpy(), fc["y_hat"].to_numpy())
    g.set_params(max_epochs=1, limit_train_batches=1)
    assert g.fit(df, warm_start=True).ensemble_ == 3  # continued: the same networks
    one = TitansForecaster(h=12, context_length=24, time_budget="60s", ensemble=1, **SMALL_NET).fit(df)
    assert one.ensemble_ == 1 and isinstance(one.model_.net, TitansNet)
    # single-network settings: the rule gives one, an explicit count is refused
    assert TitansForecaster(h=12, context_length=24, time_budget="60s", head="student_t",
                            **SMALL_NET).fit(df).ensemble_ == 1
    with pytest.raises(ValueError, match=r"ensemble=2 needs one network with head='student_t'"):
        TitansForecaster(h=12, ensemble=2, head="student_t", max_epochs=1).fit(df)
    with pytest.raises(ValueError, match=r"ensemble must be a positive integer or None, got 0"):
        TitansForecaster(h=12, ensemble=0).fit(df)


def test_calendar_features_where_the_context_cannot_hold_the_year():
    assert [dd.yearly_period(f) for f in ("D", "W-TUE", "MS", "QS-OCT", "h", "15min", "YS", None)] == \
        [365, 52, 12, 4, None, None, None, None]
    # NN5 daily (679 training steps at h = 56) and weekly: the year does not fit twice; monthly
    # series of 100 steps hold it; sub-daily data have no yearly season here
    assert dd.calendar_needed("D", 679, 56) and dd.calendar_needed("W-TUE", 100, 8)
    assert not dd.calendar_needed("MS", 100, 18) and not dd.calendar_needed("h", 80, 12)
    rng = np.random.default_rng(0)
    daily = pd.concat([pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2024-01-01", periods=90, freq="D"),
                                     "y": 5 + np.sin(np.arange(90) / 7 * 2 * np.pi) + rng.standard_normal(90)})
                       for i in range(2)], ignore_index=True)
    quick = dict(h=7, context_length=14, max_epochs=1, limit_train_batches=1, **SMALL_NET)
    f = TitansForecaster(**quick).fit(daily)
    assert f.time_features == "data" and f.chosen_defaults_["time_features"] == \
        ["day_of_week", "day_of_month", "day_of_year"]
    assert TitansForecaster(time_features=None, **quick).fit(daily).chosen_defaults_["time_features"] == []
    assert TitansForecaster(test_time_memory=True, **quick).fit(daily).chosen_defaults_["time_features"] == []
    assert TitansForecaster(**quick).fit(_hourly(2, 80)).chosen_defaults_["time_features"] == []
    steps = daily.assign(ds=daily.groupby("unique_id").cumcount())  # integer steps: no calendar
    assert TitansForecaster(**quick).fit(steps).chosen_defaults_["time_features"] == []


def test_the_step_probe_leaves_the_module_and_the_random_state_alone():
    import torch

    from titans_ts.training import step_seconds, training_device

    net = torch.nn.Linear(4, 1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batch = {"x": torch.randn(8, 4), "y": torch.randn(8, 1)}
    state = torch.random.get_rng_state()
    t = step_seconds(net, batch, lambda m, b: torch.nn.functional.dropout(m(b["x"]) - b["y"]).abs().mean())
    assert t > 0 and torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert training_device("cpu") == "cpu"
    assert training_device("gpu") == ("cuda" if torch.cuda.is_available() else "cpu")
