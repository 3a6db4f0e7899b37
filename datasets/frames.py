"""User data: pandas / polars frames (long or wide) and numpy arrays, validated at the boundary.

Every problem raises :class:`DataValidationError` (a ``ValueError``) whose message names the
column, the series and the row or timestamp at fault, and what would be accepted instead. Missing
values (NaN / null) are allowed and become an explicit observed mask; nothing is silently filled,
dropped or reordered.

Layouts:

* **long**: one row per (series, timestamp): ``unique_id``, ``ds``, ``y`` and optional covariate
  columns named in ``covariates=``. Any other column is an error (nothing is dropped quietly).
* **wide**: a timestamp column (``ds`` or ``date``, or ``time_col=``) plus one numeric column per
  channel (the columns named in ``covariates=`` are covariates instead); one multivariate series.
* **numpy**: ``[T]`` (one univariate series) or ``[T, C]`` (one series with C channels), with an
  optional ``start`` and ``freq``.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from .timeindex import (
    check_index,
    fmt,
    is_integer_index,
    next_steps,
    parse_time_column,
    restore_dtype,
    unify_freq,
)

__all__ = [
    "DataValidationError",
    "SeriesCollection",
    "from_frame",
    "from_array",
    "fill_gaps",
    "to_frame",
    "period_freq",
    "restore_polars",
    "polars_dtype_to_json",
    "polars_dtype_from_json",
]

_MAX_LISTED = 5
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class DataValidationError(ValueError):
    """Input data violates a rule; the message says what, where, and what is accepted."""


@dataclass
class SeriesCollection:
    """Validated series, ready for windowing.

    Attributes:
        ids: series identifiers (with the id column's own types), in order of first appearance.
        values: one float64 array per series, [T_i, C], NaN where missing (the values as given:
            models centre and scale them in float64 before any float32 arithmetic).
        masks: one bool array per series, [T_i, C], True where observed.
        index: one index per series: a DatetimeIndex in the data's zone, an integer index
            (integer time steps), or ``None`` (arrays without timestamps).
        freq: pandas frequency alias shared by every series, or the integer step of integer
            time steps (``None`` if unknown).
        channels: names of the C target channels.
        covariates: optional per-series float64 arrays [T_i, K] of covariates (NaN where missing).
        covariate_names: names of the K covariates.
        layout: ``"long"``, ``"wide"`` or ``"array"`` (how the input looked; outputs follow it).
        flavour: ``"pandas"``, ``"polars"`` or ``"numpy"``.
        id_col, time_col, target_col: column names used by the input (for output frames).
        id_dtype, time_dtype: the dtypes the id and time columns had (output frames give them
            back: integer ids stay integers, timestamps keep their zone and unit).
        polars_dtypes: for polars input, the polars dtypes of the id and time columns (polars
            frames out give them back: an ``Enum`` id stays an ``Enum``, a ``Date`` a ``Date``,
            which the pandas dtypes they pass through cannot say).
    """

    ids: list[Any]
    values: list[np.ndarray]
    masks: list[np.ndarray]
    index: list[pd.Index | None]
    freq: Any
    channels: list[str]
    covariates: list[np.ndarray] | None = None
    covariate_names: list[str] = field(default_factory=list)
    layout: str = "long"
    flavour: str = "pandas"
    id_col: str = "unique_id"
    time_col: str = "ds"
    target_col: str = "y"
    id_dtype: Any = None
    time_dtype: Any = None
    polars_dtypes: dict | None = None

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
        short = [(i, n) for i, n in zip(self.ids, self.lengths, strict=True) if n < min_length]
        if short:
            listed = ", ".join(f"{i!r} ({n} rows)" for i, n in short[:_MAX_LISTED])
            more = f" and {len(short) - _MAX_LISTED} more" if len(short) > _MAX_LISTED else ""
            raise DataValidationError(
                f"{len(short)} series shorter than {what} = {min_length} rows: {listed}{more}. "
                f"Use a shorter context / horizon, or leave those series out explicitly."
            )

    def check_observed(self) -> None:
        """Raise if a series has no observed target value at all (nothing to learn or forecast
        from: a forecast would be made up from nothing)."""
        empty = [(sid, ch) for sid, m in zip(self.ids, self.masks, strict=True)
                 for c, ch in enumerate(self.channels) if not m[:, c].any()]
        if empty:
            listed = ", ".join(f"{sid!r}" + (f" (channel {ch!r})" if self.layout == "wide" else "")
                               for sid, ch in empty[:_MAX_LISTED])
            more = f" and {len(empty) - _MAX_LISTED} more" if len(empty) > _MAX_LISTED else ""
            raise DataValidationError(
                f"{len(empty)} series without a single observed value (every row is NaN / null): "
                f"{listed}{more}. There is nothing to learn from or forecast them; leave them out.")

    def future_index(self, i: int, horizon: int) -> pd.Index | np.ndarray:
        """The ``horizon`` time steps after series ``i`` (integer positions if it has no index)."""
        idx = self.index[i]
        n = self.lengths[i]
        if idx is None or (self.freq is None and not is_integer_index(idx)):
            return np.arange(n, n + horizon)
        return next_steps(idx, self.freq, horizon)

    def output_ids(self, ids: Sequence[Any]) -> pd.Series:
        """``ids`` as a column of the id column's dtype."""
        return restore_dtype(pd.Series(list(ids), dtype=object), self.id_dtype)

    def output_times(self, times: Any) -> pd.Series:
        """Time steps as a column of the time column's dtype (zone, unit, integer width)."""
        return restore_dtype(times, self.time_dtype)


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


def restore_polars(df: Any, dtypes: dict | None) -> Any:
    """Polars frame ``df`` with its columns named in ``dtypes`` cast back to those dtypes (a
    column whose cast fails, e.g. a Date column holding times of day, is left as it is)."""
    if not dtypes:
        return df
    import polars as pl

    casts = [pl.col(c).cast(t) for c, t in dtypes.items() if c in df.columns and df.schema[c] != t]
    for cast in casts:
        with contextlib.suppress(pl.exceptions.PolarsError, TypeError, ValueError):
            df = df.with_columns(cast)
    return df


def polars_dtype_to_json(dtype: Any) -> dict:
    """A polars dtype as plain data (for a saved file): its class name and parameters."""
    out: dict[str, Any] = {"name": type(dtype).__name__ if not isinstance(dtype, type) else dtype.__name__}
    for attr in ("time_unit", "time_zone"):
        if getattr(dtype, attr, None) is not None:
            out[attr] = getattr(dtype, attr)
    if out["name"] == "Enum":
        out["categories"] = [str(c) for c in dtype.categories.to_list()]
    return out


def polars_dtype_from_json(spec: Any) -> Any:
    """The inverse of :func:`polars_dtype_to_json` (None for anything it did not write)."""
    import polars as pl

    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        return None
    cls = getattr(pl, spec["name"], None)
    if not (isinstance(cls, type) and issubclass(cls, pl.DataType)):
        return None
    kwargs = {k: spec[k] for k in ("time_unit", "time_zone", "categories") if k in spec}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError):
        return None


