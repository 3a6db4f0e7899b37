"""Triton kernels of the chunked memory scan (depth 1 and 2), beside ``chunked.py`` which they match.

The math is ``chunked.py``'s, transcribed tile by tile; gate coefficients (log-space decay and
momentum products, all chunks at once) come from the same differentiable PyTorch function
(:func:`chunk.chunk_gate_coefficients`), so autograd carries their gradients back to alpha / eta.

Kernels (one program per batch x head unless noted; b = chunk size, power of two >= 16):

* ``_state_fwd_kernel``: the sequential inter-chunk pass. Carries W and S (fp32, in registers)
  through the chunks: key pass at the chunk-start weights, then
  ``[W; S] <- [eb W + ef S; em S] - [(g * delta)^T h; (mom * delta)^T h]``. Stores every
  chunk-start state (the backward and the output kernel read them) and the final state.
* ``_output_fwd_kernel`` (one program per chunk x batch x head, all chunks in parallel): from
  the chunk-start state, the key pass again and the query pass
  ``Z = beta * (a W^T) + f * (a S^T) - (tril(a h^T) * G) delta`` layer by layer.
* ``_bwd_kernel``: the reverse sequential pass. For each chunk from the last: recompute, then
  the hand-derived backward of ``chunk.chunk_backward`` (end-state, query pass, theta and
  coefficient gradients, key pass); carries the state gradient to the previous chunk.

Inputs may be fp32, fp16 or bf16; tiles are cast to fp32 and every ``tl.dot`` accumulates in fp32
(``input_precision="ieee"`` by default so fp32 results match the PyTorch backend to < 1e-4; the
interpreter mis-computes bf16 dots, so nothing is dotted in bf16). Feature widths need not be
powers of two (tiles are padded with zeros, which is exact for bias-free memories).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl
except ImportError as err:  # pragma: no cover - triton is a dependency on Linux x86_64
    raise ImportError("the triton backend needs the `triton` package") from err

from .chunked import COEF_KEYS, chunk_gate_coefficients
from .common import compute_dtype

__all__ = ["memory_scan_triton", "triton_supports", "gpu_checked_widths", "interpreter_enabled",
           "TRITON_ACTIVATIONS"]

TRITON_ACTIVATIONS = {"silu": 0, "gelu": 1, "relu": 2, "tanh": 3, "identity": 4}


def interpreter_enabled() -> bool:
    """True when Triton runs kernels on CPU tensors through its interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _launch_config(BK: int, BV: int, BHD: int) -> dict:
    """``num_warps`` / ``num_stages`` of every kernel launch, from the tile widths.

    One configuration, no ``@triton.autotune`` sweep: every swept configuration is another
    compile, and on an H200 the four-configuration sweep had not finished compiling the backward
    kernel after 150 s at head width 64 (benchmarks/bench_memory_gpu.py's shapes). Wide tiles get
    8 warps, so each thread holds fewer of the fp32 state tiles (W, S and their gradients) the
    kernels keep in registers.
    """
    widest = max(BK, BV) * max(BHD, BV)
    return {"num_warps": 8 if widest >= 64 * 64 else 4, "num_stages": 1}


# ------------------------------------------------------------------------------ activations


@triton.jit
def _act(z, ACT: tl.constexpr):
    if ACT == 0:
        out = z * tl.sigmoid(z)
    elif ACT == 1:
        out = 0.5 * z * (1.0 + tl.math.erf(z * 0.7071067811865476))
    elif ACT == 2:
        out = tl.where(z > 0, z, 0.0)
    elif ACT == 3:
        out = 2.0 * tl.sigmoid(2.0 * z) - 1.0
    else:
        out = z
    return out


@triton.jit
def _act_grad(z, ACT: tl.constexpr):
    if ACT == 0:
        s = tl.sigmoid(z)
        out = s * (1.0 + z * (1.0 - s))
    elif ACT == 1:
        cdf = 0.5 * (1.0 + tl.math.erf(z * 0.7071067811865476))
        out = cdf + z * tl.exp(-0.5 * z * z) * 0.3989422804014327
    elif ACT == 2:
        out = tl.where(z > 0, 1.0, 0.0)
    elif ACT == 3:
        t = 2.0 * tl.sigmoid(2.0 * z) - 1.0
        out = 1.0 - t * t
    else:
        out = z * 0.0 + 1.0
    return out


