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

Training differentiates through the inner updates. The gate coefficients (cheap, all chunks at
once) are differentiated by autograd; the chunk loop is one ``torch.autograd.Function`` with a
hand-derived backward (:func:`chunk_backward`) that keeps each chunk's intermediates
(``"cache"``) or only the chunk-start states, recomputing the rest (``"recompute"``, memory
``O(T d + chunks |W|)``); either way the backward is dense matmuls. The same per-chunk forward
run under plain autograd (``backward="autograd"``) is the twin the tests hold the hand-written
backward to, and also the faster choice for a single chunk (nothing passes between chunks);
``backward="auto"`` picks among the three by chunk count and memory. The per-token loop in
``reference.py`` is the specification all of them are held to.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .common import (
    activation_backward,
    activation_fn,
    activation_grad2,
    compute_dtype,
    soft_clamp_scale,
    soft_clamp_scale_grad,
)

__all__ = ["memory_scan_chunked", "chunk_gate_coefficients", "chunk_forward", "chunk_backward"]

_LOG_FLOOR = 1e-30  # log(0) would make log-space sums NaN; exp(-69) is 0 for every purpose


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


def _tr(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-1, -2)


def _key_pass(W, k, v, activation):
    """Keys through the chunk-start memory, then the inner loss back-propagated.

    Returns ``hs`` (layer inputs, hs[0] = k), ``zs`` (pre-activations of hidden layers),
    ``deltas`` (errors of each layer's output; ``u_i = delta_i h_i^T``).
    """
    L = len(W)
    hs, zs = [k], []
    h = k
    for layer in range(L):
        z = _mm(h, _tr(W[layer]))
        if layer < L - 1:
            zs.append(z)
            h = activation_fn(activation)(z)
            hs.append(h)
        else:
            h = z
    deltas = [None] * L
    d = 2.0 * (h - v)
    deltas[L - 1] = d
    for layer in range(L - 2, -1, -1):
        d = activation_backward(activation, _mm(d, W[layer + 1]), zs[layer])
        deltas[layer] = d
    return hs, zs, deltas


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
    """In place ``c += alpha * a @ b`` on a contiguous buffer (``baddbmm_`` into a strided view
    falls back to one BLAS call per matrix)."""
    if _shared(b):
        c.add_(_mm(a, b), alpha=alpha)
        return
    c.view(-1, *c.shape[-2:]).baddbmm_(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]),
                                       alpha=alpha)


def _outer_acc_(buf: torch.Tensor, x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0) -> None:
    """In place ``buf += alpha * x^T y`` for x [B, H, r, p], y [B, H, r, q]; a 3-D (shared)
    ``buf`` [H, p, q] also sums over the batch (one matmul per head over all ``B * r`` rows)."""
    if buf.dim() == 3:
        H = buf.shape[0]
        xs = x.transpose(0, 1).reshape(H, -1, x.shape[-1])
        ys = y.transpose(0, 1).reshape(H, -1, y.shape[-1])
        if buf.is_contiguous():
            buf.baddbmm_(_tr(xs), ys, alpha=alpha)
        else:
            buf.add_(torch.bmm(_tr(xs), ys), alpha=alpha)
    elif buf.is_contiguous():
        _addmm_(buf, _tr(x), y, alpha)
    else:
        buf.add_(_mm(_tr(x), y), alpha=alpha)


def _advance_state(WS, eb, ef, em, upd_a, upd_b):
    """``[W; S] -> [eb W + ef S; em S] - upd_a @ upd_b`` for a stacked state [.., 2 d_out, d_in]."""
    d_out = WS.shape[-2] // 2
    X = WS.unflatten(-2, (2, d_out))
    Y = X * torch.stack([eb, em], dim=-1)[..., :, None, None]
    Y[..., 0, :, :] += ef[..., None, None] * X[..., 1, :, :]
    Y = Y.flatten(-3, -2)
    Y.view(-1, *Y.shape[-2:]).baddbmm_(upd_a.reshape(-1, *upd_a.shape[-2:]),
                                        upd_b.reshape(-1, *upd_b.shape[-2:]), alpha=-1.0)
    return Y