def _to_pandas(df: Any) -> tuple[pd.DataFrame, str, dict | None]:
    """(the frame as pandas, its flavour, its polars schema if it was a polars frame)."""
    if isinstance(df, pd.DataFrame):
        return df, "pandas", None
    mod = type(df).__module__
    if mod.startswith("polars"):
        import polars as pl

        if isinstance(df, pl.LazyFrame):
            df = df.collect()
        return df.to_pandas(), "polars", dict(df.schema)
    raise DataValidationError(
        f"expected a pandas or polars DataFrame, got {type(df).__name__}; numpy arrays go through "
        f"from_array()"
    )


def _numeric(col: pd.Series, name: str, where: str = "", ids: pd.Series | None = None) -> np.ndarray:
    """Column -> float64 array; NaN / None stay NaN; strings, booleans, inf are errors (``ids``:
    the series column, to name the series of a bad row)."""
    if pd.api.types.is_bool_dtype(col) or not (
        pd.api.types.is_numeric_dtype(col) or col.dtype == object
    ):
        hint = "; cast booleans to 0 / 1" if pd.api.types.is_bool_dtype(col) else ""
        raise DataValidationError(
            f"column {name!r}{where} must be numeric, got dtype {col.dtype}{hint}"
        )
    if col.dtype == object:
        conv = pd.to_numeric(col, errors="coerce")
        bad = conv.isna() & col.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            series = f" (series {ids.iloc[row]!r})" if ids is not None else ""
            raise DataValidationError(
                f"column {name!r}{where} must be numeric; row {row}{series} holds {col.iloc[row]!r}. "
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
    huge = np.abs(arr) > _FLOAT32_MAX
    if huge.any():
        rows = np.flatnonzero(huge)[:_MAX_LISTED].tolist()
        raise DataValidationError(
            f"column {name!r}{where} holds values beyond float32's range (|x| > 3.4e38) at row(s) "
            f"{rows} (largest {np.nanmax(np.abs(arr)):.3g}); titans-ts computes in float32: "
            f"rescale the column (change its units)")
    return arr


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
        covariates: extra numeric columns to keep as covariates (in a wide frame: columns that
            are covariates, not channels).
        freq: pandas alias to check against; inferred (and required to be shared) if None.
        layout: ``"long"``, ``"wide"`` or ``"auto"`` (long if ``id_col`` and ``target_col`` exist).
    """
    pdf, flavour, schema = _to_pandas(df)
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
    auto = layout == "auto"
    if auto:
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
        coll = _from_long(pdf, flavour, id_col, time_col, target_col, covariates, freq)
    else:
        coll = _from_wide(pdf, flavour, time_col, freq, list(covariates or []), id_col if auto else None)
    if schema is not None:  # the polars dtypes of the id and time columns, for the frames out
        coll.polars_dtypes = {c: schema[c] for c in (id_col, time_col) if c in schema
                              and (c != id_col or layout == "long")}
    return coll


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
            f"{target_col!r} and the covariate columns named (TitansForecaster's hist_exog_list / "
            f"futr_exog_list, from_frame's covariates=). Name them as covariates or drop them "
            f"yourself (nothing is dropped silently)."
        )
    if pdf[id_col].isna().any():
        row = int(np.flatnonzero(pdf[id_col].isna().to_numpy())[0])
        raise DataValidationError(f"column {id_col!r} is missing at row {row}")
    times, time_dtype = parse_time_column(pdf[time_col], time_col)
    y_all = _numeric(pdf[target_col], target_col)
    cov_all = [_numeric(pdf[c], c, " (a covariate)", ids=pdf[id_col]) for c in covariates]
    ids_in, groups = _group_ids(pdf[id_col], id_col)
    ids, values, masks, index, covs, found = [], [], [], [], [], {}
    # rows of different series may interleave; each keeps its order
    for sid, rows_a in zip(ids_in, groups, strict=True):
        idx = times[rows_a]
        found[sid] = check_index(idx, sid, time_col, freq)
        y = y_all[rows_a][:, None]  # float64: a level of 1e8 keeps its unit-size signal
        ids.append(sid)
        values.append(y)
        masks.append(~np.isnan(y))
        index.append(idx)
        if covariates:
            covs.append(np.stack([c[rows_a] for c in cov_all], axis=1))
    return SeriesCollection(
        ids=ids, values=values, masks=masks, index=index,
        freq=unify_freq(found, freq, integer=is_integer_index(times)),
        channels=[target_col], covariates=covs if covariates else None,
        covariate_names=covariates, layout="long", flavour=flavour, id_col=id_col,
        time_col=time_col, target_col=target_col, id_dtype=pdf[id_col].dtype, time_dtype=time_dtype,
    )


def _typed(v: Any) -> str:
    return f"{v!r} ({type(v).__name__})"


def _group_ids(col: pd.Series, id_col: str) -> tuple[list[Any], list[np.ndarray]]:
    """The series ids (their own values and types, first-appearance order) and each one's rows.

    Ids that differ but read alike (1 and '1', or 1 and 1.0) are an error: merging them would
    join two series, keeping both would give two series the same name in text."""
    text = col.astype(str).to_numpy()
    codes, uniques = pd.factorize(text, sort=False)
    raw = col.to_numpy(dtype=object)
    first = np.unique(codes, return_index=True)[1]  # codes count up in order of first appearance
    ids = [raw[k] for k in first]
    if col.dtype == object or isinstance(col.dtype, pd.CategoricalDtype):
        kinds = pd.factorize(np.array([type(v).__name__ for v in raw], dtype=object))[0]
        pairs = pd.DataFrame({"code": codes, "kind": kinds, "pos": np.arange(len(raw))})
        pairs = pairs.drop_duplicates(["code", "kind"])
        clash = pairs[pairs.duplicated("code")]
        if len(clash):
            pos = int(clash["pos"].iloc[0])
            raise DataValidationError(
                f"ids {_typed(raw[first[codes[pos]]])} and {_typed(raw[pos])} in column {id_col!r} "
                f"are different values that read alike; give every id one type (e.g. "
                f"df[{id_col!r}].astype(str)) so that each series has one id")
    by_value: dict = {}
    for sid in ids:
        try:
            prev = by_value.setdefault(sid, sid)
        except TypeError:  # unhashable ids are compared as text only
            continue
        if prev is not sid and str(prev) != str(sid):
            raise DataValidationError(
                f"ids {_typed(prev)} and {_typed(sid)} in column {id_col!r} are equal values "
                f"written differently; give every id one type so that each series has one id")
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(uniques)))[:-1]
    return ids, np.split(order, bounds)


def _check_not_stacked(times: pd.Index, time_col: str, id_col: str) -> None:
    """A frame read as wide (it has no id column) whose time column goes back or repeats is
    most likely several series one after another without their ids: say so."""
    raw = times.asi8 if isinstance(times, pd.DatetimeIndex) else times.to_numpy()
    back = np.flatnonzero(np.diff(raw) <= 0) if len(raw) > 1 else np.empty(0, dtype=np.intp)
    if len(back):
        pos = int(back[0]) + 1
        how = "repeats" if raw[pos] == raw[pos - 1] else "goes back"
        raise DataValidationError(
            f"column {time_col!r} {how} at row {pos} ({fmt(times[pos])} after {fmt(times[pos - 1])}): the "
            f"frame has no id column {id_col!r}, so it was read as one wide series (one column per "
            f"channel). If it holds several series one after another (a long frame), give their ids in "
            f"a column {id_col!r} (or name it with id_col=); if it is one series, sort it by "
            f"{time_col!r} and keep one row per timestamp")


def _from_wide(pdf, flavour, time_col, freq, covariates: Sequence[str] = (),
               id_col: str | None = None) -> SeriesCollection:
    missing_cov = [c for c in covariates if c not in pdf.columns]
    if missing_cov:
        raise DataValidationError(f"covariate column(s) {missing_cov} not in the frame; columns are "
                                  f"{list(pdf.columns)}")
    channels = [c for c in pdf.columns if c != time_col and c not in covariates]
    if not channels:
        raise DataValidationError(f"wide frame has only the timestamp column {time_col!r}"
                                  f"{' and covariates' if covariates else ''}; "
                                  f"it needs at least one numeric channel column")
    times, time_dtype = parse_time_column(pdf[time_col], time_col)
    if id_col is not None:  # (the layout was guessed)
        _check_not_stacked(times, time_col, id_col)
    f = check_index(times, "wide frame", time_col, freq)
    vals = np.stack([_numeric(pdf[c], c) for c in channels], axis=1)
    covs = ([np.stack([_numeric(pdf[c], c, " (a covariate)") for c in covariates], axis=1)]
            if covariates else None)
    return SeriesCollection(
        ids=["series_0"], values=[vals], masks=[~np.isnan(vals)], index=[times],
        freq=unify_freq({"wide frame": f}, freq, integer=is_integer_index(times)), channels=channels,
        covariates=covs, covariate_names=list(covariates),
        layout="wide", flavour=flavour, time_col=time_col, time_dtype=time_dtype,
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
    return SeriesCollection(
        ids=[series_id], values=[arr], masks=[~np.isnan(arr)], index=[index],
        freq=to_offset(freq).freqstr if freq else None,
        channels=list(channels) if channels is not None else [f"y{i}" for i in range(arr.shape[1])]
        if arr.shape[1] > 1 else ["y"],
        layout="array", flavour="numpy",
    )


def fill_gaps(df: Any, freq: Any, *, id_col: str = "unique_id", time_col: str = "ds") -> Any:
    """Reindex every series of a long frame (or a wide frame) onto a regular ``freq`` grid (a
    pandas alias, or an integer step for integer time steps), with NaN in the inserted rows
    (which then count as unobserved). Returns the input's flavour; time zones are kept."""
    pdf, flavour, schema = _to_pandas(df)
    pdf = pdf.copy()
    times, time_dtype = parse_time_column(pdf[time_col], time_col)
    integer = is_integer_index(times)
    pdf[time_col] = times

    def grid(index):
        if integer:
            return pd.Index(np.arange(index[0], index[-1] + 1, int(freq)), dtype=np.int64)
        return pd.date_range(index[0], index[-1], freq=freq)

    if id_col in pdf.columns:
        parts = []
        for sid, part in pdf.groupby(id_col, sort=False, observed=True):  # (categories without rows: none)
            part = part.set_index(time_col).sort_index()
            part = part.reindex(grid(part.index))
            part[id_col] = sid
            parts.append(part.rename_axis(time_col).reset_index())
        out = pd.concat(parts, ignore_index=True)[list(pdf.columns)]
    else:
        part = pdf.set_index(time_col).sort_index()
        out = part.reindex(grid(part.index)).rename_axis(time_col).reset_index()[list(pdf.columns)]
    out[time_col] = restore_dtype(out[time_col], time_dtype).to_numpy() if integer else out[time_col]
    if schema is not None:  # a polars frame
        import polars as pl

        return restore_polars(pl.from_pandas(out), {c: schema[c] for c in (id_col, time_col) if c in schema})
    return out


def to_frame(coll: SeriesCollection, flavour: str | None = None) -> Any:
    """The inverse of :func:`from_frame`: long (``unique_id``, ``ds``, channels...) or wide."""
    flavour = flavour or coll.flavour
    parts = []
    for i, sid in enumerate(coll.ids):
        idx = coll.index[i]
        part = pd.DataFrame(coll.values[i], columns=coll.channels)
        part.insert(0, coll.time_col, coll.output_times(idx) if idx is not None else np.arange(len(part)))
        if coll.covariates is not None:
            for k, name in enumerate(coll.covariate_names):
                part[name] = coll.covariates[i][:, k]
        if coll.layout == "long":
            part.insert(0, coll.id_col, coll.output_ids([sid] * len(part)))
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    if flavour == "polars":
        import polars as pl

        return restore_polars(pl.from_pandas(out), coll.polars_dtypes)
    return out