@triton.jit
def _act_grad2(z, ACT: tl.constexpr):
    if ACT == 0:
        s = tl.sigmoid(z)
        out = s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))
    elif ACT == 1:
        out = tl.exp(-0.5 * z * z) * 0.3989422804014327 * (2.0 - z * z)
    elif ACT == 3:
        t = 2.0 * tl.sigmoid(2.0 * z) - 1.0
        out = -2.0 * t * (1.0 - t * t)
    else:
        out = z * 0.0
    return out


# ------------------------------------------------------------------------------ tile helpers


@triton.jit
def _load_tile(ptr, rows, cols, n_rows, n_cols, stride):
    """[R, C] fp32 tile at ptr[rows, cols] (row-major, given row stride), zero outside."""
    m = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    return tl.load(ptr + rows[:, None] * stride + cols[None, :], mask=m, other=0.0).to(tl.float32)


@triton.jit
def _store_tile(ptr, x, rows, cols, n_rows, n_cols, stride):
    m = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    tl.store(ptr + rows[:, None] * stride + cols[None, :], x.to(ptr.dtype.element_ty), mask=m)


@triton.jit
def _dot(a, b, PREC: tl.constexpr):
    return tl.dot(a, b, input_precision=PREC)


@triton.jit
def _key_pass(kt, vt, W1, W2, DEPTH: tl.constexpr, ACT: tl.constexpr, PREC: tl.constexpr):
    """Keys through the chunk-start memory. Returns (h1, z1, d1, d2); for depth 1 the hidden
    entries are placeholders (never used) and d1 is the output error."""
    if DEPTH == 1:
        z = _dot(kt, tl.trans(W1), PREC)
        d1 = 2.0 * (z - vt)
        h1 = d1
        z1 = d1
        d2 = d1
    else:
        z1 = _dot(kt, tl.trans(W1), PREC)
        h1 = _act(z1, ACT)
        z2 = _dot(h1, tl.trans(W2), PREC)
        d2 = 2.0 * (z2 - vt)
        d1 = _dot(d2, W2, PREC) * _act_grad(z1, ACT)
    return h1, z1, d1, d2


# ------------------------------------------------------------------------------ forward kernels


