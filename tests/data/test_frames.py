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
