"""The covariates of :class:`TitansForecaster`, in neuralforecast's convention.

* ``hist_exog_list``: past-only covariates, columns of the training frame known up to the
  forecast origin (``covariates=`` is an alias of this kind); they enter the context only.
* ``futr_exog_list``: future-known covariates, columns of the training frame whose values over
  the horizon are known too (planned prices, promotions, weather forecasts); ``predict`` reads
  their next ``h`` values from ``futr_df``.
* ``time_features``: calendar features computed from the timestamps (None: off; "auto": the
  frequency's usual ones; or a list of names, :mod:`titans_ts.datasets.timefeatures`), as
  future-known covariates.
* ``stat_exog_list``: static covariates, columns of ``static_df`` (``unique_id`` plus one value
  per series): numeric columns are projections, string / categorical / boolean columns
  categories (a vocabulary fixed at ``fit``; a category unseen there is refused).

Units: past-only and future-known columns are scaled per series with the centre and spread of
their history (:mod:`.scaling`, as the targets are), calendar features are used as they are
(already in [-0.5, 0.5]), numeric static columns are standardised with the centre and spread
over the training series, fixed at ``fit``. Missing values (NaN / null) of dynamic and numeric
static covariates are unobserved (masked, as for targets); a missing category is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..datasets.forecast_frames import as_pandas
from ..datasets.frames import DataValidationError, SeriesCollection, _numeric
from ..datasets.timefeatures import resolve_time_features, time_feature_values
from ..datasets.timeindex import fmt, parse_time_column
from ..defaults import calendar_needed, tail_sizes, typical_length

__all__ = ["ExogSpec", "check_names", "make_spec", "read_static", "read_future", "calendar"]

_LISTED = 5


@dataclass
class ExogSpec:
    """What a fitted forecaster reads besides its targets (saved with it).

    Attributes:
        hist, futr: the past-only and future-known columns of the frames.
        time_features: the calendar features (future-known, computed from the timestamps).
        stat_real, stat_cat: the numeric and categorical columns of ``static_df``.
        vocab: per categorical column its categories (as text); a code is a position in it.
        stat_loc, stat_scale: the standardisation of each numeric static column.
    """

    hist: list = field(default_factory=list)
    futr: list = field(default_factory=list)
    time_features: list = field(default_factory=list)
    stat_real: list = field(default_factory=list)
    stat_cat: list = field(default_factory=list)
    vocab: dict = field(default_factory=dict)
    stat_loc: list = field(default_factory=list)
    stat_scale: list = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """The covariate columns of a frame: the past-only ones, then the future-known ones."""
        return [*self.hist, *self.futr]

    @property
    def n_hist(self) -> int:
        return len(self.hist)

    @property
    def n_futr(self) -> int:
        return len(self.futr) + len(self.time_features)

    @property
    def static(self) -> list[str]:
        return [*self.stat_real, *self.stat_cat]

    @property
    def cardinalities(self) -> tuple[int, ...]:
        return tuple(len(self.vocab[c]) for c in self.stat_cat)

    @property
    def any(self) -> bool:
        return bool(self.n_hist or self.n_futr or self.static)

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("hist", "futr", "time_features", "stat_real", "stat_cat",
                                              "vocab", "stat_loc", "stat_scale")}

    @classmethod
    def from_json(cls, d: dict) -> "ExogSpec":
        if not isinstance(d, dict) or set(d) != set(cls().to_json()):
            raise TypeError(f"the covariate description must hold {sorted(cls().to_json())}, got {d!r}")
        spec = cls(**d)
        text = all(isinstance(x, str) for key in ("hist", "futr", "time_features", "stat_real", "stat_cat")
                   for x in getattr(spec, key))
        if not text or set(spec.vocab) != set(spec.stat_cat) or len(spec.stat_loc) != len(spec.stat_real):
            raise TypeError("the covariate description does not fit together")
        return spec


def _names(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
            not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of column names, e.g. {name}=['price'], got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{name} names a column twice: {list(value)}")
    return list(value)


def check_names(est) -> tuple[list[str], list[str], list[str]]:
    """The forecaster's (hist, futr, static) column names, checked: lists of names, each column
    of one kind only, none of them the id, time or target column; ``covariates`` is an alias of
    ``hist_exog_list``."""
    hist = _names("hist_exog_list", est.hist_exog_list)
    alias = _names("covariates", est.covariates)
    if alias and hist:
        raise ValueError(f"covariates={alias} is an alias of hist_exog_list={hist}: give one of them")
    hist = hist or alias
    futr = _names("futr_exog_list", est.futr_exog_list)
    stat = _names("stat_exog_list", est.stat_exog_list)
    seen: dict = {}
    for kind, names in (("hist_exog_list", hist), ("futr_exog_list", futr), ("stat_exog_list", stat)):
        for n in names:
            if n in seen:
                raise ValueError(f"column {n!r} is in both {seen[n]} and {kind}; a covariate has one kind")
            seen[n] = kind
    reserved = {est.id_col, est.target_col, est.time_col or "ds"}
    clash = sorted(set(seen) & reserved)
    if clash:
        raise ValueError(f"covariate name(s) {clash} are the id, time or target column; name the covariate "
                         f"columns of the frames")
    return hist, futr, stat


def _is_categorical(col: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)


def _static_frame(static_df: Any, columns: list[str], id_col: str, ids: Sequence[Any],
                  where: str) -> pd.DataFrame:
    """``static_df`` as pandas, one row per series of ``ids`` in their order, checked."""
    try:
        pdf = as_pandas(static_df)
    except DataValidationError:
        raise DataValidationError(f"static_df must be a pandas or polars DataFrame with {id_col!r} and "
                                  f"{columns}, got {type(static_df).__name__}") from None
    cols = [str(c) for c in pdf.columns]
    need = [id_col, *columns]
    missing = [c for c in need if c not in cols]
    extra = [c for c in cols if c not in need]
    if missing or extra:
        raise DataValidationError(
            f"static_df{where} must hold exactly the columns {need} (the id column and stat_exog_list); "
            + (f"missing {missing}" if missing else "") + ("; " if missing and extra else "")
            + (f"unknown {extra} (name them in stat_exog_list, or leave them out)" if extra else ""))
    pdf = pdf.copy(deep=False)
    pdf.columns = cols
    keys = pdf[id_col].to_numpy(dtype=object)
    dup = pd.Series(keys).astype(str)
    dup = dup[dup.duplicated()].unique().tolist()
    if dup:
        raise DataValidationError(f"static_df{where} has more than one row for series {dup[:_LISTED]}; "
                                  f"it holds one row per series")
    pos = {}
    for k, key in enumerate(keys):
        pos[(type(key.item() if isinstance(key, np.generic) else key).__name__, str(key))] = k

    def key_of(sid):
        sid = sid.item() if isinstance(sid, np.generic) else sid
        return type(sid).__name__, str(sid)

    absent = [sid for sid in ids if key_of(sid) not in pos]
    if absent:
        text = {str(k): k for k in keys}
        hint = "".join(f"; {a!r} is there as {text[str(a)]!r} ({type(text[str(a)]).__name__}): ids are "
                       f"compared with their type" for a in absent[:1] if str(a) in text)
        raise DataValidationError(f"static_df{where} has no row for series {absent[:_LISTED]}"
                                  f"{' and more' if len(absent) > _LISTED else ''}; it needs one row per "
                                  f"series of the frame{hint}")
    wanted = {key_of(sid) for sid in ids}
    others = [keys[k] for key, k in pos.items() if key not in wanted]
    if others:
        raise DataValidationError(f"static_df{where} has rows for series {others[:_LISTED]} that are not "
                                  f"in the frame; it holds one row per series of the frame, no other")
    return pdf.iloc[[pos[key_of(sid)] for sid in ids]].reset_index(drop=True)


def _time_features(est, coll: SeriesCollection):
    """The ``time_features`` setting a fit uses: ``"data"`` (the default) is "auto" where
    :func:`titans_ts.defaults.calendar_needed` says the context cannot hold the year (timestamps
    with a frequency, no test-time memory), else None; any other value as given."""
    if isinstance(est.time_features, str) and est.time_features not in ("data", "auto"):
        raise ValueError(f"time_features must be 'data' (the default: calendar features where the data need "
                         f"them), None (off), 'auto' or a list of names, got {est.time_features!r}")
    if est.time_features != "data":
        return est.time_features
    if est.test_time_memory or not isinstance(coll.freq, str) or any(
            idx is None or not isinstance(idx, pd.DatetimeIndex) for idx in coll.index):
        return None
    lengths = [v.shape[0] for v in coll.values]
    val_size = est.h if est.val_size is None else int(est.val_size)
    typical = typical_length(lengths, est.h, tail_sizes(lengths, est.h, val_size))
    return "auto" if calendar_needed(coll.freq, typical, est.h) else None


def make_spec(est, hist: list, futr: list, stat: list, coll: SeriesCollection,
              static_df: Any) -> ExogSpec:
    """The covariate description of a new fit (categorical vocabularies and numeric static
    units from ``static_df``)."""
    names = resolve_time_features(_time_features(est, coll), coll.freq)
    if names and any(idx is None or not isinstance(idx, pd.DatetimeIndex) for idx in coll.index):
        raise ValueError("time_features need timestamps; these series have integer time steps. Leave "
                         "time_features off, or give the frame a datetime time column")
    spec = ExogSpec(hist=hist, futr=futr, time_features=names)
    if not stat:
        if static_df is not None:
            raise DataValidationError("static_df was given but stat_exog_list is empty; name its columns in "
                                      "stat_exog_list (TitansForecaster(stat_exog_list=[...]))")
        return spec
    if coll.layout != "long":
        raise DataValidationError("static covariates (stat_exog_list) need a long frame of several series; "
                                  f"this frame is {coll.layout} (one series)")
    if static_df is None:
        raise DataValidationError(f"stat_exog_list={stat}: fit needs static_df, a frame with "
                                  f"{[est.id_col, *stat]} and one row per series")
    table = _static_frame(static_df, stat, est.id_col, coll.ids, "")
    for c in stat:
        if _is_categorical(table[c]):
            values = table[c]
            if values.isna().any():
                sid = coll.ids[int(np.flatnonzero(values.isna().to_numpy())[0])]
                raise DataValidationError(f"static_df column {c!r} (categorical) is missing for series {sid!r}; "
                                          f"a category cannot be missing: give it its own value, e.g. 'unknown'")
            spec.stat_cat.append(c)
            spec.vocab[c] = sorted({str(v) for v in values})
        else:
            spec.stat_real.append(c)
            arr = _numeric(table[c], c, " (of static_df)")
            seen = arr[~np.isnan(arr)]
            loc = float(seen.mean()) if seen.size else 0.0
            spread = float(seen.std()) if seen.size else 0.0
            spec.stat_loc.append(loc)
            spec.stat_scale.append(spread if spread > 0 else (abs(loc) if loc else 1.0))
    return spec


def read_static(spec: ExogSpec, static_df: Any, ids: Sequence[Any], id_col: str,
                where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Numeric static values [N, Ks] (float32, standardised; NaN: missing) and category codes
    [N, Kc] (int64) of the series ``ids``, from ``static_df``."""
    table = _static_frame(static_df, spec.static, id_col, ids, where)
    real = np.zeros((len(ids), len(spec.stat_real)), np.float32)
    for j, c in enumerate(spec.stat_real):
        if _is_categorical(table[c]) and not table[c].isna().all():
            raise DataValidationError(f"static_df{where} column {c!r} must be numeric (it was at fit), got "
                                      f"dtype {table[c].dtype}")
        arr = _numeric(table[c], c, f" (of static_df{where})")
        real[:, j] = (arr - spec.stat_loc[j]) / spec.stat_scale[j]
    codes = np.zeros((len(ids), len(spec.stat_cat)), np.int64)
    for j, c in enumerate(spec.stat_cat):
        col = table[c]
        if not _is_categorical(col):
            raise DataValidationError(f"static_df{where} column {c!r} is categorical (text, category or boolean "
                                      f"at fit), got dtype {col.dtype}; give its categories as at fit")
        index = {v: k for k, v in enumerate(spec.vocab[c])}
        for n, (sid, v) in enumerate(zip(ids, col, strict=True)):
            if v is None or (isinstance(v, float) and np.isnan(v)):
                raise DataValidationError(f"static_df{where} column {c!r} (categorical) is missing for series "
                                          f"{sid!r}; the categories known from fit are {spec.vocab[c]}")
            if str(v) not in index:
                raise DataValidationError(
                    f"static_df{where} column {c!r}: series {sid!r} has category {v!r}, unseen at fit; the "
                    f"categories known from fit are {spec.vocab[c][:20]}. Fit again with it (or map it "
                    f"to a known category yourself)")
            codes[n, j] = index[str(v)]
    return real, codes


