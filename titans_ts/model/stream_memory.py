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
``alpha, eta, theta`` are data dependent (from ``f_{t-H}``), as in the paper; by default their maps
start nearly constant (at ``gate_init``) and are not trained, so the memory learns at a pace chosen
on validation data.

**How much of the correction to apply** is itself learnt along the stream: each channel keeps,
for every candidate read-out gain ``g`` in ``gains`` (0: none), the discounted squared error that
``yhat + g s c`` would have made on the windows completed so far (half-life ``gain_half_life``
windows), and each forecast uses the gain with the least (ties: the smallest gain; at the start of
a stream, no correction). Errors are counted only once a window's target has fully arrived, as
for the writes: follow-the-leader with delayed feedback (:func:`online_gain_choice`). A stream
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

import itertools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..kernels.memory_scan import memory_scan
from .fused import l2_normalize
from .memory import no_weight_decay
from .network import masked_moments

__all__ = ["StreamMemory", "window_stats", "online_gain_choice"]


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

# type of a state: (weights, momentum, level); weights and momentum: tuples of [N, heads, d_out, d_in]
# fp32 tensors; level: the level memory's (second moment [N, D, D], count [N], weights, momentum)
StreamState = tuple
LEVEL_FEATURES = 6  # D: the level memory's key width (see the module docstring)


def online_gain_choice(se: torch.Tensor, delay: int, half_life: float, acc: torch.Tensor | None = None):
    """Follow-the-leader among read-out gains with delayed feedback.

    Args:
        se: [G, N, T] squared error the forecast read at token ``j`` makes with each of G gains
            (row n: one stream); it becomes known ``delay`` tokens later (at token ``j + delay``).
        half_life: of the discount of older errors, in tokens.
        acc: [G, N] discounted errors carried in from earlier tokens (None: zeros).

    Returns ``choice`` [N, T] (the gain index each token's read uses: the least discounted error
    over the reads known by then; ties go to the lower index) and ``pending``: what a stream that
    continues needs, ``(acc [G, N], se of the last min(delay, T) reads, not yet known)``.
    """
    G, N, T = se.shape
    lam = 0.5 ** (1.0 / half_life)
    acc = se.new_zeros(G, N) if acc is None else acc.clone()
    choice = torch.empty(N, T, dtype=torch.long)
    for j in range(T):
        choice[:, j] = acc.argmin(0)
        k = j - delay + 1  # the read of token k is known from token j + 1 on
        if k >= 0:
            acc = lam * acc + se[:, :, k]
    return choice, (acc, se[:, :, max(0, T - delay + 1):] if delay > 1 else se[:, :, T:])


def window_stats(past: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-5):
    """Per window and channel, the observed context's mean and spread ``[B, 1, C]`` (RevIN's
    statistics: ``sqrt(var + eps)``)."""
    mean, var = masked_moments(past, mask)
    return mean, torch.sqrt(var + eps)