@triton.jit
def _state_fwd_kernel(
    K, V, TH, EB, EF, EM, DPE, PE,
    W1, S1, W2, S2,
    W1C, S1C, W2C, S2C,
    W1O, S1O, W2O, S2O,
    T_pad, n_chunks, DK, DV, DH,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BHD: tl.constexpr,
    DEPTH: tl.constexpr, ACT: tl.constexpr, PREC: tl.constexpr,
):
    bh = tl.program_id(0)
    t = tl.arange(0, BT)
    ck = tl.arange(0, BK)
    cv = tl.arange(0, BV)
    ch = tl.arange(0, BHD)
    if DEPTH == 1:
        D1 = DV
        r1 = cv
    else:
        D1 = DH
        r1 = ch
    w1_sz = D1 * DK
    w2_sz = DV * DH
    W1t = _load_tile(W1 + bh * w1_sz, r1, ck, D1, DK, DK)
    S1t = _load_tile(S1 + bh * w1_sz, r1, ck, D1, DK, DK)
    if DEPTH == 2:
        W2t = _load_tile(W2 + bh * w2_sz, cv, ch, DV, DH, DH)
        S2t = _load_tile(S2 + bh * w2_sz, cv, ch, DV, DH, DH)
    else:
        W2t = W1t
        S2t = S1t
    for c in range(0, n_chunks):
        _store_tile(W1C + (bh * n_chunks + c) * w1_sz, W1t, r1, ck, D1, DK, DK)
        _store_tile(S1C + (bh * n_chunks + c) * w1_sz, S1t, r1, ck, D1, DK, DK)
        if DEPTH == 2:
            _store_tile(W2C + (bh * n_chunks + c) * w2_sz, W2t, cv, ch, DV, DH, DH)
            _store_tile(S2C + (bh * n_chunks + c) * w2_sz, S2t, cv, ch, DV, DH, DH)
        rows = c * BT + t
        kt = _load_tile(K + bh * T_pad * DK, rows, ck, T_pad, DK, DK)
        vt = _load_tile(V + bh * T_pad * DV, rows, cv, T_pad, DV, DV)
        th = tl.load(TH + bh * T_pad + rows).to(tl.float32)
        h1, z1, d1, d2 = _key_pass(kt, vt, W1t, W2t, DEPTH, ACT, PREC)
        g = tl.load(DPE + (bh * n_chunks + c) * BT + t) * th
        mo = tl.load(PE + (bh * n_chunks + c) * BT + t) * th
        eb = tl.load(EB + bh * n_chunks + c)
        ef = tl.load(EF + bh * n_chunks + c)
        em = tl.load(EM + bh * n_chunks + c)
        W1n = eb * W1t + ef * S1t - _dot(tl.trans(d1 * g[:, None]), kt, PREC)
        S1t = em * S1t - _dot(tl.trans(d1 * mo[:, None]), kt, PREC)
        W1t = W1n
        if DEPTH == 2:
            W2n = eb * W2t + ef * S2t - _dot(tl.trans(d2 * g[:, None]), h1, PREC)
            S2t = em * S2t - _dot(tl.trans(d2 * mo[:, None]), h1, PREC)
            W2t = W2n
    _store_tile(W1O + bh * w1_sz, W1t, r1, ck, D1, DK, DK)
    _store_tile(S1O + bh * w1_sz, S1t, r1, ck, D1, DK, DK)
    if DEPTH == 2:
        _store_tile(W2O + bh * w2_sz, W2t, cv, ch, DV, DH, DH)
        _store_tile(S2O + bh * w2_sz, S2t, cv, ch, DV, DH, DH)


@triton.jit
def _output_fwd_kernel(
    Q, K, V, TH, DP, BETA, FF,
    W1C, S1C, W2C, S2C, Y,
    T_pad, n_chunks, DK, DV, DH,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BHD: tl.constexpr,
    DEPTH: tl.constexpr, ACT: tl.constexpr, PREC: tl.constexpr,
):
    c = tl.program_id(0)
    bh = tl.program_id(1)
    t = tl.arange(0, BT)
    ck = tl.arange(0, BK)
    cv = tl.arange(0, BV)
    ch = tl.arange(0, BHD)
    if DEPTH == 1:
        D1 = DV
        r1 = cv
    else:
        D1 = DH
        r1 = ch
    w1_sz = D1 * DK
    w2_sz = DV * DH
    W1t = _load_tile(W1C + (bh * n_chunks + c) * w1_sz, r1, ck, D1, DK, DK)
    S1t = _load_tile(S1C + (bh * n_chunks + c) * w1_sz, r1, ck, D1, DK, DK)
    if DEPTH == 2:
        W2t = _load_tile(W2C + (bh * n_chunks + c) * w2_sz, cv, ch, DV, DH, DH)
        S2t = _load_tile(S2C + (bh * n_chunks + c) * w2_sz, cv, ch, DV, DH, DH)
    else:
        W2t = W1t
        S2t = S1t
    rows = c * BT + t
    qt = _load_tile(Q + bh * T_pad * DK, rows, ck, T_pad, DK, DK)
    kt = _load_tile(K + bh * T_pad * DK, rows, ck, T_pad, DK, DK)
    vt = _load_tile(V + bh * T_pad * DV, rows, cv, T_pad, DV, DV)
    th = tl.load(TH + bh * T_pad + rows).to(tl.float32)
    h1, z1, d1, d2 = _key_pass(kt, vt, W1t, W2t, DEPTH, ACT, PREC)
    base = (bh * n_chunks + c) * BT
    G = _load_tile(DP + base * BT, t, t, BT, BT, BT) * th[None, :]
    bt = tl.load(BETA + base + t)[:, None]
    ft = tl.load(FF + base + t)[:, None]
    tril = t[:, None] >= t[None, :]
    ah = tl.where(tril, _dot(qt, tl.trans(kt), PREC), 0.0)
    Z1 = bt * _dot(qt, tl.trans(W1t), PREC) + ft * _dot(qt, tl.trans(S1t), PREC) - _dot(ah * G, d1, PREC)
    if DEPTH == 1:
        y = Z1
    else:
        a1 = _act(Z1, ACT)
        ah2 = tl.where(tril, _dot(a1, tl.trans(h1), PREC), 0.0)
        y = bt * _dot(a1, tl.trans(W2t), PREC) + ft * _dot(a1, tl.trans(S2t), PREC) - _dot(ah2 * G, d2, PREC)
    _store_tile(Y + bh * T_pad * DV, y, rows, cv, T_pad, DV, DV)


