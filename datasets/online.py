"""The online-forecasting protocol of Proceed (Zhao & Shen, KDD 2025, arXiv 2412.08435; the public
code SJTU-DMTai/OnlineTSF), which fixed the leak of the FSNet / OneNet protocol.

* Splits by time, 20 : 5 : 75 (train : validation : test). ETT: fixed month counts of the first
  20 months (hourly: rows 2880 / 3600 / 14400; 15-minute: four times that; the rest of the file
  is not used). Other sets: ``int(0.2 n)`` training rows, ``int(0.75 n)`` test rows, validation
  the rest.
* The scaler is fitted on the training rows only; metrics are computed on scaled values.
* The stream moves one step at a time through validation and test. A forecast made at origin
  ``t`` reads the ``seq_len`` rows before ``t`` and forecasts rows ``[t, t + H)``. The target of the
  window with origin ``t - H`` is fully known at ``t`` (its last row is ``t - 1``): that is the
  newest ground truth an online learner may use at ``t`` (delayed feedback).
* Scored: every test origin ``t`` in ``[test start, n_used - H]``, every step and channel.

Origins (row indices) are the currency here: window ``t`` has context rows ``[t - L, t)`` and
target rows ``[t, t + H)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .catalogue import dataset_info
from .ltsf import load_ltsf_frame
from .scaling import StandardScaler

__all__ = ["OnlineData", "online_borders", "online_data", "ONLINE_LOOKBACK", "ONLINE_SPLITS"]

#: the catalogue's split rules the online protocol has a split for (the long-horizon sets)
ONLINE_SPLITS = ("ett_hour", "ett_minute", "ratio_70_10_20")

# the look-back the Proceed scripts use for PatchTST (scripts/online/PatchTST/*/*.sh)
ONLINE_LOOKBACK = {"ETTh1": 336, "ETTh2": 336, "ETTm1": 512, "ETTm2": 512, "weather": 512,
                   "electricity": 512, "traffic": 512}


def online_borders(name: str, n_rows: int) -> dict[str, tuple[int, int]]:
    """Row ranges ``[start, end)`` of the train / val / test targets (no look-back included)."""
    info = dataset_info(name)
    if info.split in ("ett_hour", "ett_minute"):
        k = 1 if info.split == "ett_hour" else 4
        month = 30 * 24 * k
        tr, va, end = 4 * month, 5 * month, 20 * month
        if n_rows < end:
            raise ValueError(f"{info.name}: the online split needs {end} rows, the file has {n_rows}")
    elif info.split == "ratio_70_10_20":
        tr = int(n_rows * 0.2)
        end = n_rows
        va = n_rows - int(n_rows * 0.75)
    else:
        raise ValueError(f"{info.name} has no online split rule (long-horizon sets only)")
    return {"train": (0, tr), "val": (tr, va), "test": (va, end)}


@dataclass
class OnlineData:
    """A dataset prepared for the online protocol.

    Attributes:
        name: catalogue name.
        values: [n_used, C] float32, scaled with the training rows' statistics.
        borders: {"train" | "val" | "test": (start, end)} target rows of each split.
        columns: channel names; timestamps: the rows' times.
        scaler: the fitted scaler.
        season: the catalogue's season in rows (the seasonal naive's period; None: none known).
    """

    name: str
    values: np.ndarray
    borders: dict
    columns: list
    timestamps: pd.DatetimeIndex
    scaler: StandardScaler
    season: int | None = None

    @property
    def n_channels(self) -> int:
        return self.values.shape[1]

    def origins(self, split: str, seq_len: int, horizon: int) -> np.ndarray:
        """The origins whose whole target lies in ``split`` and whose context exists."""
        a, b = self.borders[split]
        return np.arange(max(a, seq_len), b - horizon + 1)

    def stream_origins(self, seq_len: int, horizon: int) -> np.ndarray:
        """Every origin of the validation and test streams, in time order (validation first:
        an online learner runs through it before the scored test stream)."""
        a = self.borders["val"][0]
        return np.arange(max(a, seq_len), self.borders["test"][1] - horizon + 1)


def online_data(name: str, root: str | os.PathLike | None = None, verify: bool = True) -> OnlineData:
    """Load a long-horizon set, cut it by the online protocol and scale it with the training rows'
    statistics (every channel in and out, as Proceed's ``features='M'``)."""
    frame = load_ltsf_frame(name, root=root, verify=verify)
    columns = list(frame.columns[1:])
    values = frame[columns].to_numpy(dtype=np.float64)
    borders = online_borders(name, len(frame))
    end = borders["test"][1]
    scaler = StandardScaler().fit(values[: borders["train"][1]])
    scaled = scaler.transform(values[:end]).astype(np.float32)
    info = dataset_info(name)
    return OnlineData(info.name, scaled, borders, columns, pd.DatetimeIndex(frame["date"][:end]), scaler,
                      season=info.season)
