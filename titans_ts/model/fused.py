"""Small fused ops of the memory layer, each a ``torch.autograd.Function`` with a hand-written
backward beside a plain-PyTorch twin (``*_reference``, differentiated by autograd) that
``tests/ops/test_fused.py`` holds it to, in values and gradients.

Why: on CPU, for large ``B * T * C``, the time of these element-wise blocks is dominated by
allocating and first-touching fresh [B, T, C] buffers; the autograd graph of the plain forms
allocates about five times as many as the fused ones (which accumulate in place).

* :func:`causal_conv_silu`: causal depthwise convolution over time, then SiLU (the short conv
  on q, k, v).
* :func:`l2_normalize`: ``x / ||x||`` over the last axis (q and k).
* :func:`gated_rms_norm`: ``rmsnorm(y) * weight * silu(gate)`` (the memory's output gate).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["causal_conv_silu", "causal_conv_silu_reference", "l2_normalize",
           "l2_normalize_reference", "gated_rms_norm", "gated_rms_norm_reference"]


def causal_conv_silu_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                               cache: torch.Tensor | None = None) -> torch.Tensor:
    """``silu(conv1d(pad_left(x)))`` per channel. x [B, T, C], weight [C, K], cache [B, K-1, C]."""
    K = weight.shape[-1]
    if cache is None:
        cache = x.new_zeros(x.shape[0], K - 1, x.shape[2])
    xin = torch.cat([cache, x], dim=1).transpose(1, 2)
    return F.silu(F.conv1d(xin, weight.unsqueeze(1), bias, groups=x.shape[2])).transpose(1, 2)


class _CausalConvSiLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, cache):
        B, T, C = x.shape
        K = weight.shape[-1]
        # pre[t] = bias + sum_j weight[:, j] * xin[t + j], with xin = [cache; x], i.e. the input
        # `K - 1 - j` steps back; taps reaching before the call come from the cache
        pre = x * weight[:, K - 1]
        for j in range(K - 1):
            back = K - 1 - j
            if back < T:
                pre[:, back:].addcmul_(x[:, : T - back], weight[:, j])
            if cache is not None:
                rows = min(back, T)
                pre[:, :rows].addcmul_(cache[:, j: j + rows], weight[:, j])
        if bias is not None:
            pre += bias
        ctx.save_for_backward(x, weight, pre, cache)
        ctx.has_bias = bias is not None
        return F.silu(pre)

    @staticmethod
    def backward(ctx, dout):
        x, weight, pre, cache = ctx.saved_tensors
        B, T, C = x.shape
        K = weight.shape[-1]
        dpre = torch.ops.aten.silu_backward(dout.contiguous(), pre)
        dx = dpre * weight[:, K - 1]
        dw = torch.empty_like(weight)
        dw[:, K - 1] = _channel_dot(dpre, x)
        dcache = torch.zeros_like(cache) if cache is not None else None
        for j in range(K - 1):
            back = K - 1 - j
            acc = torch.zeros(C, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32,
                              device=x.device)
            if back < T:
                dx[:, : T - back].addcmul_(dpre[:, back:], weight[:, j])
                acc += _channel_dot(dpre[:, back:], x[:, : T - back])
            if cache is not None:
                rows = min(back, T)
                dcache[:, j: j + rows].addcmul_(dpre[:, :rows], weight[:, j])
                acc += _channel_dot(dpre[:, :rows], cache[:, j: j + rows])
            dw[:, j] = acc
        dbias = dpre.sum((0, 1)) if ctx.has_bias else None
        return dx, dw, dbias, dcache


def _channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a * b).sum over (B, T)`` per channel, a block of batch rows at a time so the temporary
    stays near 4 MiB (allocator-friendly on CPU, few calls for many short rows)."""
    rows = max(1, (1 << 20) // max(1, a.shape[1] * a.shape[2]))
    out = torch.zeros(a.shape[-1], dtype=a.dtype, device=a.device)
    for i in range(0, a.shape[0], rows):
        out += (a[i:i + rows] * b[i:i + rows]).sum((0, 1))
    return out


def causal_conv_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     cache: torch.Tensor | None = None) -> torch.Tensor:
    """Causal depthwise conv + SiLU.

    Args:
        x: [B, T, C] input.
        weight: [C, K] per-channel taps (``weight[:, K-1]`` multiplies the current step; the layout
            of ``nn.Conv1d(C, C, K, groups=C).weight[:, 0]``, a cross-correlation).
        bias: [C] or None.
        cache: [B, K-1, C] the inputs just before ``x`` (a stream's previous call), zeros if None.

    Returns [B, T, C].
    """
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[2]:
        raise ValueError(f"x must be [B, T, C] and weight [C, K]; got {list(x.shape)} and {list(weight.shape)}")
    if cache is not None and cache.shape != (x.shape[0], weight.shape[1] - 1, x.shape[2]):
        raise ValueError(f"cache must be [B, K-1, C] = [{x.shape[0]}, {weight.shape[1] - 1}, {x.shape[2]}]")
    return _CausalConvSiLU.apply(x.contiguous(), weight, bias, cache)


