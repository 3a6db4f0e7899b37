"""Forecast heads: what the network's last linear map means, and how it is trained and read.

One interface for every head, used by the network, the Lightning modules, the forecaster and the
GluonTS adapter (nothing else branches on the head's kind):

* ``n_outputs``: raw outputs per step and channel;
* ``forward(raw, revin, stats)``: the raw outputs ``[B, H, C, n_outputs]`` (normalised scale) ->
  the forecast in the data's scale (a tensor, or a distribution);
* ``loss(output, target, mask, ...)``: the training loss over observed points;
* ``point(output)``: the point forecast ``[B, H, C]``;
* ``quantiles(output, levels)``: ``[B, H, C, Q]`` at the given levels;
* ``sample(output, n)``: ``n`` sample paths ``[n, B, H, C]``;
* ``shift(output, delta)``: the forecast moved by ``delta`` [B, H, C] (a correction of its
  location; spreads unchanged);
* ``band_levels``: the (low, high) quantile levels a plot shades (None for a point head).

    >>> import torch
    >>> from titans_ts.model.heads import make_head
    >>> head = make_head("quantile", quantiles=(0.1, 0.5, 0.9))
    >>> out = head(torch.zeros(2, 4, 3, head.n_outputs))
    >>> head.point(out).shape, head.quantiles(out, [0.9]).shape
    (torch.Size([2, 4, 3]), torch.Size([2, 4, 3, 1]))
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import POINT_LOSSES

__all__ = ["Head", "PointHead", "QuantileHead", "StudentTHead", "make_head", "POINT_LOSSES",
           "point_loss", "pinball_loss", "student_t_nll", "masked_mean"]


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` (broadcast over trailing dims) is true."""
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    m = m.expand_as(x)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def point_loss(pred, target, mask=None, kind: str = "mse", delta: float = 1.0) -> torch.Tensor:
    """MSE / MAE / Huber over observed points."""
    if kind == "mse":
        err = (pred - target) ** 2
    elif kind == "mae":
        err = (pred - target).abs()
    elif kind == "huber":
        err = F.huber_loss(pred, target, reduction="none", delta=delta)
    else:
        raise ValueError(f"loss must be one of {POINT_LOSSES}, got {kind!r}")
    return masked_mean(err, mask)


def pinball_loss(q_pred, target, quantiles: Sequence[float], mask=None) -> torch.Tensor:
    """Mean pinball loss over quantile levels and observed points; ``q_pred`` [..., Q]."""
    qs = torch.as_tensor(quantiles, dtype=q_pred.dtype, device=q_pred.device)
    diff = target.unsqueeze(-1) - q_pred
    loss = torch.maximum(qs * diff, (qs - 1) * diff)
    return masked_mean(loss, mask)


def student_t_nll(dist: torch.distributions.StudentT, target, mask=None) -> torch.Tensor:
    return masked_mean(-dist.log_prob(target), mask)


def _check_levels(levels: Sequence[float]) -> list[float]:
    out = []
    for q in levels:
        q = float(q)
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile levels must lie strictly between 0 and 1, got {q!r}")
        out.append(q)
    return out


