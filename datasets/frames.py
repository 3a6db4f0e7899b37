"""User data: pandas / polars frames (long or wide) and numpy arrays, validated at the boundary.

Every problem raises :class:`DataValidationError` (a ``ValueError``) whose message names the
column, the series and the row or timestamp at fault, and what would be accepted instead. Missing
values (NaN / null) are allowed and become an explicit observed mask; nothing is silently filled,
dropped or reordered.

Layouts:

* **long**: one row per (series, timestamp): ``unique_id``, ``ds``, ``y`` and optional covariate
  columns named in ``covariates=``. Any other column is an error (nothing is dropped quietly).
* **wide**: a timestamp column (``ds`` or ``date``, or ``time_col=``) plus one numeric column per
  channel; one multivariate series.
* **numpy**: ``[T]`` (one univariate series) or ``[T, C]`` (one series with C channels), with an
  optional ``start`` and ``freq``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

__all__ = [
    "DataValidationError",
    "SeriesCollection",
    "from_frame",
    "from_array",
    "fill_gaps",
    "to_frame",
    "period_freq",
]

_MAX_LISTED = 5


class DataValidationError(ValueError):
    """Input data violates a rule; the message says what, where, and what is accepted."""


@dataclass
class SeriesCollection:
    """Validated series, ready for windowing.

    Attributes:
        ids: series identifiers, in input order of first appearance.
        values: one float32 array per series, [T_i, C], NaN where missing.
        masks: one bool array per series, [T_i, C], True where observed.
        index: one DatetimeIndex per series (or ``None`` for integer-indexed arrays).
        freq: pandas frequency alias shared by every series (``None`` if unknown).
        channels: names of the C target channels.
        covariates: optional per-series float32 arrays [T_i, K] of covariates (NaN where missing).
        covariate_names: names of the K covariates.
        layout: ``"long"``, ``"wide"`` or ``"array"`` (how the input looked; outputs follow it).
        flavour: ``"pandas"``, ``"polars"`` or ``"numpy"``.
        id_col, time_col, target_col: column names used by the input (for output frames).
    """

    ids: list[str]
    values: list[np.ndarray]
    masks: list[np.ndarray]
    index: list[pd.DatetimeIndex | None]
    freq: str | None
    channels: list[str]
    covariates: list[np.ndarray] | None = None
    covariate_names: list[str] = field(default_factory=list)
    layout: str = "long"
    flavour: str = "pandas"
    id_col: str = "unique_id"
    time_col: str = "ds"
    target_col: str = "y"

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def lengths(self) -> list[int]:
        return [v.shape[0] for v in self.values]

    def check_min_length(self, min_length: int, what: str = "context + horizon") -> None:
        """Raise if a series has fewer than ``min_length`` rows."""
        short = [(i, n) for i, n in zip(self.ids, self.lengths) if n < min_length]
        if short:
            listed = ", ".join(f"{i!r} ({n} rows)" for i, n in short[:_MAX_LISTED])
            more = f" and {len(short) - _MAX_LISTED} more" if len(short) > _MAX_LISTED else ""
            raise DataValidationError(
                f"{len(short)} series shorter than {what} = {min_length} rows: {listed}{more}. "
                f"Use a shorter context / horizon, or leave those series out explicitly."
            )

    def future_index(self, i: int, horizon: int) -> pd.DatetimeIndex | np.ndarray:
        """The ``horizon`` timestamps after series ``i`` (integer steps if it has no timestamps)."""
        idx = self.index[i]
        n = self.lengths[i]
        if idx is None or self.freq is None:
            return np.arange(n, n + horizon)
        return pd.date_range(idx[-1], periods=horizon + 1, freq=self.freq)[1:]


# ---------------------------------------------------------------------------------------- helpers


def period_freq(freq: str) -> str:
    """The pandas *period* alias for a timestamp frequency (``"MS"`` -> ``"M"``, ``"QS"`` -> ``"Q"``).

    GluonTS represents series starts as ``pd.Period``; start-anchored offsets have no period alias.
    """
    off = to_offset(freq)
    months = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    name = type(off).__name__
    if name in ("MonthBegin", "MonthEnd"):
        return f"{off.n}M" if off.n != 1 else "M"
    if name in ("QuarterBegin", "QuarterEnd", "YearBegin", "YearEnd"):
        month = off.startingMonth if "Quarter" in name else off.month
        if name.endswith("Begin"):
            month = (month - 2) % 12 + 1  # a quarter / year starting in JAN ends in DEC
        letter = "Q" if "Quarter" in name else "Y"
        prefix = f"{off.n}" if off.n != 1 else ""
        return f"{prefix}{letter}-{months[month - 1]}"
    try:
        pd.Period("2000-01-01", freq=off.freqstr)
    except ValueError as err:
        raise DataValidationError(f"frequency {freq!r} has no pandas period equivalent ({err})") from err
    return off.freqstr


def _to_pandas(df: Any) -> tuple[pd.DataFrame, str]:
    if isinstance(df, pd.DataFrame):
        return df, "pandas"
    mod = type(df).__module__
    if mod.startswith("polars"):
        import polars as pl

        if isinstance(df, pl.LazyFrame):
            df = df.collect()
        return df.to_pandas(), "polars"
    raise DataValidationError(
        f"expected a pandas or polars DataFrame, got {type(df).__name__}; numpy arrays go through "
        f"from_array()"
    )


def _parse_times(col: pd.Series, name: str) -> pd.DatetimeIndex:
    if pd.api.types.is_datetime64_any_dtype(col):
        out = pd.DatetimeIndex(col)
    else:
        try:
            out = pd.DatetimeIndex(pd.to_datetime(col))
        except (ValueError, TypeError) as err:
            raise DataValidationError(
                f"column {name!r} must hold timestamps (datetime or parseable strings): {err}"
            ) from err
    if out.tz is not None:
        out = out.tz_convert("UTC").tz_localize(None)
    if out.isna().any():
        rows = np.flatnonzero(out.isna())[:_MAX_LISTED].tolist()
        raise DataValidationError(f"column {name!r} has missing timestamps at row(s) {rows}")
    return out


def _numeric(col: pd.Series, name: str, where: str = "") -> np.ndarray:
    """Column -> float64 array; NaN / None stay NaN; strings, booleans, inf are errors."""
    if pd.api.types.is_bool_dtype(col) or not (
        pd.api.types.is_numeric_dtype(col) or col.dtype == object
    ):
        raise DataValidationError(
            f"column {name!r}{where} must be numeric, got dtype {col.dtype}"
        )
    if col.dtype == object:
        conv = pd.to_numeric(col, errors="coerce")
        bad = conv.isna() & col.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataValidationError(
                f"column {name!r}{where} must be numeric; row {row} holds {col.iloc[row]!r}. "
                f"Missing values should be NaN / null (they become the observed mask)."
            )
        col = conv
    arr = col.to_numpy(dtype=np.float64, na_value=np.nan)
    inf = np.isinf(arr)
    if inf.any():
        rows = np.flatnonzero(inf)[:_MAX_LISTED].tolist()
        raise DataValidationError(
            f"column {name!r}{where} holds +/-inf at row(s) {rows}; use NaN for a missing value"
        )
    return arr


def _fmt(ts: Any) -> str:
    return str(ts)


def _gap_report(index: pd.DatetimeIndex, offset) -> list[str]:
    """Describe where consecutive timestamps are not one ``offset`` apart."""
    nxt = index[:-1] + offset
    bad = np.flatnonzero(np.asarray(nxt != index[1:]))
    lines = []
    for pos in bad[:_MAX_LISTED]:
        a, b = index[pos], index[pos + 1]
        steps = len(pd.date_range(a, b, freq=offset)) - 2 if b > a else None
        what = f"{steps} missing step(s)" if steps and steps > 0 else "off the grid"
        lines.append(f"after row {pos} ({_fmt(a)} -> {_fmt(b)}: {what})")
    if len(bad) > _MAX_LISTED:
        lines.append(f"... {len(bad) - _MAX_LISTED} more")
    return lines


def _infer_freq(index: pd.DatetimeIndex) -> str | None:
    """Best-supported frequency of a (sorted, unique) index: exact if regular, else the majority
    of short runs (so a gap does not hide the frequency that the gap breaks)."""
    if len(index) < 2:
        return None
    if len(index) >= 3:
        f = pd.infer_freq(index)
        if f is not None:
            return f
    votes: Counter = Counter()
    step = max(1, (len(index) - 5) // 200)
    for s in range(0, max(1, len(index) - 4), step):
        chunk = index[s:s + 5]
        if len(chunk) >= 3:
            f = pd.infer_freq(chunk)
            if f is not None:
                votes[f] += 1
    if votes:
        return votes.most_common(1)[0][0]
    diffs = np.diff(index.asi8)
    mode = Counter(diffs.tolist()).most_common(1)[0][0]
    return to_offset(pd.Timedelta(mode, unit="ns")).freqstr


def _check_index(index: pd.DatetimeIndex, series: str, time_col: str, freq: str | None) -> str | None:
    """Sorted, unique and regular at ``freq`` (inferred if None); returns the frequency."""
    if len(index) > 1:
        d = np.diff(index.asi8)
        if (d < 0).any():
            pos = int(np.flatnonzero(d < 0)[0])
            raise DataValidationError(
                f"series {series!r}: column {time_col!r} is not sorted: row {pos + 1} "
                f"({_fmt(index[pos + 1])}) comes after row {pos} ({_fmt(index[pos])}). Sort by "
                f"{time_col!r} first (titans-ts never reorders rows for you)."
            )
        if (d == 0).any():
            dups = index[1:][d == 0].unique()[:_MAX_LISTED]
            raise DataValidationError(
                f"series {series!r}: duplicate timestamps in {time_col!r}: "
                f"{', '.join(_fmt(t) for t in dups)}. Each timestamp may appear once per series."
            )
    f = freq if freq is not None else _infer_freq(index)
    if f is None:
        return None
    try:
        offset = to_offset(f)
    except ValueError as err:
        raise DataValidationError(f"freq={f!r} is not a pandas frequency alias: {err}") from err
    if len(index) and not offset.is_on_offset(index[0]):
        raise DataValidationError(
            f"series {series!r}: first timestamp {_fmt(index[0])} is not on the {f!r} grid"
        )
    gaps = _gap_report(index, offset)
    if gaps:
        raise DataValidationError(
            f"series {series!r} is irregular at frequency {f!r}: gaps " + "; ".join(gaps)
            + ". Reindex it to a regular grid with NaN for the missing rows "
            "(titans_ts.datasets.fill_gaps does that explicitly; NaN becomes observed-mask 0)."
        )
    return offset.freqstr


def _unify_freq(found: dict[str, str | None], given: str | None) -> str | None:
    if given is not None:
        return to_offset(given).freqstr
    freqs = {f for f in found.values() if f is not None}
    if len(freqs) > 1:
        by = {}
        for sid, f in found.items():
            by.setdefault(f, []).append(sid)
        parts = "; ".join(f"{f!r}: {ids[:3]}" for f, ids in by.items() if f is not None)
        raise DataValidationError(
            f"series have mixed frequencies ({parts}). All series must share one frequency; "
            f"resample them or pass freq= to check against one."
        )
    return freqs.pop() if freqs else None


# ----------------------------------------------------------------------------------- public API


def from_frame(
    df: Any,
    *,
    id_col: str = "unique_id",
    time_col: str | None = None,
    target_col: str = "y",
    covariates: Sequence[str] | None = None,
    freq: str | None = None,
    layout: str = "auto",
) -> SeriesCollection:
    """Validate a pandas / polars frame and turn it into a :class:`SeriesCollection`.

    Args:
        df: pandas or polars DataFrame.
        id_col, time_col, target_col: column names of the long layout (``time_col`` defaults to
            ``ds``; for wide frames ``ds`` or ``date``).
        covariates: extra numeric columns of a long frame to keep as covariates.
        freq: pandas alias to check against; inferred (and required to be shared) if None.
        layout: ``"long"``, ``"wide"`` or ``"auto"`` (long if ``id_col`` and ``target_col`` exist).
    """
    pdf, flavour = _to_pandas(df)
    if layout not in ("auto", "long", "wide"):
        raise DataValidationError(f"layout must be 'auto', 'long' or 'wide', got {layout!r}")
    if pdf.shape[0] == 0 or pdf.shape[1] == 0:
        raise DataValidationError("the input frame is empty (no rows or no columns)")
    cols = [str(c) for c in pdf.columns]
    if len(set(cols)) != len(cols):
        dup = [c for c, n in Counter(cols).items() if n > 1]
        raise DataValidationError(f"duplicate column names: {dup}")
    pdf = pdf.copy(deep=False)
    pdf.columns = cols
    if layout == "auto":
        if id_col in cols and target_col not in cols:
            raise DataValidationError(
                f"the frame has the series column {id_col!r} but no target column {target_col!r}; "
                f"columns are {cols}. Long frames need {id_col!r}, a timestamp and {target_col!r} "
                f"(pass target_col= for another name, or layout='wide' for one column per channel)")
        layout = "long" if (id_col in cols and target_col in cols) else "wide"
    if time_col is None:
        time_col = "ds" if "ds" in cols or layout == "long" else ("date" if "date" in cols else "ds")
    if time_col not in cols:
        raise DataValidationError(
            f"no timestamp column {time_col!r}; columns are {cols}. A {layout} frame needs "
            + ("unique_id, ds, y (pass id_col= / time_col= / target_col= for other names)"
               if layout == "long" else "a timestamp column (ds or date, or time_col=) plus one "
               "numeric column per channel")
        )
    if layout == "long":
        return _from_long(pdf, flavour, id_col, time_col, target_col, covariates, freq)
    if covariates:
        raise DataValidationError("covariates= applies to long frames; in a wide frame every "
                                  "non-timestamp column is a channel")
    return _from_wide(pdf, flavour, time_col, freq)


def _from_long(pdf, flavour, id_col, time_col, target_col, covariates, freq) -> SeriesCollection:
    cols = list(pdf.columns)
    for need in (id_col, target_col):
        if need not in cols:
            raise DataValidationError(
                f"long frame has no column {need!r}; columns are {cols}. Long frames need "
                f"{id_col!r}, {time_col!r}, {target_col!r} (rename, or pass id_col= / target_col=)"
            )
    covariates = list(covariates or [])
    missing_cov = [c for c in covariates if c not in cols]
    if missing_cov:
        raise DataValidationError(f"covariate column(s) {missing_cov} not in the frame; columns are {cols}")
    known = {id_col, time_col, target_col, *covariates}
    unknown = [c for c in cols if c not in known]
    if unknown:
        raise DataValidationError(
            f"unknown column(s) {unknown}: a long frame holds {id_col!r}, {time_col!r}, "
            f"{target_col!r} and the covariates named in covariates=[...]. Name them as covariates "
            f"or drop them yourself (nothing is dropped silently)."
        )
    if pdf[id_col].isna().any():
        row = int(np.flatnonzero(pdf[id_col].isna().to_numpy())[0])
        raise DataValidationError(f"column {id_col!r} is missing at row {row}")
    times = _parse_times(pdf[time_col], time_col)
    y_all = _numeric(pdf[target_col], target_col)
    cov_all = [_numeric(pdf[c], c) for c in covariates]
    ids_arr = pdf[id_col].astype(str).to_numpy()
    order: dict[str, list[int]] = {}
    for pos, sid in enumerate(ids_arr):
        order.setdefault(sid, []).append(pos)
    ids, values, masks, index, covs, found = [], [], [], [], [], {}
    for sid, rows in order.items():
        rows_a = np.asarray(rows)  # rows of different series may interleave; each keeps its order
        idx = times[rows_a]
        found[sid] = _check_index(idx, sid, time_col, freq)
        y = y_all[rows_a][:, None].astype(np.float32)
        ids.append(sid)
        values.append(y)
        masks.append(~np.isnan(y))
        index.append(idx)
        if covariates:
            covs.append(np.stack([c[rows_a] for c in cov_all], axis=1).astype(np.float32))
    return SeriesCollection(
        ids=ids, values=values, masks=masks, index=index, freq=_unify_freq(found, freq),
        channels=[target_col], covariates=covs if covariates else None,
        covariate_names=covariates, layout="long", flavour=flavour, id_col=id_col,
        time_col=time_col, target_col=target_col,
    )


def _from_wide(pdf, flavour, time_col, freq) -> SeriesCollection:
    channels = [c for c in pdf.columns if c != time_col]
    if not channels:
        raise DataValidationError(f"wide frame has only the timestamp column {time_col!r}; "
                                  f"it needs at least one numeric channel column")
    times = _parse_times(pdf[time_col], time_col)
    f = _check_index(times, "wide frame", time_col, freq)
    vals = np.stack([_numeric(pdf[c], c) for c in channels], axis=1).astype(np.float32)
    return SeriesCollection(
        ids=["series_0"], values=[vals], masks=[~np.isnan(vals)], index=[times],
        freq=_unify_freq({"wide frame": f}, freq), channels=channels, layout="wide",
        flavour=flavour, time_col=time_col,
    )


def from_array(values: Any, start: Any = None, freq: str | None = None,
               channels: Sequence[str] | None = None, series_id: str = "series_0") -> SeriesCollection:
    """One series from a numpy array [T] or [T, C]; timestamps from ``start`` + ``freq`` if given."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise DataValidationError(f"values must be a numeric array: {err}") from err
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataValidationError(f"values must be [T] or [T, C], got shape {arr.shape}")
    if arr.size == 0:
        raise DataValidationError("values is empty")
    if np.isinf(arr).any():
        r, c = np.argwhere(np.isinf(arr))[0]
        raise DataValidationError(f"values holds +/-inf at row {r}, channel {c}; use NaN for missing")
    if channels is not None and len(channels) != arr.shape[1]:
        raise DataValidationError(f"channels names {len(channels)} columns, values has {arr.shape[1]}")
    if (start is None) != (freq is None):
        raise DataValidationError("give both start and freq for timestamps, or neither")
    index = pd.date_range(pd.Timestamp(start), periods=arr.shape[0], freq=freq) if start is not None else None
    arr32 = arr.astype(np.float32)
    return SeriesCollection(
        ids=[series_id], values=[arr32], masks=[~np.isnan(arr32)], index=[index],
        freq=to_offset(freq).freqstr if freq else None,
        channels=list(channels) if channels is not None else [f"y{i}" for i in range(arr.shape[1])]
        if arr.shape[1] > 1 else ["y"],
        layout="array", flavour="numpy",
    )


