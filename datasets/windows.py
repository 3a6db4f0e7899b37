"""Windows and batches: the one window builder, and the one batch schema, of every training and
forecasting path (the benchmark data module, the forecaster, the online runner).

A batch is a dict of tensors with these keys (:data:`BATCH_KEYS`):

* ``past`` [B, L, C] float32: the context (unobserved values are 0);
* ``past_mask`` [B, L, C] bool: True where observed;
* ``future`` [B, H, C] float32 and ``future_mask`` [B, H, C] bool: the targets (absent in
  context-only windows, ``horizon=0``);
* ``time_index`` [B] int64: the absolute position of each window's first context step (present
  when the series' first positions are known; a learned cycle reads it);
* the covariates (:data:`EXOG_KEYS`, present when the windows have them):
  ``hist_exog`` / ``hist_exog_mask`` [B, L, Kh] (past-only covariates: the context only),
  ``futr_exog`` / ``futr_exog_mask`` [B, L + H, Kf] (future-known covariates: the context and
  the horizon), ``stat_exog`` / ``stat_exog_mask`` [B, Ks] (numeric static covariates) and
  ``stat_cat`` [B, Kc] int64 (categorical static covariates, as codes).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["PAST", "PAST_MASK", "FUTURE", "FUTURE_MASK", "TIME_INDEX", "BATCH_KEYS", "EXOG_KEYS",
           "HIST_EXOG", "FUTR_EXOG", "STAT_EXOG", "STAT_CAT", "exog_of",
           "SeriesWindows", "WindowDataset", "collate_windows", "window_loader",
           "EpochShuffleSampler"]

PAST, PAST_MASK, FUTURE, FUTURE_MASK, TIME_INDEX = (
    "past", "past_mask", "future", "future_mask", "time_index")
HIST_EXOG, FUTR_EXOG, STAT_EXOG, STAT_CAT = "hist_exog", "futr_exog", "stat_exog", "stat_cat"
#: the covariate keys of a batch (what :meth:`titans_ts.TitansNet.forward` takes as ``exog``)
EXOG_KEYS = (HIST_EXOG, HIST_EXOG + "_mask", FUTR_EXOG, FUTR_EXOG + "_mask", STAT_EXOG,
             STAT_EXOG + "_mask", STAT_CAT)
BATCH_KEYS = (PAST, PAST_MASK, FUTURE, FUTURE_MASK, TIME_INDEX, *EXOG_KEYS)


def exog_of(batch) -> dict | None:
    """The covariates of a batch (its :data:`EXOG_KEYS` entries), or None when it has none."""
    exog = {k: batch[k] for k in EXOG_KEYS if k in batch}
    return exog or None


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
            Without ``n_hist`` / ``n_futr`` they enter ``past`` beside the targets.
        first_index: per series the absolute position of its row 0 (None: no ``time_index``).
        n_hist, n_futr: the channels after the ``n_targets`` targets are ``n_hist`` past-only
            covariates then ``n_futr`` future-known ones, read into ``hist_exog`` (the context
            rows only: a window never sees a past-only covariate beyond its origin) and
            ``futr_exog`` (the context rows and the ``futr_horizon`` rows after them); ``past``
            and ``future`` then hold the targets only.
        futr_horizon: rows after a window's end its future-known covariates cover (None: the
            network's horizon ``horizon``; a forecasting window, ``horizon`` 0, gives the
            network's horizon here and rows of future covariates after the series' history).
        static, static_mask: per series a float array [Ks] of numeric static covariates (and
            its observed mask) -> ``stat_exog`` / ``stat_exog_mask``.
        static_cat: per series an integer array [Kc] of category codes -> ``stat_cat``.
    """

    def __init__(self, values: Sequence[np.ndarray], seq_len: int, horizon: int,
                 ends: Sequence[tuple[int, int]], masks: Sequence[np.ndarray] | None = None,
                 n_targets: int | None = None, first_index: Sequence[int] | None = None,
                 n_hist: int = 0, n_futr: int = 0, futr_horizon: int | None = None,
                 static: Sequence[np.ndarray] | None = None, static_mask: Sequence[np.ndarray] | None = None,
                 static_cat: Sequence[np.ndarray] | None = None) -> None:
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
        self.n_hist, self.n_futr = int(n_hist), int(n_futr)
        if (self.n_hist or self.n_futr) and n_targets is None:
            raise ValueError("covariate channels (n_hist / n_futr) need n_targets, the number of "
                             "target channels before them")
        self.futr_horizon = self.horizon if futr_horizon is None else int(futr_horizon)
        reach = self.futr_horizon if self.n_futr else 0
        self.ends = [(int(i), int(e)) for i, e in ends]
        for i, e in self.ends:
            if not 0 <= i < len(self._values) or not 0 <= e <= len(self._values[i]) - max(self.horizon, reach):
                raise ValueError(f"window (series {i}, end {e}) lies outside the data")
        self.n_targets = n_targets
        if self.n_hist or self.n_futr:
            assert n_targets is not None  # (refused above)
            have = self._values[0].shape[1] if self._values else 0
            if have != n_targets + self.n_hist + self.n_futr:
                raise ValueError(f"values have {have} channels; n_targets + n_hist + n_futr = "
                                 f"{n_targets + self.n_hist + self.n_futr}")
        self.first_index = None if first_index is None else [int(f) for f in first_index]
        self._static: list[torch.Tensor] | None = None
        if static is not None:
            given = [torch.as_tensor(np.asarray(s, np.float32)) for s in static]
            sm = [~np.isnan(np.asarray(s, np.float32)) for s in static] if static_mask is None else static_mask
            self._static_mask = [torch.as_tensor(np.asarray(m, bool)) for m in sm]
            self._static = [torch.where(m, s, torch.zeros_like(s))
                            for s, m in zip(given, self._static_mask, strict=True)]
        self._static_cat = None if static_cat is None else [
            torch.as_tensor(np.asarray(c, np.int64)) for c in static_cat]

    @property
    def n_channels(self) -> int:
        """Channels of ``past``: the targets when the windows have covariate channels."""
        if self.n_hist or self.n_futr:
            assert self.n_targets is not None  # (__init__ refuses covariate channels without it)
            return self.n_targets
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
        split = bool(self.n_hist or self.n_futr)
        C = self.n_targets
        item = {PAST: past[:, :C] if split else past, PAST_MASK: pmask[:, :C] if split else pmask}
        if self.horizon:
            fmask = m[e:e + self.horizon]
            future = v[e:e + self.horizon]
            if split:
                future, fmask = future[:, :C], fmask[:, :C]
            elif self.n_targets is not None and self.n_targets < fmask.shape[1]:
                fmask = fmask.clone()
                fmask[:, self.n_targets:] = False  # covariates are inputs, never targets
            item[FUTURE] = future
            item[FUTURE_MASK] = fmask
        if self.n_hist:  # the context rows only: nothing after the origin
            assert C is not None  # (__init__ refuses covariate channels without n_targets)
            item[HIST_EXOG] = past[:, C:C + self.n_hist]
            item[HIST_EXOG + "_mask"] = pmask[:, C:C + self.n_hist]
        if self.n_futr:  # the context rows, then the futr_horizon rows after the origin
            assert C is not None
            a, b = C + self.n_hist, C + self.n_hist + self.n_futr
            ahead_v, ahead_m = v[e:e + self.futr_horizon, a:b], m[e:e + self.futr_horizon, a:b]
            item[FUTR_EXOG] = torch.cat([past[:, a:b], ahead_v])
            item[FUTR_EXOG + "_mask"] = torch.cat([pmask[:, a:b], ahead_m])
        if self._static is not None:
            item[STAT_EXOG] = self._static[i]
            item[STAT_EXOG + "_mask"] = self._static_mask[i]
        if self._static_cat is not None:
            item[STAT_CAT] = self._static_cat[i]
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
        n_targets, n_hist, n_futr: the first ``n_targets`` channels are the targets, then
            ``n_hist`` past-only and ``n_futr`` future-known covariates (see
            :class:`SeriesWindows`; None / 0: every channel is a target).

    Items follow the batch schema of this module (``past``, ``future``, the masks, and
    ``time_index`` with ``first_index``). Missing values are 0 in ``past`` / ``future`` and False
    in the masks: they are never silently filled with a plausible number.
    """

    def __init__(self, values: np.ndarray, seq_len: int, horizon: int, mask: np.ndarray | None = None,
                 timestamps: pd.DatetimeIndex | None = None, columns: list[str] | None = None,
                 stride: int = 1, first_index: int | None = None, n_targets: int | None = None,
                 n_hist: int = 0, n_futr: int = 0) -> None:
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
                         first_index=None if first_index is None else [first_index],
                         n_targets=n_targets, n_hist=n_hist, n_futr=n_futr)
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
