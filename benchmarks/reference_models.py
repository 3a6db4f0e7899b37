"""Two reference forecasters of the long-horizon benchmark, written for this project in the style
Time-Series-Library (TSLib) runs them, so that a benchmark can train them beside titans-ts on the
same windows, threads and clock:

* :class:`DLinear` (Zeng et al., "Are Transformers Effective for Time Series Forecasting?",
  AAAI 2023): a moving-average split of each channel's context into trend and remainder, each
  mapped to the horizon by one linear layer shared by the channels (TSLib's default,
  ``individual=False``; the moving average is 25 steps with the ends repeated; no normalisation);
* :class:`ITransformer` (Liu et al., "iTransformer", ICLR 2024): each variate's whole context is
  one token (a linear embedding of its L values), the time features of the context are four
  more tokens, a Transformer encoder mixes the tokens, and a linear layer maps each variate's
  token to its horizon; each variate is standardised by its context's mean and spread first
  (``use_norm``) and the forecast put back in its units.

``TSLIB_SETTINGS`` holds the ETTh1 settings of the two models' TSLib-style scripts (Adam, batch 32,
learning rate 1e-4 for two epochs, then halved every epoch (TSLib's ``type1``), ten epochs, early
stopping after three epochs without a better validation loss; iTransformer at width 256 with two
layers, as the iTransformer repository's scripts train it on ETTh1), and :func:`time_features` the
four calendar features TSLib's ``timeF`` embedding computes. Only what the benchmark needs is
here; these are not toolkit models.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DLinear", "ITransformer", "TSLIB_SETTINGS", "time_features", "tslib_lr"]

# the ETTh1 scripts (TSLib's DLinear_ETTh1.sh; the iTransformer repository's ETTh1 runs), with
# TSLib run.py's defaults for what they leave out
TSLIB_SETTINGS = {
    "dlinear": {"lr": 1e-4, "batch_size": 32, "epochs": 10, "patience": 3, "moving_avg": 25},
    "itransformer": {"lr": 1e-4, "batch_size": 32, "epochs": 10, "patience": 3, "d_model": 256,
                     "d_ff": 256, "e_layers": 2, "n_heads": 8, "dropout": 0.1},
}


def tslib_lr(base: float, epoch: int) -> float:
    """TSLib's ``lradj=type1`` for epoch ``epoch`` (counted from 0): its ``adjust_learning_rate`` runs
    after each epoch with the next epoch's number, so the first two epochs train at ``base`` and
    every later one at half the one before."""
    return base * 0.5 ** max(epoch - 1, 0)


def time_features(stamps: pd.DatetimeIndex) -> np.ndarray:
    """The four calendar features of TSLib's ``timeF`` embedding at hourly frequency, each scaled to
    [-0.5, 0.5]: hour of day, day of week, day of month, day of year. Returns [T, 4] float32."""
    s = pd.DatetimeIndex(stamps)
    cols = [s.hour / 23.0, s.dayofweek / 6.0, (s.day - 1) / 30.0, (s.dayofyear - 1) / 365.0]
    return (np.stack([np.asarray(c, dtype=np.float64) for c in cols], 1) - 0.5).astype(np.float32)


class DLinear(nn.Module):
    """DLinear: ``[B, L, C] -> [B, H, C]``."""

    def __init__(self, seq_len: int, horizon: int, moving_avg: int = 25) -> None:
        super().__init__()
        if moving_avg < 1 or moving_avg % 2 == 0:
            raise ValueError(f"moving_avg must be a positive odd number of steps, got {moving_avg}")
        self.kernel = moving_avg
        self.seasonal = nn.Linear(seq_len, horizon)
        self.trend = nn.Linear(seq_len, horizon)
        with torch.no_grad():  # both maps start as the context's mean repeated
            self.seasonal.weight.fill_(1.0 / seq_len)
            self.trend.weight.fill_(1.0 / seq_len)

    def decompose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(remainder, trend)`` of ``x`` [B, C, L]: the trend is the centred moving average with
        the first and last values repeated beyond the ends."""
        pad = (self.kernel - 1) // 2
        padded = torch.cat([x[..., :1].expand(*x.shape[:-1], pad), x, x[..., -1:].expand(*x.shape[:-1], pad)], -1)
        trend = F.avg_pool1d(padded.reshape(-1, 1, padded.shape[-1]), self.kernel, stride=1).view_as(x)
        return x - trend, trend

    def forward(self, past: torch.Tensor, marks: torch.Tensor | None = None) -> torch.Tensor:
        seasonal, trend = self.decompose(past.transpose(1, 2))
        return (self.seasonal(seasonal) + self.trend(trend)).transpose(1, 2)


class _EncoderLayer(nn.Module):
    """Post-norm Transformer encoder layer: self-attention, then a position-wise feed-forward block
    (GELU), each added back and layer-normalised."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ff1, self.ff2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.p = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0)
        x = self.norm1(x + self.drop(self.proj(a.transpose(1, 2).reshape(B, N, D))))
        y = self.drop(self.ff2(self.drop(F.gelu(self.ff1(x)))))
        return self.norm2(x + y)


class ITransformer(nn.Module):
    """iTransformer: ``[B, L, C]`` (and optional time features ``[B, L, M]``) -> ``[B, H, C]``."""

    def __init__(self, seq_len: int, horizon: int, d_model: int = 128, d_ff: int = 128, e_layers: int = 2,
                 n_heads: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Linear(seq_len, d_model)
        self.embed_drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(_EncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(e_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, horizon)

    def forward(self, past: torch.Tensor, marks: torch.Tensor | None = None) -> torch.Tensor:
        C = past.shape[-1]
        mean = past.mean(1, keepdim=True)
        std = torch.sqrt(past.var(1, keepdim=True, unbiased=False) + 1e-5)
        x = (past - mean) / std
        tokens = x if marks is None else torch.cat([x, marks.to(x.dtype)], -1)  # [B, L, C (+ M)]
        h = self.embed_drop(self.embed(tokens.transpose(1, 2)))  # [B, C (+ M), d_model]
        for layer in self.layers:
            h = layer(h)
        y = self.head(self.norm(h))[:, :C].transpose(1, 2)  # [B, H, C]
        return y * std + mean


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def _check() -> None:  # pragma: no cover - a smoke run: python benchmarks/reference_models.py
    x = torch.randn(4, 96, 7)
    for net in (DLinear(96, 24), ITransformer(96, 24)):
        y = net(x, torch.zeros(4, 96, 4))
        print(type(net).__name__, tuple(y.shape), count_parameters(net), math.isfinite(float(y.sum())))


if __name__ == "__main__":  # pragma: no cover
    _check()