# ------------------------------------------------------------------------------ backward kernel


@triton.jit
def _end_state_bwd(h, d, Wt, St, dWn, dSn, g, mo, eb, ef, em, PREC: tl.constexpr):
    """Backward of [W'; S'] = [eb W + ef S - (g d)^T h; em S - (mo d)^T h] for one layer."""
    d_eb = tl.sum(tl.sum(dWn * Wt, axis=1), axis=0)
    d_ef = tl.sum(tl.sum(dWn * St, axis=1), axis=0)
    d_em = tl.sum(tl.sum(dSn * St, axis=1), axis=0)
    dW = eb * dWn
    dS = ef * dWn + em * dSn
    hW = _dot(h, tl.trans(dWn), PREC)
    hS = _dot(h, tl.trans(dSn), PREC)
    ddelta = -(g[:, None] * hW + mo[:, None] * hS)
    dW_d = _dot(d, dWn, PREC)
    dS_d = _dot(d, dSn, PREC)
    dh = -(g[:, None] * dW_d + mo[:, None] * dS_d)
    d_g = -tl.sum(dW_d * h, axis=1)
    d_mo = -tl.sum(dS_d * h, axis=1)
    return d_eb, d_ef, d_em, dW, dS, ddelta, dh, d_g, d_mo


@triton.jit
def _query_layer_bwd(dZ, a, ah, h, d, Wt, St, G, bt, ft, tril, PREC: tl.constexpr):
    """Backward of Z = bt (a W^T) + ft (a S^T) - (ah * G) d for one layer."""
    bothW = _dot(a, tl.trans(Wt), PREC)
    bothS = _dot(a, tl.trans(St), PREC)
    d_beta = tl.sum(dZ * bothW, axis=1)
    d_f = tl.sum(dZ * bothS, axis=1)
    dW = _dot(tl.trans(bt * dZ), a, PREC)
    dS = _dot(tl.trans(ft * dZ), a, PREC)
    dA = tl.where(tril, -_dot(dZ, tl.trans(d), PREC), 0.0)
    ddelta = -_dot(tl.trans(ah * G), dZ, PREC)
    dG = dA * ah
    dAH = dA * G
    da = _dot(bt * dZ, Wt, PREC) + _dot(ft * dZ, St, PREC) + _dot(dAH, h, PREC)
    dh = _dot(tl.trans(dAH), a, PREC)
    return d_beta, d_f, dW, dS, ddelta, dG, da, dh