# --------------------------------------------------------------------------- l2 normalisation


def l2_normalize_reference(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)


class _L2Normalize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, eps):
        r = torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)
        y = torch.mul(x, r, out=torch.empty(x.shape, dtype=x.dtype, device=x.device))
        ctx.save_for_backward(y, r)
        return y

    @staticmethod
    def backward(ctx, dy):
        y, r = ctx.saved_tensors
        # d(x r)/dx = r (I - y y^T) up to eps: dx = r * (dy - y * <y, dy>)
        dot = (y * dy).sum(-1, keepdim=True)
        dx = torch.addcmul(dy, y, dot, value=-1.0)
        dx.mul_(r)
        return dx, None


def l2_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``x / sqrt(||x||^2 + eps)`` over the last axis; the result is contiguous in ``x``'s
    logical shape whatever ``x``'s strides (pass a transposed view to get a transposed layout)."""
    return _L2Normalize.apply(x, eps)


# --------------------------------------------------------------------------- gated RMSNorm


def gated_rms_norm_reference(y: torch.Tensor, weight: torch.Tensor, gate: torch.Tensor,
                             eps: float = 1e-6) -> torch.Tensor:
    """``y * rsqrt(mean(y^2) + eps) * weight * silu(gate)``; y, gate [..., H, d], weight [d]."""
    return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps) * weight * F.silu(gate)


class _GatedRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, weight, gate, eps):
        r = torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps)
        n = y * r  # normalised
        sg = F.silu(gate)
        out = torch.mul(n, weight, out=torch.empty(gate.shape, dtype=gate.dtype, device=gate.device))
        out.mul_(sg)
        ctx.save_for_backward(n, r, weight, gate, sg)
        return out

    @staticmethod
    def backward(ctx, dout):
        n, r, weight, gate, sg = ctx.saved_tensors
        d = n.shape[-1]
        dn_w = dout * sg  # gradient of (n * weight)
        dweight = (dn_w * n).sum(tuple(range(n.dim() - 1)))
        dn = dn_w.mul_(weight)
        # out = n w sg with n = y r: dgate = dout * n * w * silu'(gate)
        dgate = torch.ops.aten.silu_backward(dout * n * weight, gate)
        # n = y r, r = (mean(y^2) + eps)^-1/2: dy = r (dn - n <n, dn> / d)
        dot = (n * dn).sum(-1, keepdim=True) / d
        dy = torch.addcmul(dn, n, dot, value=-1.0)
        dy.mul_(r)
        return dy, dweight, dgate, None


def gated_rms_norm(y: torch.Tensor, weight: torch.Tensor, gate: torch.Tensor,
                   eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm over the last axis, scaled by ``weight``, gated by ``silu(gate)``.

    Args:
        y: [..., d] values (any strides); weight: [d]; gate: same shape as y.

    Returns a tensor contiguous in y's logical shape.
    """
    if gate.shape != y.shape or weight.shape != y.shape[-1:]:
        raise ValueError(f"gate must match y {list(y.shape)} and weight be [{y.shape[-1]}]; got "
                         f"{list(gate.shape)} and {list(weight.shape)}")
    return _GatedRMSNorm.apply(y, weight, gate, eps)
