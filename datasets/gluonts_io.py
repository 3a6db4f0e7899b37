"""Converters between :class:`SeriesCollection` / frames and GluonTS datasets, both directions.

GluonTS conventions: each entry is a dict with ``start`` (a ``pd.Period``), ``target`` ([T] for
one channel, [C, T] for several) and ``item_id``; NaN in the target is a missing value (GluonTS
derives its observed-values indicator from it, just as titans-ts derives its mask).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd

from .frames import DataValidationError, SeriesCollection, from_frame, period_freq

__all__ = ["to_gluonts", "from_gluonts", "frame_to_gluonts"]


def to_gluonts(coll: SeriesCollection, kind: str = "list"):
    """A GluonTS dataset of the collection.

    Args:
        coll: validated series (must have timestamps and a frequency).
        kind: ``"list"`` -> ``ListDataset``; ``"pandas"`` -> ``PandasDataset`` (univariate
            series: one long frame; multivariate: one wide frame per series).
    """
    stamps = [idx for idx in coll.index if isinstance(idx, pd.DatetimeIndex)]
    if coll.freq is None or len(stamps) != len(coll.index):
        raise DataValidationError("GluonTS datasets need timestamps and a frequency (not integer time "
                                  "steps); give start/freq")
    pfreq = period_freq(coll.freq)
    if kind == "list":
        from gluonts.dataset.common import ListDataset

        one_dim = coll.n_channels == 1
        entries = []
        for i, sid in enumerate(coll.ids):
            vals = np.where(coll.masks[i], coll.values[i], np.nan)
            entry = {
                "start": pd.Period(stamps[i][0], freq=pfreq),
                "target": vals[:, 0] if one_dim else vals.T,
                "item_id": sid,
            }
            if coll.covariates is not None:
                entry["feat_dynamic_real"] = coll.covariates[i].T
            entries.append(entry)
        return ListDataset(entries, freq=_offset_alias(pfreq), one_dim_target=one_dim)
    if kind == "pandas":
        from gluonts.dataset.pandas import PandasDataset

        frames = {}
        for i, sid in enumerate(coll.ids):
            vals = np.where(coll.masks[i], coll.values[i], np.nan)
            frame = pd.DataFrame(vals, columns=coll.channels,
                                 index=stamps[i].to_period(pfreq))
            if coll.covariates is not None:
                for k, name in enumerate(coll.covariate_names):
                    frame[name] = coll.covariates[i][:, k]
            frames[sid] = frame
        target = coll.channels[0] if coll.n_channels == 1 else list(coll.channels)
        return PandasDataset(frames, target=target, freq=_offset_alias(pfreq),
                             feat_dynamic_real=coll.covariate_names or None)
    raise DataValidationError(f"kind must be 'list' or 'pandas', got {kind!r}")


def frame_to_gluonts(df: Any, kind: str = "list", **frame_kwargs):
    """Validate a pandas / polars frame (see :func:`from_frame`) and convert it to GluonTS."""
    return to_gluonts(from_frame(df, **frame_kwargs), kind=kind)


def from_gluonts(dataset: Iterable[dict], freq: str | None = None,
                 channels: list[str] | None = None) -> SeriesCollection:
    """A :class:`SeriesCollection` from any GluonTS dataset (``ListDataset``, ``PandasDataset``,
    ``FileDataset``, or a list of entry dicts); NaN in targets becomes the observed mask."""
    ids, values, masks, index = [], [], [], []
    seen_freq = None
    for n, entry in enumerate(dataset):
        if "target" not in entry or "start" not in entry:
            raise DataValidationError(f"entry {n} lacks 'target' or 'start' (keys: {sorted(entry)})")
        start = entry["start"]
        target = np.asarray(entry["target"], dtype=np.float32)
        target = target[:, None] if target.ndim == 1 else target.T
        if isinstance(start, pd.Period):
            f = start.freqstr
            ts = start.to_timestamp(how="start")
        else:
            f = freq
            ts = pd.Timestamp(start)
        if seen_freq is None:
            seen_freq = f
        elif f != seen_freq:
            raise DataValidationError(f"entry {n} has frequency {f!r}, earlier entries {seen_freq!r}")
        ids.append(str(entry.get("item_id", f"series_{n}")))
        values.append(target)
        masks.append(~np.isnan(target))
        index.append(ts)
    if not ids:
        raise DataValidationError("the GluonTS dataset is empty")
    ts_freq = freq or _timestamp_freq(seen_freq)
    idx = [pd.date_range(s, periods=len(v), freq=ts_freq) if ts_freq else None
           for s, v in zip(index, values, strict=True)]
    n_ch = values[0].shape[1]
    if any(v.shape[1] != n_ch for v in values):
        raise DataValidationError("entries have different numbers of target channels")
    return SeriesCollection(
        ids=ids, values=values, masks=masks, index=idx, freq=ts_freq,
        channels=channels or (["y"] if n_ch == 1 else [f"y{i}" for i in range(n_ch)]),
        layout="long", flavour="pandas",
    )


def _offset_alias(pfreq: str) -> str:
    """Period alias -> the pandas 2 offset alias GluonTS parses without deprecation warnings
    (``"M"`` -> ``"ME"``, ``"Q-DEC"`` -> ``"QE-DEC"``, ``"Y-DEC"`` -> ``"YE-DEC"``)."""
    head, _, anchor = pfreq.partition("-")
    mult = "".join(ch for ch in head if ch.isdigit())
    base = head[len(mult):]
    if base in ("M", "Q", "Y"):
        return f"{mult}{base}E" + (f"-{anchor}" if anchor else "")
    return pfreq


def _timestamp_freq(pfreq: str | None) -> str | None:
    """Period alias -> timestamp alias whose grid matches ``Period.to_timestamp(how='start')``."""
    if pfreq is None:
        return None
    head = pfreq.split("-")[0]
    mult = "".join(ch for ch in head if ch.isdigit())
    base = head[len(mult):]
    if base == "M":
        return f"{mult}MS"
    if base in ("Q", "Y", "A"):
        months = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
        end = pfreq.split("-")[1] if "-" in pfreq else "DEC"
        start_month = months[months.index(end) % 12 - 11] if end in months else "JAN"
        return f"{mult}{'QS' if base == 'Q' else 'YS'}-{start_month}"
    if base == "W":
        # Period W-SUN spans Mon..Sun; its start timestamp is a Monday.
        days = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
        end = pfreq.split("-")[1] if "-" in pfreq else "SUN"
        return f"{mult}W-{days[(days.index(end) + 1) % 7]}"
    return pfreq
