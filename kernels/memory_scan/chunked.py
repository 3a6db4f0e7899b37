"""Chunk-parallel memory scan in PyTorch: the closed form of docs/titans-math.md section 2.

Inside a chunk of ``b`` tokens every momentary surprise is taken at the chunk-start weights, so for
each memory layer ``l`` (input activations ``h``, back-propagated inner-loss errors ``delta``)

    u_i = delta_i h_i^T
    W_t = beta_t W_0 + f_t S_0 - sum_{i<=t} G[t, i] delta_i h_i^T
    S_t = m_t S_0 - sum_{i<=t} theta_i (m_t / m_i) delta_i h_i^T

with ``beta_t = prod (1 - alpha)``, ``m_t = prod eta`` over the chunk up to t,
``f_t = sum_{j<=t} (beta_t / beta_j) m_j`` and ``G = (D @ P) * theta`` where
``D[t, j] = beta_t / beta_j`` and ``P[j, i] = m_j / m_i`` are lower-triangular. Every ratio is the
``exp`` of a segment sum of log gates taken term by term (never a difference of two long
cumulative sums) and masked to -inf above the diagonal *before* ``exp``, so nothing overflows and
fp32 keeps its precision. Retrieval through layer l with input ``a_t``:

    W_{l,t} a_t = beta_t W_{l,0} a_t + f_t S_{l,0} a_t - sum_i G[t, i] (h_i . a_t) delta_i

is dense matmuls for the whole chunk. Chunks run in sequence (the state passes from one to the
next). State is fp32.

Training differentiates through the inner updates. The chunk loop is one
``torch.autograd.Function`` with a hand-derived backward (:func:`chunk_backward`) that keeps each
chunk's intermediates (``"cache"``) or only the chunk-start states, recomputing the rest
(``"recompute"``, memory ``O(T d + chunks |W|)``); either way the backward is dense matmuls. Each
chunk's gate coefficients are computed inside the loop (:func:`_gates_forward`, small and in
cache) and differentiated by hand (:func:`_gates_backward`). The same per-chunk forward run under
plain autograd, with the coefficients of all chunks from :func:`chunk_gate_coefficients`
(``backward="autograd"``), is the twin the tests hold the hand-written backward to, and also the
faster choice for a single chunk (nothing passes between chunks); ``backward="auto"`` picks among
the three by chunk count and memory, and inference (nothing requires grad) runs the plain loop.
The per-token loop in ``reference.py`` is the specification all of them are held to.

On CPU the hand-written path is bound by its matmuls (about 45 M multiply-adds per chunk, batch
element and head in the benchmark's configuration: depth 2, widths 64 / 256, chunk 64; forward
about a third of it), which run at 50-65 GFLOP/s per core in MKL at these sizes: each layer's
``W`` and ``S`` are read and updated together as one stacked tensor (see "state layout" below),
the two blocks are mixed in one pass (:func:`_mix`), and the chunk-start states kept for the
backward live in buffers reused across calls (:class:`_BufferPool`), since the page faults of
fresh memory cost about as much as the state update itself on a virtual machine.
"""

from __future__ import annotations

import os
from itertools import pairwise

import torch
import torch.nn.functional as F

from .common import (
    activation_backward,
    activation_fn,
    compute_dtype,
    mul_activation_grad2_,
    soft_clamp_scale,
    soft_clamp_scale_grad,
)

__all__ = ["memory_scan_chunked", "chunk_gate_coefficients", "chunk_forward", "chunk_backward"]

_LOG_FLOOR = 1e-30  # log(0) would make log-space sums NaN; exp(-69) is 0 for every purpose


def _tr(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-1, -2)


def _segsum(x: torch.Tensor) -> torch.Tensor:
    """``out[..., t, s] = sum_{s < r <= t} x[..., r]`` for s <= t, -inf above the diagonal.

    Summed term by term (``tril_ones @ (x_r [r > s])``, one small matmul), never as a difference
    of two long cumulative sums, so a ratio of decay products keeps full precision.
    """
    b = x.shape[-1]
    ones = torch.ones(b, b, dtype=torch.bool, device=x.device)
    incl = ones.tril()
    terms = x.unsqueeze(-1).masked_fill(~ones.tril(-1), 0.0)  # [..., r, s] = x_r for r > s
    seg = incl.to(x.dtype) @ terms
    return seg.masked_fill(~incl, float("-inf"))


