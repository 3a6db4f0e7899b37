"""Titans blocks over a token sequence [N, T, D]: LMM, MAC, MAG, MAL (docs/titans-math.md section 4).

Every block is causal along T (token t never sees tokens > t), takes and returns a per-block
memory state so long series can be streamed, and accepts an observed mask [N, T] (unobserved
tokens write nothing into the memory). Residual connections and pre-norms (RMSNorm) around every
sub-layer; each block ends with a feature-mixing MLP.

Choices the paper leaves open, made here:

* **LMM** (the paper's time-series configuration, the neural memory in place of Mamba in a
  Simba-style block): ``x += Memory(norm(x)); x += MLP(norm(x))``.
* **Attention**: multi-head ``scaled_dot_product_attention`` with an explicit boolean mask; a
  causal sliding window of ``window`` tokens (``None`` = unlimited); ``n_persistent`` learned
  tokens (Eq. 19) are prepended to the keys and values and are visible to every query.
* **MAG** (Eq. 26-28): attention and memory read the same normed input in parallel; the output
  is ``RMSNorm_a(attn) * sigmoid(RMSNorm_m(mem))`` (both norms with learned scale vectors), then
  a linear map.
* **MAL** (Eq. 29-31): ``x += Memory(norm(x)); x += SWA(norm(x))``.
* **MAC** (Eq. 21-25): the sequence is cut into segments of ``segment_len`` tokens. For each
  segment: read ``h = M*_{s-1}(x W_Q)`` from the memory as it was before the segment (no write);
  attend over ``[persistent || h || segment]``: persistent tokens fully, ``h`` and the segment
  causally (``h_j`` is read with token j's query, so a query t sees ``h_1..h_t``; letting it see
  all of ``h`` would leak later tokens of the segment into earlier outputs);
  write the attention output ``y`` into the memory, which reads ``M*_t(y_t)`` token by token;
  output ``y * sigmoid(M*(y))`` (the non-linear gate), then a linear map.
"""

from __future__ import annotations

from typing import Any, Mapping, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import VARIANTS, MemoryConfig, TitansConfig
from .memory import MemoryState, NeuralMemory

__all__ = ["RMSNorm", "MLP", "Attention", "LMMBlock", "MACBlock", "MAGBlock", "MALBlock",
           "NoMemoryBlock", "AttentionBlock", "make_block", "VARIANTS", "LMM", "MAC", "MAG", "MAL"]

_D = TitansConfig  # the one set of defaults: block arguments default to the configuration's

