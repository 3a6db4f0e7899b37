"""``LTSFDataModule``: the long-horizon benchmarks as a ``LightningDataModule`` (exact protocol)."""

from __future__ import annotations

import os

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Sampler

from titans_ts.datasets import dataset_info, ltsf_splits

__all__ = ["LTSFDataModule", "window_loader", "EpochShuffleSampler", "collate_windows"]


def collate_windows(items):
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
                  drop_last: bool = False, seed: int = 0) -> DataLoader:
    """A loader over a ``WindowDataset``; evaluation loaders never drop a window."""
    sampler = EpochShuffleSampler(len(dataset), seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                      num_workers=num_workers, collate_fn=collate_windows,
                      persistent_workers=num_workers > 0)


class LTSFDataModule(pl.LightningDataModule):
    """Train / val / test windows of a benchmark dataset, split and scaled by the protocol.

    Args:
        dataset: catalogue name ("ETTh1", "weather", "national_illness", ...).
        seq_len, horizon: context and forecast lengths.
        root: data folder (else ``$TITANS_TS_DATA``, else the cache).
        batch_size: training batch size (evaluation uses ``eval_batch_size``).
        features: "M" (all channels) or "S" (target only).
        drop_last_train: drop the last partial training batch (never done for val / test).
        shuffle: shuffle the training windows (a seeded permutation per epoch).
    """

    def __init__(self, dataset: str = "ETTh1", seq_len: int = 96, horizon: int = 96,
                 root: str | None = None, batch_size: int = 64, eval_batch_size: int = 256,
                 features: str = "M", num_workers: int = 0, drop_last_train: bool = False,
                 seed: int = 0, shuffle: bool = True) -> None:
        super().__init__()
        dataset_info(dataset)  # fail early on an unknown name
        self.dataset, self.seq_len, self.horizon = dataset, seq_len, horizon
        self.root = root or os.environ.get("TITANS_TS_DATA")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.features, self.num_workers = features, num_workers
        self.drop_last_train, self.seed, self.shuffle = drop_last_train, seed, shuffle
        self.splits = None

    @property
    def n_channels(self) -> int:
        self.setup()
        return self.splits.train.n_channels

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = ltsf_splits(self.dataset, self.seq_len, self.horizon, root=self.root,
                                      features=self.features)

    def train_dataloader(self):
        return window_loader(self.splits.train, self.batch_size, self.shuffle, self.num_workers,
                             self.drop_last_train, self.seed)

    def val_dataloader(self):
        return window_loader(self.splits.val, self.eval_batch_size, False, self.num_workers)

    def test_dataloader(self):
        return window_loader(self.splits.test, self.eval_batch_size, False, self.num_workers)

    def predict_dataloader(self):
        return self.test_dataloader()
