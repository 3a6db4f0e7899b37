"""User data validation: every bad input raises an error that names the problem."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from titans_ts.datasets import DataValidationError, fill_gaps, from_array, from_frame, to_frame


def long_frame(n=30, ids=("a", "b"), freq="h"):
    parts = []
    for k, sid in enumerate(ids):
        ds = pd.date_range("2024-01-01", periods=n, freq=freq)
        parts.append(pd.DataFrame({"unique_id": sid, "ds": ds, "y": np.arange(n, dtype=float) + k}))
    return pd.concat(parts, ignore_index=True)


def test_long_pandas_and_polars_roundtrip():
    df = long_frame()
    coll = from_frame(df)
    assert coll.ids == ["a", "b"] and coll.freq == "h" and coll.layout == "long"
    assert coll.values[1].shape == (30, 1) and coll.values[1][0, 0] == 1.0
    back = to_frame(coll)
    pd.testing.assert_frame_equal(back, df.astype({"y": "float32"}), check_dtype=False)
    pcoll = from_frame(pl.from_pandas(df))
    assert pcoll.flavour == "polars" and isinstance(to_frame(pcoll), pl.DataFrame)


def test_wide_frame_and_covariates():
    wide = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=10, freq="D"),
                         "x1": np.arange(10.0), "OT": np.ones(10)})
    coll = from_frame(wide)
    assert coll.layout == "wide" and coll.channels == ["x1", "OT"] and coll.values[0].shape == (10, 2)
    df = long_frame()
    df["temp"] = 1.5
    coll = from_frame(df, covariates=["temp"])
    assert coll.covariates[0].shape == (30, 1)


def test_nan_becomes_mask_not_filled():
    df = long_frame()
    df.loc[3, "y"] = np.nan
    coll = from_frame(df)
    assert not coll.masks[0][3, 0] and coll.masks[0].sum() == 29
    assert np.isnan(coll.values[0][3, 0])
    pdf = pl.from_pandas(long_frame()).with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("y")).alias("y"))
    assert not from_frame(pdf).masks[0][5, 0]


@pytest.mark.parametrize(
    "mutate,pattern",
    [
        (lambda df: df.iloc[0:0], r"empty"),
        (lambda df: df.iloc[[1, 0] + list(range(2, len(df)))].reset_index(drop=True),
         r"series 'a'.*not sorted: row 1"),
        (lambda df: pd.concat([df.iloc[:5], df.iloc[4:5], df.iloc[5:]], ignore_index=True),
         r"series 'a'.*duplicate timestamps.*2024-01-01 04:00:00"),
        (lambda df: df.drop(index=[7, 8]).reset_index(drop=True),
         r"series 'a' is irregular at frequency 'h'.*2024-01-01 06:00:00 -> 2024-01-01 09:00:00: 2 missing"),
        (lambda df: df.assign(y=df["y"].astype(object).where(df.index != 4, "n/a")),
         r"column 'y' must be numeric; row 4 holds 'n/a'"),
        (lambda df: df.assign(y=df["y"].where(df.index != 6, np.inf)), r"column 'y' holds \+/-inf at row\(s\) \[6\]"),
        (lambda df: df.assign(extra=1), r"unknown column\(s\) \['extra'\]"),
        (lambda df: df.rename(columns={"ds": "time"}), r"no timestamp column 'ds'"),
        (lambda df: df.assign(y=df["y"] > 3), r"column 'y' must be numeric, got dtype bool"),
        (lambda df: df.assign(ds=df["ds"].astype(str).where(df.index != 2, "not a date")),
         r"column 'ds' must hold timestamps"),
    ],
)
def test_bad_inputs_name_the_problem(mutate, pattern):
    with pytest.raises(DataValidationError, match=pattern):
        from_frame(mutate(long_frame()))


def test_mixed_frequencies_are_named():
    df = pd.concat([long_frame(ids=("a",), freq="h"), long_frame(ids=("b",), freq="D")], ignore_index=True)
    with pytest.raises(DataValidationError, match=r"mixed frequencies.*'h'.*'a'.*'D'.*'b'"):
        from_frame(df)


def test_given_freq_is_checked():
    with pytest.raises(DataValidationError, match="irregular at frequency '2h'"):
        from_frame(long_frame(), freq="2h")


def test_monthly_gap_is_found_despite_uneven_month_lengths():
    df = long_frame(n=40, ids=("m",), freq="MS").drop(index=[20]).reset_index(drop=True)
    with pytest.raises(DataValidationError, match=r"irregular at frequency 'MS'.*1 missing step"):
        from_frame(df)


def _one_series(ds):
    return pd.DataFrame({"unique_id": "a", "ds": ds, "y": np.arange(len(ds), dtype=float)})


@pytest.mark.parametrize("tz", [None, "America/New_York"])
@pytest.mark.parametrize("hours, after_row", [((0, 2, 3), 0), ((0, 1, 3), 1), ((0, 2, 3, 4, 5, 6, 7), 0)])
def test_the_smallest_step_that_explains_the_index_wins_wherever_the_gap_is(hours, after_row, tz):
    """A missing row is a gap at the step the other rows show, whether it comes first or last:
    00:00, 02:00, 03:00 is hourly with 01:00 missing, not 2-hourly with 03:00 off the grid."""
    ds = pd.DatetimeIndex([pd.Timestamp("2024-03-10") + pd.Timedelta(hours=k) for k in hours])
    ds = ds.tz_localize("UTC").tz_convert(tz) if tz else ds  # (across New York's DST change)
    with pytest.raises(DataValidationError) as info:
        from_frame(_one_series(ds))
    msg = str(info.value)
    assert "irregular at frequency 'h'" in msg and f"gaps after row {after_row} (" in msg
    assert msg.count("missing step") == 1 and "1 missing step(s)" in msg and "off the grid" not in msg


def test_timestamps_off_every_grid_are_named_at_the_most_common_step():
    ds = pd.to_datetime(["2024-01-01 00:00", "2024-01-01 02:00", "2024-01-01 05:00"])
    # neither 2h nor 3h explains the index; the tie goes to the shorter step
    with pytest.raises(DataValidationError, match=r"irregular at frequency '2h': gaps after row 1 "
                                                  r"\(2024-01-01 02:00:00 -> 2024-01-01 05:00:00: off the grid\)"):
        from_frame(_one_series(ds))


@pytest.mark.parametrize("dates, tz, freq, gap", [
    # months of uneven lengths, a short series (no run of regular steps pandas could read)
    (["2024-01-01", "2024-02-01", "2024-04-01"], None, "MS", "2024-02-01 00:00:00 -> 2024-04-01"),
    (["2024-01-31", "2024-02-29", "2024-04-30", "2024-05-31"], None, "ME", "2024-02-29 00:00:00 -> 2024-04-30"),
    # quarters (pandas spells quarters starting in January 'QS-OCT')
    (["2024-01-01", "2024-04-01", "2024-10-01"], None, "QS-OCT", "2024-04-01 00:00:00 -> 2024-10-01"),
    # business days: the weekend is not a gap, the Tuesday is (not days with weekends missing)
    (["2024-01-05", "2024-01-08", "2024-01-10"], None, "B", "2024-01-08 00:00:00 -> 2024-01-10"),
    # days: Monday, Tuesday, Thursday of a week with its Sunday are days, not business days
    (["2024-01-07", "2024-01-08", "2024-01-09", "2024-01-11"], None, "D", "2024-01-09 00:00:00 -> 2024-01-11"),
    # local midnights across a DST change (23 hours apart) are a calendar day
    (["2024-03-30", "2024-03-31", "2024-04-02"], "Europe/Paris", "D",
     "2024-03-31 00:00:00+01:00 -> 2024-04-02 00:00:00+02:00"),
    (["2024-01-07", "2024-01-14", "2024-01-28"], None, "7D", "2024-01-14 00:00:00 -> 2024-01-28"),
])
def test_calendar_steps_are_inferred_despite_a_gap(dates, tz, freq, gap):
    ds = pd.DatetimeIndex(pd.to_datetime(dates))
    with pytest.raises(DataValidationError) as info:
        from_frame(_one_series(ds.tz_localize(tz) if tz else ds))
    msg = str(info.value)
    assert f"irregular at frequency '{freq}'" in msg and gap in msg and "1 missing step(s)" in msg, msg


def test_long_calendar_series_with_a_gap_keep_their_pandas_name():
    for freq, name in [("W", "W-SUN"), ("B", "B"), ("QS", "QS-OCT"), ("YS", "YS-JAN")]:
        ds = pd.date_range("2024-01-01", periods=30, freq=freq).delete(12)
        with pytest.raises(DataValidationError, match=rf"irregular at frequency '{name}'.*: 1 missing step"):
            from_frame(_one_series(ds))


def test_half_months_pandas_does_not_infer_are_regular():
    coll = from_frame(_one_series(pd.date_range("2024-01-15", periods=6, freq="SMS")))
    assert coll.freq == "SMS-15"
    assert list(coll.future_index(0, 2)) == [pd.Timestamp("2024-04-15"), pd.Timestamp("2024-05-01")]


def test_two_timestamps_are_one_step_apart():
    assert from_frame(_one_series(pd.to_datetime(["2024-01-01 00:00", "2024-01-01 03:00"]))).freq == "3h"
    paris = pd.DatetimeIndex(pd.to_datetime(["2024-03-30", "2024-03-31"])).tz_localize("Europe/Paris")
    assert from_frame(_one_series(paris)).freq == "D"  # 23 hours apart, one calendar day


@pytest.mark.parametrize("steps, message", [
    ([0, 2, 3], r"integer step 1: gaps after row 0 \(0 -> 2: 1 missing step"),
    ([0, 1, 3], r"integer step 1: gaps after row 1 \(1 -> 3: 1 missing step"),
    ([0, 2, 4, 5], r"integer step 1: gaps after row 0 \(0 -> 2: 1 missing step\(s\)\); after row 1"),
    ([10, 13, 15], r"integer step 2: gaps after row 0 \(10 -> 13: off the grid\)"),
])
def test_integer_steps_follow_the_same_rule(steps, message):
    with pytest.raises(DataValidationError, match=message):
        from_frame(_one_series(np.array(steps, dtype=np.int64)))


def test_short_series_named():
    coll = from_frame(long_frame(n=30, ids=("a",)))
    coll.check_min_length(20)
    df = pd.concat([long_frame(n=30, ids=("a",)), long_frame(n=8, ids=("tiny",))], ignore_index=True)
    with pytest.raises(DataValidationError, match=r"shorter than context \+ horizon = 12 rows: 'tiny' \(8 rows\)"):
        from_frame(df).check_min_length(12)


def test_fill_gaps_is_explicit():
    df = long_frame().drop(index=[7, 8]).reset_index(drop=True)
    filled = fill_gaps(df, "h")
    coll = from_frame(filled)
    assert coll.lengths == [30, 30] and coll.masks[0][:, 0].sum() == 28


def test_arrays():
    coll = from_array(np.arange(12.0).reshape(6, 2), start="2024-01-01", freq="D")
    assert coll.channels == ["y0", "y1"] and coll.index[0][-1] == pd.Timestamp("2024-01-06")
    with pytest.raises(DataValidationError, match=r"\+/-inf at row 2"):
        from_array([1.0, 2.0, np.inf])
    with pytest.raises(DataValidationError, match="empty"):
        from_array([])
    with pytest.raises(DataValidationError, match=r"\[T\] or \[T, C\]"):
        from_array(np.zeros((2, 2, 2)))
    with pytest.raises(DataValidationError, match="pandas or polars DataFrame"):
        from_frame(np.zeros((3, 2)))


# ------------------------------------------------------------- time zones, integer steps, ids


@pytest.mark.parametrize("flavour", ["pandas", "polars"])
def test_time_zones_are_kept_and_daily_steps_follow_the_calendar(flavour):
    """A tz-aware ``ds`` stays in its zone (index, gaps in messages, steps after the end); daily
    local midnights across a DST change are regular (a calendar day), hourly steps elapsed time."""
    days = pd.date_range("2024-03-28", periods=6, freq="D", tz="Europe/Paris")  # DST on 03-31
    df = pd.DataFrame({"unique_id": "a", "ds": days, "y": np.arange(6.0)})
    df = pl.from_pandas(df) if flavour == "polars" else df
    coll = from_frame(df)
    assert coll.freq == "D" and str(coll.index[0].tz) == "Europe/Paris"
    assert str(coll.future_index(0, 2)[0]) == "2024-04-03 00:00:00+02:00"
    back = to_frame(coll)
    assert str((back.to_pandas() if flavour == "polars" else back)["ds"].dtype).endswith("Europe/Paris]")
    hours = pd.date_range("2024-03-31 00:00", periods=6, freq="h", tz="Europe/Paris")
    gap = pd.DataFrame({"unique_id": "a", "ds": hours.delete(3), "y": np.arange(5.0)})
    with pytest.raises(DataValidationError, match=r"\+02:00 -> .*\+02:00: 1 missing step"):
        from_frame(gap, freq="h")
    with pytest.raises(DataValidationError, match=r"duplicate timestamps in 'ds': 2024-03-31 01:00:00\+01:00"):
        from_frame(pd.DataFrame({"unique_id": "a", "ds": hours[[0, 1, 1]], "y": [1.0, 2, 3]}))


def test_integer_time_steps_are_steps_and_floats_are_refused():
    df = pd.DataFrame({"unique_id": "a", "ds": np.arange(10, 30, 2, dtype=np.int32), "y": np.arange(10.0)})
    coll = from_frame(df)
    assert coll.freq == 2 and list(coll.future_index(0, 3)) == [30, 32, 34]
    assert coll.time_dtype == np.int32 and to_frame(coll)["ds"].dtype == np.int32
    with pytest.raises(DataValidationError,
                       match=r"irregular at integer step 2: gaps after row 0 \(10 -> 14: 1 missing"):
        from_frame(df.drop(index=[1]))
    with pytest.raises(DataValidationError, match="freq must be None .* or a positive integer step"):
        from_frame(df, freq="h")
    with pytest.raises(DataValidationError, match=r"holds floats \(float64\).*Floats are not read as timestamps"):
        from_frame(df.astype({"ds": float}))
    filled = fill_gaps(df.drop(index=[1]), 2)
    assert filled["ds"].tolist() == list(range(10, 30, 2)) and np.isnan(filled["y"][1])


def test_ids_keep_their_type_and_colliding_ids_are_refused():
    df = long_frame(n=5, ids=(7, 3))
    coll = from_frame(df)
    assert coll.ids == [7, 3] and all(type(i) is int for i in coll.ids)
    assert to_frame(coll)["unique_id"].dtype == df["unique_id"].dtype
    pcoll = from_frame(pl.from_pandas(df.astype({"unique_id": "int32"})))
    assert to_frame(pcoll).schema["unique_id"] == pl.Int32
    mixed = df.astype({"unique_id": object})
    mixed.loc[mixed["unique_id"] == 3, "unique_id"] = "7"
    with pytest.raises(DataValidationError, match=r"ids 7 \(int\) and '7' \(str\) .* different values that read alike"):
        from_frame(mixed)
    floats = df.astype({"unique_id": object})
    floats.loc[floats["unique_id"] == 3, "unique_id"] = 7.0
    with pytest.raises(DataValidationError, match=r"ids 7 \(int\) and 7.0 \(float\) .* equal values"):
        from_frame(floats)
    ok = df.astype({"unique_id": object})
    ok.loc[ok["unique_id"] == 3, "unique_id"] = "x"
    assert from_frame(ok).ids == [7, "x"]
