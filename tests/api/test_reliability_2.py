"""Reliability, second round (issue 35), the cases in the forecaster and the frame layer: update()
with the same instants in another time zone, polars dtypes in and out, large levels with a
small signal, a stacked frame without its id column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from titans_ts import TitansForecaster
from titans_ts.datasets import DataValidationError, from_frame, to_frame

TINY = dict(h=6, context_length=24, patch_len=8, stride=4, d_model=16, max_epochs=1,
            limit_train_batches=2, batch_size=16, memory=dict(heads=2, depth=1, expansion=1.0, chunk_size=4))


def _long(n=2, T=90, start="2024-03-28", freq="h", tz=None, level=10.0):
    t = np.arange(T)
    return pd.concat([pd.DataFrame({"unique_id": f"s{k}", "ds": pd.date_range(start, periods=T, freq=freq, tz=tz),
                                    "y": level + k + np.sin(2 * np.pi * t / 12)}) for k in range(n)],
                     ignore_index=True)


def _pandas(out):
    return out.to_pandas() if isinstance(out, pl.DataFrame) else out


# ------------------------------------------------------------------------------- time zones


@pytest.mark.parametrize("flavour", ["pandas", "polars"])
@pytest.mark.parametrize("memory", [False, True])
def test_update_with_the_same_instants_in_utc_is_converted_to_the_models_zone(tmp_path, flavour, memory):
    conv = pl.from_pandas if flavour == "polars" else (lambda d: d)
    data = _long(tz="Europe/Berlin")  # crosses the DST change of 2024-03-31
    f = TitansForecaster(test_time_memory=memory, **TINY).fit(conv(data.groupby("unique_id").head(80)))
    ref = TitansForecaster(test_time_memory=memory, **TINY).fit(conv(data.groupby("unique_id").head(80)))
    tail = data.groupby("unique_id").tail(10)
    f.update(conv(tail.assign(ds=tail["ds"].dt.tz_convert("UTC"))))
    ref.update(conv(tail))
    out = _pandas(f.predict())
    assert str(out["ds"].dtype) == "datetime64[ns, Europe/Berlin]"
    assert out["ds"].iloc[0] == data["ds"].iloc[89] + pd.Timedelta("1h")
    pd.testing.assert_frame_equal(out, _pandas(ref.predict()))  # as if the rows came in Berlin time
    nxt = _long(T=96, tz="Europe/Berlin").groupby("unique_id").tail(6)
    f.update(conv(nxt.assign(ds=nxt["ds"].dt.tz_convert("Asia/Tokyo"))))  # and again, another zone
    assert str(f.history_["index"][0].dtype) == "datetime64[ns, Europe/Berlin]" and len(f.history_["index"][0]) == 96
    g = TitansForecaster.load(f.save(tmp_path / "m.pt"))
    pd.testing.assert_frame_equal(_pandas(g.predict()), _pandas(f.predict()))
    # naive rows for a zoned model (and the reverse) are refused: which wall clock they are in
    # cannot be known
    late = _long(T=102).groupby("unique_id").tail(6)
    with pytest.raises(DataValidationError, match=r"update\(\) rows of series 's0' have naive timestamps \(no "
                                                  r"zone\); the forecaster was fitted on timestamps in zone "
                                                  r"Europe/Berlin.*tz_localize\('Europe/Berlin'\)"):
        f.update(conv(late))
    naive = TitansForecaster(**TINY).fit(conv(_long().groupby("unique_id").head(80)))
    tail = _long(tz="UTC").groupby("unique_id").tail(10)
    with pytest.raises(DataValidationError, match=r"have timestamps in zone UTC; the forecaster was fitted "
                                                  r"on naive timestamps"):
        naive.update(conv(tail))
    assert len(naive.history_["index"][0]) == 80


# ---------------------------------------------------------------------------- polars dtypes


def test_polars_enum_ids_and_date_timestamps_come_back_with_their_dtype(tmp_path):
    from titans_ts.datasets import fill_gaps

    T = 60
    days = pd.date_range("2024-01-01", periods=T, freq="D").date
    df = pl.DataFrame({"unique_id": ["a"] * T + ["b"] * T, "ds": list(days) * 2,
                       "y": np.r_[np.sin(np.arange(T)), np.cos(np.arange(T))] + 5})
    df = df.with_columns(pl.col("unique_id").cast(pl.Enum(["a", "b", "c"])), pl.col("ds").cast(pl.Date))
    want = {"unique_id": pl.Enum(["a", "b", "c"]), "ds": pl.Date}
    back = to_frame(from_frame(df))
    assert {c: back.schema[c] for c in want} == want
    f = TitansForecaster(**TINY).fit(df)
    for out in (f.predict(), f.cross_validation(df, n_windows=1),
                TitansForecaster.load(f.save(tmp_path / "m.pt")).predict()):
        assert {c: out.schema[c] for c in want} == want, out.schema
    cv = f.cross_validation(df, n_windows=1)
    assert cv.schema["cutoff"] == pl.Date  # the cutoff joins back to the input's times
    assert len(cv.select("unique_id", "cutoff").unique().join(df, left_on=["unique_id", "cutoff"],
                                                               right_on=["unique_id", "ds"])) == 2
    out = f.predict()
    assert out["ds"][0] == days[-1] + pd.Timedelta(days=1)
    assert len(df.join(out, on=["unique_id", "ds"], how="inner")) == 0  # joins (no overlap: future days)
    assert len(out.join(f.predict(df=df), on=["unique_id", "ds"])) == len(out)
    # zoned polars timestamps and integer ids keep theirs too
    zoned = df.with_columns(pl.col("ds").cast(pl.Datetime("us", "Asia/Kolkata")), pl.col("unique_id").cast(pl.String)
                            .replace({"a": "1", "b": "2"}).cast(pl.UInt16))
    out = TitansForecaster(**TINY).fit(zoned).predict()
    assert out.schema["ds"] == pl.Datetime("us", "Asia/Kolkata") and out.schema["unique_id"] == pl.UInt16
    gappy = df.filter(pl.col("ds") != days[5])
    filled = fill_gaps(gappy, "D")
    assert {c: filled.schema[c] for c in want} == want and len(filled) == len(df)


# ------------------------------------------------------------- a small signal on a large level


def test_a_unit_signal_on_a_level_of_1e8_is_not_lost_to_float32():
    """Values near 1e8 are 8 apart in float32: cast before centring, a signal of size 1 was
    rounded away (the forecast minus the level came out as +-2e5). Centred in float64 first,
    the forecast stays on the signal's scale, as it does at level 0."""
    data = _long(n=1, T=200, level=0.0)
    f0 = TitansForecaster(**TINY).fit(data)
    f8 = TitansForecaster(**TINY).fit(data.assign(y=data["y"] + 1e8))
    y0, y8 = f0.predict()["y_hat"].to_numpy(), f8.predict()["y_hat"].to_numpy() - 1e8
    assert np.abs(y8).max() < 3 and np.abs(y8 - y0).max() < 1e-3, (y0, y8)
    np.testing.assert_allclose(f8.predict(df=data.assign(y=data["y"] + 1e8))["y_hat"].to_numpy() - 1e8, y0,
                               atol=1e-3)
    assert f8.history_["values"][0].dtype == np.float64
    np.testing.assert_array_equal(f8.history_["values"][0][:, 0], data["y"].to_numpy() + 1e8)
    tail = _long(n=1, T=206, level=1e8).tail(6)
    f8.update(tail)
    np.testing.assert_array_equal(f8.history_["values"][0][-6:, 0], tail["y"].to_numpy())
    # the frame layer gives the values back as they came in
    back = to_frame(from_frame(data.assign(y=data["y"] + 1e8)))
    np.testing.assert_array_equal(back["y"].to_numpy(), data["y"].to_numpy() + 1e8)


# --------------------------------------------------------------- a stacked frame without ids


def test_several_series_stacked_without_their_id_column_are_told_so():
    data = _long(n=2, T=60, start="2024-01-01").drop(columns="unique_id")
    for frame in (data, pl.from_pandas(data)):
        with pytest.raises(DataValidationError,
                           match=r"column 'ds' goes back at row 60 \(2024-01-01 00:00:00 after 2024-01-03 "
                                 r"11:00:00\): the frame has no id column 'unique_id', so it was read as one "
                                 r"wide series.*several series one after another.*a column 'unique_id' "
                                 r"\(or name it with id_col=\)"):
            TitansForecaster(**TINY).fit(frame)
    repeated = pd.concat([data.iloc[:30], data.iloc[29:60]], ignore_index=True)  # a repeated row
    with pytest.raises(DataValidationError, match=r"column 'ds' repeats at row 30 .*no id column 'unique_id'"):
        from_frame(repeated)
    with pytest.raises(DataValidationError, match="is not sorted"):  # asked for wide: the plain message
        from_frame(data, layout="wide")
