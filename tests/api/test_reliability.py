"""No silent wrong forecast, no lost file: one test per class of the reliability issue that lives
in the forecaster (units, time zones, integer time steps, non-finite values, series without an
observed value, predict's levels, ids, NumPy parameters, set_params after fit, atomic saving,
load / save errors)."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch
from sklearn.exceptions import NotFittedError

from titans_ts import TitansForecaster
from titans_ts.datasets import DataValidationError
from titans_ts.integrity import content_digest

TINY = dict(h=6, context_length=24, patch_len=8, stride=4, d_model=16, max_epochs=1,
            limit_train_batches=2, batch_size=16, memory=dict(heads=2, depth=1, expansion=1.0, chunk_size=4))


def _long(n=2, T=80, start="2024-01-01", freq="h", tz=None, ids=None, scale=1.0, ds=None):
    t = np.arange(T)
    rng = np.random.default_rng(0)
    ids = ids if ids is not None else [f"s{i}" for i in range(n)]
    parts = []
    for k, sid in enumerate(ids):
        y = scale * (10 + k + np.sin(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(T))
        times = ds if ds is not None else pd.date_range(start, periods=T, freq=freq, tz=tz)
        parts.append(pd.DataFrame({"unique_id": sid, "ds": times, "y": y}))
    return pd.concat(parts, ignore_index=True)


def _numbers(frame):
    return frame.select_dtypes("number").drop(columns=["unique_id"], errors="ignore").to_numpy()


# ------------------------------------------------------------------------------------ 1. units


@pytest.mark.parametrize("head", ["point", "quantile", "student_t"])
def test_forecasts_are_scale_equivariant_for_every_head(head):
    """The same series in other units: the same forecast in those units (fit, predict(df=...),
    update), point, quantiles and Student-t intervals alike, from 1e-6 to 1e6."""
    data = _long(T=90)
    head_rows, tail_rows = data.groupby("unique_id").head(80), data.groupby("unique_id").tail(10)
    other = _long(T=60, ids=["new"]).assign(y=lambda d: 3 * d["y"] - 20)
    kw = dict(levels=[80]) if head != "point" else {}
    ref = None
    for a in (1.0, 1e-6, 1e6):
        def unit(d, a=a):
            return d.assign(y=d["y"] * a)
        f = TitansForecaster(head=head, **TINY).fit(unit(head_rows))
        got = [f.predict(**kw), f.predict(df=unit(other), **kw)]
        f.update(unit(tail_rows))
        got.append(f.predict(**kw))
        got = [_numbers(g) / a for g in got]
        if ref is None:
            ref = got
            continue
        for r, g in zip(ref, got, strict=True):
            np.testing.assert_allclose(g, r, rtol=2e-5, atol=0)


def test_scale_equivariance_with_the_carried_memory_and_constant_series():
    data = _long(T=100)
    data.loc[data["unique_id"] == "s1", "y"] = 7.0  # a constant series: scale falls back to |7|
    ref = None
    for a in (1.0, 1e-6, 1e6):
        f = TitansForecaster(test_time_memory=True, **TINY).fit(data.assign(y=data["y"] * a))
        got = f.predict()["y_hat"].to_numpy() / a
        assert f.memory_[0].written > 0 and np.isfinite(got).all()
        if ref is None:
            ref = got
        np.testing.assert_allclose(got, ref, rtol=2e-5)


# ------------------------------------------------------------------------------- 2. time zones


@pytest.mark.parametrize("flavour", ["pandas", "polars"])
def test_time_zones_survive_fit_predict_update_save_and_messages(tmp_path, flavour):
    tz = "Europe/Paris"
    data = _long(T=90, start="2024-03-28", tz=tz)  # crosses the DST change of 2024-03-31
    conv = pl.from_pandas if flavour == "polars" else (lambda d: d)
    f = TitansForecaster(**TINY).fit(conv(data.groupby("unique_id").head(80)))
    f.update(conv(data.groupby("unique_id").tail(10)))
    out = f.predict()
    pdf = out.to_pandas() if flavour == "polars" else out
    assert str(pdf["ds"].dtype) == str(data["ds"].dtype)
    assert pdf["ds"].iloc[0] == data["ds"].iloc[89] + pd.Timedelta("1h")
    g = TitansForecaster.load(f.save(tmp_path / "tz.pt"))
    back = g.predict()
    assert (back.to_pandas() if flavour == "polars" else back).equals(pdf)
    late = _long(T=3, start="2024-04-10", tz=tz)
    with pytest.raises(DataValidationError, match=r"last known timestamp 2024-03-31 18:00:00\+02:00"):
        g.update(conv(late))


# -------------------------------------------------------------------------- 3. integer steps


def test_integer_time_steps_continue_as_integers_and_float_steps_are_refused(tmp_path):
    data = _long(T=80, ds=np.arange(1000, 1080, dtype=np.int64))
    f = TitansForecaster(**TINY).fit(data)
    out = f.predict()
    assert out["ds"].dtype == np.int64 and out["ds"].tolist()[:6] == list(range(1080, 1086))
    f.update(_long(T=2, ds=np.array([1080, 1081])))
    assert f.predict()["ds"].iloc[0] == 1082
    assert TitansForecaster.load(f.save(tmp_path / "int.pt")).predict().equals(f.predict())
    with pytest.raises(DataValidationError, match="update\\(\\) rows must start right after the last "
                       "known timestamp 1081 \\(expected 1082, got 2000\\)"):
        f.update(_long(T=2, ds=np.array([2000, 2001])))
    with pytest.raises(DataValidationError, match="holds floats"):
        TitansForecaster(**TINY).fit(data.astype({"ds": float}))


# ----------------------------------------------------------------------- 4. non-finite values


def test_a_failed_update_restores_every_part_of_the_carried_memory(monkeypatch):
    """An update that fails after the memory was written (here: the check of the next forecast)
    leaves each series' whole memory record as it was: state, errors, gain errors, pending reads."""
    import titans_ts.forecaster.state as state

    data = _long(T=130)
    f = TitansForecaster(test_time_memory=True, **TINY).fit(data.groupby("unique_id").head(100))
    before = f.predict()
    records = [(r.written, r.next_write, r.gain_errors.clone(), dict(r.pending), r.errors.clone(), r.state)
               for r in f.memory_.series]

    def fail(*_args, **_kw):
        raise RuntimeError("check failed")

    monkeypatch.setattr(state, "_check_after_update", fail)
    with pytest.raises(RuntimeError, match="check failed"):
        f.update(data.groupby("unique_id").tail(30))
    for r, (written, nxt, gains, pending, errors, st) in zip(f.memory_.series, records, strict=True):
        assert (r.written, r.next_write) == (written, nxt) and r.state is st
        assert torch.equal(r.gain_errors, gains) and torch.equal(r.errors, errors)
        assert r.pending.keys() == pending.keys()
    monkeypatch.undo()
    pd.testing.assert_frame_equal(f.predict(), before)