def chunk_gate_coefficients(alpha: torch.Tensor, eta: torch.Tensor,
                            last: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Decay / momentum coefficients of every chunk (differentiable, all chunks at once).

    Args:
        alpha, eta: [..., n, b] gates of n chunks of b tokens (fp32).
        last: [n] index of each chunk's last real token (b - 1 except a padded final chunk).

    Returns a dict of tensors:
        ``dp`` [..., n, b, b]: D @ P (G = dp * theta[None, :]);
        ``beta``, ``f`` [..., n, b]: per-token coefficients of W_0 and S_0;
        ``eb``, ``ef``, ``em`` [..., n]: end-of-chunk beta, f, m;
        ``dp_end``, ``p_end`` [..., n, b]: rows ``last`` of D @ P and of P.
    """
    b = alpha.shape[-1]
    n = alpha.shape[-2]
    la = torch.log((1.0 - alpha).clamp_min(_LOG_FLOOR))
    lm = torch.log(eta.clamp_min(_LOG_FLOOR))
    D = torch.exp(_segsum(la))  # D[t, j] = beta_t / beta_j
    P = torch.exp(_segsum(lm))  # P[j, i] = m_j / m_i
    dp = D @ P
    beta = torch.exp(torch.cumsum(la, dim=-1))
    m = torch.exp(torch.cumsum(lm, dim=-1))
    f = (D @ m.unsqueeze(-1)).squeeze(-1)
    if last is None:
        last = torch.full((n,), b - 1, dtype=torch.long, device=alpha.device)
    idx = last.view(*([1] * (alpha.dim() - 2)), n, 1).expand(*alpha.shape[:-1], 1)
    row = idx.unsqueeze(-1).expand(*alpha.shape[:-1], 1, b)
    return {
        "dp": dp, "beta": beta, "f": f,
        "eb": beta.gather(-1, idx).squeeze(-1),
        "ef": f.gather(-1, idx).squeeze(-1),
        "em": m.gather(-1, idx).squeeze(-1),
        "dp_end": dp.gather(-2, row).squeeze(-2),
        "p_end": P.gather(-2, row).squeeze(-2),
    }


COEF_KEYS = ("dp", "beta", "f", "eb", "ef", "em", "dp_end", "p_end")


def _gates_forward(alpha: torch.Tensor, eta: torch.Tensor, last: int):
    """:func:`chunk_gate_coefficients` of one chunk, outside autograd, with what
    :func:`_gates_backward` needs. alpha, eta: [B, H, b]; ``last``: the chunk's last real token.

    Computed chunk by chunk inside the scan, so every [b, b] coefficient stays small and in cache
    (all chunks at once they are n times larger, and their autograd graph costs as much again).
    """
    one_minus = (1.0 - alpha).clamp_min(_LOG_FLOOR)
    eta_c = eta.clamp_min(_LOG_FLOOR)
    la, lm = torch.log(one_minus), torch.log(eta_c)
    D = torch.exp(_segsum(la))  # D[t, j] = beta_t / beta_j
    P = torch.exp(_segsum(lm))  # P[j, i] = m_j / m_i
    dp = D @ P
    beta = torch.cumsum(la, dim=-1).exp_()
    m = torch.cumsum(lm, dim=-1).exp_()
    f = (D @ m.unsqueeze(-1)).squeeze(-1)
    coef = {"dp": dp, "beta": beta, "f": f, "eb": beta[..., last], "ef": f[..., last],
            "em": m[..., last], "dp_end": dp[..., last, :], "p_end": P[..., last, :]}
    saved = (alpha, eta, one_minus, eta_c, D, P, beta, m, last)
    return coef, saved


def _rectangle_sums(X: torch.Tensor) -> torch.Tensor:
    """``out[..., r] = sum_{t >= r, j < r} X[..., t, j]``: the gradient of ``x_r`` through a
    segment sum (:func:`_segsum`) whose gradient is ``X``."""
    out = X.new_zeros(X.shape[:-1])
    out[..., 1:] = X.cumsum(-1)[..., :, :-1].tril(-1).sum(-2)
    return out


def _gates_backward(saved, dcoef: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of one chunk's alpha and eta [B, H, b] from those of its coefficients (a dict
    like the one :func:`_gates_forward` returns; ``eb``, ``ef``, ``em`` may be 0.0). The
    hand-derived backward of :func:`chunk_gate_coefficients`, which the tests hold it to."""
    alpha, eta, one_minus, eta_c, D, P, beta, m, last = saved
    d_dp = dcoef["dp"].clone()
    d_dp[..., last, :] += dcoef["dp_end"]
    d_beta = dcoef["beta"].clone()
    d_beta[..., last] += dcoef["eb"]
    d_f = dcoef["f"].clone()
    d_f[..., last] += dcoef["ef"]
    # dp = D @ P, f = D @ m
    dD = torch.baddbmm(d_f.reshape(-1, d_f.shape[-1], 1) * m.reshape(-1, 1, m.shape[-1]),
                       d_dp.reshape(-1, *d_dp.shape[-2:]), _tr(P).reshape(-1, *P.shape[-2:])
                       ).view(D.shape)
    dP = _tr(D) @ d_dp
    dP[..., last, :] += dcoef["p_end"]
    dm = (_tr(D) @ d_f.unsqueeze(-1)).squeeze(-1)
    dm[..., last] += dcoef["em"]
    # D = exp(segsum(log(1 - alpha))), beta = exp(cumsum(...)); P, m likewise with log(eta)
    dla = _rectangle_sums(dD.mul_(D)) + (d_beta * beta).flip(-1).cumsum(-1).flip(-1)
    dlm = _rectangle_sums(dP.mul_(P)) + (dm * m).flip(-1).cumsum(-1).flip(-1)
    dalpha = (-dla / one_minus).masked_fill_(1.0 - alpha < _LOG_FLOOR, 0.0)
    deta = (dlm / eta_c).masked_fill_(eta < _LOG_FLOOR, 0.0)
    return dalpha, deta


# ------------------------------------------------------------------------------ state layout
#
# Each layer's chunk-start weights W [d_out, d_in] and momentum S travel as one stacked tensor,
# so that most reads and updates of the pair are one matmul. The per-token coefficients (beta / f
# on reads, g / m on updates) scale whichever side of the layer is narrower (fewer elements to
# scale, keep and reduce):
#
# * scaled outputs (d_in >= d_out), stacked ``X = [W; S]`` [2 d_out, d_in]:
#       read   z = beta * (a X^T)[:, :d_out] + f * (a X^T)[:, d_out:]
#       update X' = M X + upd^T h,     upd = -[g delta | m delta]      [b, 2 d_out]
# * scaled inputs (d_in < d_out), stacked ``X = [W^T; S^T]`` [2 d_in, d_out]:
#       read   z = [beta a | f a] X
#       update X' = M X + upd^T delta, upd = -[g h | m h]              [b, 2 d_in]
#
# with ``M = [[eb, ef], [0, em]]`` mixing the two blocks (:func:`_mix`).


def _scales_input(d_in: int, d_out: int) -> bool:
    """Whether a layer's coefficients scale its inputs (stacked ``[W^T; S^T]``) rather than its
    outputs (stacked ``[W; S]``)."""
    return d_in < d_out


def _layers(WS, d_k: int) -> list[tuple[int, int, bool]]:
    """``(d_in, d_out, scales_input)`` of every layer, read off the stacked states."""
    out, d_in = [], d_k
    for X in WS:
        rows, cols = X.shape[-2] // 2, X.shape[-1]
        if cols == d_in and not _scales_input(d_in, rows):
            out.append((d_in, rows, False))
            d_in = rows
        else:
            out.append((d_in, cols, True))
            d_in = cols
    return out


def _stack(w: torch.Tensor, s: torch.Tensor, scales_input: bool) -> torch.Tensor:
    """The stacked state of one layer from W, S [.., d_out, d_in]."""
    return torch.cat([_tr(w), _tr(s)] if scales_input else [w, s], dim=-2)


def _unstack(X: torch.Tensor, scales_input: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, S)`` [.., d_out, d_in] (views) of a stacked state."""
    w, s = X.split(X.shape[-2] // 2, dim=-2)
    return (_tr(w), _tr(s)) if scales_input else (w, s)


def _w_t(X: torch.Tensor, scales_input: bool) -> torch.Tensor:
    """``W^T`` [.., d_in, d_out] (a view) of a stacked state."""
    w = X[..., : X.shape[-2] // 2, :]
    return w if scales_input else _tr(w)


def _acc_w_t_(dX: torch.Tensor, scales_input: bool, x: torch.Tensor, y: torch.Tensor) -> None:
    """``dW^T += x^T y`` into the W block of a stacked state's gradient (x [.., r, d_in],
    y [.., r, d_out])."""
    half = dX.shape[-2] // 2
    if scales_input:
        _outer_acc_(dX[..., :half, :], x, y)
    else:
        _outer_acc_(dX[..., :half, :], y, x)


# ------------------------------------------------------------------------------ batched matmuls


def _shared(b: torch.Tensor) -> bool:
    """An operand shared by every sequence of the batch (the learned initial memory before any
    write): a 3-D [H, m, n] tensor, or a [B, H, m, n] view with stride 0 on the batch axis.

    Inside the scan a shared state is kept 3-D, so its gradient is reduced over the batch by
    the matmuls themselves instead of through a [B, H, m, n] buffer."""
    return b.dim() == 3 or (b.dim() == 4 and b.shape[0] > 1 and b.stride(0) == 0)


def _unshared(b: torch.Tensor) -> torch.Tensor:
    """The [H, m, n] tensor behind a shared operand."""
    return b if b.dim() == 3 else b[0]


def _batched(x: torch.Tensor, B: int) -> torch.Tensor:
    """A [H, m, n] tensor as a [B, H, m, n] view (4-D tensors pass through)."""
    return x.unsqueeze(0).expand(B, *x.shape) if x.dim() == 3 else x


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for [B, H, r, m] @ [B, H, m, n], as one ``bmm`` on 3-D views (``matmul`` on 4-D
    operands copies transposed / sliced operands first; ``bmm`` hands their strides to BLAS).
    When ``b`` is shared over the batch, one matmul per head over all ``B * r`` rows instead of
    ``B * H`` small ones."""
    if _shared(b) and a.dim() == 4:
        B, H, r, m = a.shape
        out = torch.matmul(a.transpose(0, 1).reshape(H, B * r, m), _unshared(b))
        return out.view(H, B, r, -1).transpose(0, 1)
    out = torch.bmm(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]))
    return out.view(*a.shape[:-2], *out.shape[-2:])


