"""``StreamMemory``: a Titans long-term memory carried along a stream of forecasts, written with what
test time reveals (the realised target of each window once it has fully arrived) and read by
every new forecast.

At origin ``t`` (forecasting rows ``[t, t + H)`` from the ``L`` rows before ``t``), the window of
origin ``t - H`` has just been completed: its target is known. The memory takes one Titans step
on it, then is read for window ``t``:

    f_t      = SiLU(W_f [x_t ; yhat_t ; r_{t-H}])        features of window t: its normalised
               + W_p r_{t-H}                              context, the backbone's forecast, and
                                                          the newest error known at t (also
                                                          passed on linearly)
    k, v     = n(W_k f_{t-H}),  W_v r_{t-H}              r = (y - yhat) / s: the realised error
                                                          of window t - H, in its own units; n:
                                                          l2 normalisation (the paper's) or, with
                                                          soft_norm, x / sqrt(1 + |x|^2)
    S_t      = eta S_{t-1} - theta grad ||M(k) - v||^2   surprise with momentum (titans-math.md)
    M_t      = (1 - alpha) M_{t-1} + S_t                 forgetting
    c_t      = W_o M_t(n(W_q f_t))                        the correction of window t
    forecast = yhat_t + s_t c_t

So the memory learns, at test time, a regression from what is known when a window is forecast
(its context, the backbone's forecast, the last realised error) to the error that forecast will
make: whether errors persist, flip or vanish is learnt from the stream itself.

``x``, ``yhat`` and ``r`` are normalised per window and channel by the context's mean and spread
``s`` (the memory's unit is the window's), so one memory serves series of any scale; each channel of
each series carries its own memory state (channel independence). The inner loss
``||M(k) - W_v r||^2`` is the forecasting loss of the corrected forecast of window ``t - H`` seen
through the value map, so the surprise is the Titans surprise of the forecasting loss: the memory
runs online gradient descent with momentum and forgetting on the forecast's own errors. A matrix
memory (depth 1) starts empty (zero), so the frozen reading leaves the backbone's forecast unchanged;
a deeper memory starts from random weights (it could not learn from zero). The gates
``alpha, eta, theta`` are data dependent (from ``f_{t-H}``), as in the paper; their maps start
nearly constant (at the logits ``pace``) and are never trained, so the memory learns at a pace chosen
on validation data.

**How much of the correction to apply** is itself learnt along the stream: each channel keeps,
for every candidate read-out gain ``g`` in ``gains`` (0: none), the discounted squared error that
``yhat + g s c`` would have made on the windows completed so far (half-life ``gain_half_life``
windows), and each forecast uses the gain with the least (ties: the smallest gain; at the start of
a stream, no correction). Errors are counted only once a window's target has fully arrived, as
for the writes: follow-the-leader with delayed feedback (:class:`GainSelector`). A stream
whose errors are noise keeps the backbone's forecast; one that drifts takes the memory's.

The defaults are the settings the online benchmark runs (docs/benchmarks/online.md).

**The level memory.** Beside that memory, which reads random projections of the whole window, a
second Titans memory learns the window's *level* error: a linear map from six summaries of what is
known when a window is forecast (a constant, the context's last value and the mean of its latest
``level_window`` steps, the forecast's mean, first and last step, all normalised as above) to the
mean of the window's normalised error, written with the same delayed feedback:

    x_t      = [1, ctx_t[-1], mean(ctx_t[-w:]), mean(yhat_t), yhat_t[0], yhat_t[-1]]
    Sigma_t  = sum_j lam^(t-j) x_j x_j^T / sum_j lam^(t-j) + eps I     over the written windows j <= t
    k, q     = Sigma_t^(-1/2) x_{t-H},  Sigma_t^(-1/2) x_t                 (Cholesky whitening)
    S_t      = eta S_{t-1} - theta grad ||m k - mean(r_{t-H})||^2,   m_t = (1 - alpha) m_{t-1} + S_t
    level correction of window t = m_t q   (the same for every step of the horizon)

The summaries are strongly correlated (the context's last value and its recent mean move
together); whitening the keys by their running second moment (causal: only written windows count)
is what lets plain gradient descent with a small inner learning rate fit such a map, where unit-norm
keys (the paper's normalisation) leave the small directions unlearnt. At long horizons, where the
error of the window ``H`` steps back says little about the next one, this is the memory that pays:
it learns, along the stream, how the backbone's level forecast should be bent given where the
context sits (docs/benchmarks/online.md). It starts empty (zero correction) and has no trained
parameters.

The read-out gains are then chosen per channel among the pairs ``(g, g_level)`` of ``gains`` (the
main memory's and the level memory's), with the same follow-the-leader rule.

A window whose target is not (fully) observed writes nothing (mask 0). With no writes at all the
memory stays at its learned initial state ``M_0``: the "frozen" reading.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..kernels.memory_scan import memory_scan
from .config import check_keys
from .fused import l2_normalize
from .memory import no_weight_decay
from .network import masked_moments

__all__ = ["StreamMemory", "StreamMemoryConfig", "StreamState", "LevelState", "GainSelector", "window_stats"]

LEVEL_FEATURES = 6  # D: the level memory's key width (see the module docstring)


def _discounted_cumsum(x: torch.Tensor, lam: float, init: torch.Tensor, block: int = 256):
    """``y_t = lam * y_{t-1} + x_t`` along dim 1 of ``x`` [N, T, F] from ``y_{-1} = init`` [N, F],
    in blocks (a lower-triangular matmul each). Returns ``y`` [N, T, F] and ``y_{T-1}`` [N, F]."""
    out, carry = [], init
    for a in range(0, x.shape[1], block):
        c = x[:, a:a + block]
        i = torch.arange(c.shape[1], dtype=x.dtype, device=x.device)
        gap = i[:, None] - i[None, :]
        decay = torch.where(gap >= 0, lam ** gap.clamp_min(0), torch.zeros_like(gap))
        y = torch.einsum("ts,nsf->ntf", decay, c) + (lam ** (i + 1))[None, :, None] * carry[:, None, :]
        carry = y[:, -1]
        out.append(y)
    return (torch.cat(out, 1) if out else x), carry


# ---------------------------------------------------------------------------------- settings


def _check(name: str, value: Any, ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"StreamMemoryConfig.{name} must be {what}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


@dataclass(frozen=True)
class StreamMemoryConfig:
    """The stream memory's settings, validated at construction (an unknown key is a
    :class:`~titans_ts.model.config.SettingsError`). The defaults are the online benchmark's.

    Attributes:
        dim: feature width (split into ``heads`` heads).
        heads, depth, expansion: the memory MLP (per head; depth 2 = one hidden layer).
        max_lr: cap on the inner learning rate theta.
        chunk_size: tokens per chunk of the memory op (1: the exact per-step recurrence, what a
            stream needs when it advances one step at a time).
        context_features: how many of the latest context steps the features read (None: all).
        spread_floor: a window's spread is at least this fraction of the channel's scale.
        value_clip: the normalised errors the memory writes are soft-clipped to this size
            (``c * tanh(r / c)``): one wild window cannot throw the memory far.
        pace: the logits of the forgetting, momentum and inner learning-rate gates (their maps
            start nearly constant there and are never trained: the pace the memory learns at).
        soft_norm: keys and queries keep a magnitude below 1 instead of unit norm
            (:meth:`StreamMemory._norm`).
        gains, gain_half_life: the read-out gains chosen among along the stream, and the
            half-life (in windows) of the errors that choose (:class:`GainSelector`).
        fallback_gains: the gains of a third correction, the one that moves the forecast onto the
            newest known value (``(0, 1)`` would let the stream choose repeat-last itself; ``(0,)``:
            no such correction). The default, ``(0, 0.25)`` (a quarter of the way at most), had the
            least mean ratio of carried to frozen MSE over fifteen validation streams (ETTh2 at
            L = 336, seeds 0-2; ETTm1 and weather at L = 512, seed 0; H = 24 / 48 / 96): 0.977,
            against 0.983 for ``(0, 0.25, 0.5)`` and 0.995 without it
            (docs/benchmarks/results/online_design.jsonl).
        gain_prior: how much more evidence a stronger correction needs: a candidate's discounted
            error counts ``(1 + gain_prior * sum of its gains)`` times (0: plain
            follow-the-leader). The default, 0.05, had the least mean ratio of carried to frozen
            MSE over nine validation streams (ETTh2 L = 336, ETTm1 and weather L = 96, H = 24 /
            48 / 96; 0, 0.05 and 0.1 tried: docs/benchmarks/results/online_design.jsonl), and on a
            random walk it keeps the forecast uncorrected where plain follow-the-leader chases
            noise.
        level: whether the level memory runs beside the main one (False: the main memory alone).
        level_window: the context steps whose mean is one of the level memory's summaries.
        level_lr, level_momentum, level_forget: the level memory's inner learning rate theta,
            momentum decay eta and forgetting alpha (constants).
        level_half_life: half-life, in written windows, of the second moment that whitens its keys.
        level_ridge: eps added to that second moment (keys of directions never seen stay finite).
    """

    dim: int = 64
    heads: int = 4
    depth: int = 1
    expansion: float = 2.0
    max_lr: float = 0.5
    chunk_size: int = 1
    context_features: int | None = 96
    spread_floor: float = 0.1
    value_clip: float = 5.0
    pace: tuple[float, float, float] = (-8.0, -4.0, -4.0)
    soft_norm: bool = True
    gains: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    gain_half_life: float = 4000.0
    fallback_gains: tuple[float, ...] = (0.0, 0.25)
    gain_prior: float = 0.05
    level: bool = True
    level_window: int = 24
    level_lr: float = 5e-4
    level_momentum: float = 0.0
    level_forget: float = 0.0
    level_half_life: float = 693.0
    level_ridge: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("dim", "heads", "depth", "chunk_size", "level_window"):
            value = getattr(self, name)
            _check(name, value, _is_int(value) and value >= 1, "a positive integer")
            object.__setattr__(self, name, int(value))
        cf = self.context_features
        _check("context_features", cf, cf is None or (_is_int(cf) and cf >= 1), "a positive integer or None")
        _check("dim", self.dim, self.dim % self.heads == 0, f"divisible by heads ({self.heads})")
        for name in ("expansion", "max_lr", "value_clip", "gain_half_life", "level_half_life", "level_ridge"):
            value = getattr(self, name)
            _check(name, value, _is_real(value) and value > 0, "a finite number > 0")
        for name in ("spread_floor", "level_lr", "gain_prior"):
            value = getattr(self, name)
            _check(name, value, _is_real(value) and value >= 0, "a finite number >= 0")
        for name in ("level_momentum", "level_forget"):
            value = getattr(self, name)
            _check(name, value, _is_real(value) and 0 <= value <= 1, "in [0, 1]")
        for name in ("soft_norm", "level"):
            _check(name, getattr(self, name), isinstance(getattr(self, name), bool), "True or False")
        pace = tuple(self.pace) if not isinstance(self.pace, (str, bytes)) and hasattr(self.pace, "__len__") else ()
        _check("pace", self.pace, len(pace) == 3 and all(_is_real(p) for p in pace),
               "three finite gate logits (forgetting, momentum, inner learning rate)")
        object.__setattr__(self, "pace", tuple(float(p) for p in pace))
        gains = tuple(self.gains) if not isinstance(self.gains, (str, bytes)) and hasattr(self.gains, "__len__") else ()
        _check("gains", self.gains, len(gains) > 0 and all(_is_real(g) and g >= 0 for g in gains),
               "a non-empty sequence of gains >= 0")
        object.__setattr__(self, "gains", tuple(sorted(float(g) for g in gains)))
        fb = tuple(self.fallback_gains) if not isinstance(self.fallback_gains, (str, bytes)) and \
            hasattr(self.fallback_gains, "__len__") else ()
        _check("fallback_gains", self.fallback_gains, 0.0 in fb and all(_is_real(g) and 0 <= g <= 1 for g in fb),
               "a sequence of gains in [0, 1] that includes 0")
        object.__setattr__(self, "fallback_gains", tuple(sorted(float(g) for g in fb)))

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | StreamMemoryConfig | None = None) -> StreamMemoryConfig:
        """From a mapping of settings (the others default); unknown keys are refused."""
        if d is None:
            return cls()
        if isinstance(d, cls):
            return d
        if not isinstance(d, Mapping):
            raise TypeError(f"stream memory settings must be a mapping or a StreamMemoryConfig, got {type(d).__name__}")
        check_keys(d, cls.fields(), "stream memory")
        return cls(**d)

    def replace(self, **changes: Any) -> StreamMemoryConfig:
        """A copy with ``changes`` (unknown keys are refused)."""
        check_keys(changes, self.fields(), "stream memory")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists), as the online records keep them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ---------------------------------------------------------------------------------- states


@dataclass
class LevelState:
    """The level memory's state for N streams: the discounted second moment of the written
    windows' summaries ``second`` [N, D, D] and their discounted count ``count`` [N] (float64),
    and the memory's weights / momentum (one-tuples of [N, 1, 1, D], fp32)."""

    second: torch.Tensor
    count: torch.Tensor
    weights: tuple[torch.Tensor, ...]
    momentum: tuple[torch.Tensor, ...]