def test_non_finite_inputs_are_refused_and_no_non_finite_forecast_is_returned():
    data = _long(T=90)
    f = TitansForecaster(test_time_memory=True, **TINY).fit(data.groupby("unique_id").head(80))
    before = f.predict()
    written = [r.written for r in f.memory_.series]
    huge = data.groupby("unique_id").tail(10).assign(y=1e30)
    with pytest.raises(DataValidationError, match=r"non-finite: their new values reach .*e\+\d+ times "
                       r"the spread.*Nothing was updated"):
        f.update(huge)
    assert [r.written for r in f.memory_.series] == written and len(f.history_["values"][0]) == 80
    pd.testing.assert_frame_equal(f.predict(), before)  # nothing changed
    bad = data.copy()
    bad.loc[3, "y"] = -np.inf
    with pytest.raises(DataValidationError, match=r"holds \+/-inf at row\(s\) \[3\]"):
        f.predict(df=bad)
    with pytest.raises(DataValidationError, match="beyond float32's range"):
        f.predict(df=data.assign(y=1e39))
    # data of any magnitude that float32 holds forecasts fine (each series is scaled first)
    assert np.isfinite(f.predict(df=data.assign(y=data["y"] * 1e30))["y_hat"]).all()


# ------------------------------------------------------------------- 5. no observed value