@triton.jit
def _bwd_kernel(
    Q, K, V, TH, DP, BETA, FF, EB, EF, EM, DPE, PE,
    W1C, S1C, W2C, S2C, DY,
    DW1N, DS1N, DW2N, DS2N,
    DQ, DK_, DV_, DTH, D_DP, D_BETA, D_F, D_EB, D_EF, D_EM, D_DPE, D_PE,
    DW10, DS10, DW20, DS20,
    T_pad, n_chunks, DK, DV, DH,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BHD: tl.constexpr,
    DEPTH: tl.constexpr, ACT: tl.constexpr, PREC: tl.constexpr,
):
    bh = tl.program_id(0)
    t = tl.arange(0, BT)
    ck = tl.arange(0, BK)
    cv = tl.arange(0, BV)
    ch = tl.arange(0, BHD)
    if DEPTH == 1:
        D1 = DV
        r1 = cv
    else:
        D1 = DH
        r1 = ch
    w1_sz = D1 * DK
    w2_sz = DV * DH
    tril = t[:, None] >= t[None, :]
    # gradients of the state after the last chunk (from whatever used the final state)
    dW1n = _load_tile(DW1N + bh * w1_sz, r1, ck, D1, DK, DK)
    dS1n = _load_tile(DS1N + bh * w1_sz, r1, ck, D1, DK, DK)
    if DEPTH == 2:
        dW2n = _load_tile(DW2N + bh * w2_sz, cv, ch, DV, DH, DH)
        dS2n = _load_tile(DS2N + bh * w2_sz, cv, ch, DV, DH, DH)
    else:
        dW2n = dW1n
        dS2n = dS1n
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i
        W1t = _load_tile(W1C + (bh * n_chunks + c) * w1_sz, r1, ck, D1, DK, DK)
        S1t = _load_tile(S1C + (bh * n_chunks + c) * w1_sz, r1, ck, D1, DK, DK)
        if DEPTH == 2:
            W2t = _load_tile(W2C + (bh * n_chunks + c) * w2_sz, cv, ch, DV, DH, DH)
            S2t = _load_tile(S2C + (bh * n_chunks + c) * w2_sz, cv, ch, DV, DH, DH)
        else:
            W2t = W1t
            S2t = S1t
        rows = c * BT + t
        qt = _load_tile(Q + bh * T_pad * DK, rows, ck, T_pad, DK, DK)
        kt = _load_tile(K + bh * T_pad * DK, rows, ck, T_pad, DK, DK)
        vt = _load_tile(V + bh * T_pad * DV, rows, cv, T_pad, DV, DV)
        dy = _load_tile(DY + bh * T_pad * DV, rows, cv, T_pad, DV, DV)
        th = tl.load(TH + bh * T_pad + rows).to(tl.float32)
        base = (bh * n_chunks + c) * BT
        dp = _load_tile(DP + base * BT, t, t, BT, BT, BT)
        G = dp * th[None, :]
        bt = tl.load(BETA + base + t)[:, None]
        ft = tl.load(FF + base + t)[:, None]
        dpe = tl.load(DPE + base + t)
        pe = tl.load(PE + base + t)
        g = dpe * th
        mo = pe * th
        eb = tl.load(EB + bh * n_chunks + c)
        ef = tl.load(EF + bh * n_chunks + c)
        em = tl.load(EM + bh * n_chunks + c)
        # ---- recompute the chunk's forward
        h1, z1, d1, d2 = _key_pass(kt, vt, W1t, W2t, DEPTH, ACT, PREC)
        ah1 = tl.where(tril, _dot(qt, tl.trans(kt), PREC), 0.0)
        # ---- end-of-chunk state
        d_eb, d_ef, d_em, dW1, dS1, dd1, dh0, d_g, d_mo = _end_state_bwd(
            kt, d1, W1t, S1t, dW1n, dS1n, g, mo, eb, ef, em, PREC)
        if DEPTH == 2:
            e_eb, e_ef, e_em, dW2, dS2, dd2, dh1, e_g, e_mo = _end_state_bwd(
                h1, d2, W2t, S2t, dW2n, dS2n, g, mo, eb, ef, em, PREC)
            d_eb += e_eb
            d_ef += e_ef
            d_em += e_em
            d_g += e_g
            d_mo += e_mo
            # ---- query pass, layer 2 then layer 1
            Z1 = bt * _dot(qt, tl.trans(W1t), PREC) + ft * _dot(qt, tl.trans(S1t), PREC) - _dot(ah1 * G, d1, PREC)
            a1 = _act(Z1, ACT)
            ah2 = tl.where(tril, _dot(a1, tl.trans(h1), PREC), 0.0)
            d_beta, d_f, qW2, qS2, qd2, dG, da, qh1 = _query_layer_bwd(
                dy, a1, ah2, h1, d2, W2t, S2t, G, bt, ft, tril, PREC)
            dW2 += qW2
            dS2 += qS2
            dd2 += qd2
            dh1 += qh1
            dZ = da * _act_grad(Z1, ACT)
        else:
            dZ = dy
            d_beta = tl.zeros([BT], dtype=tl.float32)
            d_f = tl.zeros([BT], dtype=tl.float32)
            dG = tl.zeros([BT, BT], dtype=tl.float32)
        b1, f1, qW1, qS1, qd1, dG1, dq, qh0 = _query_layer_bwd(
            dZ, qt, ah1, kt, d1, W1t, S1t, G, bt, ft, tril, PREC)
        d_beta += b1
        d_f += f1
        dW1 += qW1
        dS1 += qS1
        dd1 += qd1
        dG += dG1
        dh0 += qh0
        # ---- theta and the coefficient gradients
        dth = tl.sum(dG * dp, axis=0) + d_g * dpe + d_mo * pe
        _store_tile(D_DP + base * BT, dG * th[None, :], t, t, BT, BT, BT)
        tl.store(D_BETA + base + t, d_beta)
        tl.store(D_F + base + t, d_f)
        tl.store(D_DPE + base + t, d_g * th)
        tl.store(D_PE + base + t, d_mo * th)
        tl.store(D_EB + bh * n_chunks + c, d_eb)
        tl.store(D_EF + bh * n_chunks + c, d_ef)
        tl.store(D_EM + bh * n_chunks + c, d_em)
        tl.store(DTH + bh * T_pad + rows, dth)
        # ---- key pass
        if DEPTH == 2:
            gk = dd1 * _act_grad(z1, ACT)
            dd2 += _dot(gk, tl.trans(W2t), PREC)
            dW2 += _dot(tl.trans(d2), gk, PREC)
            dz1 = dd1 * _dot(d2, W2t, PREC) * _act_grad2(z1, ACT)
            dzL = 2.0 * dd2
            dW2 += _dot(tl.trans(dzL), h1, PREC)
            dh1 += _dot(dzL, W2t, PREC)
            gz = dh1 * _act_grad(z1, ACT) + dz1
            dW1 += _dot(tl.trans(gz), kt, PREC)
            dh0 += _dot(gz, W1t, PREC)
        else:
            dzL = 2.0 * dd1
            dW1 += _dot(tl.trans(dzL), kt, PREC)
            dh0 += _dot(dzL, W1t, PREC)
        _store_tile(DQ + bh * T_pad * DK, dq, rows, ck, T_pad, DK, DK)
        _store_tile(DK_ + bh * T_pad * DK, dh0, rows, ck, T_pad, DK, DK)
        _store_tile(DV_ + bh * T_pad * DV, -dzL, rows, cv, T_pad, DV, DV)
        dW1n = dW1
        dS1n = dS1
        if DEPTH == 2:
            dW2n = dW2
            dS2n = dS2
    _store_tile(DW10 + bh * w1_sz, dW1n, r1, ck, D1, DK, DK)
    _store_tile(DS10 + bh * w1_sz, dS1n, r1, ck, D1, DK, DK)
    if DEPTH == 2:
        _store_tile(DW20 + bh * w2_sz, dW2n, cv, ch, DV, DH, DH)
        _store_tile(DS20 + bh * w2_sz, dS2n, cv, ch, DV, DH, DH)


