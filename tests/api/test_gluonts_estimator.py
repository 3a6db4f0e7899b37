"""``TitansEstimator``: end to end through GluonTS on real M3-monthly series (tiny models, one short
epoch), plus the argument checks and the observed-mask handling of the training module."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from gluonts.dataset.common import ListDataset
from gluonts.dataset.split import split
from gluonts.evaluation import Evaluator, backtest_metrics, make_evaluation_predictions
from gluonts.model.forecast import QuantileForecast, SampleForecast
from gluonts.model.predictor import Predictor
from gluonts.torch.model.predictor import PyTorchPredictor

from titans_ts import datasets as D
from titans_ts.gluonts import DEFAULT_QUANTILES, TitansEstimator, TitansGluonTSModule

H = 18
N_SERIES = 40
TINY = dict(freq="ME", prediction_length=H, context_length=36, patch_len=6, stride=3, d_model=16,
            n_layers=1, memory={"heads": 2, "chunk_size": 4}, batch_size=16,
            num_batches_per_epoch=3, trainer_kwargs={"max_epochs": 1})


def _evaluator():
    return Evaluator(seasonality=12, num_workers=0)


def _finite_metrics(agg: dict) -> None:
    for key in ("MASE", "sMAPE", "mean_wQuantileLoss"):
        assert math.isfinite(agg[key]), (key, agg[key])


@pytest.fixture(scope="module")
def m3(data_root):
    """(train, test): the first 40 M3-monthly series, train = all but the last 18 points."""
    coll = D.load_tsf("m3_monthly", root=data_root).to_collection()
    entries = list(D.to_gluonts(coll))[:N_SERIES]
    test = ListDataset(entries, freq="ME")
    train = ListDataset([{**e, "target": e["target"][:-H]} for e in entries], freq="ME")
    return train, test


def _train_in(folder: Path, train, **kwargs):
    """Train with ``folder`` as the working directory (to see that nothing is written there)."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        torch.manual_seed(0)
        np.random.seed(0)
        return TitansEstimator(**{**TINY, **kwargs}).train(train)
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def student_t(m3, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cwd-student-t")
    return _train_in(folder, m3[0]), folder


@pytest.fixture(scope="module")
def quantile(m3, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cwd-quantile")
    return _train_in(folder, m3[0], head="quantile"), folder


# --------------------------------------------------------------------------------- end to end
@pytest.mark.data
def test_student_t_evaluation(m3, student_t):
    predictor, folder = student_t
    assert isinstance(predictor, PyTorchPredictor)
    assert list(folder.iterdir()) == []  # no checkpoints / logs left in the working directory
    f_it, t_it = make_evaluation_predictions(m3[1], predictor, num_samples=50)
    forecasts, series = list(f_it), list(t_it)
    assert len(forecasts) == N_SERIES
    for f, ts, entry in zip(forecasts, series, m3[1], strict=True):
        assert isinstance(f, SampleForecast) and f.samples.shape == (50, H)
        assert np.isfinite(f.samples).all()
        assert f.item_id == entry["item_id"]
        assert f.start_date == ts.index[-H]
    agg, per_item = _evaluator()(series, forecasts)
    _finite_metrics(agg)
    assert len(per_item) == N_SERIES
    # even one short epoch learns the level: about as good as the season-1 naive forecast (the
    # last training value repeated) on the same series; a forecast of zero scores MASE ~ 10+
    naive = [SampleForecast(samples=np.full((1, H), entry["target"][-H - 1], dtype=np.float32),
                            start_date=f.start_date, item_id=f.item_id)
             for f, entry in zip(forecasts, m3[1], strict=True)]
    naive_agg, _ = _evaluator()(series, naive)
    assert 0.5 < naive_agg["MASE"] < 2.0 and 0.2 < naive_agg["sMAPE"] < 1.0  # a sane reference
    assert agg["MASE"] <= 1.2 * naive_agg["MASE"], (agg["MASE"], naive_agg["MASE"])
    assert agg["sMAPE"] <= 1.2 * naive_agg["sMAPE"], (agg["sMAPE"], naive_agg["sMAPE"])


@pytest.mark.data
def test_quantile_head(m3, quantile):
    predictor, folder = quantile
    assert list(folder.iterdir()) == []
    forecasts = list(predictor.predict(m3[0]))
    assert len(forecasts) == N_SERIES
    f = forecasts[0]
    assert isinstance(f, QuantileForecast)
    assert [float(k) for k in f.forecast_keys] == list(DEFAULT_QUANTILES)
    arr = np.stack([fc.forecast_array for fc in forecasts])  # [N, Q, H]
    assert arr.shape == (N_SERIES, len(DEFAULT_QUANTILES), H) and np.isfinite(arr).all()
    assert (np.diff(arr, axis=1) >= 0).all()  # monotone in the level
    agg, _ = backtest_metrics(m3[1], predictor, evaluator=_evaluator())
    _finite_metrics(agg)


@pytest.mark.data
def test_backtest_metrics_student_t(m3, student_t):
    """backtest_metrics scores the same forecasts as make_evaluation_predictions + Evaluator."""
    predictor = student_t[0]
    torch.manual_seed(7)
    agg, per_item = backtest_metrics(m3[1], predictor, evaluator=_evaluator(), num_samples=20)
    _finite_metrics(agg)
    assert len(per_item) == N_SERIES

    def by_hand(seed):
        torch.manual_seed(seed)
        f_it, t_it = make_evaluation_predictions(m3[1], predictor, num_samples=20)
        return _evaluator()(list(t_it), list(f_it))

    again, per_item_again = by_hand(7)
    assert agg["MASE"] == again["MASE"] and agg["sMAPE"] == again["sMAPE"]
    np.testing.assert_array_equal(per_item["MASE"].to_numpy(), per_item_again["MASE"].to_numpy())
    # the samples do depend on the seed, so the equality above is not vacuous
    assert by_hand(8)[0]["MASE"] != agg["MASE"]


@pytest.mark.data
def test_rolling_windows(m3, student_t):
    _, test_template = split(m3[1], offset=-2 * H)
    instances = list(test_template.generate_instances(prediction_length=H, windows=2, distance=H))
    assert len(instances) == 2 * N_SERIES
    forecasts = list(student_t[0].predict([inp for inp, _ in instances], num_samples=10))
    assert len(forecasts) == len(instances)
    for f, (_, label) in zip(forecasts, instances, strict=True):
        assert f.start_date == label["start"]
        assert f.samples.shape == (10, H) and len(label["target"]) == H
        assert np.isfinite(f.samples).all()


@pytest.mark.data
def test_serialize_roundtrip(m3, student_t, quantile, tmp_path):
    q_pred = quantile[0]
    (tmp_path / "q").mkdir()
    q_pred.serialize(tmp_path / "q")
    q_back = Predictor.deserialize(tmp_path / "q")
    assert isinstance(q_back, PyTorchPredictor)
    a = np.stack([f.forecast_array for f in q_pred.predict(m3[1])])
    b = np.stack([f.forecast_array for f in q_back.predict(m3[1])])
    np.testing.assert_array_equal(a, b)

    s_pred = student_t[0]
    (tmp_path / "s").mkdir()
    s_pred.serialize(tmp_path / "s")
    s_back = Predictor.deserialize(tmp_path / "s")
    torch.manual_seed(3)
    a = np.stack([f.samples for f in s_pred.predict(m3[1], num_samples=20)])
    torch.manual_seed(3)
    b = np.stack([f.samples for f in s_back.predict(m3[1], num_samples=20)])
    np.testing.assert_array_equal(a, b)
    # and the trained weights really travelled (a fresh network would forecast otherwise)
    for (k, v), (k2, v2) in zip(s_pred.network.state_dict().items(), s_back.network.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("true",))


@pytest.mark.data
def test_a_serialized_predictor_is_checked_before_its_weights_are_read(quantile, tmp_path):
    """An edited weights file (8 floats changed: it loads and forecasts otherwise), a file that
    unpickles code, and a removed digest are refused naming the file; never with torch's
    advice to load with weights_only=False."""
    from titans_ts.gluonts import TitansPredictor
    from titans_ts.integrity import IntegrityError

    pred = quantile[0]
    assert isinstance(pred, TitansPredictor)
    d = tmp_path / "p"
    d.mkdir()
    pred.serialize(d)
    state = d / TitansPredictor.STATE_FILE
    weights = torch.load(state, weights_only=True)
    name = next(k for k, v in weights.items() if v.dtype == torch.float32 and v.numel() >= 8)
    weights[name].view(-1)[:8] += 1e-3
    torch.save(weights, state)
    with pytest.raises(IntegrityError, match="failed its content check") as info:
        Predictor.deserialize(d)
    assert str(d) in str(info.value)
    torch.save({name: _Evil()}, state)
    (d / TitansPredictor.DIGEST_FILE).write_text(TitansPredictor._file_digest(state))
    with pytest.raises(ValueError, match="not plain data") as info:
        Predictor.deserialize(d)
    assert "weights_only" not in str(info.value)
    (d / TitansPredictor.DIGEST_FILE).unlink()
    with pytest.raises(IntegrityError, match="missing"):
        Predictor.deserialize(d)


@pytest.mark.data
def test_missing_values_and_short_series(m3, tmp_path):
    entries = []
    for i, e in enumerate(m3[0]):
        target = np.array(e["target"], dtype=np.float32)
        target[5:9] = np.nan          # a gap early on
        if i % 3 == 0:
            target[-4:-2] = np.nan    # and one inside the last context window
        entries.append({**e, "target": target})
    entries.append({"start": pd.Period("2000-01", freq="M"), "item_id": "short",
                    "target": np.array([5.0, np.nan, 7.0, 6.0, 8.0, 7.5, 9.0, 8.0], dtype=np.float32)})
    ds = ListDataset(entries, freq="ME")
    with pytest.warns(UserWarning, match=r"1 of 41 series of training_data are too short to train on .*'short'"):
        predictor = _train_in(tmp_path, ds, head="quantile")
    forecasts = list(predictor.predict(ds))
    assert len(forecasts) == len(entries)
    for f in forecasts:
        assert np.isfinite(f.forecast_array).all()
    assert forecasts[-1].start_date == pd.Period("2000-09", freq="M")


# --------------------------------------------------------------------------------- module / args
def _module(head: str) -> TitansGluonTSModule:
    torch.manual_seed(0)
    est = TitansEstimator(**{**TINY, "context_length": 12, "prediction_length": 4, "head": head,
                             "dropout": 0.0})
    return est.create_lightning_module().eval()


@pytest.mark.parametrize("head", ["student_t", "quantile"])
def test_masked_values_are_ignored(head):
    module = _module(head)
    g = torch.Generator().manual_seed(1)
    batch = {"past_target": torch.randn(3, 12, generator=g) + 10,
             "past_observed_values": (torch.rand(3, 12, generator=g) > 0.3).float(),
             "future_target": torch.randn(3, 4, generator=g) + 10,
             "future_observed_values": torch.tensor([[1.0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 1, 0]])}
    other = {k: v.clone() for k, v in batch.items()}
    other["past_target"][batch["past_observed_values"] == 0] = 1e6
    other["future_target"][batch["future_observed_values"] == 0] = -1e6
    with torch.no_grad():
        l1, l2 = module._loss(batch), module._loss(other)
        assert torch.isfinite(l1) and torch.allclose(l1, l2)
        if head == "quantile":
            (q1,), _, _ = module(batch["past_target"], batch["past_observed_values"])
            (q2,), _, _ = module(other["past_target"], other["past_observed_values"])
            assert q1.shape == (3, 4, len(DEFAULT_QUANTILES)) and torch.allclose(q1, q2)
        else:
            s = module(batch["past_target"], batch["past_observed_values"])
            assert s.shape == (3, 100, 4)
        # an observed value does count
        other["future_target"][1, 0] += 50.0
        assert not torch.allclose(module._loss(batch), module._loss(other))


@pytest.mark.parametrize("freq", ["ME", "M", "MS", "h", "H", "D", "W", "15min"])
def test_frequency_aliases(freq):
    """GluonTS's older aliases ("M", "H") are accepted without the FutureWarning pandas gives for
    them (``_check_freq`` silences it); the pandas-2 aliases never warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = TitansEstimator(freq=freq, prediction_length=3)
    assert est.freq == freq


def test_frequency_alias_check_is_real():
    # pandas itself warns for "M" (so the test above checks titans-ts's own handling)
    from pandas.tseries.frequencies import to_offset

    with pytest.warns(FutureWarning, match="'M' is deprecated"):
        to_offset("M")
    for bad in ("fortnightly", "3x", ""):
        with pytest.raises(ValueError, match=r"freq must be a pandas frequency alias such as 'ME'"):
            TitansEstimator(freq=bad, prediction_length=3)


@pytest.mark.parametrize("kwargs, message", [
    ({"head": "gaussian"}, r"^head must be one of \('student_t', 'quantile'\), got 'gaussian'$"),
    ({"freq": "fortnightly"}, r"^freq must be a pandas frequency alias such as .*got 'fortnightly'$"),
    ({"quantiles": [0.5, 1.2]},
     r"^quantiles must be levels strictly between 0 and 1, in increasing order, got \[0\.5, 1\.2\]$"),
    ({"quantiles": [0.9, 0.1]},
     r"^quantiles must be levels strictly between 0 and 1, in increasing order, got \[0\.9, 0\.1\]$"),
    ({"variant": "transformer"}, r"^variant must be one of \(.*'lmm'.*\), got 'transformer'$"),
    ({"memory": {"bogus": 1}}, r"^unknown memory setting\(s\) \['bogus'\]; allowed: \[.*'chunk_size'"),
    ({"prediction_length": 0}, r"^prediction_length must be a positive integer, got 0$"),
    ({"context_length": -1}, r"^context_length must be a positive integer, got -1$"),
    ({"scheduler": "step"}, r"^scheduler must be one of \('cosine', 'none'\), got 'step'$"),
    ({"dropout": 1.5}, r"^dropout must be >= 0\.0 and < 1\.0, got 1\.5$"),
    ({"lr": 0.0}, r"^lr must be > 0\.0, got 0\.0$"),  # TrainingConfig's check
    ({"batch_size": 0}, r"^batch_size must be a positive integer, got 0$"),
])
def test_bad_arguments(kwargs, message):
    args = {"freq": "ME", "prediction_length": 6, **kwargs}
    with pytest.raises(ValueError, match=message):
        TitansEstimator(**args)


def test_defaults_and_trainer_kwargs():
    est = TitansEstimator(freq="ME", prediction_length=18, trainer_kwargs={"max_epochs": 3})
    assert est.context_length == 36 and est.patch_len == 6 and est.stride == 3
    tk = est.trainer_kwargs
    assert tk["max_epochs"] == 3 and tk["logger"] is False and tk["accelerator"] == "cpu"
    assert tk["enable_progress_bar"] is False and tk["enable_model_summary"] is False
    module = est.create_lightning_module()
    assert module.total_steps == 3 * est.num_batches_per_epoch


def _entry(values, item="a"):
    return {"start": pd.Period("2000-01", freq="M"), "item_id": item, "target": np.asarray(values, dtype=np.float32)}


@pytest.mark.parametrize("data, message", [
    ([], r"^training_data holds no series; TitansEstimator\.train needs at least one series with 8 or more"),
    ([_entry(np.arange(5.0)), _entry(np.arange(7.0), "b")],
     r"^training_data: every series is shorter than prediction_length \+ 2 = 8 values \(the longest has 7\)"),
    ([_entry(np.arange(20.0)), _entry([1.0, 2.0, np.inf, 3.0, np.nan] * 4, "b")],
     r"^training_data: entry 1 \(item_id 'b'\) has \+/-inf in its target at position\(s\) \[2, 7, 12, 17\]; "
     r"use NaN for a missing value$"),
])
def test_training_data_that_cannot_train_is_refused(data, message):
    """No untrained predictor from an empty dataset, no "maximum number of idle transformation
    calls" for series too short, no memory-gate error for an infinite target."""
    est = TitansEstimator(**{**TINY, "prediction_length": 6, "context_length": 12})
    with pytest.raises(ValueError, match=message):
        est.train(ListDataset(data, freq="ME") if data else data)


@pytest.mark.parametrize("trainer_kwargs, message", [
    ({"limit_train_batches": 0}, r"^trainer_kwargs limit_train_batches=0: use a positive number of batches or "
                                 r"a fraction in \(0, 1\].*0 would train on no batch and return an untrained"),
    ({"limit_train_batches": 0.0}, r"^trainer_kwargs limit_train_batches=0\.0: use a positive number"),
    ({"limit_train_batches": 1.5}, r"^trainer_kwargs limit_train_batches=1\.5: use a positive number"),
    ({"max_epochs": 0}, r"^trainer_kwargs max_epochs=0 would train for no epoch; use a positive integer"),
])
def test_trainer_settings_that_train_nothing_are_refused(trainer_kwargs, message):
    with pytest.raises(ValueError, match=message):
        TitansEstimator(freq="ME", prediction_length=6, trainer_kwargs=trainer_kwargs)
    TitansEstimator(freq="ME", prediction_length=6, trainer_kwargs={"limit_train_batches": 0.5, "max_epochs": 1})


# ------------------------------------------------------------------ entries (issue 35)
DAILY = dict(freq="D", prediction_length=6, context_length=24, patch_len=6, stride=3, d_model=16, n_layers=1,
             memory={"heads": 2, "chunk_size": 4}, batch_size=16, num_batches_per_epoch=2,
             trainer_kwargs={"max_epochs": 1})


def _daily(i, y, start=None, **fields):
    return {"item_id": f"s{i}", "start": pd.Period("2024-01-01", "D") if start is None else start,
            "target": np.asarray(y, dtype=np.float64), **fields}


def _series(n=4, T=80, scale=1.0):
    rng = np.random.default_rng(0)
    return [_daily(i, scale * (10 + np.sin(np.arange(T) / 3) + 0.1 * rng.standard_normal(T))) for i in range(n)]


def _train_daily(data, **kw):
    torch.manual_seed(0)
    np.random.seed(0)
    return TitansEstimator(**{**DAILY, **kw}).train(data)


@pytest.fixture(scope="module")
def daily_predictor():
    return _train_daily(_series())


COVARIATES = {"feat_dynamic_real": np.ones((1, 80)), "past_feat_dynamic_real": np.ones((1, 80)),
              "feat_static_cat": [1], "feat_static_real": [0.5], "feat_dynamic_cat": np.zeros((1, 80), dtype=int)}


def _unread(name):
    """The refusal of a covariate field the estimator was not told to read (its num_... is 0), or
    of feat_dynamic_cat, which it never reads: refused rather than dropped."""
    if name == "feat_dynamic_cat":
        return r"has the field 'feat_dynamic_cat': TitansEstimator does not read it \(it would be ignored\)"
    arg = "num_feat_static_cat \\(and cardinality\\)" if name == "feat_static_cat" else f"num_{name}"
    return rf"has {name} but the estimator reads none \({arg}=0\): give"


def test_entries_the_estimator_cannot_use_are_refused_when_training():
    good = _series()
    cases = [(_daily(9, []), r"entry 4 \(item_id 's9'\) has an empty target"),
             (_daily(9, np.full(80, np.nan)),
              r"entry 4 \(item_id 's9'\) has no observed value \(its target is all NaN\)")]
    cases += [(_daily(9, good[0]["target"], **{name: value}), r"entry 4 \(item_id 's9'\) " + _unread(name))
              for name, value in COVARIATES.items()]
    for extra, message in cases:
        with pytest.raises(ValueError, match=rf"^training_data: {message}"):
            TitansEstimator(**DAILY).train(good + [extra])
        with pytest.raises(ValueError, match=rf"^validation_data: {message}"):
            TitansEstimator(**DAILY).train(good, validation_data=good + [extra])
    with pytest.raises(ValueError, match=r"^training_data: entry 0 \(item_id 's0'\) has no observed value"):
        TitansEstimator(**DAILY).train([_daily(i, np.full(80, np.nan)) for i in range(3)])


def test_entries_the_predictor_cannot_use_are_refused_when_predicting(daily_predictor):
    good = _series(1)[0]["target"]
    context_gap = good.copy()
    context_gap[-24:] = np.nan
    cases = [(_daily(9, []), r"entry \(item_id 's9'\) has an empty target"),
             (_daily(9, np.full(80, np.nan)),
              r"entry \(item_id 's9'\) has no observed value \(its target is all NaN\)"),
             (_daily(9, context_gap), r"entry \(item_id 's9'\) has no observed value in its last 24 values \(the "
                                      r"context the forecast reads\)"),
             (_daily(9, np.r_[good[:-1], np.inf]), r"entry \(item_id 's9'\) has \+/-inf in its target at position\(s\) "
                                                   r"\[79\]")]
    cases += [(_daily(9, good, **{name: value}), r"entry \(item_id 's9'\) " + _unread(name))
              for name, value in COVARIATES.items()]
    for entry, message in cases:
        with pytest.raises(ValueError, match=message):
            list(daily_predictor.predict([entry]))


@pytest.mark.parametrize("start", [pd.Timestamp("2024-01-01"), "2024-01-01",
                                   pd.Timestamp("2024-01-01").to_pydatetime()])
def test_a_start_given_as_a_timestamp_is_read_at_the_estimators_frequency(daily_predictor, start):
    data = [dict(e, start=start) for e in _series(2)]
    f = list(daily_predictor.predict(data))
    ref = list(daily_predictor.predict(_series(2)))
    assert f[0].start_date == pd.Period("2024-01-01", "D") + 80 == ref[0].start_date
    predictor = _train_daily(data)  # and training takes it too
    assert np.isfinite(list(predictor.predict(data))[0].samples).all()


def test_a_period_start_of_another_frequency_is_refused(daily_predictor):
    """An hourly period given to a daily estimator would be read at the wrong spacing."""
    data = [dict(e, start=pd.Period("2024-01-04 08:00", "h")) for e in _series(2)]
    with pytest.raises(ValueError, match=r"frequency 'h'.*freq is 'D'"):
        list(daily_predictor.predict(data))
    ok = [dict(e, start=pd.Period("2024-01-04", "D")) for e in _series(2)]
    assert len(list(daily_predictor.predict(ok))) == 2


def test_targets_of_any_magnitude_train_and_forecast_on_their_own_scale():
    """Each window is centred and scaled (float64) before the network, as the frame API scales
    each series: the same data times 1e30 (or 1e-30) forecasts the same times 1e30."""
    ref = _train_daily(_series(), head="quantile")
    base = np.stack([f.forecast_array for f in ref.predict(_series())])
    for scale in (1e30, 1e-30):
        predictor = _train_daily(_series(scale=scale), head="quantile")
        got = np.stack([f.forecast_array for f in predictor.predict(_series(scale=scale))])
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got / scale, base, rtol=1e-3)
    # a level of 1e8 keeps its unit-size signal (no float32 rounding before the centring)
    level = [dict(e, target=e["target"] - 10 + 1e8) for e in _series()]
    got = np.stack([f.forecast_array for f in ref.predict(level)]) - 1e8
    np.testing.assert_allclose(got, base - 10, atol=1e-3)