def test_series_and_contexts_without_an_observed_value_are_never_forecast_from_nothing():
    data = _long(n=3, T=80)
    empty = data.assign(y=np.where(data["unique_id"] == "s1", np.nan, data["y"]))
    with pytest.raises(DataValidationError, match=r"1 series without a single observed value .*'s1'"):
        TitansForecaster(**TINY).fit(empty)
    f = TitansForecaster(**TINY).fit(data)
    blind = data.copy()
    blind.loc[(blind["unique_id"] == "s2") & (blind.groupby("unique_id").cumcount() >= 50), "y"] = np.nan
    with pytest.warns(UserWarning, match=r"1 series with no observed value in their last 24 steps.*'s2'"):
        out = f.predict(df=blind)
    assert out.loc[out["unique_id"] == "s2", "y_hat"].isna().all()
    assert np.isfinite(out.loc[out["unique_id"] != "s2", "y_hat"]).all()
    # a single series whose validation steps are all unobserved: no 0.0 validation loss
    one = _long(n=1, T=80)
    one.loc[74:, "y"] = np.nan
    with pytest.warns(UserWarning, match="no observed target value in the validation steps"):
        g = TitansForecaster(**TINY).fit(one)
    assert g.best_val_loss_ is None


# ------------------------------------------------------------------------ 6. levels at predict


def test_predict_levels_and_quantiles_are_validated():
    f = TitansForecaster(head="student_t", **TINY).fit(_long())
    for bad, match in [(dict(levels=95), r"levels must be a sequence of percentages .* levels=\[80, 95\], got 95"),
                       (dict(levels="95"), "levels must be a sequence of percentages"),
                       (dict(levels=[0, 80]), r"strictly between 0 and 100, e.g. levels=\[80, 95\]; got 0"),
                       (dict(levels=[100]), "strictly between 0 and 100"),
                       (dict(quantiles=[0.5, 1.0]), r"quantiles must be levels strictly between 0 and 1.*got 1.0"),
                       (dict(quantiles=0.5), "quantiles must be a sequence"),
                       (dict(quantiles=[-0.1]), "strictly between 0 and 1")]:
        with pytest.raises(ValueError, match=match):
            f.predict(**bad)
    out = f.predict(levels=(np.int64(80),), quantiles=np.array([0.25, 0.75]))
    assert np.isfinite(out.select_dtypes("number")).all().all()


# ------------------------------------------------------------------------------------- 7. ids


@pytest.mark.parametrize("flavour", ["pandas", "polars"])
def test_ids_keep_their_dtype_and_cross_validation_cutoffs_exist(flavour):
    data = _long(ids=[10, 20], T=80).astype({"unique_id": "int32"})
    conv = pl.from_pandas if flavour == "polars" else (lambda d: d)
    f = TitansForecaster(**TINY).fit(conv(data))
    out = f.predict()
    pdf = out.to_pandas() if flavour == "polars" else out
    assert pdf["unique_id"].dtype == np.int32 and set(pdf["unique_id"]) == {10, 20}
    joined = conv(data).join(out, on=["unique_id", "ds"], how="right") if flavour == "polars" else \
        pdf.merge(data, on=["unique_id", "ds"], how="left")
    assert len(joined) == len(pdf)
    cv = f.cross_validation(conv(data), n_windows=2)
    cv = cv.to_pandas() if flavour == "polars" else cv
    assert cv["cutoff"].notna().all() and (cv["ds"] > cv["cutoff"]).all()
    mixed = data.astype({"unique_id": object})
    mixed.loc[mixed["unique_id"] == 20, "unique_id"] = "10"
    with pytest.raises(DataValidationError, match=r"ids 10 \(int\) and '10' \(str\)"):
        f.predict(df=mixed)
    with pytest.raises(DataValidationError, match=r"has not seen: \['10'\].*knows 10, a int"):
        f.update(_long(T=1, ids=["10"], start="2024-01-04 08:00"))


# ------------------------------------------------------- 8 / 11 / 12. parameters and set_params