# ------------------------------------------------------------------------------ launchers


def _pow2(n: int) -> int:
    return max(16, triton.next_power_of_2(int(n)))


class _TritonScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, meta, q, k, v, th, dp, beta, f, eb, ef, em, dpe, pe, *state):
        depth, act, BT, prec = meta
        BHn, T_pad, DK = q.shape
        DV = v.shape[-1]
        n = T_pad // BT
        W1, S1 = state[0].contiguous(), state[1].contiguous()
        if depth == 2:
            W2, S2 = state[2].contiguous(), state[3].contiguous()
            DH = W1.shape[-2]
        else:
            W2, S2 = W1, S1
            DH = DV
        BK, BV, BHD = _pow2(DK), _pow2(DV), _pow2(DH)
        W1C, S1C = W1.new_empty(BHn, n, *W1.shape[1:]), S1.new_empty(BHn, n, *S1.shape[1:])
        W2C = W2.new_empty(BHn, n, *W2.shape[1:]) if depth == 2 else W1C
        S2C = S2.new_empty(BHn, n, *S2.shape[1:]) if depth == 2 else S1C
        W1O, S1O = torch.empty_like(W1), torch.empty_like(S1)
        W2O, S2O = (torch.empty_like(W2), torch.empty_like(S2)) if depth == 2 else (W1O, S1O)
        common = dict(BT=BT, BK=BK, BV=BV, BHD=BHD, DEPTH=depth, ACT=act, PREC=prec,
                      **_launch_config(BK, BV, BHD))
        _state_fwd_kernel[(BHn,)](k, v, th, eb, ef, em, dpe, pe, W1, S1, W2, S2,
                                  W1C, S1C, W2C, S2C, W1O, S1O, W2O, S2O,
                                  T_pad, n, DK, DV, DH, **common)
        y = torch.empty(BHn, T_pad, DV, dtype=q.dtype, device=q.device)
        _output_fwd_kernel[(n, BHn)](q, k, v, th, dp, beta, f, W1C, S1C, W2C, S2C, y,
                                     T_pad, n, DK, DV, DH, **common)
        ctx.save_for_backward(q, k, v, th, dp, beta, f, eb, ef, em, dpe, pe, W1C, S1C, W2C, S2C)
        ctx.meta = (depth, act, BT, prec, DH, common)
        outs = (W1O, S1O, W2O, S2O) if depth == 2 else (W1O, S1O)
        return (y, *outs)

    @staticmethod
    def backward(ctx, dy, *dstate):
        depth, act, BT, prec, DH, common = ctx.meta
        q, k, v, th, dp, beta, f, eb, ef, em, dpe, pe, W1C, S1C, W2C, S2C = ctx.saved_tensors
        BHn, T_pad, DK = q.shape
        DV = v.shape[-1]
        n = T_pad // BT
        dstate = [d.contiguous().float() for d in dstate]
        if depth == 1:
            dstate = dstate + dstate  # placeholders for the unused layer-2 slots
        dq = torch.empty(q.shape, dtype=torch.float32, device=q.device)
        dk = torch.empty_like(dq)
        dv = torch.empty(v.shape, dtype=torch.float32, device=v.device)
        dth = torch.empty_like(th, dtype=torch.float32)
        d_dp, d_beta, d_f = torch.empty_like(dp), torch.empty_like(beta), torch.empty_like(f)
        d_eb, d_ef, d_em = torch.empty_like(eb), torch.empty_like(ef), torch.empty_like(em)
        d_dpe, d_pe = torch.empty_like(dpe), torch.empty_like(pe)
        dW10 = torch.empty(W1C.shape[:1] + W1C.shape[2:], dtype=torch.float32, device=q.device)
        dS10 = torch.empty_like(dW10)
        dW20 = torch.empty(W2C.shape[:1] + W2C.shape[2:], dtype=torch.float32, device=q.device) \
            if depth == 2 else dW10
        dS20 = torch.empty_like(dW20) if depth == 2 else dS10
        _bwd_kernel[(BHn,)](q, k, v, th, dp, beta, f, eb, ef, em, dpe, pe,
                            W1C, S1C, W2C, S2C, dy.contiguous(), *dstate[:4],
                            dq, dk, dv, dth, d_dp, d_beta, d_f, d_eb, d_ef, d_em, d_dpe, d_pe,
                            dW10, dS10, dW20, dS20, T_pad, n, DK, DV, DH, **common)
        dW = (dW10, dS10, dW20, dS20) if depth == 2 else (dW10, dS10)
        return (None, dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dth, d_dp, d_beta, d_f,
                d_eb, d_ef, d_em, d_dpe, d_pe, *dW)


