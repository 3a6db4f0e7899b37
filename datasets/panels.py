"""Development panels built at run time from the shared benchmark files (no data file of their own).

:func:`hourly_panel` stands for the hourly panels users bring (a few hundred series of about a
thousand hourly points, forecast 48 hours ahead): the ETT and weather columns at hourly
resolution, cut into series of about ``length`` points. The construction, step by step:

1. **Sources**: ETTh1 and ETTh2 (hourly; seven columns each) and weather (10-minute; 21 columns),
   read with :func:`titans_ts.datasets.load_ltsf_frame`. ETTm1 / ETTm2 are the same transformers
   as ETTh1 / ETTh2 at 15 minutes, so they would only repeat them, and are not used.
2. **Weather at hourly resolution**: the station's code for a missing reading, -9999, is a
   missing value; each row stamps the end of its 10 minutes, so the hour starting at ``t`` holds
   the rows stamped in ``(t, t + 1h]`` and its value is the mean of the readings observed in it.
   An hour without any observed reading (the station's gaps) is missing. The intermittent
   columns ``rain (mm)`` and ``raining (s)`` (zero in about nine hours of ten) are left out:
   they are another kind of series (intermittent demand) whose scaled errors are dominated by
   the dry stretches.
3. **Cutting**: every column of ``T`` hours becomes ``n = max(1, round(T / length))``
   consecutive series of ``T // n`` points, the last one ending at the column's last hour (the
   ``T - n * (T // n)`` oldest hours, fewer than ``n``, are not used). ETT: 17 series of 1024
   points per column; weather: 9 of 976.
4. **Exclusions** (counted in the returned report): a series with a missing hour (statistical
   models and the scoring need whole series; nothing is filled), and a series whose training
   part (all but its last ``horizon`` points) repeats exactly at the season of 24 hours, whose
   MASE would be undefined (a zero scale).

Series ids are ``<source>/<column>/<k>`` (``k`` the piece, oldest first); every series keeps its
timestamps. The result is deterministic: the same files give the same panel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["HOURLY_PANEL_SOURCES", "HOURLY_PANEL_EXCLUDED_COLUMNS", "PanelReport", "hourly_panel"]

#: the files the hourly panel is built from (all in the LTSF folder of the data root)
HOURLY_PANEL_SOURCES = ("ETTh1", "ETTh2", "weather")
#: weather columns left out: intermittent (zero in most hours)
HOURLY_PANEL_EXCLUDED_COLUMNS = ("rain (mm)", "raining (s)")
_MISSING_CODE = -9999.0
_SEASON = 24


@dataclass
class PanelReport:
    """How a panel was built: the series kept per source and the ones left out, with why."""

    kept: dict[str, int] = field(default_factory=dict)
    missing_values: list[str] = field(default_factory=list)
    zero_scale: list[str] = field(default_factory=list)

    def summary(self) -> str:
        kept = ", ".join(f"{k} {v}" for k, v in self.kept.items())
        return (f"{sum(self.kept.values())} series ({kept}); left out: {len(self.missing_values)} with a "
                f"missing hour, {len(self.zero_scale)} with a zero seasonal-naive scale")


def _hourly_weather(frame: pd.DataFrame) -> pd.DataFrame:
    """10-minute weather readings as hourly means of the observed readings (see the module)."""
    values = frame.drop(columns="date").astype(np.float64)
    values = values.where(values != _MISSING_CODE)
    hour = (frame["date"] - pd.Timedelta("10min")).dt.floor("h")
    means = values.groupby(hour.to_numpy()).mean()  # NaN where an hour has no observed reading
    full = pd.date_range(means.index[0], means.index[-1], freq="h")
    out = means.reindex(full)  # an hour without any row at all is missing too
    out.insert(0, "date", full)
    return out.reset_index(drop=True)


def hourly_panel(root: str | os.PathLike | None = None, length: int = 1000, horizon: int = 48,
                 verify: bool = True) -> tuple[pd.DataFrame, PanelReport]:
    """The hourly development panel as a long frame (``unique_id``, ``ds``, ``y``; float64) and
    the report of its construction (see the module for the rules).

    ``root``: the data root (as :func:`titans_ts.datasets.find_file` takes it); ``length``: the
    target length of a series; ``horizon``: the held-out tail the zero-scale rule looks past."""
    from .ltsf import load_ltsf_frame

    if not isinstance(length, (int, np.integer)) or isinstance(length, bool) or length < 2 * _SEASON + horizon + 1:
        raise ValueError(f"length must be an integer of at least 2 x 24 + horizon + 1 = "
                         f"{2 * _SEASON + horizon + 1} points, got {length!r}")
    report = PanelReport()
    parts = []
    for source in HOURLY_PANEL_SOURCES:
        frame = load_ltsf_frame(source, root=root, verify=verify)
        if source == "weather":
            frame = _hourly_weather(frame.drop(columns=list(HOURLY_PANEL_EXCLUDED_COLUMNS)))
        dates = frame["date"].to_numpy()
        T = len(frame)
        n = max(1, int(round(T / length)))
        size = T // n
        kept = 0
        for col in frame.columns[1:]:
            y = frame[col].to_numpy(np.float64)
            for k in range(n):
                lo = T - (n - k) * size
                piece, sid = y[lo:lo + size], f"{source}/{col}/{k}"
                if np.isnan(piece).any():
                    report.missing_values.append(sid)
                    continue
                train = piece[:-horizon]
                if not np.abs(train[_SEASON:] - train[:-_SEASON]).any():
                    report.zero_scale.append(sid)
                    continue
                parts.append(pd.DataFrame({"unique_id": sid, "ds": dates[lo:lo + size], "y": piece}))
                kept += 1
        report.kept[source] = kept
    return pd.concat(parts, ignore_index=True), report
