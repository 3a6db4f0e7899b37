"""``TitansForecaster``: an sklearn-style estimator on pandas / polars frames.

    from titans_ts import TitansForecaster
    fc = TitansForecaster(h=24, context_length=96).fit(df)      # long or wide, pandas or polars
    fc.predict()                                                # the next 24 steps of every series
    fc.update(new_rows)                                         # memorise new data, no retraining
    fc.predict()                                                # continues from the latest data

One global model is trained on every series (windows of ``context_length`` past steps and ``h``
future steps; series shorter than a full window are left-padded with unobserved steps). Missing
values are explicit: NaN / null become unobserved steps (masked in the input, the loss and the
memory writes); nothing is filled or dropped.

**Memory across windows.** Every forecast runs the neural memory at test time over the last
``context_length`` steps (it memorises them, then is read). With ``test_time_memory=True`` each
series also keeps its memory's state *across* windows: after ``fit`` and every ``update``, each
complete block of ``context_length`` steps of the history that lies wholly before the current
context has been written into the memory, oldest first, blocks aligned to the start of the
series, and ``predict`` starts from that state instead of the learned initial memory. ``update``
changes it without touching a single trained parameter. It is off by default: a network trained
on single windows has never seen its memory run for thousands of steps, the inner gradient
descent can then diverge (a soft clamp on the surprise, ``carry_clamp``, keeps it finite), and
on ETTh1 the carried state did not improve the forecast (docs/benchmarks/test_time_memory.md).
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from .datasets.frames import DataValidationError, SeriesCollection, from_frame

__all__ = ["TitansForecaster"]

_FORMAT = "titans-ts-forecaster/1"


class _Windows(torch.utils.data.Dataset):
    """(series, end) windows: ``past`` = the L steps before ``end`` (left-padded, unobserved, when
    the series starts later), ``future`` = the h steps from ``end``."""

    def __init__(self, values, masks, ends, L, h, target_channels, firsts=None):
        self.values, self.masks, self.ends, self.L, self.h = values, masks, ends, L, h
        self.target_channels, self.firsts = target_channels, firsts

    def __len__(self):
        return len(self.ends)

    def __getitem__(self, k):
        i, e = self.ends[k]
        past, pmask = _context(self.values[i], self.masks[i], e, self.L)
        fut = self.values[i][e:e + self.h]
        fmask = self.masks[i][e:e + self.h].copy()
        fmask[:, self.target_channels:] = False  # covariates are inputs, never targets
        item = {"past": torch.from_numpy(past), "past_mask": torch.from_numpy(pmask),
                "future": torch.from_numpy(np.nan_to_num(fut)), "future_mask": torch.from_numpy(fmask)}
        if self.firsts is not None:
            item["time_index"] = torch.tensor(self.firsts[i] + e - self.L, dtype=torch.int64)
        return item


def first_steps(index: list, freq: str | None) -> list[int]:
    """Each series' first step counted in ``freq`` steps from 1970-01-01 (the phase a learned
    cycle reads, the same for every series and for any later call); integer-indexed series count
    from their own first row."""
    out = []
    for idx in index:
        if idx is None or len(idx) == 0:
            out.append(0)
            continue
        if freq is None:
            raise ValueError("cycle_len needs the series' frequency to place each step in the cycle; "
                             "pass freq=... (a pandas alias such as 'h' or 'W-SUN')")
        off = pd.tseries.frequencies.to_offset(freq)
        t0 = idx[0]
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


def _context(values: np.ndarray, mask: np.ndarray, end: int, L: int):
    """The L rows before ``end`` (zeros / unobserved where the series has none)."""
    start = end - L
    v = values[max(start, 0):end]
    m = mask[max(start, 0):end]
    if start < 0:
        v = np.concatenate([np.zeros((-start, v.shape[1]), np.float32), v])
        m = np.concatenate([np.zeros((-start, m.shape[1]), bool), m])
    return np.nan_to_num(v).astype(np.float32), m.copy()


class _carry_clamp:
    """Temporarily set the memories' surprise clamp (for passes that start from carried state)."""

    def __init__(self, net, tau):
        self.mems = [b.memory for b in net.blocks if hasattr(b, "memory")]
        self.tau = tau

    def __enter__(self):
        self.saved = [m.surprise_clamp for m in self.mems]
        for m in self.mems:
            m.surprise_clamp = self.tau

    def __exit__(self, *exc):
        for m, tau in zip(self.mems, self.saved):
            m.surprise_clamp = tau


def _cat_states(per_series: list[list]) -> list:
    """Per-series lists (one MemoryState per block) -> one batched list (None where stateless)."""
    from .memory import MemoryState

    out = []
    for b in range(len(per_series[0])):
        sts = [s[b] for s in per_series]
        if sts[0] is None:
            out.append(None)
            continue
        ref = next((s.conv for s in sts if s.conv is not None), None)
        # a state without a convolution cache is one that has read nothing yet: zero history
        conv = None if ref is None else torch.cat([torch.zeros_like(ref[:s.weights[0].shape[0]])
                                                   if s.conv is None else s.conv for s in sts])
        out.append(MemoryState(tuple(torch.cat(ws) for ws in zip(*[s.weights for s in sts])),
                               tuple(torch.cat(ms) for ms in zip(*[s.momentum for s in sts])), conv))
    return out