def triton_supports(depth: int, chunk_size: int, activation: str, surprise_clamp) -> bool:
    """Whether :func:`memory_scan_triton` handles this configuration."""
    return (depth in (1, 2) and surprise_clamp is None and activation in TRITON_ACTIVATIONS
            and chunk_size >= 16 and not chunk_size & (chunk_size - 1))


# Padded tile widths (key / value, hidden) at which the kernels have been compiled and checked
# against the chunked backend on a GPU (an H200; docs/architecture.md): depth 1 at head width 64
# (kernels/selfcheck.py), depth 2 at widths up to 32 with hidden 32 (the GPU run of
# tests/ops/test_triton_memory_scan.py and the recipes' networks in benchmarks/bench_train_step.py).
# Depth 2 with hidden 128 had not finished compiling after 85 s there.
GPU_CHECKED = {1: (64, 64), 2: (32, 32)}


def gpu_checked_widths(depth: int, dk: int, dv: int, dh: int) -> bool:
    """Whether the padded tile widths of this memory are within those checked on a GPU
    (``GPU_CHECKED``); ``backend="auto"`` takes the triton backend only then."""
    if depth not in GPU_CHECKED:
        return False
    io, hidden = GPU_CHECKED[depth]
    return max(_pow2(dk), _pow2(dv)) <= io and (depth == 1 or _pow2(dh) <= hidden)