def _addmm_(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, alpha: float = 1.0) -> None:
    """In place ``c += alpha * a @ b``; ``c`` may be a block of a larger buffer (one ``baddbmm_``
    on its 3-D view: BLAS takes the strides), ``b`` may be shared over the batch."""
    try:
        flat = c.view(-1, *c.shape[-2:])
    except RuntimeError:  # batch axes not mergeable (a transposed result of the shared path)
        flat = None
    if flat is None or _shared(b):
        c.add_(_mm(a, b), alpha=alpha)
        return
    flat.baddbmm_(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]), alpha=alpha)


def _outer_acc_(buf: torch.Tensor, x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0) -> None:
    """In place ``buf += alpha * x^T y`` for x [B, H, r, p], y [B, H, r, q]; a 3-D (shared)
    ``buf`` [H, p, q] also sums over the batch (one matmul per head over all ``B * r`` rows)."""
    if buf.dim() == 3:
        H = buf.shape[0]
        xs = x.transpose(0, 1).reshape(H, -1, x.shape[-1])
        ys = y.transpose(0, 1).reshape(H, -1, y.shape[-1])
        buf.baddbmm_(_tr(xs), ys, alpha=alpha)
    else:
        _addmm_(buf, _tr(x), y, alpha)


def _blocks(X: torch.Tensor, B: int) -> torch.Tensor:
    """A stacked state [B, H, 2 r, c] (or shared [H, 2 r, c]) as [B * H, 2, r * c]: a view,
    except for a shared state, which is copied per sequence."""
    X = _batched(X, B)
    return X.reshape(B * X.shape[1], 2, -1)


