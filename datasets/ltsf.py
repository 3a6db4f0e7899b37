"""The long-horizon benchmark protocol (Time-Series-Library / iTransformer), exactly.

* splits by row index: ETT hourly 12/4/4 months of 30 days (8640 / 2880 / 2880 rows), ETT
  15-minute the same times 4, every other set 70 % / 10 % / 20 %;
* the validation and test splits start ``seq_len`` rows early so their first window's context
  lies in the previous split;
* per-channel standardisation fitted on the training rows only, applied to every split (metrics
  are computed on the scaled values);
* every stride-1 window of a split, ``rows - seq_len - horizon + 1`` of them: nothing is dropped.

Timestamps are kept for plotting and time features but the protocol works on row indices: the
benchmark files are taken as published (``weather.csv`` has one duplicated and one missing
timestamp, which every published number includes).
"""

from __future__ import annotations

import os
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from .catalogue import DatasetInfo, dataset_info, find_file, open_text
from .scaling import StandardScaler
from .timefeatures import resolve_time_features, time_feature_values
from .windows import WindowDataset

__all__ = ["load_ltsf_frame", "ltsf_borders", "WindowDataset", "LTSFSplits", "ltsf_splits"]


def load_ltsf_frame(name: str | DatasetInfo, root: str | os.PathLike | None = None,
                    verify: bool = True) -> pd.DataFrame:
    """Read a long-horizon benchmark CSV as published: ``date`` column first, then the channels."""
    info = dataset_info(name)
    if info.kind != "ltsf":
        raise ValueError(f"{info.name} is a {info.kind!r} dataset, not a long-horizon CSV")
    path = find_file(info, root=root, verify=verify)
    frame = pd.read_csv(open_text(path))
    if frame.columns[0] != "date":
        raise ValueError(f"{path}: expected the first column to be 'date', got {frame.columns[0]!r}")
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def ltsf_borders(info: DatasetInfo | str, n_rows: int, seq_len: int) -> dict[str, tuple[int, int]]:
    """Row ranges ``[start, end)`` of the train / val / test splits (val and test include the
    ``seq_len`` rows of context before their first forecast)."""
    info = dataset_info(info)
    if info.split in ("ett_hour", "ett_minute"):
        k = 1 if info.split == "ett_hour" else 4
        month = 30 * 24 * k
        b_train, b_val, b_test = 12 * month, 16 * month, 20 * month
        if n_rows < b_test:
            raise ValueError(f"{info.name}: the ETT split needs {b_test} rows, the file has {n_rows}")
        borders = {"train": (0, b_train), "val": (b_train - seq_len, b_val),
                   "test": (b_val - seq_len, b_test)}
    elif info.split == "ratio_70_10_20":
        n_train = int(n_rows * 0.7)
        n_test = int(n_rows * 0.2)
        n_val = n_rows - n_train - n_test
        borders = {"train": (0, n_train), "val": (n_train - seq_len, n_train + n_val),
                   "test": (n_rows - n_test - seq_len, n_rows)}
    else:
        raise ValueError(f"{info.name} has no benchmark split rule")
    if min(start for start, _ in borders.values()) < 0:
        raise ValueError(f"{info.name}: seq_len={seq_len} reaches before the first row of the file")
    return borders


class LTSFSplits(NamedTuple):
    """What :func:`ltsf_splits` returns; unpacks as ``train, val, test, scaler``."""

    train: WindowDataset
    val: WindowDataset
    test: WindowDataset
    scaler: StandardScaler


def ltsf_splits(name: str, seq_len: int, horizon: int, root: str | os.PathLike | None = None,
                features: str = "M", verify: bool = True, hist_exog: Sequence[str] = (),
                futr_exog: Sequence[str] = (), time_features: str | Sequence[str] | None = None) -> LTSFSplits:
    """Train / val / test window datasets of a benchmark, exactly as the published tables use them.

    Args:
        name: catalogue name (``"ETTh1"``, ``"weather"``, ``"national_illness"`` ...).
        seq_len: input length L.
        horizon: forecast length H.
        root: optional data folder, searched before ``$TITANS_TS_DATA`` and the cache.
        features: ``"M"`` all channels in and out (the main table; but the covariate columns),
            ``"S"`` the target only.
        verify: check the file's SHA-256 against the catalogue.
        hist_exog: columns of the file read as past-only covariates (their context values).
        futr_exog: columns read as future-known covariates (context and horizon values: an
            upper bound, when they are other measurements of the same time).
        time_features: calendar features of the rows' timestamps as future-known covariates
            (None, "auto" or a list of names: :mod:`titans_ts.datasets.timefeatures`).

    Returns:
        ``LTSFSplits(train, val, test, scaler)``; the scaler is fitted on the training rows (of
        the targets, then the covariate columns; calendar features are used as they are).
        Items carry ``time_index``, the file row of their first context step, and the
        covariates as ``hist_exog`` / ``futr_exog`` (see :class:`SeriesWindows`).
    """
    info = dataset_info(name)
    if features not in ("M", "S"):
        raise ValueError(f"features must be 'M' (all channels) or 'S' (target only), got {features!r}")
    frame = load_ltsf_frame(info, root=root, verify=verify)
    hist_exog, futr_exog = list(hist_exog or []), list(futr_exog or [])
    available = list(frame.columns[1:])
    covs = hist_exog + futr_exog
    unknown = [c for c in covs if c not in available]
    if unknown:
        raise ValueError(f"{info.name} has no column(s) {unknown}; its columns are {available}")
    if len(set(covs)) != len(covs):
        raise ValueError(f"a column is named twice among hist_exog {hist_exog} and futr_exog {futr_exog}")
    columns = [c for c in available if c not in covs]
    if features == "S":
        if info.target in covs:
            raise ValueError(f"the target {info.target!r} of {info.name} cannot also be a covariate")
        columns = [info.target]
    names = resolve_time_features(time_features, info.freq)
    values = frame[columns + covs].to_numpy(dtype=np.float64)
    borders = ltsf_borders(info, len(frame), seq_len)
    t0, t1 = borders["train"]
    scaler = StandardScaler().fit(values[t0:t1])
    scaled = scaler.transform(values)
    stamps = pd.DatetimeIndex(frame["date"])
    if names:
        scaled = np.concatenate([scaled, time_feature_values(stamps, names)], 1)
    n_targets = len(columns) if (covs or names) else None  # None: every channel is a target
    out = {}
    for split, (a, b) in borders.items():
        out[split] = WindowDataset(scaled[a:b], seq_len, horizon, timestamps=stamps[a:b],
                                   columns=columns + covs + names, first_index=a, n_targets=n_targets,
                                   n_hist=len(hist_exog), n_futr=len(futr_exog) + len(names))
    return LTSFSplits(out["train"], out["val"], out["test"], scaler)