MemorySettings = Union[MemoryConfig, Mapping, None]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class MLP(nn.Module):
    """Feature (channel) mixing: Linear -> GELU -> Linear (dropout sits on the residual branch)."""

    def __init__(self, dim: int, expansion: float = _D.mlp_expansion, dropout: float = _D.dropout) -> None:
        super().__init__()
        hidden = max(1, int(dim * expansion))
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head attention of a token sequence over itself, causal with an optional sliding
    window, with ``n_persistent`` learned key/value tokens that every query sees."""

    def __init__(self, dim: int, heads: int = 4, window: int | None = None, n_persistent: int = 0,
                 dropout: float = _D.dropout) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} must be divisible by heads {heads}")
        self.dim, self.heads, self.window = dim, heads, window
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.persistent = nn.Parameter(torch.randn(n_persistent, dim) * 0.02) if n_persistent else None
        self.dropout = dropout

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        N, T, _ = t.shape
        return t.view(N, T, self.heads, self.dim // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """x [N, T, D] queries (and keys/values); ``prefix`` [N, T, D] extra tokens aligned with
        x (MAC's retrieved memory): query t sees prefix tokens 1..t, so the block stays causal.
        Returns [N, T, D]."""
        N, T, D = x.shape
        extra = []
        n_pers = 0
        if self.persistent is not None:
            extra.append(self.persistent.unsqueeze(0).expand(N, -1, -1))
            n_pers = self.persistent.shape[0]
        if prefix is not None:
            if prefix.shape[1] != T:
                raise ValueError("prefix must be aligned with x (same number of tokens)")
            extra.append(prefix)
        seq = torch.cat(extra + [x], dim=1) if extra else x
        q, k, v = self.qkv(seq).chunk(3, dim=-1)
        q = q[:, seq.shape[1] - T:]
        i = torch.arange(T, device=x.device).view(T, 1)
        j = torch.arange(T, device=x.device).view(1, T)
        allowed = j <= i
        if self.window is not None:
            allowed = allowed & (j > i - self.window)
        parts = [torch.ones(T, n_pers, dtype=torch.bool, device=x.device)]
        if prefix is not None:
            parts.append(j <= i)
        mask = torch.cat(parts + [allowed], 1)
        o = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v),
                                           attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(o.transpose(1, 2).reshape(N, T, D))


def _memory(dim: int, memory: MemorySettings) -> NeuralMemory:
    return NeuralMemory(dim, **MemoryConfig.from_dict(memory).to_dict())


class LMMBlock(nn.Module):
    """Memory only (the paper's time-series configuration):
    ``x += Memory(norm(x)); x += MLP(norm(x))``.

        >>> import torch
        >>> from titans_ts import LMM
        >>> block = LMM(32, memory={"heads": 2, "chunk_size": 8})
        >>> y, state = block(torch.randn(4, 20, 32))      # [N, T, D] tokens
        >>> y2, _ = block(torch.randn(4, 5, 32), state)   # continue the stream
    """

    def __init__(self, dim: int, memory: MemorySettings = None,
                 mlp_expansion: float = _D.mlp_expansion, dropout: float = _D.dropout) -> None:
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.memory = _memory(dim, memory)
        self.mlp = MLP(dim, mlp_expansion, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, state: MemoryState | None = None, mask=None, return_state: bool = True,
                surprise_clamp: float | None = None):
        m, state = self.memory(self.norm1(x), state, mask, return_state, surprise_clamp)
        x = x + self.drop(m)
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x, state


class MALBlock(nn.Module):
    """Memory as a layer, then sliding-window attention (Eq. 29-31).

        >>> import torch
        >>> from titans_ts import MAL
        >>> block = MAL(32, memory={"heads": 2}, attn_heads=4, window=8, n_persistent=2)
        >>> y, state = block(torch.randn(4, 20, 32))
    """

    def __init__(self, dim: int, memory: MemorySettings = None,
                 mlp_expansion: float = _D.mlp_expansion, dropout: float = _D.dropout,
                 attn_heads: int = _D.attn_heads, window: int | None = _D.window,
                 n_persistent: int = _D.n_persistent) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = RMSNorm(dim), RMSNorm(dim), RMSNorm(dim)
        self.memory = _memory(dim, memory)
        self.attn = Attention(dim, attn_heads, window, n_persistent, dropout)
        self.mlp = MLP(dim, mlp_expansion, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, state: MemoryState | None = None, mask=None, return_state: bool = True,
                surprise_clamp: float | None = None):
        m, state = self.memory(self.norm1(x), state, mask, return_state, surprise_clamp)
        x = x + self.drop(m)
        x = x + self.drop(self.attn(self.norm2(x)))
        x = x + self.drop(self.mlp(self.norm3(x)))
        return x, state


class MAGBlock(nn.Module):
    """Sliding-window attention and memory in parallel, combined by a non-linear gate
    (Eq. 26-28).

        >>> import torch
        >>> from titans_ts import MAG
        >>> block = MAG(32, memory={"heads": 2}, attn_heads=4, window=8, n_persistent=2)
        >>> y, state = block(torch.randn(4, 20, 32))
    """

    def __init__(self, dim: int, memory: MemorySettings = None,
                 mlp_expansion: float = _D.mlp_expansion, dropout: float = _D.dropout,
                 attn_heads: int = _D.attn_heads, window: int | None = _D.window,
                 n_persistent: int = _D.n_persistent) -> None:
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.memory = _memory(dim, memory)
        self.attn = Attention(dim, attn_heads, window, n_persistent, dropout)
        self.norm_attn, self.norm_mem = RMSNorm(dim), RMSNorm(dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = MLP(dim, mlp_expansion, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, state: MemoryState | None = None, mask=None, return_state: bool = True,
                surprise_clamp: float | None = None):
        h = self.norm1(x)
        a = self.attn(h)
        m, state = self.memory(h, state, mask, return_state, surprise_clamp)
        x = x + self.drop(self.proj(self.norm_attn(a) * torch.sigmoid(self.norm_mem(m))))
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x, state


class MACBlock(nn.Module):
    """Memory as context (Eq. 21-25): per segment, retrieve -> attend -> write -> retrieve and
    gate.

        >>> import torch
        >>> from titans_ts import MAC
        >>> block = MAC(32, memory={"heads": 2}, attn_heads=4, segment_len=8, n_persistent=2)
        >>> y, state = block(torch.randn(4, 20, 32))     # segments of 8, 8 and 4 tokens
    """

    def __init__(self, dim: int, memory: MemorySettings = None,
                 mlp_expansion: float = _D.mlp_expansion, dropout: float = _D.dropout,
                 attn_heads: int = _D.attn_heads, segment_len: int = _D.segment_len,
                 n_persistent: int = _D.n_persistent) -> None:
        super().__init__()
        if segment_len < 1:
            raise ValueError(f"segment_len must be >= 1, got {segment_len}")
        self.segment_len = segment_len
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.memory = _memory(dim, memory)
        self.attn = Attention(dim, attn_heads, None, n_persistent, dropout)
        self.proj = nn.Linear(dim, dim)
        self.mlp = MLP(dim, mlp_expansion, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, state: MemoryState | None = None, mask=None, return_state: bool = True,
                surprise_clamp: float | None = None):
        h = self.norm1(x)
        outs = []
        for s in range(0, x.shape[1], self.segment_len):
            seg = h[:, s:s + self.segment_len]
            seg_mask = mask[:, s:s + self.segment_len] if mask is not None else None
            retrieved = self.memory.retrieve(seg, state)  # M*_{s-1}(q): read only
            y = self.attn(seg, prefix=retrieved)
            last = s + self.segment_len >= x.shape[1]
            # write y, read M*_t(y_t); the state is needed for the next segment
            m, state = self.memory(y, state, seg_mask, return_state or not last, surprise_clamp)
            outs.append(y * torch.sigmoid(m))
        x = x + self.drop(self.proj(torch.cat(outs, dim=1)))
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x, state


class NoMemoryBlock(nn.Module):
    """The LMM block with its memory removed (feature mixing only): the "no memory" ablation."""

    def __init__(self, dim: int, mlp_expansion: float = _D.mlp_expansion, dropout: float = _D.dropout) -> None:
        super().__init__()
        self.norm = RMSNorm(dim)
        self.mlp = MLP(dim, mlp_expansion, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, state=None, mask=None, return_state: bool = True, surprise_clamp=None):
        return x + self.drop(self.mlp(self.norm(x))), state


class AttentionBlock(nn.Module):
    """The LMM block with its memory replaced by causal attention over the tokens (sliding-window
    when ``window`` is set) with ``n_persistent`` learned tokens: ``x += Attn(norm(x));
    x += MLP(norm(x))``. The attention-only twin of the memory (no state is carried: each
    window is read on its own)."""

    def __init__(self, dim: int, mlp_expansion: float = _D.mlp_expansion, dropout: float = _D.dropout,
                 attn_heads: int = _D.attn_heads, window: int | None = _D.window,
                 n_persistent: int = _D.n_persistent) -> None:
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.attn = Attention(dim, attn_heads, window, n_persistent, dropout)
        self.mlp = MLP(dim, mlp_expansion, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, state=None, mask=None, return_state: bool = True, surprise_clamp=None):
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x))), state


# the paper's names
LMM, MAC, MAG, MAL = LMMBlock, MACBlock, MAGBlock, MALBlock


def make_block(variant: str, dim: int, memory: MemorySettings = None,
               mlp_expansion: float = _D.mlp_expansion, dropout: float = _D.dropout,
               attn_heads: int = _D.attn_heads, window: int | None = _D.window,
               n_persistent: int = _D.n_persistent, segment_len: int = _D.segment_len) -> nn.Module:
    """A block of the given variant ("lmm", "mac", "mag", "mal"; "none" and "attention" for the
    memory's twins), given the settings of every variant: each block receives those it uses."""
    common: dict[str, Any] = dict(mlp_expansion=mlp_expansion, dropout=dropout)
    if variant == "none":
        return NoMemoryBlock(dim, **common)
    if variant == "lmm":
        return LMMBlock(dim, memory, **common)
    attn: dict[str, Any] = dict(attn_heads=attn_heads, n_persistent=n_persistent)
    if variant == "attention":
        return AttentionBlock(dim, window=window, **attn, **common)
    if variant == "mac":
        return MACBlock(dim, memory, segment_len=segment_len, **attn, **common)
    if variant == "mag":
        return MAGBlock(dim, memory, window=window, **attn, **common)
    if variant == "mal":
        return MALBlock(dim, memory, window=window, **attn, **common)
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
