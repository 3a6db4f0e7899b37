"""``memory_scan``: the public functional op of the Titans long-term memory, with backends."""

from __future__ import annotations

import torch

from .chunked import memory_scan_chunked
from .common import validate_inputs
from .reference import memory_scan_reference

__all__ = ["memory_scan", "BACKENDS", "available_backends"]

BACKENDS = ("auto", "reference", "chunked", "triton")


def _triton_for(device: torch.device, weights, chunk_size: int, activation: str, clamp) -> bool:
    """Whether "auto" should take the triton backend: CUDA tensors, a configuration the kernels
    support, and tile widths at which they have been checked on a GPU."""
    if device.type != "cuda":
        return False
    try:
        from .triton import gpu_checked_widths, triton_supports
    except ImportError:
        return False
    depth = len(weights)
    dk, dv = weights[0].shape[-1], weights[-1].shape[-2]
    dh = weights[0].shape[-2] if depth == 2 else dv
    return (triton_supports(depth, chunk_size, activation, clamp)
            and gpu_checked_widths(depth, dk, dv, dh))


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Backends usable on ``device`` (``triton`` needs CUDA, or tensors on CPU under
    ``TRITON_INTERPRET=1``)."""
    device = torch.device(device)
    out = ["reference", "chunked"]
    try:
        from . import triton as triton_backend

        if device.type == "cuda" or triton_backend.interpreter_enabled():
            out.append("triton")
    except ImportError:
        pass
    return out


def memory_scan(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    alpha: torch.Tensor,
    eta: torch.Tensor,
    theta: torch.Tensor,
    *,
    weights,
    momentum=None,
    chunk_size: int = 64,
    activation: str = "silu",
    mask: torch.Tensor | None = None,
    backend: str = "auto",
    surprise_clamp: float | None = None,
    output_final_state: bool = True,
):
    """Run the Titans neural long-term memory over a sequence (docs/titans-math.md sections 1-2).

    For each token ``t`` and head, with chunk-start weights ``W_c`` (refreshed every
    ``chunk_size`` tokens, counted from the start of this call):

        S_t = eta_t * S_{t-1} - theta_t * grad_W ||M_{W_c}(k_t) - v_t||^2
        W_t = (1 - alpha_t) * W_{t-1} + S_t
        y_t = M_{W_t}(q_t)

    ``M_W(x) = W_L act(... act(W_1 x))`` with no biases; ``chunk_size=1`` is the exact per-token
    recurrence.

    Args:
        q, k: [B, T, H, d_k] queries and keys (already projected / normalised).
        v: [B, T, H, d_v] values.
        alpha: [B, T, H] forgetting gate in [0, 1] (weight decay of the memory).
        eta: [B, T, H] momentum decay in [0, 1] (0 disables momentum).
        theta: [B, T, H] inner learning rate, >= 0.
        weights: tuple of per-layer initial weights, each [B, H, d_out, d_in] (or [H, d_out, d_in]
            shared over the batch): depth 1 ``([B, H, d_v, d_k],)``; depth 2
            ``([B, H, d_h, d_k], [B, H, d_v, d_h])``.
        momentum: initial surprise, same shapes as ``weights``; zeros if None.
        chunk_size: tokens per chunk (gradients inside a chunk use the chunk-start weights).
        activation: hidden activation of a deep memory: "silu", "gelu", "relu", "tanh", "identity".
        mask: [B, T] or [B, T, H], bool or numbers in [0, 1]; 0 / False means "not observed":
            theta = 0, nothing written (the gates still forget and decay the momentum); a
            fraction ``m`` writes the token with the inner learning rate ``m * theta_t`` (a
            partial write). Values outside [0, 1] are refused.
        backend: "auto" (triton for CUDA tensors when it supports the configuration: depth 1-2,
            power-of-two chunk >= 16, no surprise clamp, and tile widths checked on a GPU, see
            ``triton.GPU_CHECKED``; else chunked), "reference" (per-token
            loop), "chunked" (PyTorch closed form), "triton" (CUDA, or CPU under
            ``TRITON_INTERPRET=1``).
        surprise_clamp: if set, each momentary surprise ``u_t`` is scaled so its Frobenius norm
            (over all layers) is ``tau * tanh(||u_t|| / tau)`` (off in the paper's contract).
        output_final_state: False skips computing the final state (returned as None) when only
            the outputs are needed.

    q, k and v share one floating dtype; the weights and momentum of every layer another (the
    state's). Gate ranges, the mask's range and the finiteness of q, k, v and the initial state
    are checked (one device synchronisation; skipped under ``torch.compile``): an inf or NaN
    there is an error, not a NaN output. So is an output that is not finite from finite inputs
    (keys and values of huge magnitude overflow float32 in the updates, or the updates diverge):
    a ``FloatingPointError`` saying which, checked once on the output (one more
    synchronisation; skipped under ``torch.compile``).

    Returns:
        ``y`` [B, T, H, d_v] in q's dtype, and the final state ``(weights_T, momentum_T)``: tuples
        of fp32 tensors [B, H, d_out, d_in], to pass back in to continue the stream.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    given = (weights,) if isinstance(weights, torch.Tensor) else tuple(weights)
    weights, momentum, mask = validate_inputs(q, k, v, alpha, eta, theta, weights, momentum,
                                              chunk_size, activation, mask)
    if surprise_clamp is not None and not surprise_clamp > 0:
        raise ValueError(f"surprise_clamp must be a positive number or None, got {surprise_clamp!r}")
    if backend == "auto":
        backend = ("triton" if _triton_for(q.device, weights, chunk_size, activation,
                                           surprise_clamp) else "chunked")
    args = (q, k, v, alpha, eta, theta, weights, momentum, chunk_size, activation, mask, surprise_clamp)
    if backend == "chunked":
        # weights given as [H, d_out, d_in] (shared by the batch) stay 3-D: the chunked scan then
        # reduces their gradient over the batch inside its matmuls
        shared = tuple(g if g.dim() == 3 else w for g, w in zip(given, weights, strict=True))
        y, state = memory_scan_chunked(q, k, v, alpha, eta, theta, shared, *args[7:],
                                       output_final_state=output_final_state)
    elif backend == "reference":
        y, state = memory_scan_reference(*args)
    else:
        from .triton import memory_scan_triton

        y, state = memory_scan_triton(*args)
    if q.shape[1] > 0 and not torch.compiler.is_compiling():
        _check_output(y, q, k, v, theta)
    return y, (state if output_final_state else None)


def _check_output(y, q, k, v, theta) -> None:
    """The inputs were checked finite; an output that is not means the memory's updates overflowed
    (inputs of huge magnitude) or diverged. One reduction and one synchronisation, on the output
    only (the final state follows from the same updates)."""
    with torch.no_grad():
        if bool(torch.isfinite(y).all()):
            return
        size = [float(t.detach().abs().amax()) for t in (q, k, v, theta)]
    if max(size[:3]) > 1e6:
        cause = ("their magnitude overflows float32 in the memory's updates (largest |q| {:.3g}, |k| {:.3g}, "
                 "|v| {:.3g}). Normalise the keys and values before the memory (the network's projections "
                 "and RevIN do: inputs this large did not come through them, or the data is far outside "
                 "its units)").format(*size[:3])
    else:
        cause = (f"the memory's updates diverged from inputs of ordinary magnitude (largest |k| {size[1]:.3g}, "
                 f"|v| {size[2]:.3g}, theta up to {size[3]:.3g}): lower the inner learning rate (theta, "
                 f"the memory's max_lr) or the chunk size, or set surprise_clamp")
    raise FloatingPointError(f"memory_scan's output is not finite although its inputs are: {cause}")