def memory_scan_triton(q, k, v, alpha, eta, theta, weights, momentum, chunk_size, activation,
                       mask=None, surprise_clamp=None, precision: str = "ieee"):
    """Triton backend. Shapes as :func:`titans_ts.kernels.memory_scan.memory_scan`.

    Supports memory depth 1 and 2, chunk sizes that are powers of two >= 16, activations
    silu / gelu / relu / tanh / identity, masks and initial states; not the surprise clamp (use
    the chunked backend for it). ``precision`` is the ``tl.dot`` input precision for fp32 tiles
    ("ieee" exact fp32, or "tf32" faster on tensor cores).
    """
    depth = len(weights)
    if depth not in (1, 2):
        raise ValueError(f"the triton backend supports memory depth 1 or 2, got {depth}; "
                         f"use backend='chunked' for deeper memories")
    if surprise_clamp is not None:
        raise ValueError("the triton backend does not implement surprise_clamp; use backend='chunked'")
    if activation not in TRITON_ACTIVATIONS:
        raise ValueError(f"the triton backend supports activations {sorted(TRITON_ACTIVATIONS)}")
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        raise ValueError(f"the triton backend needs chunk_size to be a power of two >= 16 "
                         f"(tl.dot tiles), got {chunk_size}; use backend='chunked' otherwise")
    if q.device.type != "cuda" and not interpreter_enabled():
        raise ValueError("the triton backend runs on CUDA tensors (or on CPU with TRITON_INTERPRET=1)")
    B, T, H, DK = q.shape
    DV = v.shape[-1]
    dt = compute_dtype(q, k, v, *weights)
    if dt == torch.float64:
        raise ValueError("the triton backend computes in fp32; use backend='chunked' for fp64")
    W = [w.float() for w in weights]
    S = [s.float() for s in momentum]
    if T == 0:
        return q.new_zeros(B, 0, H, DV), (tuple(W), tuple(S))
    BT = chunk_size
    n = -(-T // BT)
    pad = n * BT - T
    theta = theta.float()
    if mask is not None:
        theta = theta * mask.to(theta.dtype)

    def heads_first(x, fill=0.0):  # [B, T, H, ...] -> [B*H, T_pad, ...]
        x = x.transpose(1, 2)
        if pad:
            x = F.pad(x, (0, 0) * (x.dim() - 3) + (0, pad), value=fill)
        return x.reshape(B * H, n * BT, *x.shape[3:]).contiguous()

    qh, kh, vh = heads_first(q), heads_first(k), heads_first(v)
    th = heads_first(theta)
    gates = [heads_first(alpha.float()).view(B * H, n, BT), heads_first(eta.float(), 1.0).view(B * H, n, BT)]
    last = torch.full((n,), BT - 1, dtype=torch.long, device=q.device)
    last[-1] = BT - 1 - pad
    coefs = chunk_gate_coefficients(gates[0], gates[1], last)
    state = []
    for w, s in zip(W, S, strict=True):
        state += [w.reshape(B * H, *w.shape[2:]), s.reshape(B * H, *s.shape[2:])]
    out = _TritonScan.apply((depth, TRITON_ACTIVATIONS[activation], BT, precision), qh, kh, vh, th,
                            *[coefs[key].contiguous() for key in COEF_KEYS], *state)
    y = out[0].view(B, H, n * BT, DV)[:, :, :T].transpose(1, 2)
    finals = [o.view(B, H, *o.shape[1:]) for o in out[1:]]
    return y.to(q.dtype), (tuple(finals[0::2]), tuple(finals[1::2]))