def read_future(spec: ExogSpec, futr_df: Any, coll: SeriesCollection, horizon: int, id_col: str,
                time_col: str) -> list[np.ndarray]:
    """Per series of ``coll`` the future-known columns over the ``horizon`` steps after its end,
    [horizon, Kf] float64 (NaN: unobserved; scaled in float64 like the history), from ``futr_df``."""
    if not spec.futr:
        if futr_df is not None:
            raise DataValidationError("futr_df was given but this forecaster has no future-known covariates "
                                      "(futr_exog_list is empty); leave futr_df out")
        return [np.zeros((horizon, 0), np.float64) for _ in coll.ids]
    if futr_df is None:
        raise DataValidationError(
            f"this forecaster reads the future-known covariates {spec.futr}: predict needs futr_df, a frame "
            f"with {([id_col] if coll.layout == 'long' else []) + [time_col, *spec.futr]} over the next "
            f"{horizon} steps of every series forecast (the trained horizon h, even when predict asks for "
            f"fewer)")
    try:
        pdf = as_pandas(futr_df)
    except DataValidationError:
        raise DataValidationError(f"futr_df must be a pandas or polars DataFrame, got "
                                  f"{type(futr_df).__name__}") from None
    long = coll.layout == "long"
    need = ([id_col] if long else []) + [time_col, *spec.futr]
    cols = [str(c) for c in pdf.columns]
    missing = [c for c in need if c not in cols]
    extra = [c for c in cols if c not in need]
    if missing or extra:
        raise DataValidationError(
            f"futr_df must hold exactly the columns {need}; " + (f"missing {missing}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unknown {extra} (past-only covariates and targets are not given for the future)"
               if extra else ""))
    pdf = pdf.copy(deep=False)
    pdf.columns = cols
    times, _ = parse_time_column(pdf[time_col], time_col)
    values = np.stack([_numeric(pdf[c], c, " (of futr_df)", ids=pdf[id_col] if long else None)
                       for c in spec.futr], 1)
    if long:
        keys = pdf[id_col].astype(str).to_numpy()
        rows_of = pd.Series(np.arange(len(pdf))).groupby(keys, sort=False).indices
    else:
        rows_of = {str(coll.ids[0]): np.arange(len(pdf))}
    known = {str(sid) for sid in coll.ids}
    others = [k for k in rows_of if k not in known]
    if others:
        raise DataValidationError(f"futr_df has rows for series {others[:_LISTED]} that are not forecast; it "
                                  f"holds the next {horizon} steps of each series forecast, no other")
    out = []
    for i, sid in enumerate(coll.ids):
        rows = rows_of.get(str(sid))
        expected = coll.future_index(i, horizon)
        label = f"series {sid!r}" if long else "the series"
        if rows is None:
            raise DataValidationError(f"futr_df has no rows for {label}; it needs {spec.futr} at its next "
                                      f"{horizon} steps ({fmt(expected[0])} .. {fmt(expected[-1])})")
        given = pd.Index(times[rows])
        if given.has_duplicates:
            raise DataValidationError(f"futr_df has a timestamp twice for {label}: "
                                      f"{fmt(given[given.duplicated()][0])}")
        try:
            pos = given.get_indexer(pd.Index(expected))
        except (TypeError, ValueError) as err:
            raise DataValidationError(f"futr_df's timestamps for {label} do not compare with the series' "
                                      f"({err}); give them in the series' zone and type") from None
        if (pos < 0).any():
            gone = [fmt(t) for t in pd.Index(expected)[pos < 0][:_LISTED]]
            raise DataValidationError(
                f"futr_df lacks {spec.futr} for {label} at {int((pos < 0).sum())} of its next {horizon} steps "
                f"(first: {', '.join(gone)}); a future-known covariate must be given over the whole "
                f"horizon (NaN for an unknown value)")
        if len(given) > horizon:
            stray = [fmt(t) for t in given.difference(pd.Index(expected))[:_LISTED]]
            raise DataValidationError(f"futr_df has rows for {label} outside its next {horizon} steps: "
                                      f"{', '.join(stray)}; give exactly those steps")
        out.append(values[rows[pos]].astype(np.float64))
    return out


def calendar(spec: ExogSpec, index: Any, length: int) -> np.ndarray:
    """[length, K] calendar features at ``index`` (its first ``length`` steps)."""
    if not spec.time_features:
        return np.zeros((length, 0), np.float32)
    return time_feature_values(index[:length], spec.time_features)
