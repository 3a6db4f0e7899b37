"""Time columns of user frames: timestamps (time zones kept) or integer steps.

A time column is read into one of two kinds of index:

* a ``DatetimeIndex`` (nanoseconds) in the data's own zone: a tz-aware column stays in its zone
  (outputs, error messages and saved files keep it), a naive one stays naive. Sub-daily steps
  (``h``, ``15min``, ...) are regular in elapsed time; daily and longer steps (``D``, ``W``,
  ``MS``, ...) in the wall-clock calendar, so local midnights across a DST change are one day apart.
* an integer ``Index`` (int64): integer time steps (0, 1, 2, ... or any regular integer grid);
  the frequency is then the integer step (inferred, or ``freq=<int>``) and forecasts continue
  the integers. They are never read as nanoseconds since 1970.

Float time columns are refused (a float step is ambiguous: seconds? days? rounded indices?).
The dtype the column had is kept (:func:`output_dtype`) so output frames give it back.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

__all__ = ["parse_time_column", "is_integer_index", "check_index", "unify_freq", "next_steps",
           "fmt", "restore_dtype", "dtype_name", "dtype_from_name", "in_zone_of", "MAX_LISTED"]

MAX_LISTED = 5


def _error(msg: str):
    from .frames import DataValidationError

    return DataValidationError(msg)


def is_integer_index(idx: Any) -> bool:
    """Whether ``idx`` is an index of integer time steps."""
    return isinstance(idx, pd.Index) and not isinstance(idx, pd.DatetimeIndex) and \
        pd.api.types.is_integer_dtype(idx.dtype)


def fmt(ts: Any) -> str:
    """A time step for messages (a timestamp in its own zone, or an integer)."""
    return str(ts)


def parse_time_column(col: pd.Series, name: str) -> tuple[pd.Index, Any]:
    """The column as an index (see the module docstring) and the dtype outputs should have."""
    if pd.api.types.is_bool_dtype(col):
        raise _error(f"column {name!r} holds booleans; it must hold timestamps or integer time steps")
    if pd.api.types.is_integer_dtype(col) or (col.dtype == object and
                                              pd.api.types.infer_dtype(col, skipna=True) == "integer"):
        if col.isna().any():
            rows = np.flatnonzero(col.isna().to_numpy())[:MAX_LISTED].tolist()
            raise _error(f"column {name!r} has missing time steps at row(s) {rows}")
        out_dtype = col.dtype if pd.api.types.is_integer_dtype(col) else np.dtype("int64")
        return pd.Index(col.to_numpy(dtype=np.int64), dtype=np.int64), out_dtype
    if pd.api.types.is_float_dtype(col) or (col.dtype == object and pd.api.types.infer_dtype(
            col, skipna=True) in ("floating", "mixed-integer-float", "decimal")):
        raise _error(
            f"column {name!r} holds floats ({col.dtype}); time steps must be timestamps or integers. "
            f"Whole numbers of steps: convert with .astype('int64'); seconds or days since an "
            f"epoch: pd.to_datetime(..., unit='s' / 'D'). Floats are not read as timestamps.")
    if pd.api.types.is_datetime64_any_dtype(col):
        out = pd.DatetimeIndex(col)
    else:
        if pd.api.types.is_timedelta64_dtype(col):
            raise _error(f"column {name!r} holds durations ({col.dtype}); it must hold timestamps "
                         f"or integer time steps")
        try:
            out = pd.DatetimeIndex(pd.to_datetime(col))
        except (ValueError, TypeError) as err:
            raise _error(f"column {name!r} must hold timestamps (datetime or parseable strings): "
                         f"{err}") from err
    if out.isna().any():
        rows = np.flatnonzero(out.isna())[:MAX_LISTED].tolist()
        raise _error(f"column {name!r} has missing timestamps at row(s) {rows}")
    out_dtype = out.dtype
    return out.as_unit("ns"), out_dtype


def restore_dtype(values: Any, dtype: Any) -> pd.Series:
    """``values`` (timestamps or integers) as a series of ``dtype`` when it is known and the cast
    works (outputs give the input's dtype back: its zone, unit or integer width)."""
    out = pd.Series(values)
    if dtype is None:
        return out
    try:
        return out.astype(dtype)
    except (TypeError, ValueError, OverflowError):
        return out


def dtype_name(dtype: Any) -> str | None:
    """A dtype as text for a saved file (None when unknown)."""
    return None if dtype is None else str(dtype)


def dtype_from_name(name: str | None) -> Any:
    """The inverse of :func:`dtype_name` (None when the name is not a pandas dtype)."""
    if not name:
        return None
    try:
        return pd.api.types.pandas_dtype(name)
    except TypeError:
        return None


def in_zone_of(known: pd.Index | None, new: pd.Index | None, series: Any, time_col: str,
               what: str = "update() rows") -> pd.Index | None:
    """``new`` time steps as ``known``'s kind and zone: zoned timestamps are converted to
    ``known``'s zone (the same instants); naive against zoned timestamps (either way), and
    timestamps against integer steps, are an error (which wall clock naive ones read is
    unknown)."""
    if known is None or new is None:
        return new
    dated = isinstance(known, pd.DatetimeIndex), isinstance(new, pd.DatetimeIndex)
    if dated[0] != dated[1]:
        kinds = ("timestamps", "integer time steps")
        raise _error(f"{what} of series {series!r} have {kinds[not dated[1]]} in {time_col!r}; the "
                     f"forecaster was fitted on {kinds[not dated[0]]}")
    if not dated[0] or (known.tz is None and new.tz is None):
        return new
    if known.tz is not None and new.tz is not None:
        return new.tz_convert(known.tz)
    if known.tz is None:
        raise _error(f"{what} of series {series!r} have timestamps in zone {new.tz}; the forecaster "
                     f"was fitted on naive timestamps (no zone). Pass naive timestamps on the fit data's "
                     f"wall clock (e.g. df[{time_col!r}].dt.tz_convert(ZONE).dt.tz_localize(None)), or fit "
                     f"again on zoned ones")
    raise _error(f"{what} of series {series!r} have naive timestamps (no zone); the forecaster was "
                 f"fitted on timestamps in zone {known.tz}. Give them their zone: "
                 f"df[{time_col!r}].dt.tz_localize({str(known.tz)!r}) if they are that zone's wall "
                 f"clock, .dt.tz_localize('UTC') if they are UTC (they are converted to {known.tz})")


# ------------------------------------------------------------------------------- regularity


def _sub_daily(offset) -> bool:
    return isinstance(offset, pd.offsets.Tick) and pd.Timedelta(offset) < pd.Timedelta(days=1)


def _wall(index: pd.DatetimeIndex, offset) -> pd.DatetimeIndex:
    """The index on which ``offset`` steps are counted: elapsed time for sub-daily steps, the
    wall-clock calendar (zone dropped) for daily and longer ones."""
    if index.tz is not None and not _sub_daily(offset):
        return index.tz_localize(None)
    return index


def _gap_report(index: pd.DatetimeIndex, offset) -> list[str]:
    """Where consecutive timestamps are not one ``offset`` apart (shown in the data's zone)."""
    wall = _wall(index, offset)
    nxt = wall[:-1] + offset
    bad = np.flatnonzero(np.asarray(nxt != wall[1:]))
    lines = []
    for pos in bad[:MAX_LISTED]:
        a, b = index[pos], index[pos + 1]
        steps = len(pd.date_range(a, b, freq=offset)) - 2 if b > a else None
        what = f"{steps} missing step(s)" if steps and steps > 0 else "off the grid"
        lines.append(f"after row {pos} ({fmt(a)} -> {fmt(b)}: {what})")
    if len(bad) > MAX_LISTED:
        lines.append(f"... {len(bad) - MAX_LISTED} more")
    return lines


_DAY_NS = 86_400 * 10**9


def _short_run_freqs(index: pd.DatetimeIndex) -> list[str]:
    """Frequencies pandas recognises on short runs (5 steps) of the index, most common first
    (ties: the one seen first); at most 200 runs are looked at."""
    votes: Counter = Counter()
    every = max(1, (len(index) - 5) // 200)
    for s in range(0, max(1, len(index) - 4), every):
        chunk = index[s:s + 5]
        if len(chunk) >= 3:
            f = pd.infer_freq(chunk)
            if f is not None:
                votes[f] += 1
    return [f for f, _ in votes.most_common()]


def _calendar_candidates(first: pd.Timestamp) -> list[str]:
    """Calendar steps (not fixed durations) the first timestamp can start: business days, weeks
    on its weekday, half months, months, quarters and years anchored on its month (spelled as
    pandas spells them)."""
    names = ["B", f"W-{first.day_name()[:3].upper()}", "SMS", "MS", "ME"]
    for base in ("QS", "QE", "YS", "YE"):
        name = f"{base}-{first.month_name()[:3].upper()}"
        names.append(pd.infer_freq(pd.date_range(first, periods=5, freq=name)) or name)
    return names


def _grid_steps(index: pd.DatetimeIndex, offset) -> int | None:
    """How many ``offset`` steps the grid from ``index[0]`` to ``index[-1]`` has, when every
    timestamp lies on it (every difference a whole number of steps); None when one does not."""
    wall = _wall(index, offset)
    if isinstance(offset, pd.offsets.Tick):
        step = pd.Timedelta(offset).value
        span = wall.asi8 - wall.asi8[0]
        if (span % step).any():
            return None
        return int(span[-1] // step)
    if not offset.is_on_offset(wall[0]):
        return None
    grid = pd.date_range(wall[0], wall[-1], freq=offset)
    return len(grid) - 1 if wall.isin(grid).all() else None


def _infer_freq(index: pd.DatetimeIndex) -> str | None:
    """The frequency of a (sorted, unique) index: pandas' when the index is regular; else the
    step that explains the index (every timestamp a whole number of steps after the first, so
    that a missing row reads as a gap wherever it is), chosen among the steps the data show: the
    runs pandas recognises, the shortest difference (in calendar days where every difference is
    whole days, in elapsed time below a day) and the calendar steps the first timestamp starts
    (business days, weeks, half months, months, quarters, years). Where several explain it, the
    coarsest (fewest steps: business days rather than days, months rather than days); at equal
    steps the first in that order. When none does (timestamps off any grid): the most common run
    frequency, else the most common difference (ties: the shorter), and the gap report says which
    rows are off its grid."""
    if len(index) < 2:
        return None
    index = index.as_unit("ns")
    if len(index) >= 3:
        f = pd.infer_freq(index)
        if f is not None:
            return f
    runs = _short_run_freqs(index)
    candidates = list(runs)
    wall = np.diff(index.tz_localize(None).asi8 if index.tz is not None else index.asi8)
    if (wall > 0).all() and not (wall % _DAY_NS).any():  # whole calendar days apart
        days = int(wall.min() // _DAY_NS)
        candidates.append("D" if days == 1 else f"{days}D")
    elapsed = np.diff(index.asi8)
    if elapsed.min() < _DAY_NS:
        candidates.append(to_offset(pd.Timedelta(int(elapsed.min()), unit="ns")).freqstr)
    candidates += _calendar_candidates(index[0])
    best = None
    for f in dict.fromkeys(candidates):  # in order, once each
        steps = _grid_steps(index, to_offset(f))
        if steps is not None and (best is None or steps < best[0]):
            best = (steps, f)
    if best is not None:
        return best[1]
    if runs:
        return runs[0]
    counts = Counter(elapsed.tolist())
    mode = min(counts, key=lambda d: (-counts[d], d))
    return to_offset(pd.Timedelta(mode, unit="ns")).freqstr


def _check_order(index: pd.Index, series: Any, time_col: str) -> None:
    raw = index.asi8 if isinstance(index, pd.DatetimeIndex) else index.to_numpy()
    if len(raw) < 2:
        return
    d = np.diff(raw)
    if (d < 0).any():
        pos = int(np.flatnonzero(d < 0)[0])
        raise _error(
            f"series {series!r}: column {time_col!r} is not sorted: row {pos + 1} "
            f"({fmt(index[pos + 1])}) comes after row {pos} ({fmt(index[pos])}). Sort by "
            f"{time_col!r} first (titans-ts never reorders rows for you).")
    if (d == 0).any():
        dups = index[1:][d == 0].unique()[:MAX_LISTED]
        raise _error(f"series {series!r}: duplicate timestamps in {time_col!r}: "
                     f"{', '.join(fmt(t) for t in dups)}. Each timestamp may appear once per series.")


def _int_step(freq: Any, time_col: str) -> int | None:
    if freq is None:
        return None
    if isinstance(freq, (bool, np.bool_)) or not isinstance(freq, (int, np.integer)) or freq < 1:
        raise _error(f"column {time_col!r} holds integer time steps: freq must be None (inferred) "
                     f"or a positive integer step, got {freq!r}")
    return int(freq)


def _check_int_index(index: pd.Index, series: Any, time_col: str, freq: Any) -> int | None:
    step = _int_step(freq, time_col)
    vals = index.to_numpy()
    if len(vals) < 2:
        return step
    d = np.diff(vals)
    if step is None:  # the shortest difference where it explains the index (as for timestamps)
        step = int(d.min())
        if (d % step).any():  # off any grid: the most common difference (ties: the shorter)
            counts = Counter(d.tolist())
            step = int(min(counts, key=lambda s: (-counts[s], s)))
    bad = np.flatnonzero(d != step)
    if len(bad):
        parts = []
        for pos in bad[:MAX_LISTED]:
            gap = int(d[pos])
            what = f"{gap // step - 1} missing step(s)" if gap % step == 0 else "off the grid"
            parts.append(f"after row {pos} ({vals[pos]} -> {vals[pos + 1]}: {what})")
        if len(bad) > MAX_LISTED:
            parts.append(f"... {len(bad) - MAX_LISTED} more")
        raise _error(
            f"series {series!r} is irregular at integer step {step}: gaps " + "; ".join(parts)
            + ". Reindex it to a regular grid with NaN for the missing rows (NaN becomes observed-mask 0).")
    return step


def check_index(index: pd.Index, series: Any, time_col: str, freq: Any) -> Any:
    """Sorted, unique and regular at ``freq`` (inferred if None); returns the frequency (a pandas
    alias, or the integer step of an integer index)."""
    _check_order(index, series, time_col)
    if is_integer_index(index):
        return _check_int_index(index, series, time_col, freq)
    if freq is not None and not isinstance(freq, str):
        raise _error(f"freq must be a pandas frequency alias such as 'h' or 'D' for timestamps, got "
                     f"{freq!r} (an integer step applies to integer time steps)")
    f = freq if freq is not None else _infer_freq(index)
    if f is None:
        return None
    try:
        offset = to_offset(f)
    except ValueError as err:
        raise _error(f"freq={f!r} is not a pandas frequency alias: {err}") from err
    if len(index) and not offset.is_on_offset(_wall(index, offset)[0]):
        raise _error(f"series {series!r}: first timestamp {fmt(index[0])} is not on the {f!r} grid")
    gaps = _gap_report(index, offset)
    if gaps:
        raise _error(
            f"series {series!r} is irregular at frequency {f!r}: gaps " + "; ".join(gaps)
            + ". Reindex it to a regular grid with NaN for the missing rows "
            "(titans_ts.datasets.fill_gaps does that explicitly; NaN becomes observed-mask 0).")
    return offset.freqstr


def unify_freq(found: dict, given: Any, integer: bool = False) -> Any:
    """The one frequency every series shares (``given`` if not None)."""
    if given is not None:
        return _int_step(given, "ds") if integer else to_offset(given).freqstr
    freqs = {f for f in found.values() if f is not None}
    if len(freqs) > 1:
        by: dict = {}
        for sid, f in found.items():
            by.setdefault(f, []).append(sid)
        parts = "; ".join(f"{f!r}: {ids[:3]}" for f, ids in by.items() if f is not None)
        raise _error(f"series have mixed frequencies ({parts}). All series must share one frequency; "
                     f"resample them or pass freq= to check against one.")
    return freqs.pop() if freqs else None


def next_steps(index: pd.Index, freq: Any, n: int) -> pd.Index:
    """The ``n`` time steps after ``index[-1]`` at ``freq`` (same zone; integers continue)."""
    if is_integer_index(index):
        step = 1 if freq is None else int(freq)
        return pd.Index(int(index[-1]) + step * np.arange(1, n + 1, dtype=np.int64), dtype=np.int64)
    offset = to_offset(freq)
    if index.tz is not None and not _sub_daily(offset):
        wall = pd.date_range(index[-1].tz_localize(None), periods=n + 1, freq=offset)[1:]
        out = wall.tz_localize(index.tz, nonexistent="shift_forward", ambiguous="NaT")
        if out.isna().any():
            raise _error(f"the steps after {fmt(index[-1])} at {freq!r} fall on a time that "
                         f"occurs twice in zone {index.tz} (a DST change); use UTC timestamps")
        return out.as_unit("ns")
    return pd.date_range(index[-1], periods=n + 1, freq=offset)[1:].as_unit("ns")
