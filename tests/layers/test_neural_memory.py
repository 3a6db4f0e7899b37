"""The NeuralMemory layer: streaming, backends agree through the layer, masks, long streams."""

from __future__ import annotations

import pytest
import torch

from titans_ts import NeuralMemory


def _layer(**kw):
    torch.manual_seed(0)
    args = dict(dim=16, heads=2, depth=2, chunk_size=8)
    args.update(kw)
    return NeuralMemory(**args)


@pytest.mark.parametrize("kw", [{}, {"residual_memory": True}, {"momentum": False, "forgetting": False},
                                {"depth": 1, "conv_kernel": 0}, {"surprise_clamp": 1.0}])
def test_streaming_in_pieces_equals_one_call(kw):
    m = _layer(**kw)
    x = torch.randn(3, 40, 16)
    y_full, st_full = m(x)
    state, ys = None, []
    for a, b in [(0, 8), (8, 24), (24, 40)]:
        y, state = m(x[:, a:b], state)
        ys.append(y)
    torch.testing.assert_close(torch.cat(ys, 1), y_full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state.weights[0], st_full.weights[0], rtol=1e-5, atol=1e-5)


def test_layer_gradients_chunked_equal_reference():
    x = torch.randn(2, 21, 16)
    grads = {}
    for backend in ("reference", "chunked"):
        m = _layer(backend=backend, chunk_size=4)
        y, _ = m(x)
        (y ** 2).mean().backward()
        grads[backend] = {n: p.grad.clone() for n, p in m.named_parameters()}
    for name, g in grads["reference"].items():
        err = ((grads["chunked"][name] - g).norm() / (g.norm() + 1e-12)).item()
        assert err < 1e-4, f"{name}: {err:.2e}"


def test_mask_keeps_unobserved_inputs_out_of_memory():
    m = _layer(conv_kernel=0)
    x = torch.randn(1, 24, 16)
    mask = torch.ones(1, 24, dtype=torch.bool)
    mask[:, 5:9] = False
    _, st = m(x, mask=mask)
    x2 = x.clone()
    x2[:, 5:9] = 1e3 * torch.randn(1, 4, 16)
    # the gates of masked tokens still come from x; fix them so only the write could differ
    with torch.no_grad():
        m.gates.weight.zero_()
    _, st_a = m(x, mask=mask)
    _, st_b = m(x2, mask=mask)
    for a, b in zip(st_a.weights, st_b.weights, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_long_stream_with_soft_clamp_stays_finite():
    """100k steps, no forgetting, momentum ~1, maximal inner learning rate, spiky input: without the
    clamp the memory blows up (an error saying so, not a non-finite output); with it everything
    stays finite."""
    torch.manual_seed(0)
    x = torch.randn(1, 100_000, 16) * 3
    x[:, ::997] *= 50

    def run(clamp):
        m = _layer(chunk_size=64, max_lr=1.0, forgetting=False, surprise_clamp=clamp)
        with torch.no_grad():
            m.gates.bias.view(3, 2)[1:].fill_(6.0)  # eta ~ 0.9975, theta ~ max_lr
            return m(x)

    y, st = run(1.0)
    assert bool(torch.isfinite(y).all()) and all(bool(torch.isfinite(w).all()) for w in st.weights), \
        "the soft clamp did not keep the 100k-step stream finite"
    # (the stress setting still stresses: unclamped, the memory diverges)
    with pytest.raises(FloatingPointError, match="the memory's updates diverged from inputs of ordinary magnitude"):
        run(None)


def test_bad_shapes():
    m = _layer()
    with pytest.raises(ValueError, match=r"expects x of shape \[B, T, 16\]"):
        m(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="depth must be >= 1"):
        NeuralMemory(16, depth=0)


def test_memory_states_batch_and_split_without_changing_any_stream():
    """Sequences streamed separately, or batched with MemoryState.cat and split back, continue
    identically (the forecaster batches series read at different times this way)."""
    from titans_ts.model.memory import MemoryState

    torch.manual_seed(0)
    mem = NeuralMemory(16, heads=2, depth=2, chunk_size=4).eval()
    xa, xb = torch.randn(1, 9, 16), torch.randn(1, 13, 16)
    nxt = torch.randn(2, 6, 16)
    with torch.no_grad():
        _, sa = mem(xa)
        _, sb = mem(xb)
        ya, _ = mem(nxt[:1], sa)
        yb, _ = mem(nxt[1:], sb)
        both = MemoryState.cat([sa, sb])
        assert both.rows == 2
        y, st = mem(nxt, both)
    torch.testing.assert_close(y, torch.cat([ya, yb]), rtol=1e-5, atol=1e-6)
    parts = st.split(2)
    with torch.no_grad():
        _, sa2 = mem(nxt[:1], sa)
    for w, w2 in zip(parts[0].weights, sa2.weights, strict=True):
        torch.testing.assert_close(w, w2, rtol=1e-5, atol=1e-6)
    # a state that has read nothing (no convolution history) batches beside one that has
    fresh = mem.initial_state(1).contiguous()
    mixed = MemoryState.cat([fresh, sa])
    assert mixed.conv.shape[0] == 2 and torch.equal(mixed.conv[0], torch.zeros_like(mixed.conv[0]))
    with pytest.raises(ValueError, match="equal parts"):
        both.split(3)
