"""Pieces shared by every backend of the memory op: activations, the surprise clamp, validation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["compute_dtype", "ACTIVATIONS", "activation_fn", "activation_and_grad",
           "activation_backward", "activation_grad2", "mul_activation_grad2_",
           "soft_clamp_scale", "soft_clamp_scale_grad", "validate_inputs"]

def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """fp32, or fp64 when any input is fp64 (state and accumulation never go below fp32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


ACTIVATIONS = ("silu", "gelu", "relu", "tanh", "identity")


def activation_fn(name: str):
    if name == "silu":
        return F.silu
    if name == "gelu":
        return F.gelu
    if name == "relu":
        return F.relu
    if name == "tanh":
        return torch.tanh
    if name == "identity":
        return lambda x: x
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


def activation_and_grad(name: str, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(act(z), act'(z))`` written out, so that autograd can differentiate the derivative too
    (the chunked form back-propagates through the inner gradient)."""
    if name == "silu":
        s = torch.sigmoid(z)
        return z * s, s * (1 + z * (1 - s))
    if name == "gelu":  # exact (erf) GELU, as torch.nn.functional.gelu
        cdf = 0.5 * (1 + torch.erf(z * _INV_SQRT2))
        pdf = torch.exp(-0.5 * z * z) * _INV_SQRT2PI
        return z * cdf, cdf + z * pdf
    if name == "relu":
        pos = (z > 0).to(z.dtype)
        return z * pos, pos
    if name == "tanh":
        t = torch.tanh(z)
        return t, 1 - t * t
    if name == "identity":
        return z, torch.ones_like(z)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def activation_backward(name: str, grad: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``grad * act'(z)``, in one fused ATen kernel when autograd is not recording (the
    hand-written backward); written out when it is (the autograd twin differentiates it)."""
    if torch.is_grad_enabled() and (grad.requires_grad or z.requires_grad):
        return grad * activation_and_grad(name, z)[1]
    if name == "silu":
        return torch.ops.aten.silu_backward(grad, z)
    if name == "gelu":
        return torch.ops.aten.gelu_backward(grad, z)
    if name == "tanh":
        return torch.ops.aten.tanh_backward(grad, torch.tanh(z))
    if name == "relu":
        return grad * (z > 0).to(grad.dtype)
    if name == "identity":
        return grad
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def activation_grad2(name: str, z: torch.Tensor) -> torch.Tensor:
    """``act''(z)``, needed by the hand-written backward of a deep memory's inner gradient."""
    if name == "silu":
        s = torch.sigmoid(z)
        return s * (1 - s) * (2 + z * (1 - 2 * s))
    if name == "gelu":
        pdf = torch.exp(-0.5 * z * z) * _INV_SQRT2PI
        return pdf * (2 - z * z)
    if name == "tanh":
        t = torch.tanh(z)
        return -2 * t * (1 - t * t)
    if name in ("relu", "identity"):
        return torch.zeros_like(z)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def mul_activation_grad2_(name: str, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``x *= act''(z)`` in place (x must be a fresh tensor), returning x: for SiLU in five
    passes without temporaries beyond ``sigmoid(z)``, the hand-written backward's hot path;
    other activations through :func:`activation_grad2`."""
    if name != "silu":
        return x.mul_(activation_grad2(name, z))
    s = torch.sigmoid(z)
    w = torch.addcmul(z, z, s, value=-2.0).add_(2.0)  # 2 + z (1 - 2 s)
    w.mul_(s)
    w.addcmul_(w, s, value=-1.0)  # s (1 - s) (2 + z (1 - 2 s))
    return x.mul_(w)


def soft_clamp_scale(sq_norm: torch.Tensor, tau: float) -> torch.Tensor:
    """Factor ``c`` with ``c * n = tau * tanh(n / tau)`` for ``n = sqrt(sq_norm)``: leaves small
    surprises unchanged and bounds every momentary surprise's norm by ``tau`` (smoothly)."""
    n = torch.sqrt(sq_norm.clamp_min(1e-24))
    return torch.tanh(n / tau) * tau / n


def soft_clamp_scale_grad(sq_norm: torch.Tensor, tau: float) -> torch.Tensor:
    """``d soft_clamp_scale / d sq_norm``."""
    n = torch.sqrt(sq_norm.clamp_min(1e-24))
    t = torch.tanh(n / tau)
    dc_dn = (1 - t * t) / n - tau * t / (n * n)
    return torch.where(sq_norm > 1e-24, dc_dn / (2 * n), torch.zeros_like(n))


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def validate_inputs(q, k, v, alpha, eta, theta, weights, momentum, chunk_size, activation, mask,
                    check_ranges: bool = True):
    """Check shapes, dtypes, values and gate ranges; return (weights, momentum, mask) with
    weights and momentum broadcast to [B, H, ...].

    Dtypes: q, k and v share one floating dtype; the gates are floating point; the weights and
    the momentum of every layer share one floating dtype (the state's). ``mask`` is bool, or
    numbers in [0, 1]: 0 / False leaves a token unwritten, 1 / True writes it, and a fraction
    ``m`` writes it with the inner learning rate ``m * theta_t`` (a partial write; the gates
    alpha and eta act as usual). With ``check_ranges`` (outside ``torch.compile``), the values are
    checked too, in one device synchronisation: gates in range, mask in [0, 1], and q, k, v,
    weights and momentum finite (an inf / NaN there makes every later output NaN)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            got = _shape(t) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a 4-D tensor [B, T, H, d], got {got}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k and v must share one dtype; got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    B, T, H, dk = k.shape
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape [B, T, H, d_k]; q is {_shape(q)}, k is {_shape(k)}")
    if v.shape[:3] != (B, T, H):
        raise ValueError(f"v must be [B, T, H, d_v] = [{B}, {T}, {H}, d_v], got {_shape(v)}")
    dv = v.shape[-1]
    for name, g in (("alpha", alpha), ("eta", eta), ("theta", theta)):
        if not isinstance(g, torch.Tensor) or tuple(g.shape) != (B, T, H):
            got = _shape(g) if isinstance(g, torch.Tensor) else type(g).__name__
            raise ValueError(f"{name} must be [B, T, H] = [{B}, {T}, {H}], got {got}")
        if not g.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {g.dtype}")
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if isinstance(weights, torch.Tensor):
        weights = (weights,)
    weights = tuple(weights)
    if len(weights) == 0:
        raise ValueError("weights must hold at least one layer")
    given = [(f"weights[{i}]", w) for i, w in enumerate(weights)]
    full = []
    d_in = dk
    for i, w in enumerate(weights):
        if not isinstance(w, torch.Tensor) or w.dim() not in (3, 4):
            raise ValueError(f"weights[{i}] must be [B, H, d_out, d_in] or [H, d_out, d_in]")
        if not w.is_floating_point():
            raise TypeError(f"weights[{i}] must be a floating-point tensor, got {w.dtype}")
        if w.dtype != weights[0].dtype:
            raise TypeError(f"every memory layer's weights must share one dtype; weights[0] is "
                            f"{weights[0].dtype}, weights[{i}] {w.dtype}")
        if w.dim() == 3:
            w = w.unsqueeze(0).expand(B, *w.shape)
        if w.shape[:2] != (B, H) or w.shape[-1] != d_in:
            raise ValueError(f"weights[{i}] must be [B={B}, H={H}, d_out, d_in={d_in}], got {_shape(w)}")
        d_in = w.shape[-2]
        full.append(w)
    if d_in != dv:
        raise ValueError(f"the last memory layer must output d_v = {dv}, it outputs {d_in}")
    if momentum is None:  # zeros, broadcast over the batch like the initial weights usually are
        momentum = tuple(torch.zeros(w.shape[1:], dtype=torch.float32, device=w.device).expand_as(w)
                         for w in full)
    else:
        if isinstance(momentum, torch.Tensor):
            momentum = (momentum,)
        momentum = tuple(momentum)
        if len(momentum) != len(full):
            raise ValueError(f"momentum must have one tensor per memory layer ({len(full)}), got {len(momentum)}")
        mom = []
        for i, (s, w) in enumerate(zip(momentum, full, strict=True)):
            if not isinstance(s, torch.Tensor) or not s.is_floating_point():
                got = str(s.dtype) if isinstance(s, torch.Tensor) else type(s).__name__
                raise TypeError(f"momentum[{i}] must be a floating-point tensor, got {got}")
            if s.dtype != w.dtype:
                raise TypeError(f"momentum[{i}] must have the weights' dtype {w.dtype}, got {s.dtype}")
            given.append((f"momentum[{i}]", s))
            if s.dim() == 3:
                s = s.unsqueeze(0).expand(B, *s.shape)
            if s.shape != w.shape:
                raise ValueError(f"momentum[{i}] must match weights[{i}] {_shape(w)}, got {_shape(s)}")
            mom.append(s)
        momentum = tuple(mom)
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.is_complex():
            raise TypeError(f"mask must be a bool or real tensor, got {type(mask).__name__}")
        if mask.shape == (B, T):
            mask = mask[:, :, None].expand(B, T, H)
        elif mask.shape != (B, T, H):
            raise ValueError(f"mask must be [B, T] or [B, T, H] = [{B}, {T}, {H}], got {_shape(mask)}")
    if check_ranges and T > 0 and not torch.compiler.is_compiling():
        _check_values(q, k, v, alpha, eta, theta, given, mask)
    return tuple(full), momentum, mask


def _check_values(q, k, v, alpha, eta, theta, states, mask) -> None:
    """Gate ranges, mask range and finiteness of the inputs, read in one synchronisation."""
    with torch.no_grad():
        gates = (("alpha", alpha, 0.0, 1.0), ("eta", eta, 0.0, 1.0), ("theta", theta, 0.0, math.inf))
        checks = [x for _, g, _, _ in gates for x in (g.amin(), g.amax())]
        named = [("q", q), ("k", k), ("v", v)] + list(states)
        checks += [torch.isfinite(t).all() for _, t in named]
        if mask is not None and mask.dtype != torch.bool:
            checks += [mask.amin(), mask.amax()]
        vals = torch.stack([c.to(device=q.device, dtype=torch.float32) for c in checks]).tolist()
    for j, (name, _, lo, hi) in enumerate(gates):
        gmin, gmax = vals[2 * j], vals[2 * j + 1]
        if not (gmin >= lo and gmax <= hi):  # also catches NaN
            rng = f"[{lo}, {hi}]" if hi != math.inf else f">= {lo}"
            nan = (" (NaN: the values the gate is computed from are not finite)"
                   if gmin != gmin or gmax != gmax else "")
            raise ValueError(f"{name} must lie in {rng}; got values in [{gmin:.4g}, {gmax:.4g}]{nan}")
    for (name, _), ok in zip(named, vals[6:6 + len(named)], strict=True):
        if not ok:
            raise ValueError(f"{name} holds non-finite values (inf / NaN): the memory would return NaN "
                             f"for this token and every later one. Check the data and the layers "
                             f"before the memory (a non-finite input, or a state carried from a "
                             f"diverged scan)")
    if mask is not None and mask.dtype != torch.bool:
        mmin, mmax = vals[-2], vals[-1]
        if not (mmin >= 0.0 and mmax <= 1.0):
            raise ValueError(f"mask must be bool or hold numbers in [0, 1] (0: not written, 1: written, "
                             f"a fraction m: written with inner learning rate m * theta); got values "
                             f"in [{mmin:.4g}, {mmax:.4g}]")
