"""``LTSFDataModule``: the long-horizon benchmarks as a ``LightningDataModule`` (exact protocol)."""

from __future__ import annotations

import os
from typing import List, Optional, Union

import lightning.pytorch as pl

from titans_ts.datasets import dataset_info, ltsf_splits, resolve_time_features
from titans_ts.datasets.ltsf import LTSFSplits
from titans_ts.datasets.windows import EpochShuffleSampler, collate_windows, window_loader

__all__ = ["LTSFDataModule", "window_loader", "EpochShuffleSampler", "collate_windows"]

#: stream ``k`` shuffles with seed ``seed + STREAM_SEED_STEP * k`` (stream 0: the single loader's)
STREAM_SEED_STEP = 7919


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
        streams: how many training loaders to run side by side, each with its own seeded order of
            the windows (every step then brings a list of ``streams`` batches): one per member of
            an ensemble (``model.ensemble``, to which the Lightning CLI links it).
        hist_exog, futr_exog: columns of the file read as past-only / future-known covariates
            instead of channels (``features="S"``: beside the target), scaled like the channels.
        time_features: calendar features of the rows as future-known covariates (None, "auto"
            or a list of names, :mod:`titans_ts.datasets.timefeatures`).
            The covariate counts (``n_hist_exog``, ``n_futr_exog``) are linked into the model.
    """

    def __init__(self, dataset: str = "ETTh1", seq_len: int = 96, horizon: int = 96,
                 root: str | None = None, batch_size: int = 64, eval_batch_size: int = 256,
                 features: str = "M", num_workers: int = 0, drop_last_train: bool = False,
                 seed: int = 0, shuffle: bool = True, streams: int = 1,
                 hist_exog: Optional[List[str]] = None, futr_exog: Optional[List[str]] = None,
                 time_features: Union[str, List[str], None] = None) -> None:
        super().__init__()
        info = dataset_info(dataset)  # fail early on an unknown name
        self.hist_exog, self.futr_exog = list(hist_exog or []), list(futr_exog or [])
        self.time_features = time_features
        self._time_names = resolve_time_features(time_features, info.freq)
        self.dataset, self.seq_len, self.horizon = dataset, seq_len, horizon
        self.root = root or os.environ.get("TITANS_TS_DATA")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.features, self.num_workers = features, num_workers
        self.drop_last_train, self.seed, self.shuffle = drop_last_train, seed, shuffle
        if isinstance(streams, bool) or not isinstance(streams, int) or streams < 1:
            raise ValueError(f"streams must be a positive integer (training loaders side by side), got {streams!r}")
        self.streams = streams
        self.splits: LTSFSplits | None = None

    @property
    def n_channels(self) -> int:
        self.setup()
        assert self.splits is not None  # setup() has read them
        return self.splits.train.n_channels

    @property
    def n_hist_exog(self) -> int:
        """Past-only covariates the windows carry."""
        return len(self.hist_exog)

    @property
    def n_futr_exog(self) -> int:
        """Future-known covariates the windows carry (the columns, then the calendar features)."""
        return len(self.futr_exog) + len(self._time_names)

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = ltsf_splits(self.dataset, self.seq_len, self.horizon, root=self.root,
                                      features=self.features, hist_exog=self.hist_exog,
                                      futr_exog=self.futr_exog, time_features=self.time_features)

    def train_dataloader(self):
        loaders = [window_loader(self.splits.train, self.batch_size, self.shuffle, self.num_workers,
                                 self.drop_last_train, self.seed + STREAM_SEED_STEP * k)
                   for k in range(self.streams)]
        return loaders[0] if self.streams == 1 else loaders

    def val_dataloader(self):
        return window_loader(self.splits.val, self.eval_batch_size, False, self.num_workers)

    def test_dataloader(self):
        return window_loader(self.splits.test, self.eval_batch_size, False, self.num_workers)

    def predict_dataloader(self):
        return self.test_dataloader()
