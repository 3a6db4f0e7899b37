"""Reader for the Monash forecasting archive's ``.tsf`` format (forecastingdata.org).

A ``.tsf`` file has ``#`` comment lines, ``@`` header lines (``@relation``, ``@attribute NAME TYPE``,
``@frequency``, ``@horizon``, ``@missing``, ``@equallength``), then ``@data`` followed by one line
per series: the attribute values and the comma-separated observations, separated by ``:``. ``?``
marks a missing observation (it becomes NaN, i.e. unobserved).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .catalogue import dataset_info, find_file, open_text
from .frames import SeriesCollection

__all__ = ["TSFData", "read_tsf", "load_tsf", "TSF_FREQUENCIES"]

# Monash frequency names -> pandas offset aliases. Monthly / quarterly / yearly starts in the archive
# fall on the first day of the period, hence the start-anchored aliases.
TSF_FREQUENCIES = {
    "yearly": "YS", "quarterly": "QS", "monthly": "MS", "weekly": "W", "daily": "D",
    "hourly": "h", "half_hourly": "30min", "minutely": "min", "10_minutes": "10min",
    "4_seconds": "4s", "seconds": "s",
}


@dataclass
class TSFData:
    """A parsed ``.tsf`` file."""

    series: list[np.ndarray]
    names: list[str]
    starts: list[pd.Timestamp | None]
    freq: str | None
    horizon: int | None
    attributes: dict[str, list] = field(default_factory=dict)
    relation: str | None = None
    missing: bool = False
    equal_length: bool = False

    def to_collection(self) -> SeriesCollection:
        """The series as a :class:`SeriesCollection` (each univariate, own start date)."""
        values, masks, index = [], [], []
        for s, start in zip(self.series, self.starts, strict=True):
            v = s.astype(np.float32)[:, None]
            values.append(v)
            masks.append(~np.isnan(v))
            index.append(pd.date_range(start, periods=len(s), freq=self.freq)
                         if start is not None and self.freq is not None else None)
        return SeriesCollection(ids=list(self.names), values=values, masks=masks, index=index,
                                freq=self.freq, channels=["y"], layout="long", flavour="pandas")


def _parse_value(raw: str, kind: str, line_no: int):
    if kind == "numeric":
        return float(raw)
    if kind == "date":
        try:
            return pd.Timestamp(pd.to_datetime(raw, format="%Y-%m-%d %H-%M-%S"))
        except ValueError as err:
            raise ValueError(f"line {line_no}: cannot parse date {raw!r}") from err
    return raw


def read_tsf(path: str | os.PathLike) -> TSFData:
    """Parse a ``.tsf`` or ``.tsf.gz`` file."""
    path = Path(path)
    attrs: list[tuple[str, str]] = []
    meta: dict[str, str] = {}
    data_started = False
    names: list[str] = []
    starts: list[pd.Timestamp | None] = []
    series: list[np.ndarray] = []
    extra: dict[str, list] = {}
    for line_no, line in enumerate(open_text(path), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not data_started:
            if not line.startswith("@"):
                raise ValueError(f"{path}:{line_no}: expected a header line starting with '@'")
            parts = line.split()
            key = parts[0][1:].lower()
            if key == "attribute":
                if len(parts) != 3 or parts[2] not in ("string", "numeric", "date"):
                    raise ValueError(f"{path}:{line_no}: malformed @attribute line {line!r}")
                attrs.append((parts[1], parts[2]))
            elif key == "data":
                data_started = True
            else:
                meta[key] = " ".join(parts[1:])
            continue
        fields = line.split(":")
        if len(fields) != len(attrs) + 1:
            raise ValueError(f"{path}:{line_no}: expected {len(attrs)} attribute(s) and the values, "
                             f"got {len(fields)} ':'-separated fields")
        values = [_parse_value(f, kind, line_no) for f, (_, kind) in zip(fields[:-1], attrs, strict=True)]
        raw = fields[-1].split(",")
        obs = np.array([np.nan if v.strip() == "?" else float(v) for v in raw], dtype=np.float64)
        name, start = None, None
        for (attr, kind), val in zip(attrs, values, strict=True):
            if kind == "date" and start is None:
                start = val
            elif attr == "series_name":
                name = str(val)
            else:
                extra.setdefault(attr, []).append(val)
        names.append(name if name is not None else f"T{len(names) + 1}")
        starts.append(start)
        series.append(obs)
    if not data_started:
        raise ValueError(f"{path}: no @data section")
    freq_name = meta.get("frequency")
    if freq_name is not None and freq_name not in TSF_FREQUENCIES:
        raise ValueError(f"{path}: unknown @frequency {freq_name!r}; known: {sorted(TSF_FREQUENCIES)}")
    freq = TSF_FREQUENCIES.get(freq_name) if freq_name else None
    if freq == "W" and starts and starts[0] is not None:
        freq = "W-" + starts[0].day_name()[:3].upper()
    horizon = int(meta["horizon"]) if "horizon" in meta else None
    return TSFData(series=series, names=names, starts=starts, freq=freq, horizon=horizon,
                   attributes=extra, relation=meta.get("relation"),
                   missing=meta.get("missing", "false").lower() == "true",
                   equal_length=meta.get("equallength", "false").lower() == "true")


def load_tsf(name: str, root: str | os.PathLike | None = None, verify: bool = True) -> TSFData:
    """Read a catalogue ``.tsf`` (``"m3_monthly"``, ``"hospital"`` ...) found on the data path.

    Where the file gives no horizon or frequency, the catalogue's conventional values are used
    (hospital: horizon 12).
    """
    info = dataset_info(name)
    if info.kind != "tsf":
        raise ValueError(f"{info.name} is not a .tsf dataset")
    data = read_tsf(find_file(info, root=root, verify=verify))
    if data.horizon is None:
        data.horizon = info.horizon
    if data.freq is None and info.freq is not None:
        data.freq = info.freq
    return data