def fill_gaps(df: Any, freq: str, *, id_col: str = "unique_id", time_col: str = "ds") -> Any:
    """Reindex every series of a long frame (or a wide frame) onto a regular ``freq`` grid, with
    NaN in the inserted rows (which then count as unobserved). Returns the input's flavour."""
    pdf, flavour = _to_pandas(df)
    pdf = pdf.copy()
    pdf[time_col] = _parse_times(pdf[time_col], time_col)
    if id_col in pdf.columns:
        parts = []
        for sid, part in pdf.groupby(id_col, sort=False):
            part = part.set_index(time_col).sort_index()
            grid = pd.date_range(part.index[0], part.index[-1], freq=freq)
            part = part.reindex(grid)
            part[id_col] = sid
            parts.append(part.rename_axis(time_col).reset_index())
        out = pd.concat(parts, ignore_index=True)[list(pdf.columns)]
    else:
        part = pdf.set_index(time_col).sort_index()
        grid = pd.date_range(part.index[0], part.index[-1], freq=freq)
        out = part.reindex(grid).rename_axis(time_col).reset_index()[list(pdf.columns)]
    if flavour == "polars":
        import polars as pl

        return pl.from_pandas(out)
    return out


def to_frame(coll: SeriesCollection, flavour: str | None = None) -> Any:
    """The inverse of :func:`from_frame`: long (``unique_id``, ``ds``, channels...) or wide."""
    flavour = flavour or coll.flavour
    parts = []
    for i, sid in enumerate(coll.ids):
        idx = coll.index[i]
        part = pd.DataFrame(coll.values[i], columns=coll.channels)
        part.insert(0, coll.time_col, idx if idx is not None else np.arange(len(part)))
        if coll.covariates is not None:
            for k, name in enumerate(coll.covariate_names):
                part[name] = coll.covariates[i][:, k]
        if coll.layout == "long":
            part.insert(0, coll.id_col, sid)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    if flavour == "polars":
        import polars as pl

        return pl.from_pandas(out)
    return out