def test_numpy_parameters_train_save_and_reload(tmp_path):
    kw = dict(TINY, h=np.int64(6), context_length=np.int32(24), lr=np.float32(1e-3), batch_size=np.int64(16),
              max_epochs=np.int64(1), d_model=np.int64(16), quantiles=(np.float64(0.1), np.float64(0.9)),
              memory={"heads": np.int64(2), "depth": 1, "expansion": np.float64(1.0), "chunk_size": 4})
    f = TitansForecaster(head="quantile", **kw).fit(_long())
    assert type(f.h) is int and type(f.lr) is float and type(f.memory["heads"]) is int
    g = TitansForecaster.load(f.save(tmp_path / "np.pt"))
    pd.testing.assert_frame_equal(f.predict(), g.predict())
    with pytest.raises(ValueError, match="limit_train_batches=0 would train on no batch"):
        TitansForecaster(**dict(TINY, limit_train_batches=0)).fit(_long())


def test_set_params_after_fit_unfits(tmp_path):
    f = TitansForecaster(**TINY).fit(_long())
    f.set_params(verbose=False)
    assert hasattr(f, "model_")  # nothing changed
    f.set_params(h=3, verbose=True)
    assert not hasattr(f, "model_") and not hasattr(f, "history_")
    for call in (f.predict, lambda: f.save(tmp_path / "x.pt"), lambda: f.update(_long())):
        with pytest.raises(NotFittedError, match=r"parameters \['h'\] changed after fit.*call 'fit' again"):
            call()
    assert len(f.fit(_long()).predict()) == 2 * 3


# ------------------------------------------------------------------- 9 / 15. saving and loading


def test_a_failing_overwrite_keeps_the_previous_file(tmp_path, monkeypatch):
    f = TitansForecaster(**TINY).fit(_long())
    path = f.save(tmp_path / "model.pt")
    good = path.read_bytes()
    real = torch.save

    def half_then_fail(obj, fh, *a, **k):
        fh.write(good[: len(good) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match=f"no space left on device: {path}"):
        f.save(path)
    monkeypatch.setattr(torch, "save", real)
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["model.pt"]
    pd.testing.assert_frame_equal(TitansForecaster.load(path).predict(), f.predict())


def test_load_and_save_errors_are_one_clear_message(tmp_path):
    f = TitansForecaster(**TINY).fit(_long())
    path = f.save(tmp_path / "model.pt")
    raw = path.read_bytes()
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 3])
    (tmp_path / "text.pt").write_text("hello")
    for name, match in [("empty.pt", "the file is empty"), ("cut.pt", "truncated, corrupt or not a torch file"),
                        ("text.pt", "truncated, corrupt or not a torch file")]:
        with pytest.raises(ValueError, match=f"{name} is not a valid TitansForecaster file \\({match}"):
            TitansForecaster.load(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="no such file"):
        TitansForecaster.load(tmp_path / "missing.pt")
    payload = torch.load(path, weights_only=True)

    def save_crafted(crafted):  # with a matching digest: the checks below hold for such a file too
        crafted["digest"] = content_digest({k: v for k, v in crafted.items() if k != "digest"})
        torch.save(crafted, tmp_path / "crafted.pt")

    for key, where in [("params", "predict"), ("params", "__class__"), ("fitted", "predict"),
                       ("fitted", "__dict__")]:
        crafted = dict(payload)
        crafted[key] = json.dumps({**json.loads(payload[key]), where: "x"})
        save_crafted(crafted)
        with pytest.raises(ValueError, match=f"unknown (parameter|fitted attribute)\\(s\\) \\['{where}'\\]"):
            TitansForecaster.load(tmp_path / "crafted.pt")
    save_crafted({**payload, "extra": 1})
    with pytest.raises(ValueError, match=r"unknown entries \['extra'\]"):
        TitansForecaster.load(tmp_path / "crafted.pt")
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        f.save(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="cannot write .*cannot create its folder"):
        f.save(tmp_path / "file" / "model.pt")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # (root may write anywhere)
            with pytest.raises(PermissionError, match=f"cannot write {ro / 'm.pt'}: Permission denied"):
                f.save(ro / "m.pt")
    finally:
        ro.chmod(0o700)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TitansForecaster.load(path).predict().equals(f.predict())
