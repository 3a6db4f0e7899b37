"""Windows and batches: the one window builder, and the one batch schema, of every training and
forecasting path (the benchmark data module, the forecaster, the online runner).

A batch is a dict of tensors with these keys (:data:`BATCH_KEYS`):

* ``past`` [B, L, C] float32: the context (unobserved values are 0);
* ``past_mask`` [B, L, C] bool: True where observed;
* ``future`` [B, H, C] float32 and ``future_mask`` [B, H, C] bool: the targets (absent in
  context-only windows, ``horizon=0``);
* ``time_index`` [B] int64: the absolute position of each window's first context step (present
  when the series' first positions are known; a learned cycle reads it).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["PAST", "PAST_MASK", "FUTURE", "FUTURE_MASK", "TIME_INDEX", "BATCH_KEYS",
           "SeriesWindows", "WindowDataset", "collate_windows", "window_loader",
           "EpochShuffleSampler"]

PAST, PAST_MASK, FUTURE, FUTURE_MASK, TIME_INDEX = (
    "past", "past_mask", "future", "future_mask", "time_index")
BATCH_KEYS = (PAST, PAST_MASK, FUTURE, FUTURE_MASK, TIME_INDEX)


def _positive(name: str, val) -> int:
    if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1:
        raise ValueError(f"{name} must be a positive integer, got {val!r}")
    return int(val)


class SeriesWindows(Dataset):
    """Windows at explicit positions of one or several series.

    Args:
        values: per series a float array [T_i, C] (NaN marks a missing value).
        seq_len: context length L.
        horizon: forecast length H (0: context-only windows, for forecasting).
        ends: ``(series, end)`` pairs: a window's context is the L rows before ``end`` of that
            series (rows before the series' start are unobserved zeros: left padding), its future
            the H rows from ``end`` (which must exist).
        masks: per series a bool array [T_i, C], True where observed (default: not NaN).
        n_targets: the first ``n_targets`` channels are targets; the others are inputs only
            (covariates), never scored: unobserved in ``future_mask`` (None: every channel).
        first_index: per series the absolute position of its row 0 (None: no ``time_index``).
    """

    def __init__(self, values: Sequence[np.ndarray], seq_len: int, horizon: int,
                 ends: Sequence[tuple[int, int]], masks: Sequence[np.ndarray] | None = None,
                 n_targets: int | None = None, first_index: Sequence[int] | None = None) -> None:
        self.seq_len = _positive("seq_len", seq_len)
        if not isinstance(horizon, (int, np.integer)) or isinstance(horizon, bool) or horizon < 0:
            raise ValueError(f"horizon must be a non-negative integer, got {horizon!r}")
        self.horizon = int(horizon)
        self._values, self._masks = [], []
        for k, v in enumerate(values):
            v = np.asarray(v, dtype=np.float32)
            if v.ndim == 1:
                v = v[:, None]
            if v.ndim != 2:
                raise ValueError(f"series {k}: values must be [T, C], got shape {v.shape}")
            m = ~np.isnan(v) if masks is None else np.asarray(masks[k], dtype=bool).reshape(v.shape)
            # unobserved values enter as 0: never silently filled with a plausible number
            self._values.append(torch.from_numpy(np.where(m, v, 0.0).astype(np.float32)))
            self._masks.append(torch.from_numpy(m))
        self.ends = [(int(i), int(e)) for i, e in ends]
        for i, e in self.ends:
            if not 0 <= i < len(self._values) or not 0 <= e <= len(self._values[i]) - self.horizon:
                raise ValueError(f"window (series {i}, end {e}) lies outside the data")
        self.n_targets = n_targets
        self.first_index = None if first_index is None else [int(f) for f in first_index]

    @property
    def n_channels(self) -> int:
        return self._values[0].shape[1]

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i, e = self.ends[k]
        v, m = self._values[i], self._masks[i]
        s = e - self.seq_len
        past, pmask = v[max(s, 0):e], m[max(s, 0):e]
        if s < 0:  # the series starts inside the context: unobserved zeros before it
            past = torch.cat([past.new_zeros(-s, past.shape[1]), past])
            pmask = torch.cat([pmask.new_zeros(-s, pmask.shape[1]), pmask])
        item = {PAST: past, PAST_MASK: pmask}
        if self.horizon:
            fmask = m[e:e + self.horizon]
            if self.n_targets is not None and self.n_targets < fmask.shape[1]:
                fmask = fmask.clone()
                fmask[:, self.n_targets:] = False  # covariates are inputs, never targets
            item[FUTURE] = v[e:e + self.horizon]
            item[FUTURE_MASK] = fmask
        if self.first_index is not None:
            item[TIME_INDEX] = torch.tensor(self.first_index[i] + s, dtype=torch.int64)
        return item


class WindowDataset(SeriesWindows):
    """Every stride-``stride`` window of ``seq_len`` context and ``horizon`` future rows of one
    series.

    Args:
        values: float array [T, C] (already scaled); NaN marks a missing value.
        seq_len: context length L (>= 1).
        horizon: forecast length H (>= 1).
        mask: optional bool array [T, C], True where observed. Defaults to ``~isnan(values)``.
        timestamps: optional DatetimeIndex of length T (for plots and time features).
        columns: optional channel names.
        stride: step between window starts (the protocol uses 1).
        first_index: absolute position of row 0 of ``values`` (e.g. its row in the whole file).
            When given, each item also carries ``time_index``, the absolute position of its first
            context step (what a network with a learned cycle needs).

    Items follow the batch schema of this module (``past``, ``future``, the masks, and
    ``time_index`` with ``first_index``). Missing values are 0 in ``past`` / ``future`` and False
    in the masks: they are never silently filled with a plausible number.
    """

    def __init__(self, values: np.ndarray, seq_len: int, horizon: int, mask: np.ndarray | None = None,
                 timestamps: pd.DatetimeIndex | None = None, columns: list[str] | None = None,
                 stride: int = 1, first_index: int | None = None) -> None:
        if first_index is not None and (not isinstance(first_index, (int, np.integer))
                                        or isinstance(first_index, bool)):
            raise ValueError(f"first_index must be an integer or None, got {first_index!r}")
        for arg, val in (("seq_len", seq_len), ("horizon", horizon), ("stride", stride)):
            _positive(arg, val)
        values = np.asarray(values, dtype=np.float32)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2:
            raise ValueError(f"values must be [T, C], got shape {values.shape}")
        if values.shape[0] < seq_len + horizon:
            raise ValueError(f"a series of {values.shape[0]} rows has no window of "
                             f"seq_len + horizon = {seq_len + horizon} rows")
        n = (values.shape[0] - seq_len - horizon) // stride + 1
        super().__init__([values], seq_len, horizon,
                         [(0, s * stride + seq_len) for s in range(n)],
                         masks=None if mask is None else [mask],
                         first_index=None if first_index is None else [first_index])
        self.stride = int(stride)
        self.timestamps = timestamps
        self.columns = list(columns) if columns is not None else [str(i) for i in range(values.shape[1])]

    @property
    def values(self) -> torch.Tensor:
        """[T, C] float32, unobserved values 0."""
        return self._values[0]

    @property
    def mask(self) -> torch.Tensor:
        """[T, C] bool, True where observed."""
        return self._masks[0]

    def window_start(self, index: int) -> int:
        """Row of ``values`` where window ``index`` begins."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"window {index} out of range for {n} windows")
        return (index % n) * self.stride

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self.window_start(int(index))  # range check
        return super().__getitem__(int(index) % len(self))

    def __repr__(self) -> str:
        return (f"WindowDataset(windows={len(self)}, seq_len={self.seq_len}, horizon={self.horizon}, "
                f"channels={self.n_channels})")


def collate_windows(items: list[dict]) -> dict[str, torch.Tensor]:
    """Stack a list of window dicts into a batch dict."""
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class EpochShuffleSampler(Sampler):
    """A fresh permutation per epoch, a pure function of ``(seed, epoch)``: a run resumed from
    a checkpoint sees the same order as one that never stopped (Lightning calls ``set_epoch``)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def window_loader(dataset, batch_size: int, shuffle: bool, num_workers: int = 0,
                  drop_last: bool = False, seed: int = 0, generator: torch.Generator | None = None
                  ) -> DataLoader:
    """A loader of windows in the batch schema; evaluation loaders never drop a window.

    ``shuffle``: a seeded permutation per epoch (:class:`EpochShuffleSampler`), or, with a
    ``generator``, torch's random sampler drawing from it."""
    sampler = EpochShuffleSampler(len(dataset), seed) if shuffle and generator is None else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                      shuffle=bool(shuffle and generator is not None), generator=generator,
                      num_workers=num_workers, collate_fn=collate_windows,
                      persistent_workers=num_workers > 0)