def _scale_like(scale: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return scale.view(-1, *([1] * (target.dim() - 1)))


class Head(nn.Module):
    """Base class (see the module docstring for the interface)."""

    kind: str = ""
    n_outputs: int = 1
    band_levels: tuple[float, float] | None = None

    def forward(self, raw: torch.Tensor, revin=None, stats=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, output, target, mask=None, point_loss_kind: str = "mse",
             scale: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def point(self, output) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def quantiles(self, output, levels: Sequence[float]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def sample(self, output, n: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def shift(self, output, delta: torch.Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _denormalize(y: torch.Tensor, revin, stats) -> torch.Tensor:
        return revin.denormalize(y, stats) if revin is not None else y

    def extra_repr(self) -> str:
        return f"outputs={self.n_outputs}"


class PointHead(Head):
    """One value per step, trained on MSE, MAE or Huber (the Lightning module's ``loss``)."""

    kind = "point"
    n_outputs = 1

    def forward(self, raw, revin=None, stats=None):
        return self._denormalize(raw[..., 0], revin, stats)

    def loss(self, output, target, mask=None, point_loss_kind: str = "mse", scale=None):
        if scale is not None:
            s = _scale_like(scale, target)
            output, target = output / s, target / s
        return point_loss(output, target, mask, point_loss_kind)

    def point(self, output):
        return output

    def quantiles(self, output, levels):
        raise ValueError("quantiles need a probabilistic head ('quantile' or 'student_t'); this "
                         "network has head='point'")

    def sample(self, output, n):
        raise ValueError("sample paths need a probabilistic head ('quantile' or 'student_t'); "
                         "this network has head='point'")

    def shift(self, output, delta):
        return output + delta


class QuantileHead(Head):
    """Quantiles at fixed levels, monotone by construction (the lowest level, then cumulative
    softplus increments), trained on the pinball loss."""

    kind = "quantile"

    def __init__(self, levels: Sequence[float]) -> None:
        super().__init__()
        self.levels = tuple(_check_levels(levels))
        self.n_outputs = len(self.levels)
        self.band_levels = (self.levels[0], self.levels[-1])
        # the level a point forecast reads: the one closest to the median
        self.median_index = min(range(len(self.levels)), key=lambda i: abs(self.levels[i] - 0.5))

    def forward(self, raw, revin=None, stats=None):
        base, steps = raw[..., :1], F.softplus(raw[..., 1:])
        return self._denormalize(torch.cat([base, base + torch.cumsum(steps, -1)], -1), revin, stats)

    def loss(self, output, target, mask=None, point_loss_kind: str = "mse", scale=None):
        if scale is not None:
            s = _scale_like(scale, target)
            output, target = output / s.unsqueeze(-1), target / s
        return pinball_loss(output, target, self.levels, mask)

    def point(self, output):
        return output[..., self.median_index]

    def quantiles(self, output, levels):
        cols = []
        for q in _check_levels(levels):
            j = next((k for k, t in enumerate(self.levels) if abs(t - q) < 1e-9), None)
            if j is None:
                raise ValueError(f"the quantile head was trained on levels {list(self.levels)}; "
                                 f"level {q} is not among them (train with quantiles=[...] "
                                 f"including it)")
            cols.append(output[..., j])
        return torch.stack(cols, -1)

    def sample(self, output, n):
        """Sample paths by inverse-CDF interpolation between the trained levels (draws below the
        lowest or above the highest level take that level's value)."""
        levels = torch.as_tensor(self.levels, dtype=output.dtype, device=output.device)
        u = torch.rand((n, *output.shape[:-1]), dtype=output.dtype, device=output.device)
        idx = torch.searchsorted(levels, u.contiguous()).clamp(1, len(self.levels) - 1)
        lo, hi = levels[idx - 1], levels[idx]
        q = output.unsqueeze(0).expand(n, *output.shape)
        qlo = q.gather(-1, (idx - 1).unsqueeze(-1)).squeeze(-1)
        qhi = q.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
        w = ((u - lo) / (hi - lo)).clamp(0.0, 1.0) if len(self.levels) > 1 else torch.zeros_like(u)
        return qlo + w * (qhi - qlo)

    def shift(self, output, delta):
        return output + delta.unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"levels={list(self.levels)}"


class StudentTHead(Head):
    """A Student-t distribution per step (location, scale, degrees of freedom > 2), trained on
    its negative log-likelihood."""

    kind = "student_t"
    n_outputs = 3
    band_levels = (0.1, 0.9)

    def forward(self, raw, revin=None, stats=None):
        loc, raw_scale, raw_df = raw.unbind(-1)
        scale = F.softplus(raw_scale) + 1e-3
        df = 2.0 + F.softplus(raw_df)
        if revin is not None:
            mean, std = stats
            loc = revin.denormalize(loc, stats)
            scale = scale * revin.denormalize_scale(std).view(std.shape[0], 1, std.shape[2])
        return torch.distributions.StudentT(df, loc, scale)

    def loss(self, output, target, mask=None, point_loss_kind: str = "mse", scale=None):
        """The NLL; with ``scale`` [B], the NLL of ``target / scale`` (the same gradients,
        comparable across series of any magnitude)."""
        nll = student_t_nll(output, target, mask)
        if scale is None:
            return nll
        # minus the mean log scale over the observed points
        m = (torch.ones_like(target) if mask is None else mask).reshape(len(scale), -1).to(scale.dtype)
        return nll - (torch.log(scale)[:, None] * m).sum() / m.sum().clamp_min(1.0)

    def point(self, output):
        return output.loc

    def quantiles(self, output, levels):
        from scipy.stats import t as student_t

        levels = _check_levels(levels)
        df = output.df.detach().cpu().numpy()
        loc = output.loc.detach().cpu().numpy()
        scale = output.scale.detach().cpu().numpy()
        cols = [(loc + scale * student_t.ppf(q, df)).astype(np.float32) for q in levels]
        return torch.from_numpy(np.stack(cols, -1)).to(output.loc.device)

    def sample(self, output, n):
        return output.sample((n,))

    def shift(self, output, delta):
        return torch.distributions.StudentT(output.df, output.loc + delta, output.scale)


def make_head(kind: str, quantiles: Sequence[float] = (0.1, 0.5, 0.9)) -> Head:
    """The head of the given kind ("point", "quantile" or "student_t")."""
    if kind == "point":
        return PointHead()
    if kind == "quantile":
        return QuantileHead(quantiles)
    if kind == "student_t":
        return StudentTHead()
    raise ValueError(f"head must be one of ('point', 'quantile', 'student_t'), got {kind!r}")