def _mix(X: torch.Tensor, M: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``[A; C] -> [M00 A + M01 C; M10 A + M11 C]`` for a stacked state [B, H, 2 r, c] (or shared
    [H, 2 r, c]) and per-sequence 2 x 2 matrices M [B, H, 2, 2]: one bmm over the two flattened
    blocks, one pass over the state. Returns a contiguous [B, H, 2 r, c]: ``out`` when given
    (not differentiable), else a fresh tensor."""
    B, H = M.shape[:2]
    if out is not None:
        torch.bmm(M.reshape(B * H, 2, 2), _blocks(X, B), out=out.view(B * H, 2, -1))
        return out
    return torch.bmm(M.reshape(B * H, 2, 2), _blocks(X, B)).view(B, H, *X.shape[-2:])


def _block_dots(dX: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``out[.., j, k] = <dX_j, X_k>`` over the two stacked blocks (the gradient of the matrix
    of :func:`_mix`): [B, H, 2, 2], one bmm."""
    B, H = dX.shape[:2]
    return torch.bmm(_blocks(dX, B), _tr(_blocks(X, B))).view(B, H, 2, 2)


def _split2(x: torch.Tensor) -> torch.Tensor:
    """[.., 2 w] -> [.., 2, w] (a view)."""
    return x.unflatten(-1, (2, x.shape[-1] // 2))


# ------------------------------------------------------------------------------ one chunk


def _key_pass(Wt, k, v, activation):
    """Keys through the chunk-start memory, then the inner loss back-propagated.

    Args: ``Wt`` per layer ``W^T`` [B, H, d_in, d_out] (or shared [H, d_in, d_out]);
    k [B, H, b, d_k]; v [B, H, b, d_v].

    Returns ``hs`` (layer inputs, hs[0] = k), ``zs`` (pre-activations of hidden layers),
    ``deltas`` (errors of each layer's output; ``u_i = delta_i h_i^T``) and ``backs``
    (``delta_{l+1} W_{l+1}``, so that ``delta_l = backs[l] * act'(zs[l])``).
    """
    L = len(Wt)
    act = activation_fn(activation)
    hs, zs = [k], []
    h = k
    for layer in range(L):
        z = _mm(h, Wt[layer])
        if layer < L - 1:
            zs.append(z)
            h = act(z)
            hs.append(h)
        else:
            h = z
    deltas, backs = [None] * L, [None] * (L - 1)
    d = (h - v).mul_(2.0)
    deltas[L - 1] = d
    for layer in range(L - 2, -1, -1):
        backs[layer] = _mm(d, _tr(Wt[layer + 1]))
        d = activation_backward(activation, backs[layer], zs[layer])
        deltas[layer] = d
    return hs, zs, deltas, backs


def chunk_forward(qc, kc, vc, th, coef, WS, activation, clamp, keep=False, advance=True, out=None):
    """One chunk, batched over [B, H]: queries read, state advanced.

    Args:
        qc, kc: [B, H, b, d_k]; vc: [B, H, b, d_v]; th: [B, H, b] (masked theta);
        coef: this chunk's slice of :func:`chunk_gate_coefficients`;
        WS: per layer the chunk-start state, stacked as described above
            ([B, H, 2 d_out, d_in] or [B, H, 2 d_in, d_out]; 3-D when shared by the batch).

    Per layer, with input activations ``a`` [b, d_in] (the queries for the first layer), key-pass
    inputs ``h`` and errors ``delta`` [b, d_out]:

        z = beta * a W^T + f * a S^T - (a h^T * G) delta                     [b, d_out]
        W' = eb W + ef S - (g delta)^T h,   S' = em S - (m delta)^T h

    (``G`` is zero above the diagonal, so ``a h^T * G`` needs no causal mask.)

    Returns ``(y [B, H, b, d_v], WS_next, cache)``; ``cache`` (only with ``keep``) holds what
    :func:`chunk_backward` needs beyond the inputs; ``advance=False`` skips the next state
    (the backward's recomputation does not need it); ``out`` (outside autograd only): per layer
    a [B, H, ...] buffer to write the next state into.
    """
    layers = _layers(WS, kc.shape[-1])
    Wt = [_w_t(X, si) for X, (_, _, si) in zip(WS, layers, strict=True)]
    hs, zs, deltas, backs = _key_pass(Wt, kc, vc, activation)
    if clamp is None:
        c = None
        th_eff = th
    else:
        sq = sum((d * d).sum(-1) * (h * h).sum(-1) for d, h in zip(deltas, hs, strict=True))
        c = soft_clamp_scale(sq, clamp)
        th_eff = th * c
    G = coef["dp"] * th_eff.unsqueeze(-2)  # [B, H, b, b]
    bf = torch.stack([coef["beta"], coef["f"]], dim=-1).unsqueeze(-1)  # [B, H, b, 2, 1]
    act = activation_fn(activation)
    a = qc
    a_in, Zs, AH, Ps, READ = [], [], [], [], []
    for layer, (_d_in, d_out, scales_input) in enumerate(layers):
        X = WS[layer]
        if scales_input:
            read = (a.unsqueeze(-2) * bf).flatten(-2)  # [.., b, 2 d_in]: beta a | f a
            z = _mm(read, X)
        else:
            read = _mm(a, _tr(X))  # [.., b, 2 d_out]: a W^T | a S^T
            z = read[..., :d_out] * bf[..., 0, :]
            z.addcmul_(read[..., d_out:], bf[..., 1, :])  # z is fresh: in place is autograd-safe
        ah = _mm(a, _tr(hs[layer]))  # [B, H, b, b]
        p = ah * G
        _addmm_(z, p, deltas[layer], alpha=-1.0)
        a_in.append(a)
        AH.append(ah)
        Ps.append(p)
        READ.append(read)
        if layer < len(layers) - 1:
            Zs.append(z)
            a = act(z)
        else:
            a = z
    WS_next, UPD, ngm = [], [], None
    if advance or keep:
        # minus the end-of-chunk weights (g, m) of each token's surprise, [B, H, b, 2, 1]
        ngm = torch.stack([coef["dp_end"] * th_eff, coef["p_end"] * th_eff], dim=-1).neg_().unsqueeze(-1)
        for layer, (_, _, scales_input) in enumerate(layers):
            src = hs[layer] if scales_input else deltas[layer]
            UPD.append((src.unsqueeze(-2) * ngm).flatten(-2))  # [.., b, 2 width]
    if advance:
        zero = torch.zeros_like(coef["eb"])
        M = torch.stack([coef["eb"], coef["ef"], zero, coef["em"]], dim=-1).unflatten(-1, (2, 2))
        for layer, (_, _, scales_input) in enumerate(layers):
            X = _mix(WS[layer], M, None if out is None else out[layer])  # in place: autograd-safe
            _addmm_(X, _tr(UPD[layer]), deltas[layer] if scales_input else hs[layer])
            WS_next.append(X)
    cache = None
    if keep:
        cache = dict(hs=hs, zs=zs, deltas=deltas, backs=backs, c=c, th_eff=th_eff, G=G, bf=bf,
                     a_in=a_in, Zs=Zs, AH=AH, P=Ps, READ=READ, UPD=UPD, ngm=ngm)
    return a, WS_next, cache


def chunk_backward(qc, kc, vc, th, coef, WS, activation, clamp, dy, dWSn, cache=None):
    """Gradients of one chunk given those of its outputs.

    Args:
        dy: [B, H, b, d_v] gradient of the chunk's outputs; dWSn: gradients of the next stacked
            states (a list like WS), or None when nothing reads the next state.
        cache: the forward's intermediates of this chunk; recomputed from the inputs if None.

    Returns ``(dq, dk, dv, dth, dcoef, dWS)`` with ``dcoef`` a dict like ``coef``.
    """
    L = len(WS)
    cc = cache
    if cc is None:
        _, _, cc = chunk_forward(qc, kc, vc, th, coef, WS, activation, clamp, keep=True, advance=False)
    hs, zs, deltas, backs, G = cc["hs"], cc["zs"], cc["deltas"], cc["backs"], cc["G"]
    th_eff, ngm, bf = cc["th_eff"], cc["ngm"], cc["bf"]
    layers = _layers(WS, kc.shape[-1])
    Wt = [_w_t(X, si) for X, (_, _, si) in zip(WS, layers, strict=True)]
    # ---- end-of-chunk state: X' = M X + upd^T other, upd = -[g src | m src] (see above)
    if dWSn is None:  # nothing reads the next state: its terms vanish
        dWS = [x.new_zeros(x.shape) for x in WS]  # contiguous buffers (zeros_like keeps strides)
        dh = [h.new_zeros(h.shape) for h in hs]
        ddelta = [d.new_zeros(d.shape) for d in deltas]
        d_eb = d_ef = d_em = 0.0
        d_ngm = None
    else:
        zero = torch.zeros_like(coef["eb"])
        MT = torch.stack([coef["eb"], zero, coef["ef"], coef["em"]], dim=-1).unflatten(-1, (2, 2))
        dWS, dh, ddelta = [], [], []
        dM = d_ngm = 0.0
        for i, (_, _, scales_input) in enumerate(layers):
            src, other = (hs[i], deltas[i]) if scales_input else (deltas[i], hs[i])
            dWS.append(_mix(dWSn[i], MT))
            dM = dM + _block_dots(dWSn[i], WS[i])
            d_upd = _split2(_mm(other, _tr(dWSn[i])))  # [.., b, 2, width]
            d_src = (d_upd * ngm).sum(-2)
            d_ngm = d_ngm + (d_upd * src.unsqueeze(-2)).sum(-1, keepdim=True)
            d_other = _mm(cc["UPD"][i], dWSn[i])
            dh.append(d_src if scales_input else d_other)
            ddelta.append(d_other if scales_input else d_src)
        d_eb, d_ef, d_em = dM[..., 0, 0], dM[..., 0, 1], dM[..., 1, 1]
    # ---- query pass, last layer first
    d_bf = 0.0
    dGn = torch.zeros_like(G)  # minus the gradient of G
    dZ = dy
    dq = None
    for layer in range(L - 1, -1, -1):
        d_in, d_out, scales_input = layers[layer]
        X, a, ah, p, read = WS[layer], cc["a_in"][layer], cc["AH"][layer], cc["P"][layer], cc["READ"][layer]
        if scales_input:  # z = read X, read = [beta a | f a]
            _outer_acc_(dWS[layer], read, dZ)
            d_read = _split2(_mm(dZ, _tr(X)))  # [.., b, 2, d_in]
            d_bf = d_bf + (d_read * a.unsqueeze(-2)).sum(-1, keepdim=True)
            da = (d_read * bf).sum(-2)
        else:  # z = beta read[:, :d_out] + f read[:, d_out:], read = a X^T
            dZu = dZ.unsqueeze(-2)
            d_bf = d_bf + (dZu * _split2(read)).sum(-1, keepdim=True)
            dZ2 = (dZu * bf).flatten(-2)  # [.., b, 2 d_out]: beta dZ | f dZ
            _outer_acc_(dWS[layer], dZ2, a)
            da = _mm(dZ2, X)
        dpm = _mm(dZ, _tr(deltas[layer]))  # minus the gradient of p = a h^T * G
        _addmm_(ddelta[layer], _tr(p), dZ, alpha=-1.0)
        dGn.addcmul_(dpm, ah)
        dpg = dpm * G  # minus the gradient of a h^T
        _addmm_(da, dpg, hs[layer], alpha=-1.0)
        _outer_acc_(dh[layer], dpg, a, alpha=-1.0)
        if layer > 0:
            dZ = activation_backward(activation, da, cc["Zs"][layer - 1])
        else:
            dq = da
    # ---- theta (through G, the end-of-chunk weights, and the clamp scale)
    dG = dGn.tril_().neg_()  # above the diagonal G is 0 whatever theta is
    if d_ngm is None:
        d_gend = d_mom = torch.zeros_like(th_eff)
    else:
        d_gend, d_mom = (-d_ngm.squeeze(-1)).unbind(-1)
    dth_eff = (dG * coef["dp"]).sum(-2) + d_gend * coef["dp_end"] + d_mom * coef["p_end"]
    d_dp = dG * th_eff.unsqueeze(-2)
    d_dp_end = d_gend * th_eff
    d_p_end = d_mom * th_eff
    if clamp is None:
        dth = dth_eff
    else:
        dth = dth_eff * cc["c"]
        sq = sum((d * d).sum(-1) * (h * h).sum(-1) for d, h in zip(deltas, hs, strict=True))
        dsq = dth_eff * th * soft_clamp_scale_grad(sq, clamp)
        for i in range(L):
            hn = (hs[i] * hs[i]).sum(-1, keepdim=True)
            dn = (deltas[i] * deltas[i]).sum(-1, keepdim=True)
            ddelta[i] = ddelta[i] + 2.0 * dsq.unsqueeze(-1) * hn * deltas[i]
            dh[i] = dh[i] + 2.0 * dsq.unsqueeze(-1) * dn * hs[i]
    # ---- key pass backward: the errors first (delta_l = (delta_{l+1} W_{l+1}) * act'(z_l)) ...
    dz = [None] * L
    for layer in range(L - 1):
        g = activation_backward(activation, ddelta[layer], zs[layer])
        _addmm_(ddelta[layer + 1], g, Wt[layer + 1])
        _acc_w_t_(dWS[layer + 1], layers[layer + 1][2], g, deltas[layer + 1])
        dz[layer] = mul_activation_grad2_(activation, ddelta[layer] * backs[layer], zs[layer])
    dzL = 2.0 * ddelta[L - 1]  # delta_L = 2 (z_L - v)
    dv = -dzL
    # ... then the forward pass z_l = h_{l-1} W_l^T, h_l = act(z_l)
    g = dzL
    for layer in range(L - 1, -1, -1):
        _acc_w_t_(dWS[layer], layers[layer][2], hs[layer], g)
        _addmm_(dh[layer], g, _tr(Wt[layer]))
        if layer > 0:
            g = activation_backward(activation, dh[layer], zs[layer - 1]).add_(dz[layer - 1])
    dk = dh[0]
    dcoef = {"dp": d_dp, "beta": d_bf[..., 0, 0], "f": d_bf[..., 1, 0], "eb": d_eb, "ef": d_ef,
             "em": d_em, "dp_end": d_dp_end, "p_end": d_p_end}
    return dq, dk, dv, dth, dcoef, dWS


def _memory_total(device: torch.device) -> int:
    """Bytes of the device's memory (RAM on CPU)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


class _BufferPool:
    """Buffers kept from one call to the next, by shape.

    A training loop runs the scan with the same shapes every step; the chunk-start states it
    keeps for the backward (``n_chunks * |W|`` per sequence and head: 512 MiB at T = 4k, batch 8
    in the CPU benchmark's configuration) would otherwise be fresh memory each step, and on a
    virtual machine the first-touch page faults of fresh memory cost about as much as writing
    it. A buffer returns to the pool once the backward has read it; the pool keeps at most
    ``max_fraction`` of the machine's memory (oldest buffers dropped first); ``enabled = False``
    or :meth:`clear` gives the memory back.
    """

    def __init__(self, max_fraction: float = 0.25):
        self.enabled = True
        self.max_fraction = max_fraction
        self._free: list[torch.Tensor] = []  # oldest first

    def take(self, shape, like: torch.Tensor) -> torch.Tensor:
        shape = tuple(shape)
        for i in range(len(self._free) - 1, -1, -1):
            buf = self._free[i]
            if buf.shape == shape and buf.dtype == like.dtype and buf.device == like.device:
                return self._free.pop(i)
        return like.new_empty(shape)

    def give(self, buf: torch.Tensor) -> None:
        if not self.enabled:
            return
        self._free.append(buf)
        budget = self.max_fraction * _memory_total(buf.device)
        while sum(b.numel() * b.element_size() for b in self._free) > budget:
            self._free.pop(0)

    def clear(self) -> None:
        self._free.clear()


_STATE_POOL = _BufferPool()


class _ChunkScan(torch.autograd.Function):
    """The chunk loop with the hand-derived backward. Saves the chunk-start states and, unless
    ``recompute``, each chunk's intermediates (O(T d) memory, no second forward in backward).
    Each chunk's gate coefficients are computed on the fly from its alpha / eta
    (:func:`_gates_forward`) and differentiated by hand (:func:`_gates_backward`)."""

    @staticmethod
    def forward(ctx, meta, qc, kc, vc, tc, ac, ec, *WS):
        L, activation, clamp, recompute, final, last = meta
        WS = list(WS)
        B, H, n, b = qc.shape[:4]
        y = qc.new_empty(*qc.shape[:-1], vc.shape[-1])
        # the states of chunks 1 .. n-1, kept for the backward, in buffers reused across calls
        # (the final state is the caller's, so it gets fresh memory)
        bufs = [_STATE_POOL.take((n - 1, B, H, *x.shape[-2:]), qc) for x in WS] if n > 1 else []
        states, caches = [], []
        for c in range(n):
            states.append(WS)
            coef, gates = _gates_forward(ac[:, :, c], ec[:, :, c], last if c == n - 1 else b - 1)
            y[:, :, c], WS_next, cache = chunk_forward(
                qc[:, :, c], kc[:, :, c], vc[:, :, c], tc[:, :, c], coef, WS, activation, clamp,
                keep=not recompute, advance=final or c < n - 1,
                out=[x[c] for x in bufs] if c < n - 1 else None)
            caches.append(None if recompute else (cache, coef, gates))
            WS = WS_next
        ctx.meta = meta
        ctx.bufs = bufs
        ctx.states = states
        ctx.caches = caches
        ctx.save_for_backward(qc, kc, vc, tc, ac, ec)
        if not final:  # placeholders: nothing downstream reads the final state
            WS = [qc.new_zeros(()) for _ in range(L)]
        return (y, *WS)

    @staticmethod
    def backward(ctx, dy, *dWSn):
        if ctx.states is None:
            raise RuntimeError(
                "a second backward through the chunked memory scan: its backward frees the chunk states it "
                "saved, so one backward per forward even with retain_graph=True; run the forward again, or "
                "use backend='reference' (plain autograd, slow) for a graph walked twice")
        L, activation, clamp, _, final, last = ctx.meta
        qc, kc, vc, tc, ac, ec = ctx.saved_tensors
        dWSn = list(dWSn) if final else None
        n, b = qc.shape[2:4]
        dq, dk, dv = torch.empty_like(qc), torch.empty_like(kc), torch.empty_like(vc)
        dt, da, de = torch.empty_like(tc), torch.empty_like(ac), torch.empty_like(ec)
        for c in range(n - 1, -1, -1):
            if ctx.caches[c] is None:
                cache = None
                coef, gates = _gates_forward(ac[:, :, c], ec[:, :, c], last if c == n - 1 else b - 1)
            else:
                cache, coef, gates = ctx.caches[c]
                ctx.caches[c] = None
            gq, gk, gv, gt, gcoef, dWSn = chunk_backward(
                qc[:, :, c], kc[:, :, c], vc[:, :, c], tc[:, :, c], coef, ctx.states[c],
                activation, clamp, dy[:, :, c], dWSn, cache)
            dq[:, :, c], dk[:, :, c], dv[:, :, c], dt[:, :, c] = gq, gk, gv, gt
            da[:, :, c], de[:, :, c] = _gates_backward(gates, gcoef)
        # a shared (3-D) initial state gets its gradient summed over the batch
        dWSn = [g.sum(0) if s.dim() == 3 and g.dim() == 4 else g for g, s in zip(dWSn, ctx.states[0], strict=True)]
        ctx.states = ctx.caches = None
        for x in ctx.bufs or ():
            _STATE_POOL.give(x)
        ctx.bufs = None
        return (None, dq, dk, dv, dt, da, de, *dWSn)


CACHE_MAX_FRACTION = 0.25  # "auto" keeps the chunks' intermediates if they fit in this share of memory


def _cache_footprint(B, H, n, b, dims) -> int:
    """Bytes the ``"cache"`` mode keeps for the backward (beyond the chunk-start states, which
    both hand-written modes keep), in fp32: per token and head, for the hidden layers the
    key-pass activations, pre-activations and back-propagated errors and the query-pass
    activations and pre-activations; every layer's output errors; per layer the scaled reads
    and updates (twice the narrower width each) and the ``b``-wide rows ``a h^T`` and
    ``a h^T * G``; and ``G``'s row."""
    outs, hidden = sum(dims[1:]), sum(dims[1:-1])
    narrow = sum(min(i, o) for i, o in pairwise(dims))
    L = len(dims) - 1
    per_token = 5 * hidden + outs + 4 * narrow + (2 * L + 1) * b
    return 4 * B * H * n * b * per_token


def _memory_budget(device: torch.device) -> int:
    """Bytes the ``"cache"`` mode may take: a share of the device's memory (RAM on CPU)."""
    return int(CACHE_MAX_FRACTION * _memory_total(device))


def memory_scan_chunked(q, k, v, alpha, eta, theta, weights, momentum, chunk_size, activation,
                        mask=None, surprise_clamp=None, backward: str = "auto",
                        output_final_state: bool = True):
    """Chunked closed form. Shapes as :func:`titans_ts.kernels.memory_scan.memory_scan`.

    ``backward`` chooses how gradients are computed (the values are identical):

    * ``"recompute"``: the hand-written backward, keeping only chunk-start states and
      recomputing each chunk's intermediates (least memory; best for long sequences);
    * ``"cache"``: the hand-written backward with the forward's intermediates kept;
    * ``"autograd"``: plain autograd through the per-chunk forward (the twin the hand-written
      backward is tested against);
    * ``"auto"``: ``"cache"`` when the intermediates fit in a quarter of the device's memory
      (RAM on CPU), else ``"recompute"``. On one CPU core at batch 8, T = 1k in the benchmark's
      configuration, cache / recompute / autograd take about 1.0 / 1.45 / 1.65 s (recomputing
      repeats most of the forward; autograd pays for differentiating every state hand-over);
      for a single chunk cache and autograd are even.
    """
    if backward not in ("auto", "recompute", "cache", "autograd"):
        raise ValueError(f"backward must be 'auto', 'recompute', 'cache' or 'autograd', got {backward!r}")
    out_dtype = q.dtype
    B, T, H, _ = q.shape
    L = len(weights)
    dt = compute_dtype(q, k, v, *weights)
    WS, flags = [], []
    for w, s in zip(weights, momentum, strict=True):
        flags.append(_scales_input(w.shape[-1], w.shape[-2]))
        if _shared(w) and _shared(s):  # kept 3-D: one matmul per head, gradient reduced in place
            WS.append(_stack(_unshared(w).to(dt), _unshared(s).to(dt), flags[-1]))
        else:
            WS.append(_stack(_batched(w, B).to(dt), _batched(s, B).to(dt), flags[-1]))
    if T == 0:
        return q.new_zeros(B, 0, H, v.shape[-1]), (tuple(_batched(w, B).to(dt) for w in weights),
                                                   tuple(_batched(s, B).to(dt) for s in momentum))
    b = chunk_size if T >= chunk_size else T
    n = -(-T // b)
    pad = n * b - T
    theta = theta.to(dt)
    if mask is not None:
        theta = theta * mask.to(theta.dtype)

    def heads_first(x, fill=0.0):  # [B, T, H, ...] -> [B, H, n, b, ...], padded with `fill`
        x = x.to(dt).transpose(1, 2)
        if pad:
            x = F.pad(x, (0, 0) * (x.dim() - 3) + (0, pad), value=fill)
        return x.reshape(B, H, n, b, *x.shape[3:])

    qc, kc, vc = heads_first(q), heads_first(k), heads_first(v)
    # padded tokens write nothing (theta = 0) and decay nothing (alpha = 0, eta = 1); the end
    # state of the last chunk is read at its last real token
    ac, ec, tc = heads_first(alpha, 0.0), heads_first(eta, 1.0), heads_first(theta, 0.0)
    if not (torch.is_grad_enabled()
            and any(t.requires_grad for t in (q, k, v, alpha, eta, theta, *weights, *momentum))):
        backward = "autograd"  # inference: the plain chunk loop, which then records nothing
    if backward == "auto":
        dims = [weights[0].shape[-1]] + [w.shape[-2] for w in weights]
        fits = _cache_footprint(B, H, n, b, dims) < _memory_budget(q.device)
        backward = "cache" if fits else "recompute"
    if backward == "autograd":
        last = torch.full((n,), b - 1, dtype=torch.long, device=q.device)
        last[-1] = b - 1 - pad
        coefs = chunk_gate_coefficients(ac, ec, last)
        ys = []
        for c in range(n):
            coef = {key: val[:, :, c] for key, val in coefs.items()}
            y, WS_next, _ = chunk_forward(qc[:, :, c], kc[:, :, c], vc[:, :, c], tc[:, :, c], coef,
                                          WS, activation, surprise_clamp,
                                          advance=output_final_state or c < n - 1)
            ys.append(y)
            WS = WS_next
        y = torch.stack(ys, dim=2)
    else:
        out = _ChunkScan.apply((L, activation, surprise_clamp, backward == "recompute",
                                output_final_state, b - 1 - pad), qc, kc, vc, tc, ac, ec, *WS)
        y, WS = out[0], list(out[1:])
    y = y.reshape(B, H, n * b, -1)[:, :, :T].transpose(1, 2)
    if not output_final_state:
        return y.to(out_dtype), None
    halves = [_unstack(_batched(x, B), si) for x, si in zip(WS, flags, strict=True)]
    return y.to(out_dtype), (tuple(h[0] for h in halves), tuple(h[1] for h in halves))