class StreamMemory(nn.Module):
    """The stream memory (see the module docstring).

    Args:
        seq_len, horizon: the windows' context and forecast lengths.
        dim: feature width (split into ``heads`` heads).
        heads, depth, expansion: the memory MLP (per head; depth 2 = one hidden layer).
        max_lr: cap on the inner learning rate theta.
        chunk_size: tokens per chunk of the memory op (1: the exact per-step recurrence, what a
            stream needs when it advances one step at a time).
        context_features: how many of the latest context steps the features read (None: all).
        spread_floor: a window's spread is at least this fraction of the channel's scale.
        value_clip: the normalised errors the memory writes are soft-clipped to this size
            (``c * tanh(r / c)``): one wild window cannot throw the memory far.
        gate_init: initial logits of the forgetting, momentum and inner learning-rate gates.
        soft_norm: keys and queries keep a magnitude below 1 instead of unit norm (see _norm).
        learn_gates: whether outer training may change the gates' maps (False: they keep their
            initial, nearly constant values: a memory that learns at the pace it was given).
        gains, gain_half_life: the read-out gains chosen among along the stream, and the
            half-life (in windows) of the errors that choose (see the module docstring).
        level: whether the level memory runs beside the main one (False: the main memory alone).
        level_window: the context steps whose mean is one of the level memory's summaries.
        level_lr, level_momentum, level_forget: the level memory's inner learning rate theta,
            momentum decay eta and forgetting alpha (constants).
        level_half_life: half-life, in written windows, of the second moment that whitens its keys.
        level_ridge: eps added to that second moment (keys of directions never seen stay finite).
    """

    def __init__(self, seq_len: int, horizon: int, dim: int = 64, heads: int = 4, depth: int = 1,
                 expansion: float = 2.0, max_lr: float = 0.5, chunk_size: int = 1,
                 context_features: int | None = 96, spread_floor: float = 0.1,
                 value_clip: float = 5.0, gate_init: tuple[float, float, float] = (-8.0, -4.0, -4.0),
                 soft_norm: bool = True, learn_gates: bool = False,
                 gains: tuple = (0.0, 0.25, 0.5, 1.0), gain_half_life: float = 4000.0,
                 level: bool = True, level_window: int = 24, level_lr: float = 5e-4,
                 level_momentum: float = 0.0, level_forget: float = 0.0, level_half_life: float = 693.0,
                 level_ridge: float = 1e-3) -> None:
        super().__init__()
        if not gains or min(gains) < 0:
            raise ValueError(f"gains must be a non-empty sequence of gains >= 0, got {gains!r}")
        if not gain_half_life > 0:
            raise ValueError(f"gain_half_life must be > 0 (tokens), got {gain_half_life!r}")
        if isinstance(level_window, bool) or not isinstance(level_window, int) or level_window < 1:
            raise ValueError(f"level_window must be a positive integer (context steps), got {level_window!r}")
        for name, value, lo, hi in (("level_lr", level_lr, 0.0, math.inf), ("level_momentum", level_momentum, 0.0, 1.0),
                                    ("level_forget", level_forget, 0.0, 1.0)):
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
        if not level_half_life > 0 or not level_ridge > 0:
            raise ValueError(f"level_half_life and level_ridge must be > 0, got {level_half_life!r}, {level_ridge!r}")
        self.gains = tuple(float(g) for g in sorted(gains))
        self.level = bool(level)
        self.level_window, self.level_lr = level_window, float(level_lr)
        self.level_momentum, self.level_forget = float(level_momentum), float(level_forget)
        self.level_half_life, self.level_ridge = float(level_half_life), float(level_ridge)
        # the candidate read-out gains: pairs (main, level), fewest correction first (ties and the
        # start of a stream go to (0, 0)); without the level memory, its gain is 0
        pairs = itertools.product(self.gains, self.gains if self.level else (0.0,))
        self.candidates = torch.tensor(sorted(pairs, key=lambda p: (p[0] + p[1], p[1])), dtype=torch.float32)
        self.gain_half_life = float(gain_half_life)
        self.soft_norm = soft_norm
        self.spread_floor, self.value_clip = spread_floor, value_clip
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.seq_len, self.horizon = seq_len, horizon
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.depth, self.max_lr, self.chunk_size = depth, max_lr, chunk_size
        self.n_ctx = seq_len if context_features is None else min(seq_len, context_features)
        self.feature_map = nn.Linear(self.n_ctx + 2 * horizon, dim)
        self.prev_map = nn.Linear(horizon, dim, bias=False)  # the newest error, linearly
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(horizon, dim, bias=False)
        self.gates = nn.Linear(dim, 3 * heads)
        self.out = nn.Linear(dim, horizon, bias=False)
        d, hidden = self.head_dim, max(1, int(round(self.head_dim * expansion)))
        dims = [d] + [hidden] * (depth - 1) + [d]
        # the initial memory: empty (zero) for a matrix memory, so the frozen reading corrects
        # nothing until training says otherwise; a deep memory needs non-zero weights to learn
        self.init_weights = nn.ParameterList(
            [no_weight_decay(nn.Parameter(torch.randn(heads, dims[i + 1], dims[i]) / math.sqrt(dims[i])
                                          * (0.0 if depth == 1 else 1.0)))
             for i in range(depth)])
        with torch.no_grad():
            # an untrained memory is already an online corrector: reading and writing through the
            # same key map, and the read-out inverting the value map (so M(k) ~ v reads back as
            # the error itself)
            self.k.weight.copy_(self.q.weight)
            self.out.weight.copy_(torch.linalg.pinv(self.v.weight))
            self.gates.weight.mul_(0.1)
            b = self.gates.bias.view(3, heads)
            b[0].fill_(gate_init[0])  # forgetting logit (-8: alpha ~ 3e-4)
            b[1].fill_(gate_init[1])  # momentum logit (-4: eta ~ 0.018)
            b[2].fill_(gate_init[2])  # inner learning-rate logit (-4: theta ~ 0.018 max_lr)
        self.gates.requires_grad_(learn_gates)

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
        std = torch.maximum(std, self.spread_floor * torch.as_tensor(scale, dtype=std.dtype).reshape(-1)
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
        if self.soft_norm:
            return x * torch.rsqrt(1.0 + (x * x).sum(-1, keepdim=True))
        return l2_normalize(x)

    def clip(self, residual: torch.Tensor) -> torch.Tensor:
        """The soft clip ``c * tanh(r / c)`` of normalised errors before the memory sees them."""
        c = self.value_clip
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
        return torch.cat([f, self.level_summaries(ctx, yhat).to(f.dtype)], -1) if self.level else f

    def level_summaries(self, ctx: torch.Tensor, yhat: torch.Tensor) -> torch.Tensor:
        """The level memory's keys before whitening [..., 6]: a constant, the context's last value,
        the mean of its latest ``level_window`` steps, and the forecast's mean, first and last step
        (all in the window's normalised units)."""
        w = min(self.level_window, ctx.shape[-1])
        return torch.stack([torch.ones_like(ctx[..., -1]), ctx[..., -1], ctx[..., -w:].mean(-1), yhat.mean(-1),
                            yhat[..., 0], yhat[..., -1]], -1)

    def initial_state(self, rows: int, device=None) -> StreamState:
        W = tuple(w.float().unsqueeze(0).expand(rows, *w.shape).contiguous().to(device or w.device)
                  for w in self.init_weights)
        return W, tuple(torch.zeros_like(w) for w in W), self._level_initial(rows, device or W[0].device)

    def _level_initial(self, rows: int, device) -> tuple:
        D = LEVEL_FEATURES
        w = torch.zeros(rows, 1, 1, D, device=device)
        return (torch.zeros(rows, D, D, dtype=torch.float64, device=device),
                torch.zeros(rows, dtype=torch.float64, device=device), (w,), (torch.zeros_like(w),))

    # ------------------------------------------------------------------ the scan
    def scan(self, read_feats: torch.Tensor, write_feats: torch.Tensor, residual: torch.Tensor,
             write_mask: torch.Tensor, state: StreamState | None = None, return_state: bool = True):
        """Run the memory over a stream of tokens.

        Token ``j`` writes (``write_feats[:, j]``, ``residual[:, j]``) where ``write_mask`` is
        true, then is read with ``read_feats[:, j]``.

        Args:
            read_feats, write_feats: [N, T, dim] features (N = series x channels).
            residual: [N, T, H] normalised realised errors of the written windows.
            write_mask: [N, T] bool.
            state: the state to continue from (None: the learned initial memory).

        Returns the corrections [N, T, 2, H] (normalised units; the main memory's, then the level
        memory's, zero without it) and the final state.
        """
        N, T, _ = read_feats.shape
        if state is not None and len(state) == 3:
            state, level_state = state[:2], state[2]
        else:
            level_state = None
        level = self._level_scan(read_feats[..., self.dim:], write_feats[..., self.dim:], residual, write_mask,
                                 level_state) if self.level else None
        read_feats, write_feats = read_feats[..., :self.dim], write_feats[..., :self.dim]
        Hh, d = self.heads, self.head_dim
        q = self._norm(self.q(read_feats).view(N, T, Hh, d))
        k = self._norm(self.k(write_feats).view(N, T, Hh, d))
        v = self.v(self.clip(residual)).view(N, T, Hh, d)
        g = torch.sigmoid(self.gates(write_feats).float()).view(N, T, 3, Hh)
        alpha, eta, theta = g[:, :, 0], g[:, :, 1], self.max_lr * g[:, :, 2]
        if state is None:
            weights, momentum = tuple(w.float() for w in self.init_weights), None
        else:
            weights, momentum = state
        y, final = memory_scan(q, k, v, alpha, eta, theta, weights=weights, momentum=momentum,
                               chunk_size=self.chunk_size, mask=write_mask,
                               output_final_state=return_state)
        main = self.out(y.reshape(N, T, Hh * d))
        if level is None:
            return torch.stack([main, torch.zeros_like(main)], 2), final
        lc, level_final = level
        corr = torch.stack([main, lc.to(main.dtype)[..., None].expand_as(main)], 2)
        return corr, (None if final is None else (*final, level_final))

    # ------------------------------------------------------------------ the level memory
    def _whiten(self, x: torch.Tensor, second: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """Keys / queries ``x`` [..., D] whitened by the second moment ``second`` [..., D, D] of
        the ``count`` (discounted) written windows, plus ``level_ridge`` (float64 inside)."""
        D = x.shape[-1]
        eye = torch.eye(D, dtype=torch.float64, device=x.device)
        sigma = second / count.clamp_min(1.0)[..., None, None] + self.level_ridge * eye
        chol = torch.linalg.cholesky(sigma)
        return torch.linalg.solve_triangular(chol, x.double()[..., None], upper=False)[..., 0]

    def _level_scan(self, xr: torch.Tensor, xw: torch.Tensor, residual: torch.Tensor, write_mask: torch.Tensor,
                    state: tuple | None, block: int = 4096):
        """The level memory over tokens: write window ``j`` (summaries ``xw[:, j]``, the mean of
        its clipped normalised error), then read ``xr[:, j]``. Returns the corrections [N, T]
        and the final state. Blocks of ``block`` tokens bound the memory a long stream needs."""
        N, T, D = xw.shape
        second, count, W, S = self._level_initial(N, xw.device) if state is None else state
        lam = 0.5 ** (1.0 / self.level_half_life)
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
            y, (W, S) = memory_scan(q, k, value[:, a:b, None, None].float(), gate * self.level_forget,
                                    gate * self.level_momentum, gate * self.level_lr, weights=W, momentum=S,
                                    chunk_size=1, mask=write_mask[:, a:b])
            out.append(y[:, :, 0, 0])
            second, count = sec_last.view(N, D, D), cnt_last[:, 0]
        y = torch.cat(out, 1) if out else xw.new_zeros(N, 0)
        return y, (second, count, W, S)

    def read(self, feats: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        """The corrections of windows with features [N, dim (+ 6)] read from ``state`` (the
        learned initial memory if None) without writing: [N, 2, H] (the main memory's, then the
        level memory's)."""
        N = feats.shape[0]
        level_feats, feats = feats[:, self.dim:], feats[:, :self.dim]
        q = self._norm(self.q(feats).view(N, self.heads, self.head_dim)).float()
        weights = (tuple(w.float().unsqueeze(0).expand(N, *w.shape) for w in self.init_weights)
                   if state is None else state[0])
        h = q
        for i, w in enumerate(weights):
            h = torch.einsum("nhi,nhoi->nho", h, w)
            if i < len(weights) - 1:
                h = F.silu(h)
        main = self.out(h.reshape(N, self.dim).to(feats.dtype))
        level = torch.zeros_like(main)
        if self.level and state is not None and len(state) == 3:
            second, count, W, _ = state[2]
            q = self._whiten(level_feats, second, count).float()
            level = level + torch.einsum("nd,nd->n", W[0][:, 0, 0], q)[:, None].to(main.dtype)
        return torch.stack([main, level], 1)

    def corrected_forecast(self, forecast: torch.Tensor, std: torch.Tensor, corr: torch.Tensor,
                           gains: torch.Tensor) -> torch.Tensor:
        """``forecast + std * (g corr_main + g_level corr_level)``: forecasts [..., H] (data units),
        spreads [...], corrections [..., 2, H] and gain pairs [..., 2]."""
        return forecast + std[..., None] * (gains[..., None] * corr).sum(-2)
