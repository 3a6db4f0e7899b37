"""Reliability, second round (issue 35), the cases in the forecaster and the frame layer: update()
with the same instants in another time zone, polars dtypes in and out, large levels with a
small signal, a stacked frame without its id column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from titans_ts import TitansForecaster
from titans_ts.datasets import DataValidationError

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
    from titans_ts.datasets import fill_gaps, from_frame, to_frame

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
