"""``NeuralMemory``: the Titans long-term memory layer (LMM), docs/titans-math.md sections 1-3.

The layer only projects, convolves, gates and normalises; the memory itself is the functional op
:func:`titans_ts.kernels.memory_scan.memory_scan` (backend chosen by device).

    x [B, T, dim]
      -> q, k, v = Linear(x), each through a causal depthwise Conv1d (kernel 4) and SiLU
      -> q, k l2-normalised per head
      -> alpha = sigmoid(Linear(x)), eta = sigmoid(Linear(x)), theta = max_lr * sigmoid(Linear(x))
         (per token and head)
      -> y = memory_scan(q, k, v, alpha, eta, theta, weights=W_0 (learned per head))
      -> gated RMSNorm: RMSNorm(y) * SiLU(Linear(x)), then the output projection
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from titans_ts.kernels.memory_scan import memory_scan
from titans_ts.kernels.memory_scan.common import activation_fn, compute_dtype
from titans_ts.model.config import MemoryConfig as _M
from titans_ts.model.fused import causal_conv_silu, gated_rms_norm, l2_normalize

__all__ = ["NeuralMemory", "MemoryState", "no_weight_decay", "wants_weight_decay"]


def no_weight_decay(p: nn.Parameter) -> nn.Parameter:
    """Mark a parameter the optimiser must not decay (a learned initial state, a table of
    positions or of a cycle); returns it. Vectors (norm scales, biases) are never decayed."""
    p._no_weight_decay = True  # type: ignore[attr-defined]  # a marker torch does not declare
    return p


def wants_weight_decay(p: nn.Parameter) -> bool:
    """Whether the optimiser's weight decay applies to ``p``: matrices not marked with
    :func:`no_weight_decay`."""
    return p.dim() >= 2 and not getattr(p, "_no_weight_decay", False)


class MemoryState(NamedTuple):
    """Everything a stream needs to continue exactly: the memory's weights and momentum (tuples of
    [N, H, d_out, d_in] fp32 tensors) and the causal convolution's last ``kernel - 1`` inputs
    ([N, kernel - 1, 3 * H * head_dim], None before the first token), for N sequences.

    States of several calls batch together (:meth:`cat`) and split apart again
    (:meth:`split`), so sequences read at different times share one forward pass."""

    weights: tuple[torch.Tensor, ...]
    momentum: tuple[torch.Tensor, ...]
    conv: torch.Tensor | None

    @property
    def rows(self) -> int:
        """N, the number of sequences the state holds."""
        return self.weights[0].shape[0]

    def detach(self) -> "MemoryState":
        return MemoryState(tuple(w.detach() for w in self.weights),
                           tuple(s.detach() for s in self.momentum),
                           None if self.conv is None else self.conv.detach())

    def contiguous(self) -> "MemoryState":
        """The same state in its own (non-broadcast) storage."""
        return MemoryState(tuple(w.contiguous() for w in self.weights),
                           tuple(m.contiguous() for m in self.momentum),
                           None if self.conv is None else self.conv.contiguous())

    def select(self, rows: slice | torch.Tensor) -> "MemoryState":
        """The state of some of the sequences (a slice or an index tensor of rows)."""
        return MemoryState(tuple(w[rows].contiguous() for w in self.weights),
                           tuple(m[rows].contiguous() for m in self.momentum),
                           None if self.conv is None else self.conv[rows].contiguous())

    @staticmethod
    def cat(states: "list[MemoryState]") -> "MemoryState":
        """One state holding the rows of ``states`` in order. A state with no convolution history
        (it has read nothing yet) counts as a zero history beside states that have one."""
        ref = next((s.conv for s in states if s.conv is not None), None)
        conv = None if ref is None else torch.cat(
            [s.conv if s.conv is not None else ref.new_zeros(s.rows, *ref.shape[1:]) for s in states])
        return MemoryState(tuple(torch.cat(ws) for ws in zip(*[s.weights for s in states], strict=True)),
                           tuple(torch.cat(ms) for ms in zip(*[s.momentum for s in states], strict=True)), conv)

    def split(self, n: int) -> "list[MemoryState]":
        """``n`` states of ``rows // n`` consecutive rows each (the inverse of :meth:`cat` for
        equal parts)."""
        if n < 1 or self.rows % n:
            raise ValueError(f"cannot split a state of {self.rows} rows into {n} equal parts")
        k = self.rows // n
        return [self.select(slice(i * k, (i + 1) * k)) for i in range(n)]


class NeuralMemory(nn.Module):
    """The Titans neural long-term memory as a sequence layer.

    Args:
        dim: model width (input and output features).
        heads: number of memory heads.
        head_dim: key / value width per head (default ``dim // heads``).
        depth: memory MLP depth ``L_M`` (1 = matrix memory; the paper finds >= 2 better).
        expansion: hidden width of a deep memory as a multiple of ``head_dim``.
        activation: hidden activation of the memory MLP.
        chunk_size: tokens per chunk (gradients inside a chunk at the chunk-start weights).
        conv_kernel: causal depthwise convolution width on q, k, v (0 disables it).
        momentum: learn the momentum gate eta (False: eta = 0, plain gradient descent).
        forgetting: learn the forgetting gate alpha (False: alpha = 0, no weight decay).
        max_lr: theta = max_lr * sigmoid(.), the cap on the inner learning rate.
        residual_memory: use ``M(x) = x + MLP(x)`` (computed exactly by shifting the values:
            ``||k + MLP(k) - v||^2 = ||MLP(k) - (v - k)||^2``); the output is normalised by the
            gated RMSNorm, giving the residual-norm memory wrapper.
        surprise_clamp: soft clamp on each momentary surprise's norm (long-sequence stability).
        backend: memory_scan backend ("auto", "chunked", "triton", "reference").
    """

    def __init__(self, dim: int, heads: int = _M.heads, head_dim: int | None = _M.head_dim,
                 depth: int = _M.depth, expansion: float = _M.expansion,
                 activation: str = _M.activation, chunk_size: int = _M.chunk_size,
                 conv_kernel: int = _M.conv_kernel, momentum: bool = _M.momentum,
                 forgetting: bool = _M.forgetting, max_lr: float = _M.max_lr,
                 residual_memory: bool = _M.residual_memory,
                 surprise_clamp: float | None = _M.surprise_clamp, backend: str = _M.backend) -> None:
        super().__init__()
        if dim < 1 or heads < 1:
            raise ValueError(f"dim and heads must be positive, got dim={dim}, heads={heads}")
        head_dim = head_dim or dim // heads
        if head_dim < 1:
            raise ValueError(f"head_dim must be positive (dim={dim}, heads={heads})")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if not max_lr > 0:
            raise ValueError(f"max_lr must be positive, got {max_lr}")
        self.dim, self.heads, self.head_dim, self.depth = dim, heads, head_dim, depth
        self.activation, self.chunk_size, self.backend = activation, chunk_size, backend
        self.use_momentum, self.use_forgetting = momentum, forgetting
        self.max_lr, self.residual_memory, self.surprise_clamp = max_lr, residual_memory, surprise_clamp
        inner = heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.conv_kernel = conv_kernel
        if conv_kernel > 1:
            self.conv: nn.Conv1d | None = nn.Conv1d(3 * inner, 3 * inner, conv_kernel, groups=3 * inner, bias=True)
        else:
            self.conv = None
        self.gates = nn.Linear(dim, 3 * heads, bias=True)
        hidden = max(1, int(round(head_dim * expansion)))
        dims = [head_dim] + [hidden] * (depth - 1) + [head_dim]
        self.init_weights = nn.ParameterList(
            [no_weight_decay(nn.Parameter(torch.empty(heads, dims[i + 1], dims[i])))
             for i in range(depth)])
        self.out_gate = nn.Linear(dim, inner, bias=False)
        self.norm_weight = nn.Parameter(torch.ones(head_dim))
        self.out_proj = nn.Linear(inner, dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in self.init_weights:
            nn.init.normal_(w, std=1.0 / math.sqrt(w.shape[-1]))
        with torch.no_grad():
            # start with little forgetting (sigmoid(-4) ~ 0.018), strong momentum (sigmoid(2) ~ 0.88)
            # and half the maximal inner learning rate
            self.gates.weight.mul_(0.1)
            b = self.gates.bias.view(3, self.heads)
            b[0].fill_(-4.0)
            b[1].fill_(2.0)
            b[2].fill_(0.0)
        if self.conv is not None and self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def initial_state(self, batch_size: int, device=None) -> MemoryState:
        """The learned initial memory (weights W_0, momentum 0, empty convolution history)."""
        device = device or self.init_weights[0].device
        # broadcast views over the batch (stride 0): the op then reads the shared initial memory
        # with one matmul per head instead of one per sequence
        W = tuple(w.float().to(device).unsqueeze(0).expand(batch_size, *w.shape)
                  for w in self.init_weights)
        S = tuple(torch.zeros(w.shape[1:], device=device).expand_as(w) for w in W)
        return MemoryState(W, S, None)

    def _conv(self, x: torch.Tensor, cache: torch.Tensor | None):
        """Causal depthwise convolution + SiLU over time; returns the output and the new cache
        (the last ``kernel - 1`` inputs, so a stream continues exactly)."""
        if self.conv is None:
            return F.silu(x), None
        k = self.conv_kernel
        y = causal_conv_silu(x, self.conv.weight[:, 0, :], self.conv.bias,
                             None if cache is None else cache.to(x.dtype))
        prev = x[:, -(k - 1):] if cache is None else torch.cat([cache.to(x.dtype), x[:, -(k - 1):]], 1)
        if prev.shape[1] < k - 1:
            prev = torch.cat([prev.new_zeros(prev.shape[0], k - 1 - prev.shape[1], prev.shape[2]), prev], 1)
        return y, prev[:, prev.shape[1] - (k - 1):]

    def forward(self, x: torch.Tensor, state: MemoryState | None = None,
                mask: torch.Tensor | None = None, return_state: bool = True,
                surprise_clamp: float | None = None) -> tuple[torch.Tensor, MemoryState | None]:
        """Args:
            x: [B, T, dim].
            state: a :class:`MemoryState` from a previous call to continue a stream (None: the
                learned initial memory).
            mask: [B, T] observed mask; unobserved tokens write nothing into the memory.
            return_state: False skips the final state (returned as None).
            surprise_clamp: this call's soft clamp on the surprise norm (None: the layer's own
                ``surprise_clamp``), e.g. for a stream carried far beyond the training length.

        Returns ``(out [B, T, dim], state)``.
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"NeuralMemory expects x of shape [B, T, {self.dim}], got {list(x.shape)}")
        B, T, _ = x.shape
        H, d = self.heads, self.head_dim
        if state is None:  # the learned initial memory, [H, d_out, d_in]: shared by the batch
            weights, momentum, conv = tuple(w.float() for w in self.init_weights), None, None
        else:
            weights, momentum, conv = state.weights, state.momentum, state.conv
        qkv, conv_cache = self._conv(self.qkv(x), conv)
        q, k, v = qkv.view(B, T, 3, H, d).unbind(2)
        # q, k, v are handed to the op as [B, T, H, d] views of heads-first [B, H, T, d] buffers,
        # the layout its chunks are cut from (so it copies nothing on the way in)
        q = l2_normalize(q.transpose(1, 2)).transpose(1, 2)
        k = l2_normalize(k.transpose(1, 2)).transpose(1, 2)
        if self.residual_memory:
            v = v - k  # M(x) = x + MLP(x): fit MLP(k) to v - k, read q + MLP(q)
        v = v.transpose(1, 2).contiguous().transpose(1, 2)
        g = torch.sigmoid(self.gates(x).float()).view(B, T, 3, H)
        alpha = g[:, :, 0] if self.use_forgetting else torch.zeros_like(g[:, :, 0])
        eta = g[:, :, 1] if self.use_momentum else torch.zeros_like(g[:, :, 1])
        theta = self.max_lr * g[:, :, 2]
        y, final = memory_scan(q, k, v, alpha, eta, theta, weights=weights,
                               momentum=momentum, chunk_size=self.chunk_size,
                               activation=self.activation, mask=mask, backend=self.backend,
                               surprise_clamp=self.surprise_clamp if surprise_clamp is None else surprise_clamp,
                               output_final_state=return_state)
        if self.residual_memory:
            y = y + q
        # gated RMSNorm per head, then the output projection
        y = gated_rms_norm(y, self.norm_weight, self.out_gate(x).view(B, T, H, d))
        out = self.out_proj(y.reshape(B, T, H * d))
        return out, (MemoryState(final[0], final[1], conv_cache) if return_state else None)

    def retrieve(self, x: torch.Tensor, state: MemoryState | None = None) -> torch.Tensor:
        """Read the memory without writing: ``M_W(q(x))`` with the weights of ``state`` (the
        learned initial memory if None), through the same output gate and projection.

        Args:
            x: [B, T, dim]. Returns [B, T, dim].
        """
        B, T, _ = x.shape
        H, d = self.heads, self.head_dim
        if state is None:
            state = self.initial_state(B, x.device)
        qkv, _ = self._conv(self.qkv(x), state.conv)
        q = l2_normalize(qkv.view(B, T, 3, H, d)[:, :, 0])
        act = activation_fn(self.activation)
        dt = compute_dtype(q, *state.weights)  # as the scan computes: fp32, or fp64 for fp64 inputs
        h = q.to(dt)
        for i, w in enumerate(state.weights):
            h = torch.einsum("bthi,bhoi->btho", h, w.to(dt))
            if i < len(state.weights) - 1:
                h = act(h)
        y = h.to(x.dtype)
        if self.residual_memory:
            y = y + q
        y = gated_rms_norm(y, self.norm_weight, self.out_gate(x).view(B, T, H, d))
        return self.out_proj(y.reshape(B, T, H * d))

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, heads={self.heads}, head_dim={self.head_dim}, depth={self.depth}, "
                f"chunk_size={self.chunk_size}, momentum={self.use_momentum}, "
                f"forgetting={self.use_forgetting}, max_lr={self.max_lr}")
