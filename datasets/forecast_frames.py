"""Frames around forecasts: forecast frames in the input's layout and flavour, cutting frames at
cutoffs, and each series' position in calendar steps (what a learned cycle reads)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .frames import DataValidationError, SeriesCollection, restore_polars
from .timeindex import is_integer_index

__all__ = ["as_pandas", "to_flavour", "forecast_frame", "head_rows", "truth_rows", "first_steps"]


def as_pandas(df: Any) -> pd.DataFrame:
    """A pandas view of a pandas or polars frame."""
    if isinstance(df, pd.DataFrame):
        return df
    if hasattr(df, "to_pandas"):
        return df.to_pandas()
    raise DataValidationError(f"expected a pandas or polars DataFrame, got {type(df).__name__}")


def to_flavour(pdf: pd.DataFrame, flavour: str, polars_dtypes: dict | None = None) -> Any:
    """``pdf`` as a polars frame if ``flavour`` is "polars" (its columns named in
    ``polars_dtypes`` cast back to those polars dtypes), else as is."""
    if flavour == "polars":
        import polars as pl

        return restore_polars(pl.from_pandas(pdf), polars_dtypes)
    return pdf


def _qkey(q: float) -> float:
    return round(q, 10)


def level_quantiles(levels: Sequence[float]) -> list[float]:
    """The quantile levels the ``lo-L`` / ``hi-L`` bounds of interval levels (percent) need."""
    return sorted({_qkey(0.5 - lv / 200) for lv in levels} | {_qkey(0.5 + lv / 200) for lv in levels})


def forecast_frame(coll: SeriesCollection, point: np.ndarray, qs: dict[float, np.ndarray],
                   quantiles: Sequence[float], levels: Sequence[float], h: int) -> Any:
    """The forecasts of every series of ``coll`` as a frame in its layout and flavour.

    Args:
        coll: the series forecast from (ids, timestamps, frequency, column names, layout).
        point: [N, h, C] point forecasts; ``qs``: {level: [N, h, C]} quantiles.
        quantiles: levels reported as ``q<level>`` columns; ``levels``: interval levels in
            percent reported as ``lo-<L>`` / ``hi-<L>`` columns.

    Long frames get ``<id>``, ``<time>``, ``<target>_hat`` (+ ``q0.1`` ..., ``lo-80`` ...); wide
    frames one column per channel (+ ``<channel>_q0.1``, ``<channel>_lo-80`` ...).
    """
    rows = []
    for n, sid in enumerate(coll.ids):
        fut = coll.future_index(n, h)
        part: dict[str, Any] = {}
        fut = coll.output_times(fut) if coll.time_dtype is not None else fut
        if coll.layout == "wide":
            part[coll.time_col] = fut
            for c, ch in enumerate(coll.channels):
                part[ch] = point[n, :, c]
                for q in quantiles:
                    part[f"{ch}_q{q:g}"] = qs[q][n, :, c]
                for lv in levels:
                    part[f"{ch}_lo-{lv:g}"] = qs[_qkey(0.5 - lv / 200)][n, :, c]
                    part[f"{ch}_hi-{lv:g}"] = qs[_qkey(0.5 + lv / 200)][n, :, c]
        else:
            part[coll.id_col] = [sid] * h
            part[coll.time_col] = fut
            part[f"{coll.target_col}_hat"] = point[n, :, 0]
            for q in quantiles:
                part[f"q{q:g}"] = qs[q][n, :, 0]
            for lv in levels:
                part[f"lo-{lv:g}"] = qs[_qkey(0.5 - lv / 200)][n, :, 0]
                part[f"hi-{lv:g}"] = qs[_qkey(0.5 + lv / 200)][n, :, 0]
        rows.append(pd.DataFrame(part))
    out = pd.concat(rows, ignore_index=True)
    if coll.layout != "wide":
        out[coll.id_col] = coll.output_ids(out[coll.id_col])
    return to_flavour(out, coll.flavour, coll.polars_dtypes)


def head_rows(pdf: pd.DataFrame, coll: SeriesCollection, trim: int) -> pd.DataFrame:
    """Each series of ``pdf`` without its last ``trim`` rows (rows kept in input order)."""
    if coll.layout == "wide":
        return pdf.iloc[: len(pdf) - trim]
    pos = pdf.groupby(coll.id_col, sort=False, observed=True).cumcount(ascending=False)
    return pdf[pos.to_numpy() >= trim]


def truth_rows(pdf: pd.DataFrame, coll: SeriesCollection, trim: int, h: int) -> pd.DataFrame:
    """The ``h`` rows of each series that follow :func:`head_rows` ``(pdf, coll, trim)``, series
    by series in first-appearance order (the order of forecast frames)."""
    if coll.layout == "wide":
        return pdf.iloc[len(pdf) - trim: len(pdf) - trim + h]
    id_col = coll.id_col
    pos = pdf.groupby(id_col, sort=False, observed=True).cumcount(ascending=False).to_numpy()
    part = pdf[(pos < trim) & (pos >= trim - h)]
    order = {sid: k for k, sid in enumerate(pd.unique(pdf[id_col].astype(str)))}
    return part.assign(_o=part[id_col].astype(str).map(order)).sort_values("_o", kind="stable") \
        .drop(columns="_o")


def first_steps(index: list, freq: Any) -> list[int]:
    """Each series' first step counted in ``freq`` steps from 1970-01-01 (the phase a learned
    cycle reads, the same for every series and for any later call; daily and longer steps are
    counted on the wall-clock calendar of a tz-aware series); integer time steps count in
    steps from 0, arrays without an index from their own first row."""
    out = []
    for idx in index:
        if idx is None or len(idx) == 0:
            out.append(0)
            continue
        if is_integer_index(idx):
            out.append(int(idx[0]) // int(freq or 1))
            continue
        if freq is None:
            raise ValueError("cycle_len needs the series' frequency to place each step in the cycle; "
                             "pass freq=... (a pandas alias such as 'h' or 'W-SUN')")
        off = pd.tseries.frequencies.to_offset(freq)
        t0 = idx[0]
        sub_daily = isinstance(off, pd.offsets.Tick) and pd.Timedelta(off) < pd.Timedelta(days=1)
        if t0.tz is not None and not sub_daily:
            t0 = t0.tz_localize(None)
        epoch = pd.Timestamp("1970-01-01", tz=t0.tz)
        if isinstance(off, pd.offsets.Tick):
            out.append(int((t0 - epoch) // pd.Timedelta(off)))
            continue
        anchor = off.rollforward(epoch)  # calendar offsets (weeks, months, ...): count the dates
        if t0 >= anchor:
            out.append(len(pd.date_range(anchor, t0, freq=off)) - 1)
        else:
            out.append(1 - len(pd.date_range(t0, anchor, freq=off)))
    return out