def _split_states(states: list, rows: int, n: int) -> list[list]:
    from .memory import MemoryState

    out = [[] for _ in range(n)]
    for st in states:
        for i in range(n):
            if st is None:
                out[i].append(None)
                continue
            sl = slice(i * rows, (i + 1) * rows)
            out[i].append(MemoryState(tuple(w[sl].contiguous() for w in st.weights),
                                      tuple(m[sl].contiguous() for m in st.momentum),
                                      None if st.conv is None else st.conv[sl].contiguous()))
    return out


class TitansForecaster(BaseEstimator):
    """A Titans forecaster with the ``fit`` / ``predict`` interface of scikit-learn.

    Args:
        h: forecast horizon (steps); ``predict(h=...)`` may ask for fewer.
        context_length: past steps the network reads (L).
        variant: "lmm" (memory only), "mac", "mag", "mal" or "none" (no memory).
        tokenizer: "patch" (channel-independent patches) or "variate" (one token per channel).
        patch_len, stride: patching; ``patch_len`` is clipped to ``context_length``.
        d_model, n_layers, dropout, mlp_expansion: network size.
        memory: keyword arguments of :class:`titans_ts.NeuralMemory` (heads, depth, expansion,
            chunk_size, momentum, forgetting, max_lr, ...).
        cycle_len: period in steps of a learned cycle per channel (0: none), e.g. 24 for a daily
            cycle of hourly data. Each step's phase is its time counted in ``freq`` steps from
            1970-01-01 (integer-indexed arrays: its row), so it holds for any series and any
            later ``predict`` / ``update``.
        head: "point", "quantile" (pinball loss on ``quantiles``) or "student_t" (likelihood).
        quantiles: levels of the quantile head; for "student_t", the levels ``predict`` reports.
        loss: point-head loss: "mse", "mae" or "huber".
        lr, weight_decay, batch_size, max_epochs, patience: training; early stopping watches the
            validation loss on the last ``h`` steps of every series (``val_size=0`` disables it).
        limit_train_batches: cap on training batches per epoch (None: all windows).
        val_size: steps per series held out for early stopping (None: ``h``; 0: none).
        test_time_memory: keep each series' memory state across windows (see module docs).
        carry_clamp: soft clamp on the surprise norm while the memory is carried across windows
            (``surprise_clamp`` of :func:`titans_ts.memory_scan`; None: off).
        freq: pandas frequency alias; inferred from the data if None.
        id_col, time_col, target_col: column names of long frames (``time_col`` None: ``ds``,
            or ``date`` in wide frames).
        covariates: extra numeric columns of a long frame used as past inputs (their future
            values are not needed and not forecast).
        seed: seed of initialisation, shuffling and dropout.
        accelerator: Lightning accelerator ("cpu", "gpu", "auto").
        verbose: progress bar and Lightning's messages.
    """

    def __init__(self, h: int = 24, context_length: int = 96, variant: str = "lmm",
                 tokenizer: str = "patch", patch_len: int = 16, stride: int = 8, d_model: int = 64,
                 n_layers: int = 1, memory: dict | None = None, dropout: float = 0.1, cycle_len: int = 0,
                 mlp_expansion: float = 2.0, head: str = "point",
                 quantiles: Sequence[float] = (0.1, 0.5, 0.9), loss: str = "mse", lr: float = 1e-3,
                 weight_decay: float = 1e-4, batch_size: int = 64, max_epochs: int = 20,
                 patience: int = 3, limit_train_batches: int | None = None,
                 val_size: int | None = None, test_time_memory: bool = False,
                 carry_clamp: float | None = 1.0,
                 freq: str | None = None, id_col: str = "unique_id", time_col: str | None = None,
                 target_col: str = "y", covariates: Sequence[str] | None = None, seed: int = 0,
                 accelerator: str = "cpu", verbose: bool = False) -> None:
        self.h = h
        self.context_length = context_length
        self.variant = variant
        self.tokenizer = tokenizer
        self.patch_len = patch_len
        self.stride = stride
        self.d_model = d_model
        self.n_layers = n_layers
        self.memory = memory
        self.dropout = dropout
        self.cycle_len = cycle_len
        self.mlp_expansion = mlp_expansion
        self.head = head
        self.quantiles = quantiles
        self.loss = loss
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.limit_train_batches = limit_train_batches
        self.val_size = val_size
        self.test_time_memory = test_time_memory
        self.carry_clamp = carry_clamp
        self.freq = freq
        self.id_col = id_col
        self.time_col = time_col
        self.target_col = target_col
        self.covariates = covariates
        self.seed = seed
        self.accelerator = accelerator
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        def positive_int(name):
            val = getattr(self, name)
            if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{name} must be a positive integer, got {val!r}")

        if not isinstance(self.cycle_len, (int, np.integer)) or isinstance(self.cycle_len, bool) \
                or self.cycle_len < 0:
            raise ValueError(f"cycle_len must be an integer >= 0 (0: no cycle), got {self.cycle_len!r}")
        for name in ("h", "context_length", "patch_len", "stride", "d_model", "n_layers",
                     "batch_size", "max_epochs"):
            positive_int(name)
        if self.head not in ("point", "quantile", "student_t"):
            raise ValueError(f"head must be 'point', 'quantile' or 'student_t', got {self.head!r}")
        if self.variant not in ("lmm", "mac", "mag", "mal", "none"):
            raise ValueError(f"variant must be 'lmm', 'mac', 'mag', 'mal' or 'none', got {self.variant!r}")
        qs = list(self.quantiles)
        if not qs or not all(0 < float(q) < 1 for q in qs) or sorted(qs) != qs or len(set(qs)) != len(qs):
            raise ValueError(f"quantiles must be increasing levels strictly between 0 and 1, got {self.quantiles!r}")
        if self.val_size is not None and (not isinstance(self.val_size, (int, np.integer)) or self.val_size < 0):
            raise ValueError(f"val_size must be None or an integer >= 0, got {self.val_size!r}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. "
                                 "Call 'fit' with a data frame first.")

    def _collection(self, df: Any) -> SeriesCollection:
        return from_frame(df, id_col=self.id_col, time_col=self.time_col, target_col=self.target_col,
                          covariates=self.covariates, freq=getattr(self, "freq_", None) or self.freq)

    @staticmethod
    def _inputs(coll: SeriesCollection) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per series [T, C + K] values (targets then covariates) and masks."""
        if coll.covariates is None:
            return [v.astype(np.float32) for v in coll.values], [m.copy() for m in coll.masks]
        vals = [np.concatenate([v, c], 1).astype(np.float32) for v, c in zip(coll.values, coll.covariates)]
        return vals, [~np.isnan(v) for v in vals]

    # ------------------------------------------------------------------ fit
    def _module_kwargs(self, n_inputs: int) -> dict:
        L = self.context_length
        return dict(seq_len=L, horizon=self.h, n_channels=n_inputs, tokenizer=self.tokenizer,
                    patch_len=min(self.patch_len, L), stride=self.stride, d_model=self.d_model,
                    n_layers=self.n_layers, variant=self.variant,
                    memory=dict(self.memory) if self.memory else None, mlp_expansion=self.mlp_expansion,
                    dropout=self.dropout, head=self.head, quantiles=tuple(float(q) for q in self.quantiles),
                    loss=self.loss, lr=self.lr, weight_decay=self.weight_decay, scheduler="cosine",
                    cycle_len=int(self.cycle_len))

    def _firsts(self, index: list, freq: str | None) -> list[int] | None:
        return first_steps(index, freq) if self.cycle_len else None

    def _train_windows(self, values, masks, val_size):
        L, h = self.context_length, self.h
        train, val = [], []
        for i, v in enumerate(values):
            T = v.shape[0]
            t_end = T - val_size
            first = max(1, min(L, t_end - h))
            train += [(i, e) for e in range(first, t_end - h + 1)]
            if val_size:
                val += [(i, e) for e in range(max(t_end, 1), T - h + 1)]
        return train, val

    def fit(self, df: Any, callbacks: list | None = None, trial: Any = None) -> "TitansForecaster":
        """Train on every series of ``df`` (pandas or polars; long or wide). Returns ``self``.

        ``callbacks`` are extra Lightning callbacks; ``trial`` (an optuna trial) adds median
        pruning on the validation loss."""
        import lightning.pytorch as pl

        from .lightning_module import TitansLightningModule
        from .training import make_trainer, quiet_lightning

        self._check_params()
        coll = self._collection(df)
        h, L = self.h, self.context_length
        val_size = h if self.val_size is None else int(self.val_size)
        coll.check_min_length(h + 1 + val_size, what="h + 1 (+ val_size for early stopping)")
        values, masks = self._inputs(coll)
        train_idx, val_idx = self._train_windows(values, masks, val_size)
        firsts = self._firsts(coll.index, coll.freq)
        C = coll.n_channels
        n_in = values[0].shape[1]
        pl.seed_everything(self.seed, verbose=False)
        module = TitansLightningModule(**self._module_kwargs(n_in))
        gen = torch.Generator().manual_seed(self.seed)
        train_dl = torch.utils.data.DataLoader(_Windows(values, masks, train_idx, L, h, C, firsts),
                                               batch_size=self.batch_size, shuffle=True, generator=gen)
        val_dl = (torch.utils.data.DataLoader(_Windows(values, masks, val_idx, L, h, C, firsts),
                                              batch_size=max(self.batch_size, 256)) if val_idx else None)
        root = tempfile.mkdtemp(prefix="titans-ts-fit-")
        try:
            cbs = list(callbacks or [])
            if trial is not None:
                from .tuning import pruning_callback

                cbs.append(pruning_callback(trial, "val_loss"))
            trainer = make_trainer(
                max_epochs=self.max_epochs, patience=self.patience if val_dl is not None else None,
                root_dir=root, verbose=self.verbose, checkpoint=val_dl is not None, callbacks=cbs,
                accelerator=self.accelerator, devices=1, gradient_clip_val=1.0,
                limit_train_batches=self.limit_train_batches or 1.0,
                num_sanity_val_steps=0, **({} if val_dl is not None else {"limit_val_batches": 0}))
            with quiet_lightning(self.verbose):
                trainer.fit(module, train_dl, val_dl)
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            if best:
                state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
                module.load_state_dict(state)
            self.best_val_loss_ = (float(trainer.checkpoint_callback.best_model_score)
                                   if best and trainer.checkpoint_callback.best_model_score is not None else None)
            self.n_epochs_ = int(trainer.current_epoch)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        module = module.cpu().eval()
        self.model_ = module
        self.freq_ = coll.freq
        self.n_targets_ = C
        self.n_inputs_ = n_in
        self.channels_ = list(coll.channels)
        self.covariate_names_ = list(coll.covariate_names)
        self.layout_ = coll.layout
        self.flavour_ = coll.flavour
        self.time_col_ = coll.time_col
        self._set_history(coll)
        return self

    # ------------------------------------------------------------------ state
    def _set_history(self, coll: SeriesCollection) -> None:
        values, masks = self._inputs(coll)
        self.history_ = {"ids": list(coll.ids), "values": values, "masks": masks,
                         "index": list(coll.index), "firsts": self._firsts(coll.index, coll.freq)}
        self._memory_ = [None] * len(coll.ids)
        self._memorised_ = [0] * len(coll.ids)
        self._memorise(range(len(coll.ids)))

    @torch.no_grad()
    def _memorise(self, which) -> None:
        """Write every complete, not yet memorised block of L steps that ends at or before the
        start of the current context into each series' memory (oldest first)."""
        if not self.test_time_memory or self.variant == "none":
            return
        net, L = self.model_.net, self.context_length
        hist = self.history_
        which = list(which)
        while True:
            todo = [i for i in which
                    if self._memorised_[i] + L <= hist["values"][i].shape[0] - L]
            if not todo:
                return
            for start in range(0, len(todo), 256):
                part = todo[start:start + 256]
                past = np.stack([np.nan_to_num(hist["values"][i][self._memorised_[i]:self._memorised_[i] + L])
                                 for i in part]).astype(np.float32)
                pmask = np.stack([hist["masks"][i][self._memorised_[i]:self._memorised_[i] + L] for i in part])
                states = None
                if any(self._memory_[i] is not None for i in part):
                    states = self._batch_states(part, self._memory_)
                ti = None if hist.get("firsts") is None else torch.tensor(
                    [hist["firsts"][i] + self._memorised_[i] for i in part])
                with _carry_clamp(net, self.carry_clamp):
                    _, finals = net(torch.from_numpy(past), torch.from_numpy(pmask), states=states,
                                    return_states=True, time_index=ti)
                rows = net.memory_rows(1, past.shape[2])
                for i, st in zip(part, _split_states(finals, rows, len(part))):
                    self._memory_[i] = st
                    self._memorised_[i] += L

    def _batch_states(self, part: list[int], memory: list) -> list:
        """The per-series states ``memory[i]`` of the series in ``part``, batched (the learned
        initial memory for series that have none yet)."""
        net = self.model_.net
        rows = net.memory_rows(1, self.n_inputs_)
        per = []
        for i in part:
            st = memory[i]
            if st is None:
                st = [blk.memory.initial_state(rows) if hasattr(blk, "memory") else None
                      for blk in net.blocks]
                st = [None if s is None else s._replace(weights=tuple(w.contiguous() for w in s.weights),
                                                        momentum=tuple(m.contiguous() for m in s.momentum))
                      for s in st]
            per.append(st)
        return _cat_states(per)

    # ------------------------------------------------------------------ predict
    @torch.no_grad()
    def _forecast(self, values, masks, memory=None, firsts=None):
        """Raw network output for the last L steps of each series (memory: per-series states;
        firsts: each series' first step, for a learned cycle)."""
        net, L = self.model_.net, self.context_length
        outs = []
        n = len(values)
        for start in range(0, n, 256):
            idx = list(range(start, min(n, start + 256)))
            ctx = [_context(values[i], masks[i], values[i].shape[0], L) for i in idx]
            past = torch.from_numpy(np.stack([c[0] for c in ctx]))
            pmask = torch.from_numpy(np.stack([c[1] for c in ctx]))
            ti = None if firsts is None else torch.tensor(
                [firsts[i] + values[i].shape[0] - L for i in idx])
            states = None
            if memory is not None and any(memory[i] is not None for i in idx):
                states = self._batch_states(idx, memory)
            if states is None:
                out = net(past, pmask, time_index=ti)
            else:
                with _carry_clamp(net, self.carry_clamp):
                    out = net(past, pmask, states=states, time_index=ti)
            outs.append(out)
        return outs

    def _quantile_arrays(self, outs, levels_q: list[float]):
        """Point [N, H, C] and per-level quantiles {q: [N, H, C]} of the network outputs."""
        net = self.model_.net
        point = np.concatenate([net.point_forecast(o).numpy() for o in outs])
        qs = {}
        if self.head == "quantile":
            trained = [float(q) for q in self.quantiles]
            stacked = np.concatenate([o.numpy() for o in outs])
            for q in levels_q:
                j = next((k for k, t in enumerate(trained) if abs(t - q) < 1e-9), None)
                if j is None:
                    raise ValueError(f"the quantile head was trained on levels {trained}; level {q} "
                                     "is not among them (refit with quantiles=[...] including it)")
                qs[q] = stacked[..., j]
        elif self.head == "student_t":
            from scipy.stats import t as student_t

            df_ = np.concatenate([o.df.numpy() for o in outs])
            loc = np.concatenate([o.loc.numpy() for o in outs])
            scale = np.concatenate([o.scale.numpy() for o in outs])
            for q in levels_q:
                qs[q] = (loc + scale * student_t.ppf(q, df_)).astype(np.float32)
        return point, qs

    def predict(self, h: int | None = None, df: Any = None, levels: Sequence[float] | None = None,
                quantiles: Sequence[float] | None = None) -> Any:
        """Forecast the next ``h`` steps (default: the trained horizon) of every series.

        Args:
            h: steps to forecast, 1 .. the trained ``h``.
            df: forecast from the end of these series instead of the stored history (same
                columns as in ``fit``; any series ids); the stored state is left unchanged.
            levels: prediction-interval levels in percent (e.g. ``[80, 95]``) -> ``lo-80`` /
                ``hi-80`` columns (probabilistic heads only).
            quantiles: quantile levels to report (default: the estimator's ``quantiles`` for
                probabilistic heads) -> ``q0.1`` ... columns.

        Returns a frame in the flavour of the training data (pandas or polars): long frames get
        ``unique_id``, ``ds`` and ``<target>_hat`` (plus quantile / interval columns); wide
        frames one column per channel (plus ``<channel>_q0.1`` ...).
        """
        self._check_fitted()
        h = self.h if h is None else h
        if not isinstance(h, (int, np.integer)) or isinstance(h, bool) or not 1 <= h <= self.h:
            raise ValueError(f"h must be an integer in 1..{self.h} (the trained horizon), got {h!r}; "
                             f"refit with a larger h for longer forecasts")
        if self.head == "point" and (levels or quantiles):
            raise ValueError("levels / quantiles need a probabilistic head ('quantile' or 'student_t'); "
                             "this forecaster was trained with head='point'")
        levels = list(levels or [])
        for lv in levels:
            if not 0 < float(lv) < 100:
                raise ValueError(f"levels are percentages strictly between 0 and 100, got {lv!r}")
        if quantiles is None and self.head != "point":
            quantiles = [] if levels else [float(q) for q in self.quantiles]
        quantiles = [float(q) for q in (quantiles or [])]
        level_q = sorted({round(0.5 - lv / 200, 10) for lv in levels} | {round(0.5 + lv / 200, 10) for lv in levels})
        if df is None:
            ids, index = self.history_["ids"], self.history_["index"]
            values, masks, memory = self.history_["values"], self.history_["masks"], self._memory_
            freq, flavour = self.freq_, self.flavour_
            firsts = self.history_.get("firsts")
        else:
            coll = self._check_new(self._collection(df), same_ids=False)
            values, masks = self._inputs(coll)
            ids, index, freq, flavour = coll.ids, coll.index, coll.freq, coll.flavour
            firsts = self._firsts(coll.index, self.freq_)
            memory = self._memory_for(values, masks, firsts)
        outs = self._forecast(values, masks, memory, firsts)
        point, qs = self._quantile_arrays(outs, sorted(set(quantiles) | set(level_q)))
        return self._frame(ids, index, [v.shape[0] for v in values], freq, flavour, point[:, :h],
                           {q: a[:, :h] for q, a in qs.items()}, quantiles, levels, h)

    def _memory_for(self, values, masks, firsts=None):
        """Memory states of other series (predict(df=...)), without touching the stored ones."""
        if not self.test_time_memory or self.variant == "none":
            return None
        saved = (self.history_, self._memory_, self._memorised_)
        try:
            self.history_ = {"ids": None, "values": values, "masks": masks, "index": None,
                             "firsts": firsts}
            self._memory_ = [None] * len(values)
            self._memorised_ = [0] * len(values)
            self._memorise(range(len(values)))
            return self._memory_
        finally:
            self.history_, self._memory_, self._memorised_ = saved

    def _frame(self, ids, index, lengths, freq, flavour, point, qs, quantiles, levels, h):
        rows = []
        for n, sid in enumerate(ids):
            idx, T = index[n], lengths[n]
            if idx is None or freq is None:
                fut = np.arange(T, T + h)
            else:
                fut = pd.date_range(idx[-1], periods=h + 1, freq=freq)[1:]
            part = {}
            if self.layout_ == "wide":
                part[self.time_col_] = fut
                for c, ch in enumerate(self.channels_):
                    part[ch] = point[n, :, c]
                    for q in quantiles:
                        part[f"{ch}_q{q:g}"] = qs[q][n, :, c]
                    for lv in levels:
                        part[f"{ch}_lo-{lv:g}"] = qs[round(0.5 - lv / 200, 10)][n, :, c]
                        part[f"{ch}_hi-{lv:g}"] = qs[round(0.5 + lv / 200, 10)][n, :, c]
            else:
                part[self.id_col] = [sid] * h
                part[self.time_col_] = fut
                part[f"{self.target_col}_hat"] = point[n, :, 0]
                for q in quantiles:
                    part[f"q{q:g}"] = qs[q][n, :, 0]
                for lv in levels:
                    part[f"lo-{lv:g}"] = qs[round(0.5 - lv / 200, 10)][n, :, 0]
                    part[f"hi-{lv:g}"] = qs[round(0.5 + lv / 200, 10)][n, :, 0]
            rows.append(pd.DataFrame(part))
        out = pd.concat(rows, ignore_index=True)
        if flavour == "polars":
            import polars as pl

            return pl.from_pandas(out)
        return out

    # ------------------------------------------------------------------ update
    def _check_new(self, coll: SeriesCollection, same_ids: bool) -> SeriesCollection:
        if list(coll.channels) != self.channels_ or list(coll.covariate_names) != self.covariate_names_:
            raise DataValidationError(
                f"the frame has channels {coll.channels} and covariates {coll.covariate_names}; this "
                f"forecaster was fitted on channels {self.channels_} and covariates {self.covariate_names_}")
        if coll.layout != self.layout_:
            raise DataValidationError(f"the frame is {coll.layout}; this forecaster was fitted on a "
                                      f"{self.layout_} frame")
        if same_ids:
            known = set(self.history_["ids"])
            unknown = [i for i in coll.ids if i not in known]
            if unknown:
                raise DataValidationError(
                    f"update() got series the forecaster has not seen: {unknown[:5]}; update() extends "
                    f"known series (use predict(df=...) to forecast new ones, or fit again)")
        return coll

    def update(self, df: Any) -> "TitansForecaster":
        """Append newly observed rows (the steps right after each series' last timestamp) and
        write them into the series' memories. No trained parameter changes. Returns ``self``.

        Series not in ``df`` are left as they are; ``df`` may hold any subset of the known ids."""
        self._check_fitted()
        coll = self._check_new(self._collection(df), same_ids=True)
        values, masks = self._inputs(coll)
        pos = {sid: k for k, sid in enumerate(self.history_["ids"])}
        # check every series before changing any
        for n, sid in enumerate(coll.ids):
            k = pos[sid]
            old = self.history_["index"][k]
            new = coll.index[n]
            if old is not None and new is not None and self.freq_ is not None:
                expected = pd.date_range(old[-1], periods=2, freq=self.freq_)[1]
                if new[0] != expected:
                    raise DataValidationError(
                        f"series {sid!r}: update() rows must start right after the last known "
                        f"timestamp {old[-1]} (expected {expected}, got {new[0]}); pass only new rows, "
                        f"with NaN for missing values")
        touched = []
        for n, sid in enumerate(coll.ids):
            k = pos[sid]
            self.history_["values"][k] = np.concatenate([self.history_["values"][k], values[n]])
            self.history_["masks"][k] = np.concatenate([self.history_["masks"][k], masks[n]])
            old = self.history_["index"][k]
            if old is not None and coll.index[n] is not None:
                self.history_["index"][k] = old.append(coll.index[n])
            touched.append(k)
        self._memorise(touched)
        return self

    # ------------------------------------------------------------------ evaluation
    def cross_validation(self, df: Any, n_windows: int = 1, step: int | None = None,
                         refit: bool | int = False, h: int | None = None) -> Any:
        """Rolling-origin evaluation on the end of every series.

        Cutoffs: the last ``n_windows`` origins, ``step`` steps apart (default ``h``), the last one
        ``h`` steps before the end. ``refit=False``: train once on the data before the first
        cutoff and forecast every window from the history up to its cutoff (memory included);
        ``refit=True``: retrain before every window on the data up to its cutoff; ``refit=k``:
        retrain before windows 0, k, 2k, ... Returns the forecasts with ``cutoff`` and the true
        values (column ``<target>``, or the channel names with ``_true`` appended for wide frames).
        """
        self._check_params()
        h = self.h if h is None else h
        step = h if step is None else step
        if not isinstance(n_windows, (int, np.integer)) or n_windows < 1:
            raise ValueError(f"n_windows must be a positive integer, got {n_windows!r}")
        if not isinstance(step, (int, np.integer)) or step < 1:
            raise ValueError(f"step must be a positive integer, got {step!r}")
        if isinstance(refit, bool):
            every = 1 if refit else 0
        elif isinstance(refit, (int, np.integer)) and refit >= 1:
            every = int(refit)
        else:
            raise ValueError(f"refit must be True, False or a positive integer k, got {refit!r}")
        coll = self._collection(df)
        back = h + (n_windows - 1) * step
        coll.check_min_length(back + h + 1, what="h + (n_windows - 1) * step + h + 1")
        pdf = _as_pandas(df)
        cut_frames = []
        model = None
        for w in range(n_windows):
            trim = back - w * step  # steps removed from the end: the history ends at the cutoff
            hist = _head_rows(pdf, coll, trim, self.id_col, coll.time_col)
            if model is None or (every and w % every == 0):
                model = _fresh(self).fit(hist)
            # forecast from this window's history (memory rebuilt from it), trained parameters
            # of the last refit
            fc = model.predict(h=h, df=hist)
            fc = _as_pandas(fc)
            truth = _truth_rows(pdf, coll, trim, h, self.id_col, coll.time_col)
            if coll.layout == "wide":
                fc["cutoff"] = _last_time(hist, coll.time_col)
                for ch in coll.channels:
                    fc[f"{ch}_true"] = truth[ch].to_numpy()
            else:
                cut = hist.groupby(self.id_col, sort=False)[coll.time_col].max()
                fc["cutoff"] = fc[self.id_col].map(cut)
                fc[self.target_col] = truth[self.target_col].to_numpy()
            cut_frames.append(fc)
        out = pd.concat(cut_frames, ignore_index=True)
        if coll.flavour == "polars":
            import polars as pl

            return pl.from_pandas(out)
        return out

    def score(self, df: Any, metric: str = "mae", season: int = 1) -> float:
        """The error of forecasting the last ``h`` steps of every series of ``df`` from the rest
        (with the trained parameters): ``metric`` one of "mae", "mse", "rmse", "smape", "mase".
        Lower is better (unlike scikit-learn regressors' R^2)."""
        from . import metrics

        self._check_fitted()
        fns = {"mae": metrics.mae, "mse": metrics.mse, "rmse": metrics.rmse, "smape": metrics.smape}
        if metric not in (*fns, "mase"):
            raise ValueError(f"metric must be one of {sorted((*fns, 'mase'))}, got {metric!r}")
        coll = self._collection(df)
        coll.check_min_length(self.h + 1, what="h + 1")
        values, masks = self._inputs(coll)
        h, C = self.h, self.n_targets_
        hist_v = [v[:-h] for v in values]
        hist_m = [m[:-h] for m in masks]
        firsts = self._firsts(coll.index, self.freq_)
        outs = self._forecast(hist_v, hist_m, self._memory_for(hist_v, hist_m, firsts), firsts)
        point, _ = self._quantile_arrays(outs, [])
        y = np.stack([v[-h:, :C] for v in values])
        m = np.stack([mk[-h:, :C] for mk in masks])
        if metric == "mase":
            vals = [metrics.mase(y[i][:, c], point[i][:, c], hist_v[i][:, c], season=season,
                                 mask=m[i][:, c]) for i in range(len(values)) for c in range(C)]
            return float(np.mean(vals))
        return float(fns[metric](np.nan_to_num(y), point, mask=m))

    # ------------------------------------------------------------------ plot
    def plot(self, forecast: Any = None, df: Any = None, ids: Sequence[str] | None = None,
             levels: Sequence[float] | None = None, out: str | os.PathLike | None = None,
             history_steps: int | None = None, max_series: int = 4):
        """History, forecast and intervals with matplotlib (returns the figure; saved if ``out``).

        ``forecast`` defaults to ``predict(levels=levels)``; ``df`` to the stored history."""
        from .plotting import plot_forecast_frame

        self._check_fitted()
        if forecast is None:
            forecast = self.predict(df=df, levels=levels if self.head != "point" else None)
        fc = _as_pandas(forecast)
        hist = _as_pandas(df) if df is not None else self._history_frame()
        steps = history_steps if history_steps is not None else 3 * self.context_length
        if self.layout_ == "wide":
            ch = self.channels_[0]
            hist = hist.assign(**{self.id_col: ch}).rename(columns={ch: "y"})[[self.id_col, self.time_col_, "y"]]
            fc = fc.assign(**{self.id_col: ch}).rename(columns={ch: "y_hat"})
            fc = fc.rename(columns={c: c[len(ch) + 1:] for c in fc.columns if c.startswith(ch + "_")})
            target, point = "y", "y_hat"
        else:
            target, point = self.target_col, f"{self.target_col}_hat"
        if ids is not None:
            hist = hist[hist[self.id_col].isin(ids)]
            fc = fc[fc[self.id_col].isin(ids)]
        hist = hist.groupby(self.id_col, sort=False).tail(steps)
        return plot_forecast_frame(hist, fc, out, id_col=self.id_col, time_col=self.time_col_,
                                   target_col=target, point_col=point, max_series=max_series,
                                   levels=tuple(levels) if levels else None)

    def _history_frame(self) -> pd.DataFrame:
        parts = []
        C = self.n_targets_
        for sid, v, idx in zip(self.history_["ids"], self.history_["values"], self.history_["index"]):
            t = idx if idx is not None else np.arange(len(v))
            if self.layout_ == "wide":
                part = pd.DataFrame(v[:, :C], columns=self.channels_)
                part.insert(0, self.time_col_, t)
            else:
                part = pd.DataFrame({self.id_col: sid, self.time_col_: t, self.target_col: v[:, 0]})
            parts.append(part)
        return pd.concat(parts, ignore_index=True)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the parameters, trained weights and history to one file (tensors, numbers and
        strings only: it loads with ``torch.load(weights_only=True)``)."""
        self._check_fitted()
        hist = self.history_
        payload = {
            "format": _FORMAT,
            "params": json.dumps(_jsonable(self.get_params())),
            "tuple_params": [k for k, v in self.get_params().items() if isinstance(v, tuple)],
            "fitted": json.dumps({"freq_": self.freq_, "n_targets_": self.n_targets_,
                                  "n_inputs_": self.n_inputs_, "channels_": self.channels_,
                                  "covariate_names_": self.covariate_names_, "layout_": self.layout_,
                                  "flavour_": self.flavour_, "time_col_": self.time_col_,
                                  "best_val_loss_": self.best_val_loss_, "n_epochs_": self.n_epochs_,
                                  "ids": [str(i) for i in hist["ids"]]}),
            "state_dict": {k: v.detach().clone() for k, v in self.model_.state_dict().items()},
            "values": [torch.from_numpy(v) for v in hist["values"]],
            "masks": [torch.from_numpy(m) for m in hist["masks"]],
            "index": [torch.from_numpy(idx.asi8.copy()) if idx is not None else torch.empty(0, dtype=torch.int64)
                      for idx in hist["index"]],
            "has_index": [idx is not None for idx in hist["index"]],
            "tz": [str(idx.tz) if idx is not None and idx.tz is not None else "" for idx in hist["index"]],
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TitansForecaster":
        """Read a file written by :meth:`save` (with ``weights_only=True``); the memory states are
        rebuilt from the saved history, exactly as ``fit`` built them."""
        from .lightning_module import TitansLightningModule

        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a TitansForecaster file (format {_FORMAT!r})")
        params = json.loads(payload["params"])
        for key in payload.get("tuple_params", []):
            params[key] = tuple(params[key])
        self = cls(**params)
        fitted = json.loads(payload["fitted"])
        ids = fitted.pop("ids")
        for k, v in fitted.items():
            setattr(self, k, v)
        module = TitansLightningModule(**self._module_kwargs(self.n_inputs_))
        module.load_state_dict(payload["state_dict"])
        self.model_ = module.eval()
        index = []
        for raw, has, tz in zip(payload["index"], payload["has_index"], payload["tz"]):
            if not has:
                index.append(None)
                continue
            idx = pd.DatetimeIndex(raw.numpy().astype("datetime64[ns]"))
            index.append(idx.tz_localize("UTC").tz_convert(tz) if tz else idx)
        self.history_ = {"ids": ids, "values": [v.numpy() for v in payload["values"]],
                         "masks": [m.numpy() for m in payload["masks"]], "index": index,
                         "firsts": self._firsts(index, self.freq_)}
        self._memory_ = [None] * len(ids)
        self._memorised_ = [0] * len(ids)
        self._memorise(range(len(ids)))
        return self

    # ------------------------------------------------------------------ tuning
    def tune(self, df: Any, space: dict | str | os.PathLike, n_trials: int = 20,
             storage: str | None = None, study_name: str | None = None, refit: bool = True,
             seed: int = 0):
        """Search hyper-parameters with optuna (TPE sampler, median pruning on the validation
        loss) and set the best ones on ``self`` (refitting on ``df`` if ``refit``).

        ``space`` maps parameter names of this estimator (``"lr"``, ``"d_model"``, or dotted
        ``"memory.depth"``) to specs ``{type: float|int|categorical, low, high, log, choices}``
        (or is a YAML file of that). ``storage`` is any optuna storage URL (in-memory if None);
        several processes may share one. Returns the study."""
        from .tuning import load_space, optimize, suggest

        space = load_space(space)
        base = self.get_params()
        unknown = sorted({key.split(".")[0] for key in space} - set(base))
        if unknown:  # fail before the study starts, not once per trial
            raise ValueError(f"unknown TitansForecaster parameter(s) {unknown} in the search space; "
                             f"parameters are {sorted(base)}")

        def objective(trial):
            params = _apply_dotted(base, suggest(trial, space))
            model = type(self)(**params)
            model.fit(df, trial=trial)
            if model.best_val_loss_ is None:
                raise ValueError("tuning needs a validation split: val_size must not be 0")
            return model.best_val_loss_

        study = optimize(objective, n_trials=n_trials, storage=storage, study_name=study_name, seed=seed)
        best = _apply_dotted(base, suggest(optuna_fixed_trial(study.best_params), space))
        self.set_params(**best)
        self.best_params_ = dict(study.best_params)
        if refit:
            self.fit(df)
        return study


# ---------------------------------------------------------------------------------------- helpers


def optuna_fixed_trial(params: dict):
    import optuna

    return optuna.trial.FixedTrial(params)


def _apply_dotted(base: dict, values: dict) -> dict:
    out = copy.deepcopy(base)
    for key, val in values.items():
        head, *rest = key.split(".")
        if head not in out:
            raise ValueError(f"unknown TitansForecaster parameter {head!r} in the search space; "
                             f"parameters are {sorted(out)}")
        if rest:
            node = dict(out[head] or {})
            cur = node
            for k in rest[:-1]:
                cur = cur.setdefault(k, {})
            cur[rest[-1]] = val
            out[head] = node
        else:
            out[head] = val
    return out


def _fresh(est: TitansForecaster) -> TitansForecaster:
    return type(est)(**est.get_params())


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    return obj


def _as_pandas(df: Any) -> pd.DataFrame:
    if isinstance(df, pd.DataFrame):
        return df
    if hasattr(df, "to_pandas"):
        return df.to_pandas()
    raise DataValidationError(f"expected a pandas or polars DataFrame, got {type(df).__name__}")


def _head_rows(pdf: pd.DataFrame, coll: SeriesCollection, trim: int, id_col: str, time_col: str):
    """Each series without its last ``trim`` rows (rows kept in input order)."""
    if coll.layout == "wide":
        return pdf.iloc[: len(pdf) - trim]
    pos = pdf.groupby(id_col, sort=False).cumcount(ascending=False)
    return pdf[pos.to_numpy() >= trim]


def _truth_rows(pdf, coll, trim, h, id_col, time_col):
    if coll.layout == "wide":
        return pdf.iloc[len(pdf) - trim: len(pdf) - trim + h]
    pos = pdf.groupby(id_col, sort=False).cumcount(ascending=False).to_numpy()
    part = pdf[(pos < trim) & (pos >= trim - h)]
    # forecasts come series by series in first-appearance order
    order = {sid: k for k, sid in enumerate(pd.unique(pdf[id_col].astype(str)))}
    return part.assign(_o=part[id_col].astype(str).map(order)).sort_values("_o", kind="stable")


def _last_time(pdf, time_col):
    return pd.to_datetime(pdf[time_col]).max()