@dataclass
class StreamState:
    """Where N streams' memories stand: the main memory's weights and momentum (tuples of
    [N, heads, d_out, d_in] fp32 tensors, one per layer) and the level memory's state (None
    without the level memory)."""

    weights: tuple[torch.Tensor, ...]
    momentum: tuple[torch.Tensor, ...]
    level: LevelState | None = None


# ---------------------------------------------------------------------------------- read-out gains


class GainSelector:
    """How much of each correction a forecast applies, chosen along the stream itself.

    The candidates are the tuples ``(g, g_level[, g_fallback])`` of ``gains`` (the main memory's
    gain and the level memory's; the level gain is 0 without the level memory) and of
    ``fallback_gains`` (the gain of the correction onto the newest known value; the component is
    absent when its only gain is 0), ordered fewest correction first, so ties and the start of a
    stream go to all zeros: no correction. For every stream (row) the selector keeps the
    discounted squared error each candidate would have made on the windows completed so far
    (half-life ``half_life`` windows) and each forecast uses the candidate with the least, each
    candidate's error weighted by ``1 + prior * its total gain`` (a stronger correction needs more
    evidence): follow-the-leader with delayed feedback. This class is the one place of that arithmetic: the
    online benchmark's modes and the forecaster's store both use it.
    """

    def __init__(self, gains, half_life: float, level: bool = True, fallback_gains=(0.0,),
                 prior: float = 0.0) -> None:
        self.gains = tuple(float(g) for g in sorted(gains))
        self.fallback_gains = tuple(float(g) for g in sorted(fallback_gains))
        parts = [self.gains, self.gains if level else (0.0,)]
        if self.fallback_gains != (0.0,):
            parts.append(self.fallback_gains)
        pairs = itertools.product(*parts)
        self.candidates = torch.tensor(sorted(pairs, key=lambda p: (sum(p), *p[1:])), dtype=torch.float32)
        self.half_life = float(half_life)
        self.discount = 0.5 ** (1.0 / self.half_life)
        self.prior = float(prior)
        # a candidate's discounted error counts (1 + prior * its total gain) times
        self.weight = (1.0 + self.prior * self.candidates.sum(1))[:, None]

    @property
    def components(self) -> int:
        """How many corrections a candidate scales: 2 (main, level) or 3 (and the fallback)."""
        return self.candidates.shape[1]

    def __len__(self) -> int:
        return len(self.candidates)

    @staticmethod
    def apply(forecast: torch.Tensor, std: torch.Tensor, corr: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
        """``forecast + std * sum_k g_k corr_k``: forecasts [..., H] (data units), spreads [...] (or
        a number), corrections [..., K, H] and gains [..., K]."""
        if isinstance(std, torch.Tensor):
            std = std[..., None]
        return forecast + std * (gains[..., None] * corr).sum(-2)

    def errors(self, forecast: torch.Tensor, std, corr: torch.Tensor, target: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
        """The squared error [G, ...] (summed over the horizon) each candidate's forecast makes on
        the windows of ``forecast`` / ``target`` / ``mask`` [..., H]."""
        m = mask.to(corr.dtype)
        cands = self.candidates.to(corr.dtype)
        return torch.stack([(((self.apply(forecast, std, corr, g) - target) * m) ** 2).sum(-1) for g in cands])

    def initial(self, rows: int) -> torch.Tensor:
        """The discounted errors [G, rows] of streams with no completed window."""
        return torch.zeros(len(self), rows)

    def accumulate(self, acc: torch.Tensor, se: torch.Tensor) -> torch.Tensor:
        """The discounted errors ``acc`` [G, N] after one more completed window's ``se`` [G, N]."""
        return self.discount * acc + se

    def leader(self, acc: torch.Tensor) -> torch.Tensor:
        """Each stream's candidate index [N] given its discounted errors ``acc`` [G, N]."""
        return (acc if self.prior == 0 else acc * self.weight.to(acc.dtype)).argmin(0)

    def best(self, acc: torch.Tensor) -> torch.Tensor:
        """Each stream's gains [N, K] given its discounted errors ``acc`` [G, N]."""
        return self.candidates[self.leader(acc)]

    def choose(self, se: torch.Tensor, delay: int, acc: torch.Tensor | None = None):
        """Follow-the-leader over a whole stream at once.

        Args:
            se: [G, N, T] squared error the forecast read at token ``j`` makes with each of G
                candidates (row n: one stream); it becomes known ``delay`` tokens later (at token
                ``j + delay``).
            acc: [G, N] discounted errors carried in from earlier tokens (None: zeros).

        Returns ``choice`` [N, T] (the candidate index each token's read uses: the least
        discounted error over the reads known by then; ties go to the lower index) and
        ``pending``: what a stream that continues needs, ``(acc [G, N], se of the last
        min(delay, T) reads, not yet known)``.
        """
        G, N, T = se.shape
        acc = se.new_zeros(G, N) if acc is None else acc.clone()
        choice = torch.empty(N, T, dtype=torch.long)
        for j in range(T):
            choice[:, j] = self.leader(acc)
            k = j - delay + 1  # the read of token k is known from token j + 1 on
            if k >= 0:
                acc = self.accumulate(acc, se[:, :, k])
        return choice, (acc, se[:, :, max(0, T - delay + 1):] if delay > 1 else se[:, :, T:])


def window_stats(past: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-5):
    """Per window and channel, the observed context's mean and spread ``[B, 1, C]`` (RevIN's
    statistics: ``sqrt(var + eps)``)."""
    mean, var = masked_moments(past, mask)
    return mean, torch.sqrt(var + eps)


# ---------------------------------------------------------------------------------- the memory


class StreamMemory(nn.Module):
    """The stream memory (see the module docstring).

    Args:
        seq_len, horizon: the windows' context and forecast lengths.
        config: a :class:`StreamMemoryConfig` or a mapping of its fields (None: the defaults).
        **settings: fields of :class:`StreamMemoryConfig` that override ``config``'s.

    The settings are read from ``self.config`` when the memory runs; the layer's maps (feature,
    key, query, value, read-out and gate maps) are drawn at construction from torch's generator
    and never trained.
    """

    def __init__(self, seq_len: int, horizon: int, config: StreamMemoryConfig | Mapping | None = None,
                 **settings: Any) -> None:
        super().__init__()
        cfg = StreamMemoryConfig.from_dict(config)
        if settings:
            cfg = cfg.replace(**settings)
        self.config = cfg
        self.selector = GainSelector(cfg.gains, cfg.gain_half_life, cfg.level, cfg.fallback_gains, cfg.gain_prior)
        self.seq_len, self.horizon = seq_len, horizon
        self.dim, self.heads, self.head_dim = cfg.dim, cfg.heads, cfg.dim // cfg.heads
        self.n_ctx = seq_len if cfg.context_features is None else min(seq_len, cfg.context_features)
        self.feature_map = nn.Linear(self.n_ctx + 2 * horizon, cfg.dim)
        self.prev_map = nn.Linear(horizon, cfg.dim, bias=False)  # the newest error, linearly
        self.q = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.k = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.v = nn.Linear(horizon, cfg.dim, bias=False)
        self.gates = nn.Linear(cfg.dim, 3 * cfg.heads)
        self.out = nn.Linear(cfg.dim, horizon, bias=False)
        d, hidden = self.head_dim, max(1, int(round(self.head_dim * cfg.expansion)))
        dims = [d] + [hidden] * (cfg.depth - 1) + [d]
        # the initial memory: empty (zero) for a matrix memory, so the frozen reading corrects
        # nothing; a deep memory needs non-zero weights to learn
        self.init_weights = nn.ParameterList(
            [no_weight_decay(nn.Parameter(torch.randn(cfg.heads, dims[i + 1], dims[i]) / math.sqrt(dims[i])
                                          * (0.0 if cfg.depth == 1 else 1.0)))
             for i in range(cfg.depth)])
        with torch.no_grad():
            # an untrained memory is already an online corrector: reading and writing through the
            # same key map, and the read-out inverting the value map (so M(k) ~ v reads back as
            # the error itself)
            self.k.weight.copy_(self.q.weight)
            self.out.weight.copy_(torch.linalg.pinv(self.v.weight))
            self.gates.weight.mul_(0.1)
            self.set_pace(cfg.pace)
        self.requires_grad_(False)

    def set_pace(self, pace) -> None:
        """Set the gates' logits (forgetting, momentum, inner learning rate) to ``pace``
        (-8: alpha ~ 3e-4; -4: eta ~ 0.018; -4: theta ~ 0.018 max_lr)."""
        pace = tuple(float(p) for p in pace)
        if len(pace) != 3:
            raise ValueError(f"pace must be three gate logits (forgetting, momentum, inner learning rate), "
                             f"got {pace!r}")
        with torch.no_grad():
            self.gates.bias.view(3, self.heads).copy_(torch.tensor(pace, dtype=torch.float32)[:, None])
        self.config = dataclasses.replace(self.config, pace=pace)

    @property
    def candidates(self) -> torch.Tensor:
        """The candidate gains [G, K] (:class:`GainSelector`)."""
        return self.selector.candidates

    def with_fallback(self, corr: torch.Tensor, ctx: torch.Tensor, yhat: torch.Tensor) -> torch.Tensor:
        """The corrections ``corr`` [..., 2, H] of windows with normalised context ``ctx``
        [..., n_ctx] and forecast ``yhat`` [..., H], with the fallback correction appended when
        the selector has one: ``ctx[-1] - yhat`` (normalised units), which moves the forecast onto
        the newest known value. [..., K, H]."""
        if self.selector.components == 2:
            return corr
        return torch.cat([corr, (ctx[..., -1:] - yhat).to(corr.dtype).unsqueeze(-2)], -2)

    # ------------------------------------------------------------------ per-window quantities
    def normalise(self, past: torch.Tensor, past_mask: torch.Tensor | None, forecast: torch.Tensor,
                  target: torch.Tensor | None = None, target_mask: torch.Tensor | None = None,
                  scale: torch.Tensor | float = 1.0):
        """The per-window, per-channel quantities the memory reads, in the window's own units.

        Args:
            past: [B, L, C]; past_mask: [B, L, C] or None; forecast: the backbone's point forecast
                [B, H, C] (data units); target, target_mask: [B, H, C] when known.
            scale: each channel's typical spread (a number or [C]; 1 for standardised data): a
                window's spread is floored at ``spread_floor * scale``, so a flat context does not
                blow its errors up to thousands of its own units.

        Returns a dict of ``ctx`` [B, C, n_ctx] (the latest normalised context steps), ``yhat``
        [B, C, H] (the normalised forecast), ``mean`` / ``std`` [B, C], and with a target
        ``resid`` [B, C, H] (the normalised realised error, 0 where unobserved) and ``observed``
        [B, C] (whether the window's whole target is observed: only such windows are written).
        """
        mean, std = window_stats(past, past_mask)
        std = torch.maximum(std, self.config.spread_floor * torch.as_tensor(scale, dtype=std.dtype).reshape(-1)
                            .expand(std.shape[-1]).view(1, 1, -1))
        x = (past - mean) / std
        if past_mask is not None:
            x = x * past_mask.to(x.dtype)
        out = {"ctx": x[:, -self.n_ctx:].transpose(1, 2), "yhat": ((forecast - mean) / std).transpose(1, 2),
               "mean": mean[:, 0], "std": std[:, 0]}
        if target is not None:
            m = torch.ones_like(target, dtype=torch.bool) if target_mask is None else target_mask.bool()
            r = torch.where(m, (target - forecast) / std, torch.zeros_like(target))
            out["resid"] = r.transpose(1, 2)
            out["observed"] = m.all(1)
        return out

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        """Keys and queries: l2-normalised (the paper's), or with ``soft_norm`` scaled to
        ``x / sqrt(1 + |x|^2)``: norm below 1 (what keeps the inner step stable) but a magnitude
        the memory can read, so a correction can grow with the error it answers."""
        if self.config.soft_norm:
            return x * torch.rsqrt(1.0 + (x * x).sum(-1, keepdim=True))
        return l2_normalize(x)

    def clip(self, residual: torch.Tensor) -> torch.Tensor:
        """The soft clip ``c * tanh(r / c)`` of normalised errors before the memory sees them."""
        c = self.config.value_clip
        return c * torch.tanh(residual / c)

    def features(self, ctx: torch.Tensor, yhat: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        """Features of a window: its normalised context [..., n_ctx] and forecast [..., H], and
        ``prev`` [..., H], the newest realised error known when it is forecast (that of the window
        H steps earlier, in that window's units; None / zeros: none known). Returns
        [..., dim + 6]: the main memory's features, then the level memory's summaries
        (:meth:`level_summaries`; [..., dim] without the level memory)."""
        if prev is None:
            prev = torch.zeros_like(yhat)
        prev = self.clip(prev)
        f = F.silu(self.feature_map(torch.cat([ctx, yhat, prev], -1))) + self.prev_map(prev)
        return torch.cat([f, self.level_summaries(ctx, yhat).to(f.dtype)], -1) if self.config.level else f

    def level_summaries(self, ctx: torch.Tensor, yhat: torch.Tensor) -> torch.Tensor:
        """The level memory's keys before whitening [..., 6]: a constant, the context's last value,
        the mean of its latest ``level_window`` steps, and the forecast's mean, first and last step
        (all in the window's normalised units)."""
        w = min(self.config.level_window, ctx.shape[-1])
        return torch.stack([torch.ones_like(ctx[..., -1]), ctx[..., -1], ctx[..., -w:].mean(-1), yhat.mean(-1),
                            yhat[..., 0], yhat[..., -1]], -1)

    def initial_state(self, rows: int, device=None) -> StreamState:
        """The state of ``rows`` streams before any write (the initial memory, zero momentum)."""
        W = tuple(w.float().unsqueeze(0).expand(rows, *w.shape).contiguous().to(device or w.device)
                  for w in self.init_weights)
        return StreamState(W, tuple(torch.zeros_like(w) for w in W),
                           self._level_initial(rows, device or W[0].device) if self.config.level else None)

    def _level_initial(self, rows: int, device) -> LevelState:
        D = LEVEL_FEATURES
        w = torch.zeros(rows, 1, 1, D, device=device)
        return LevelState(torch.zeros(rows, D, D, dtype=torch.float64, device=device),
                          torch.zeros(rows, dtype=torch.float64, device=device), (w,), (torch.zeros_like(w),))

    # ------------------------------------------------------------------ the scan
    def scan(self, read_feats: torch.Tensor, write_feats: torch.Tensor, residual: torch.Tensor,
             write_mask: torch.Tensor, state: StreamState | None = None, return_state: bool = True):
        """Run the memory over a stream of tokens.

        Token ``j`` writes (``write_feats[:, j]``, ``residual[:, j]``) where ``write_mask`` is
        true, then is read with ``read_feats[:, j]``.

        Args:
            read_feats, write_feats: [N, T, dim (+ 6)] features (N = series x channels).
            residual: [N, T, H] normalised realised errors of the written windows.
            write_mask: [N, T] bool.
            state: the state to continue from (None: the learned initial memory).

        Returns the corrections [N, T, 2, H] (normalised units; the main memory's, then the level
        memory's, zero without it) and the final :class:`StreamState` (None unless
        ``return_state``).
        """
        cfg = self.config
        N, T, _ = read_feats.shape
        level = None
        if cfg.level:
            level = self._level_scan(read_feats[..., self.dim:], write_feats[..., self.dim:], residual, write_mask,
                                     None if state is None else state.level)
        read_feats, write_feats = read_feats[..., :self.dim], write_feats[..., :self.dim]
        Hh, d = self.heads, self.head_dim
        q = self._norm(self.q(read_feats).view(N, T, Hh, d))
        k = self._norm(self.k(write_feats).view(N, T, Hh, d))
        v = self.v(self.clip(residual)).view(N, T, Hh, d)
        g = torch.sigmoid(self.gates(write_feats).float()).view(N, T, 3, Hh)
        alpha, eta, theta = g[:, :, 0], g[:, :, 1], cfg.max_lr * g[:, :, 2]
        if state is None:
            weights, momentum = tuple(w.float() for w in self.init_weights), None
        else:
            weights, momentum = state.weights, state.momentum
        y, final = memory_scan(q, k, v, alpha, eta, theta, weights=weights, momentum=momentum,
                               chunk_size=cfg.chunk_size, mask=write_mask, output_final_state=return_state)
        main = self.out(y.reshape(N, T, Hh * d))
        if level is None:
            corr = torch.stack([main, torch.zeros_like(main)], 2)
            return corr, (None if final is None else StreamState(*final))
        lc, level_final = level
        corr = torch.stack([main, lc.to(main.dtype)[..., None].expand_as(main)], 2)
        return corr, (None if final is None else StreamState(final[0], final[1], level_final))

    # ------------------------------------------------------------------ the level memory
    def _whiten(self, x: torch.Tensor, second: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """Keys / queries ``x`` [..., D] whitened by the second moment ``second`` [..., D, D] of
        the ``count`` (discounted) written windows, plus ``level_ridge`` (float64 inside)."""
        D = x.shape[-1]
        eye = torch.eye(D, dtype=torch.float64, device=x.device)
        sigma = second / count.clamp_min(1.0)[..., None, None] + self.config.level_ridge * eye
        chol = torch.linalg.cholesky(sigma)
        return torch.linalg.solve_triangular(chol, x.double()[..., None], upper=False)[..., 0]

    def _level_scan(self, xr: torch.Tensor, xw: torch.Tensor, residual: torch.Tensor, write_mask: torch.Tensor,
                    state: LevelState | None, block: int = 4096):
        """The level memory over tokens: write window ``j`` (summaries ``xw[:, j]``, the mean of
        its clipped normalised error), then read ``xr[:, j]``. Returns the corrections [N, T]
        and the final :class:`LevelState`. Blocks of ``block`` tokens bound the memory a long
        stream needs."""
        cfg = self.config
        N, T, D = xw.shape
        st = self._level_initial(N, xw.device) if state is None else state
        second, count, W, S = st.second, st.count, st.weights, st.momentum
        lam = 0.5 ** (1.0 / cfg.level_half_life)
        value = self.clip(residual).mean(-1)  # [N, T]
        m = write_mask.to(torch.float64)
        out = []
        for a in range(0, T, block):
            b = min(T, a + block)
            x, mm = xw[:, a:b].double(), m[:, a:b]
            outer = (x[..., :, None] * x[..., None, :] * mm[..., None, None]).reshape(N, b - a, D * D)
            sec, sec_last = _discounted_cumsum(outer, lam, second.reshape(N, D * D))
            cnt, cnt_last = _discounted_cumsum(mm[..., None], lam, count[:, None])
            sec, cnt = sec.view(N, b - a, D, D), cnt[..., 0]
            k = self._whiten(x, sec, cnt).float()[:, :, None]
            q = self._whiten(xr[:, a:b], sec, cnt).float()[:, :, None]
            gate = torch.ones(N, b - a, 1, device=xw.device)
            y, (W, S) = memory_scan(q, k, value[:, a:b, None, None].float(), gate * cfg.level_forget,
                                    gate * cfg.level_momentum, gate * cfg.level_lr, weights=W, momentum=S,
                                    chunk_size=1, mask=write_mask[:, a:b])
            out.append(y[:, :, 0, 0])
            second, count = sec_last.view(N, D, D), cnt_last[:, 0]
        y = torch.cat(out, 1) if out else xw.new_zeros(N, 0)
        return y, LevelState(second, count, W, S)

    def read(self, feats: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        """The corrections of windows with features [N, dim (+ 6)] read from ``state`` (the
        learned initial memory if None) without writing: [N, 2, H] (the main memory's, then the
        level memory's)."""
        N = feats.shape[0]
        level_feats, feats = feats[:, self.dim:], feats[:, :self.dim]
        q = self._norm(self.q(feats).view(N, self.heads, self.head_dim)).float()
        weights = (tuple(w.float().unsqueeze(0).expand(N, *w.shape) for w in self.init_weights)
                   if state is None else state.weights)
        h = q
        for i, w in enumerate(weights):
            h = torch.einsum("nhi,nhoi->nho", h, w)
            if i < len(weights) - 1:
                h = F.silu(h)
        main = self.out(h.reshape(N, self.dim).to(feats.dtype))
        level = torch.zeros_like(main)
        if self.config.level and state is not None and state.level is not None:
            lv = state.level
            q = self._whiten(level_feats, lv.second, lv.count).float()
            level = level + torch.einsum("nd,nd->n", lv.weights[0][:, 0, 0], q)[:, None].to(main.dtype)
        return torch.stack([main, level], 1)
