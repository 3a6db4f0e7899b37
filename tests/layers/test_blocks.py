"""Titans blocks: their equations written out (values and gradients), causal along the token
axis, streaming-consistent, masks respected."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from titans_ts.model.blocks import Attention, make_block
from titans_ts.model.memory import NeuralMemory

MEM = dict(heads=2, depth=2, expansion=2.0, chunk_size=4)


def _block(variant, **kw):
    torch.manual_seed(0)
    return make_block(variant, 16, memory=MEM, attn_heads=2, window=5, n_persistent=2,
                      segment_len=4, dropout=0.0, **kw).eval()


@pytest.mark.parametrize("variant", ["lmm", "mac", "mag", "mal", "none", "attention"])
def test_block_is_causal(variant):
    blk = _block(variant)
    x = torch.randn(2, 13, 16)
    y, _ = blk(x)
    for t in (3, 7, 12):
        x2 = x.clone()
        x2[:, t:] += torch.randn_like(x2[:, t:])
        y2, _ = blk(x2)
        torch.testing.assert_close(y2[:, :t], y[:, :t], rtol=1e-5, atol=1e-6)
        assert (y2[:, t] - y[:, t]).abs().max() > 1e-4, "the perturbed step itself must change"


# -------------------------------------------------- the blocks against their equations, slowly


def slow_attention(attn: Attention, x, prefix=None):
    """Multi-head attention written out query by query: softmax(q k / sqrt(d)) v over the keys a
    query may see (every persistent token; prefix tokens 1..t; tokens t - window < j <= t)."""
    N, T, D = x.shape
    H, dh = attn.heads, D // attn.heads
    P = 0 if attn.persistent is None else attn.persistent.shape[0]
    parts = ([attn.persistent.expand(N, -1, -1)] if P else []) + ([prefix] if prefix is not None else []) + [x]
    seq = torch.cat(parts, 1)
    W = attn.qkv.weight
    q, k, v = seq @ W[:D].T, seq @ W[D:2 * D].T, seq @ W[2 * D:].T
    first = seq.shape[1] - T  # where x's own tokens start
    rows = []
    for n in range(N):
        for t in range(T):
            keys = list(range(P)) + ([P + j for j in range(t + 1)] if prefix is not None else [])
            keys += [first + j for j in range(t + 1) if attn.window is None or j > t - attn.window]
            heads = []
            for h in range(H):
                c = slice(h * dh, (h + 1) * dh)
                w = torch.softmax(torch.stack([q[n, first + t, c] @ k[n, j, c] for j in keys]) / math.sqrt(dh), 0)
                heads.append(sum(wi * v[n, j, c] for wi, j in zip(w, keys, strict=True)))
            rows.append(torch.cat(heads))
    return torch.stack(rows).view(N, T, D) @ attn.out.weight.T


def rms(norm, x):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.weight


def mlp(m, x):
    return F.linear(F.gelu(F.linear(x, m.fc1.weight, m.fc1.bias)), m.fc2.weight, m.fc2.bias)


def slow_block(blk, variant, x, mask):
    """The block's equation (blocks.py, after the paper's Eq. 21-31), each sub-layer written out
    (attention query by query); the memory on its per-token reference backend."""
    if variant == "none":
        return x + mlp(blk.mlp, rms(blk.norm, x))
    if variant == "attention":
        h = x + slow_attention(blk.attn, rms(blk.norm1, x))
        return h + mlp(blk.mlp, rms(blk.norm2, h))
    memory = copy.deepcopy(blk.memory)
    memory.backend = "reference"
    if variant == "lmm":
        h = x + memory(rms(blk.norm1, x), None, mask)[0]
        return h + mlp(blk.mlp, rms(blk.norm2, h))
    if variant == "mal":
        h = x + memory(rms(blk.norm1, x), None, mask)[0]
        h = h + slow_attention(blk.attn, rms(blk.norm2, h))
        return h + mlp(blk.mlp, rms(blk.norm3, h))
    if variant == "mag":
        n = rms(blk.norm1, x)
        gate = torch.sigmoid(rms(blk.norm_mem, memory(n, None, mask)[0]))
        h = x + F.linear(rms(blk.norm_attn, slow_attention(blk.attn, n)) * gate, blk.proj.weight, blk.proj.bias)
        return h + mlp(blk.mlp, rms(blk.norm2, h))
    assert variant == "mac"
    n, state, outs = rms(blk.norm1, x), None, []
    for s in range(0, x.shape[1], blk.segment_len):
        seg, seg_mask = n[:, s:s + blk.segment_len], mask[:, s:s + blk.segment_len]
        y = slow_attention(blk.attn, seg, prefix=memory.retrieve(seg, state))  # read before the write
        m, state = memory(y, state, seg_mask)  # write y, read M*_t(y_t)
        outs.append(y * torch.sigmoid(m))
    h = x + F.linear(torch.cat(outs, 1), blk.proj.weight, blk.proj.bias)
    return h + mlp(blk.mlp, rms(blk.norm2, h))


@pytest.mark.parametrize("variant", ["lmm", "mac", "mag", "mal", "none", "attention"])
def test_block_is_its_equation(variant):
    """Values and input gradients of the block (chunked memory, fused attention) against its
    equation written out, with unobserved tokens in the mask and segments / chunks that do not
    divide the sequence. In float64: the memory's l2-normalised keys of small attention outputs
    (MAC) turn float32 round-off into differences of 1e-4, which would hide a real one."""
    blk = _block(variant).double()
    with torch.no_grad():  # gates that visibly write the memory (the initial ones barely do)
        for layer in blk.modules():
            if isinstance(layer, NeuralMemory):
                layer.gates.bias.view(3, -1)[2].fill_(2.0)
    x = torch.randn(2, 10, 16, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 3:5] = False
    mask[1, 9] = False
    y, _ = blk(x, mask=mask)
    want = slow_block(blk, variant, x, mask)
    torch.testing.assert_close(y, want, rtol=1e-9, atol=1e-10)
    w = torch.randn_like(y)
    (gx,) = torch.autograd.grad((y * w).sum(), x)
    (gx_want,) = torch.autograd.grad((want * w).sum(), x)
    torch.testing.assert_close(gx, gx_want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("window, n_persistent, prefix", [(None, 0, False), (3, 0, False), (3, 2, False),
                                                          (None, 2, True), (1, 1, True)])
def test_attention_is_softmax_over_the_keys_each_query_may_see(window, n_persistent, prefix):
    torch.manual_seed(0)
    attn = Attention(8, heads=2, window=window, n_persistent=n_persistent).eval()
    if attn.persistent is not None:
        with torch.no_grad():
            attn.persistent.normal_()  # (initialised near zero: make them matter)
    x = torch.randn(2, 7, 8)
    pre = torch.randn(2, 7, 8) if prefix else None
    torch.testing.assert_close(attn(x, prefix=pre), slow_attention(attn, x, pre), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", ["lmm", "mac"])
def test_blocks_without_a_window_stream_in_pieces(variant):
    """LMM and MAC carry everything they read in the memory state: a sequence cut at a segment
    and chunk boundary (4 tokens) gives the outputs and the final state of one call."""
    blk = _block(variant)
    x = torch.randn(2, 12, 16)
    with torch.no_grad():
        y, state = blk(x)
        y1, s1 = blk(x[:, :8])
        y2, s2 = blk(x[:, 8:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, rtol=1e-5, atol=1e-5)
    for a, b in zip(s2.weights + s2.momentum, state.weights + state.momentum, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_attention_twin_is_the_lmm_block_with_attention_for_memory():
    """The attention twin: x + Attn(norm x), then the MLP; no state; every parameter trains."""
    blk = _block("attention").train()
    assert not hasattr(blk, "memory") and blk.attn.window == 5 and blk.attn.persistent.shape == (2, 16)
    x = torch.randn(3, 10, 16, requires_grad=True)
    y, state = blk(x)
    assert y.shape == x.shape and state is None
    blk.eval()
    with torch.no_grad():
        h = x + blk.attn(blk.norm1(x))
        torch.testing.assert_close(blk(x)[0], h + blk.mlp(blk.norm2(h)))
    blk.train()
    y.pow(2).mean().backward()
    assert all(p.grad is not None for p in blk.parameters())


def test_sliding_window_attention_mask():
    attn = Attention(8, heads=2, window=3, n_persistent=0).eval()
    x = torch.randn(1, 10, 8)
    y = attn(x)
    x2 = x.clone()
    x2[:, 2] += 5.0  # token 2 is outside the window of tokens >= 5
    y2 = attn(x2)
    torch.testing.assert_close(y2[:, 5:], y[:, 5:])
    assert (y2[:, 2:5] - y[:, 2:5]).abs().max() > 1e-4


def test_persistent_tokens_are_visible_to_every_query():
    attn = Attention(8, heads=2, window=1, n_persistent=2).eval()
    x = torch.randn(1, 6, 8)
    y = attn(x)
    with torch.no_grad():
        attn.persistent.add_(1.0)
    assert ((attn(x) - y).abs().amax(-1) > 1e-5).all()


def test_unknown_variant():
    with pytest.raises(ValueError, match="variant must be one of"):
        make_block("mamba", 16)


def test_mac_reads_the_memory_as_it_was_before_each_segment():
    """MAC retrieves h = M*_{s-1}(q) before a segment writes: a segment's retrieval depends on the
    earlier segments only, never on its own tokens (the read-before-write order, Eq. 21-25)."""
    blk = _block("mac")  # segments of 4 tokens
    seen = []
    original = blk.memory.retrieve

    def spy(x, state=None):
        seen.append((x.detach().clone(), state))
        return original(x, state)

    blk.memory.retrieve = spy
    x = torch.randn(2, 12, 16)
    with torch.no_grad():
        y, _ = blk(x)
        assert len(seen) == 3 and seen[0][1] is None  # the first segment reads the initial memory
        # the state the second segment reads is exactly the one the first segment's write left
        _, after_first = blk.memory(blk.attn(blk.norm1(x)[:, :4],
                                             prefix=original(blk.norm1(x)[:, :4], None)), None)
        for w, w2 in zip(seen[1][1].weights, after_first.weights, strict=True):
            torch.testing.assert_close(w, w2)
        # changing a segment's own tokens leaves the state it reads unchanged
        x2 = x.clone()
        x2[:, 4:8] += 1.0
        seen.clear()
        blk(x2)
        for w, w2 in zip(seen[1][1].weights, after_first.weights, strict=True):
            torch.testing.assert_close(w, w2)


@pytest.mark.parametrize("variant", ["lmm", "mac", "mag", "mal", "none", "attention"])
def test_blocks_take_the_configurations_dropout(variant):
    """A block built alone drops out at the configuration's rate (0.2), as the network's blocks
    do; a network passes its configuration's rate to every block."""
    from titans_ts.model.config import TitansConfig
    from titans_ts.model.network import TitansNet

    def rates(module):
        return {m.p for m in module.modules() if isinstance(m, torch.nn.Dropout)} | \
            {m.dropout for m in module.modules() if isinstance(m, Attention)}

    blk = make_block(variant, 16, memory=MEM, attn_heads=2, segment_len=4)
    assert rates(blk) == {TitansConfig.dropout} == {0.2}
    cfg = dict(seq_len=32, horizon=8, patch_len=8, stride=4, d_model=16, variant=variant, attn_heads=2,
               segment_len=4, memory=MEM)
    assert rates(TitansNet(TitansConfig(**cfg))) == {0.2}
    assert rates(TitansNet(TitansConfig(**cfg, dropout=0.05))) == {0.05}