def chunk_forward(qc, kc, vc, th, coef, WS, activation, clamp, keep=False, advance=True):
    """One chunk, batched over [B, H]: queries read, state advanced.

    Args:
        qc, kc: [B, H, b, d_k]; vc: [B, H, b, d_v]; th: [B, H, b] (masked theta);
        coef: this chunk's slice of :func:`chunk_gate_coefficients`;
        WS: per layer the chunk-start state stacked as ``[W; S]``, [B, H, 2 d_out, d_in].

    Returns ``(y [B, H, b, d_v], WS_next, cache)``; ``cache`` (only with ``keep``) holds what
    :func:`chunk_backward` needs beyond the inputs; ``advance=False`` skips the next state
    (the backward's recomputation does not need it).
    """
    L = len(WS)
    W = [x[..., : x.shape[-2] // 2, :] for x in WS]
    hs, zs, deltas = _key_pass(W, kc, vc, activation)
    if clamp is None:
        c = None
        th_eff = th
    else:
        sq = sum((d * d).sum(-1) * (h * h).sum(-1) for d, h in zip(deltas, hs))
        c = soft_clamp_scale(sq, clamp)
        th_eff = th * c
    G = coef["dp"] * th_eff.unsqueeze(-2)
    bt = coef["beta"].unsqueeze(-1)
    ft = coef["f"].unsqueeze(-1)
    b = qc.shape[-2]
    tril = torch.ones(b, b, dtype=torch.bool, device=qc.device).tril()
    a = qc
    a_in, Zs, AH, BOTH = [], [], [], []
    for layer in range(L):
        d_out = W[layer].shape[-2]
        both = _mm(a, _tr(WS[layer]))  # [.., b, 2 d_out]: a W^T | a S^T
        ah = _mm(a, _tr(hs[layer])).masked_fill(~tril, 0.0)
        aw, as_ = both.split(d_out, dim=-1)  # (split: one cat in backward, not two zero-fills)
        z = torch.addcmul(bt * aw, ft, as_)
        _addmm_(z, ah * G, deltas[layer], alpha=-1.0)  # z is fresh: in place is autograd-safe
        a_in.append(a)
        AH.append(ah)
        BOTH.append(both)
        if layer < L - 1:
            Zs.append(z)
            a = activation_fn(activation)(z)
        else:
            a = z
    g_end = coef["dp_end"] * th_eff
    mom = coef["p_end"] * th_eff
    WS_next = []
    for layer in range(L if advance else 0):
        h, d = hs[layer], deltas[layer]
        # minus [sum_i g_i d_i h_i^T ; sum_i mom_i d_i h_i^T], one matmul
        gd = _tr(torch.cat([g_end.unsqueeze(-1) * d, mom.unsqueeze(-1) * d], dim=-1))
        WS_next.append(_advance_state(WS[layer], coef["eb"], coef["ef"], coef["em"], gd, h))
    cache = None
    if keep:
        cache = dict(hs=hs, zs=zs, deltas=deltas, c=c, th_eff=th_eff, G=G, a_in=a_in, Zs=Zs,
                     AH=AH, BOTH=BOTH, g_end=g_end, mom=mom, tril=tril)
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
    hs, zs, deltas, G, tril = cc["hs"], cc["zs"], cc["deltas"], cc["G"], cc["tril"]
    g_end, mom, th_eff = cc["g_end"], cc["mom"], cc["th_eff"]
    W = [x[..., : x.shape[-2] // 2, :] for x in WS]
    eb, ef, em = coef["eb"], coef["ef"], coef["em"]
    dWS = []
    dh = [None] * L  # gradients of the key-pass layer inputs
    ddelta = [None] * L
    d_eb = d_ef = d_em = 0.0
    d_gend = torch.zeros_like(g_end)
    d_mom = torch.zeros_like(mom)
    if dWSn is None:  # nothing reads the next state: its terms vanish
        dWS = [x.new_zeros(x.shape) for x in WS]  # contiguous buffers (zeros_like keeps strides)
        dh = [h.new_zeros(h.shape) for h in hs]
        ddelta = [d.new_zeros(d.shape) for d in deltas]
    # ---- end-of-chunk state: [W'; S'] = [eb W + ef S; em S] - [d^T (g h); d^T (mom h)]
    for i in range(L if dWSn is not None else 0):
        h, d = hs[i], deltas[i]
        d_out = d.shape[-1]
        X = WS[i].unflatten(-2, (2, d_out))
        dX = dWSn[i].unflatten(-2, (2, d_out))
        dWn, dSn = dX[..., 0, :, :], dX[..., 1, :, :]
        d_eb = d_eb + (dWn * X[..., 0, :, :]).sum((-1, -2))
        d_ef = d_ef + (dWn * X[..., 1, :, :]).sum((-1, -2))
        d_em = d_em + (dSn * X[..., 1, :, :]).sum((-1, -2))
        prev = dX * torch.stack([eb, em], dim=-1)[..., :, None, None]
        prev[..., 1, :, :] += ef[..., None, None] * dWn
        dWS.append(prev.flatten(-3, -2))
        hWS = _mm(h, _tr(dWSn[i]))  # [.., b, 2 d_out]: h dW'^T | h dS'^T
        ddelta[i] = -(g_end.unsqueeze(-1) * hWS[..., :d_out] + mom.unsqueeze(-1) * hWS[..., d_out:])
        dW_d = _mm(d, dWn)  # [.., b, d_in]
        dS_d = _mm(d, dSn)
        dh[i] = -(g_end.unsqueeze(-1) * dW_d + mom.unsqueeze(-1) * dS_d)
        d_gend = d_gend - (dW_d * h).sum(-1)
        d_mom = d_mom - (dS_d * h).sum(-1)
    # ---- query pass, last layer first
    bt = coef["beta"].unsqueeze(-1)
    ft = coef["f"].unsqueeze(-1)
    d_beta = torch.zeros_like(coef["beta"])
    d_f = torch.zeros_like(coef["f"])
    dG = torch.zeros_like(G)
    dZ = dy
    dq = None
    for layer in range(L - 1, -1, -1):
        a, ah, both = cc["a_in"][layer], cc["AH"][layer], cc["BOTH"][layer]
        d_out = W[layer].shape[-2]
        d_beta = d_beta + (dZ * both[..., :d_out]).sum(-1)
        d_f = d_f + (dZ * both[..., d_out:]).sum(-1)
        dZ2 = torch.cat([bt * dZ, ft * dZ], dim=-1)  # [.., b, 2 d_out]
        _outer_acc_(dWS[layer], dZ2, a)
        dA = -_mm(dZ, _tr(deltas[layer])).masked_fill(~tril, 0.0)  # gradient of A = ah * G
        _addmm_(ddelta[layer], _tr(ah * G), dZ, alpha=-1.0)
        dG = dG + dA * ah
        dAH = dA * G
        da = _mm(dAH, hs[layer])
        _addmm_(da, dZ2, WS[layer])
        _addmm_(dh[layer], _tr(dAH), a)
        if layer > 0:
            dZ = activation_backward(activation, da, cc["Zs"][layer - 1])
        else:
            dq = da
    # ---- theta (through G, g_end, mom, and the clamp scale)
    dth_eff = (dG * coef["dp"]).sum(-2) + d_gend * coef["dp_end"] + d_mom * coef["p_end"]
    d_dp = dG * th_eff.unsqueeze(-2)
    d_dp_end = d_gend * th_eff
    d_p_end = d_mom * th_eff
    if clamp is None:
        dth = dth_eff
    else:
        dth = dth_eff * cc["c"]
        sq = sum((d * d).sum(-1) * (h * h).sum(-1) for d, h in zip(deltas, hs))
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
        _addmm_(ddelta[layer + 1], g, _tr(W[layer + 1]))
        _outer_acc_(dWS[layer + 1][..., : W[layer + 1].shape[-2], :], deltas[layer + 1], g)
        back = _mm(deltas[layer + 1], W[layer + 1])
        dz[layer] = ddelta[layer] * back * activation_grad2(activation, zs[layer])
    dzL = 2.0 * ddelta[L - 1]  # delta_L = 2 (z_L - v)
    dv = -dzL
    # ... then the forward pass z_l = h_{l-1} W_l^T, h_l = act(z_l)
    g = dzL
    for layer in range(L - 1, -1, -1):
        _outer_acc_(dWS[layer][..., : g.shape[-1], :], g, hs[layer])
        _addmm_(dh[layer], g, W[layer])
        if layer > 0:
            g = activation_backward(activation, dh[layer], zs[layer - 1]) + dz[layer - 1]
    dk = dh[0]
    dcoef = {"dp": d_dp, "beta": d_beta, "f": d_f, "eb": d_eb, "ef": d_ef, "em": d_em,
             "dp_end": d_dp_end, "p_end": d_p_end}
    return dq, dk, dv, dth, dcoef, dWS


class _ChunkScan(torch.autograd.Function):
    """The chunk loop with the hand-derived backward. Saves the chunk-start states and, unless
    ``recompute``, each chunk's intermediates (O(T d) memory, no second forward in backward)."""

    @staticmethod
    def forward(ctx, meta, qc, kc, vc, tc, *rest):
        L, activation, clamp, recompute, final = meta
        coefs = dict(zip(COEF_KEYS, rest[:len(COEF_KEYS)]))
        WS = list(rest[len(COEF_KEYS):])
        n = qc.shape[2]
        y = qc.new_empty(*qc.shape[:-1], vc.shape[-1])
        states, caches = [], []
        for c in range(n):
            states.append(WS)
            coef = {k: v[:, :, c] for k, v in coefs.items()}
            y[:, :, c], WS_next, cache = chunk_forward(qc[:, :, c], kc[:, :, c], vc[:, :, c],
                                                       tc[:, :, c], coef, WS, activation, clamp,
                                                       keep=not recompute,
                                                       advance=final or c < n - 1)
            caches.append(cache)
            WS = WS_next
        ctx.meta = meta
        ctx.states = states
        ctx.caches = caches
        ctx.save_for_backward(qc, kc, vc, tc, *rest[:len(COEF_KEYS)])
        if not final:  # placeholders: nothing downstream reads the final state
            WS = [qc.new_zeros(()) for _ in range(L)]
        return (y, *WS)

    @staticmethod
    def backward(ctx, dy, *dWSn):
        L, activation, clamp, _, final = ctx.meta
        qc, kc, vc, tc, *coef_list = ctx.saved_tensors
        coefs = dict(zip(COEF_KEYS, coef_list))
        dWSn = list(dWSn) if final else None
        n = qc.shape[2]
        dq, dk, dv = torch.empty_like(qc), torch.empty_like(kc), torch.empty_like(vc)
        dt = torch.empty_like(tc)
        dcoefs = {k: torch.empty_like(v) for k, v in coefs.items()}
        for c in range(n - 1, -1, -1):
            coef = {k: v[:, :, c] for k, v in coefs.items()}
            gq, gk, gv, gt, gcoef, dWSn = chunk_backward(
                qc[:, :, c], kc[:, :, c], vc[:, :, c], tc[:, :, c], coef, ctx.states[c],
                activation, clamp, dy[:, :, c], dWSn, ctx.caches[c])
            ctx.caches[c] = None
            dq[:, :, c], dk[:, :, c], dv[:, :, c], dt[:, :, c] = gq, gk, gv, gt
            for k in COEF_KEYS:
                dcoefs[k][:, :, c] = gcoef[k]
        # a shared (3-D) initial state gets its gradient summed over the batch
        dWSn = [g.sum(0) if s.dim() == 3 and g.dim() == 4 else g for g, s in zip(dWSn, ctx.states[0])]
        ctx.states = ctx.caches = None
        return (None, dq, dk, dv, dt, *[dcoefs[k] for k in COEF_KEYS], *dWSn)


CACHE_MAX_FRACTION = 0.25  # "auto" keeps the chunks' intermediates if they fit in this share of memory


def _cache_footprint(B, H, n, b, dims) -> int:
    """Bytes the ``"cache"`` mode keeps for the backward: per token and head the layer inputs,
    hidden pre-activations (twice), errors, query-pass reads (``[W; S]`` products, twice the
    layer outputs) and the ``b``-wide attention-like rows of every layer, in fp32."""
    ins, outs, hidden = sum(dims[:-1]), sum(dims[1:]), sum(dims[1:-1])
    per_token = 2 * ins + 2 * hidden + 3 * outs + (len(dims) + 1) * b
    return 4 * B * H * n * b * per_token


def _memory_budget(device: torch.device) -> int:
    """Bytes the ``"cache"`` mode may take: a share of the device's memory (RAM on CPU)."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    else:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 8 * 2**30
    return int(CACHE_MAX_FRACTION * total)


def memory_scan_chunked(q, k, v, alpha, eta, theta, weights, momentum, chunk_size, activation,
                        mask=None, surprise_clamp=None, backward: str = "auto",
                        output_final_state: bool = True):
    """Chunked closed form. Shapes as :func:`titans_ts.kernels.memory_scan.memory_scan`.

    ``backward`` chooses how gradients are computed (the values are identical):

    * ``"recompute"``: the hand-written backward, keeping only chunk-start states and
      recomputing each chunk's intermediates (least memory; best for long sequences);
    * ``"cache"``: the hand-written backward with the forward's intermediates kept;
    * ``"autograd"``: plain autograd through the per-chunk forward (the twin the hand-written
      backward is tested against; fastest for small problems);
    * ``"auto"``: when the intermediates fit in a quarter of the device's memory (RAM on CPU),
      ``"autograd"`` for a single chunk and ``"cache"`` for several (no second forward; on CPU
      about 20% faster than recomputing and 30-40% faster than autograd, which pays for
      differentiating every state hand-over); else ``"recompute"``.
    """
    if backward not in ("auto", "recompute", "cache", "autograd"):
        raise ValueError(f"backward must be 'auto', 'recompute', 'cache' or 'autograd', got {backward!r}")
    out_dtype = q.dtype
    B, T, H, _ = q.shape
    L = len(weights)
    dt = compute_dtype(q, k, v, *weights)
    WS = []
    for w, s in zip(weights, momentum):
        if _shared(w) and _shared(s):  # kept 3-D: one matmul per head, gradient reduced in place
            WS.append(torch.cat([_unshared(w).to(dt), _unshared(s).to(dt)], dim=-2))
        else:
            WS.append(torch.cat([_batched(w, B).to(dt), _batched(s, B).to(dt)], dim=-2))
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
    last = torch.full((n,), b - 1, dtype=torch.long, device=q.device)
    last[-1] = b - 1 - pad
    coefs = chunk_gate_coefficients(ac, ec, last)
    if backward == "auto":
        dims = [weights[0].shape[-1]] + [w.shape[-2] for w in weights]
        if _cache_footprint(B, H, n, b, dims) >= _memory_budget(q.device):
            backward = "recompute"
        else:  # one chunk: no state passes between chunks, and autograd's own bookkeeping wins
            backward = "autograd" if n == 1 else "cache"
    if backward == "autograd":
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
                                output_final_state), qc, kc, vc, tc,
                               *[coefs[key] for key in COEF_KEYS], *WS)
        y, WS = out[0], list(out[1:])
    y = y.reshape(B, H, n * b, -1)[:, :, :T].transpose(1, 2)
    if not output_final_state:
        return y.to(out_dtype), None
    halves = [_batched(x, B).split(x.shape[-2] // 2, dim=-2) for x in WS]
    return y.to(out_dtype), (tuple(h[0] for h in halves), tuple(h[1] for h in halves))
