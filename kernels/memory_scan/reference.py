"""The obviously-correct reference: a per-token loop, gradients by autograd.

For every token ``t`` (chunk-start weights ``W_c`` refreshed every ``chunk_size`` tokens):

    u_t = d/dW || M_{W_c}(k_t) - v_t ||^2          (autograd, no hand-derived formula)
    S_t = eta_t * S_{t-1} - theta_t * u_t
    W_t = (1 - alpha_t) * W_{t-1} + S_t
    y_t = M_{W_t}(q_t)

Slow (one autograd call per token and head) and meant for tests and as the specification every
fast path must match, in values and, since the loop is built with ``create_graph=True``, in
gradients with respect to every input.
"""

from __future__ import annotations

import torch

from .common import activation_fn, compute_dtype, soft_clamp_scale

__all__ = ["memory_scan_reference", "memory_forward"]


def memory_forward(weights: list[torch.Tensor], x: torch.Tensor, activation: str) -> torch.Tensor:
    """``M_W(x)`` for a batch of vectors: ``x`` [..., d_in] and per-layer ``W`` [..., d_out, d_in]."""
    act = activation_fn(activation)
    h = x
    for i, w in enumerate(weights):
        h = torch.einsum("...oi,...i->...o", w, h)
        if i < len(weights) - 1:
            h = act(h)
    return h


def memory_scan_reference(q, k, v, alpha, eta, theta, weights, momentum, chunk_size, activation,
                          mask=None, surprise_clamp=None):
    """Per-token loop. Shapes as :func:`titans_ts.kernels.memory_scan.memory_scan`; fp32 inside."""
    out_dtype = q.dtype
    dt = compute_dtype(q, k, v, *weights)
    q, k, v = (x.to(dt) for x in (q, k, v))
    alpha, eta, theta = (g.to(dt) for g in (alpha, eta, theta))
    if mask is not None:
        theta = theta * mask.to(theta.dtype)
    W = [w.to(dt) for w in weights]
    S = [s.to(dt) for s in momentum]
    B, T, H, _ = q.shape
    # under torch.no_grad() nothing outer is differentiated: every chunk's inner loss then gets
    # fresh leaves (a weight that requires grad but was touched under no_grad is no graph node)
    outer = torch.is_grad_enabled()
    ys = []
    W_chunk = W
    for t in range(T):
        if t % chunk_size == 0:
            W_chunk = W
        # the inner loss at the chunk-start weights; gradients by autograd (create_graph keeps the
        # whole loop differentiable for outer-loop training and for gradient tests). The inner
        # gradient is the partial one, k_t and v_t held fixed: taken at a new node (a clone), not
        # at the weights themselves, which the keys and values may have been computed from (MAC
        # reads the memory to build its attention, whose output it then writes)
        with torch.enable_grad():
            W_leaf = [w.clone() if outer and w.requires_grad else w.detach().requires_grad_(True)
                      for w in W_chunk]
            pred = memory_forward(W_leaf, k[:, t], activation)  # [B, H, d_v]
            loss = ((pred - v[:, t]) ** 2).sum()
            grads = torch.autograd.grad(loss, W_leaf, create_graph=True)
        a_t = alpha[:, t].view(B, H, 1, 1)
        e_t = eta[:, t].view(B, H, 1, 1)
        th_t = theta[:, t].view(B, H, 1, 1)
        if surprise_clamp is not None:
            sq = sum((g * g).sum(dim=(-1, -2)) for g in grads)
            th_t = th_t * soft_clamp_scale(sq, surprise_clamp).view(B, H, 1, 1)
        S = [e_t * s - th_t * g for s, g in zip(S, grads, strict=True)]
        W = [(1 - a_t) * w + s for w, s in zip(W, S, strict=True)]
        ys.append(memory_forward(W, q[:, t], activation))
    y = torch.stack(ys, dim=1) if ys else q.new_zeros(B, 0, H, v.shape[-1])
    return y.to(out_dtype), (tuple(W), tuple(S))
