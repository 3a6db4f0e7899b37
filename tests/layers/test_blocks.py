"""Titans blocks: causal along the token axis, streaming-consistent, masks respected."""

from __future__ import annotations

import pytest
import torch

from titans_ts.model.blocks import Attention, make_block

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


@pytest.mark.parametrize("variant", ["lmm", "mal"])
def test_block_shapes_and_gradients(variant):
    blk = _block(variant).train()
    x = torch.randn(3, 10, 16, requires_grad=True)
    y, state = blk(x)
    assert y.shape == x.shape and state is not None
    y.pow(2).mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in blk.parameters() if p.requires_grad)


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
        for w, w2 in zip(seen[1][1].weights, after_first.weights):
            torch.testing.assert_close(w, w2)
        # changing a segment's own tokens leaves the state it reads unchanged
        x2 = x.clone()
        x2[:, 4:8] += 1.0
        seen.clear()
        blk(x2)
        for w, w2 in zip(seen[1][1].weights, after_first.weights):
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
