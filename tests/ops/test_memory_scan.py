"""The memory op: chunked (hand-written backward) == autograd twin == per-token reference, in values
and gradients; streaming; the gated-delta-rule special case; masks; validation."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from titans_ts import memory_scan
from titans_ts.kernels.memory_scan import memory_scan_chunked, memory_scan_reference

GRAD_NAMES = ["q", "k", "v", "alpha", "eta", "theta"]


def make_inputs(B=2, T=37, H=2, dk=8, dv=8, dh=16, depth=2, seed=0, init_momentum=True):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(B, T, H, dk, generator=g), dim=-1)
    k = F.normalize(torch.randn(B, T, H, dk, generator=g), dim=-1)
    v = torch.randn(B, T, H, dv, generator=g)
    alpha = torch.rand(B, T, H, generator=g) * 0.2
    eta = torch.rand(B, T, H, generator=g)
    theta = torch.rand(B, T, H, generator=g) * 0.1
    dims = [dk] + [dh] * (depth - 1) + [dv]
    W = [torch.randn(B, H, dims[i + 1], dims[i], generator=g) / dims[i] ** 0.5 for i in range(depth)]
    S = [torch.randn(w.shape, generator=g) * 0.02 * init_momentum for w in W]
    return [q, k, v, alpha, eta, theta], W, S


def run(fn, inputs, W, S, dtype, chunk_size, activation="silu", mask=None, clamp=None, **kw):
    """Outputs and gradients of a fixed scalar function of (y, final state)."""
    leaves = [t.detach().clone().to(dtype).requires_grad_(True) for t in [*inputs, *W, *S]]
    L = len(W)
    y, (WT, ST) = fn(*leaves[:6], tuple(leaves[6:6 + L]), tuple(leaves[6 + L:]), chunk_size,
                     activation, mask, clamp, **kw)
    probe = torch.linspace(-1, 1, y.shape[-1], dtype=dtype)
    loss = (y * probe).sum() + sum((w * 0.3).sum() for w in WT) + sum((s * s).sum() for s in ST)
    grads = torch.autograd.grad(loss, leaves)
    return [y.detach(), *[w.detach() for w in WT], *[s.detach() for s in ST]], list(grads)


def rel(a, b):
    return ((a.double() - b.double()).norm() / (b.double().norm() + 1e-30)).item()


@pytest.mark.parametrize("depth,chunk_size,T", list(itertools.product((1, 2, 3), (1, 4, 16), (1, 5, 37, 64))))
def test_chunked_matches_reference(depth, chunk_size, T):
    inputs, W, S = make_inputs(T=T, depth=depth, seed=depth * 100 + chunk_size * 10 + T)
    ref_out, ref_grad = run(memory_scan_reference, inputs, W, S, torch.float64, chunk_size)
    out, grad = run(memory_scan_chunked, inputs, W, S, torch.float32, chunk_size, backward="recompute")
    names = ["y"] + [f"W{i}_T" for i in range(depth)] + [f"S{i}_T" for i in range(depth)]
    for name, a, b in zip(names, out, ref_out, strict=True):
        assert rel(a, b) < 1e-4, f"{name}: relative error {rel(a, b):.2e}"
    gnames = GRAD_NAMES + [f"W{i}_0" for i in range(depth)] + [f"S{i}_0" for i in range(depth)]
    for name, a, b in zip(gnames, grad, ref_grad, strict=True):
        assert rel(a, b) < 1e-4, f"d/d{name}: relative error {rel(a, b):.2e}"


@pytest.mark.parametrize("activation,clamp,masked", [("silu", None, True), ("gelu", None, False),
                                                     ("silu", 0.5, False), ("gelu", 0.3, True),
                                                     ("tanh", None, False)])
def test_hand_written_backward_matches_autograd(activation, clamp, masked):
    """Both hand-written modes == the autograd twin == the fp64 per-token reference."""
    inputs, W, S = make_inputs(T=45, depth=3, seed=7)
    mask = (torch.rand(2, 45, generator=torch.Generator().manual_seed(1)) > 0.3) if masked else None
    mask3 = mask[:, :, None].expand(2, 45, 2).float() if masked else None
    ref_out, ref_grad = run(memory_scan_reference, inputs, W, S, torch.float64, 8, activation, mask3, clamp)
    auto_out, auto_grad = run(memory_scan_chunked, inputs, W, S, torch.float64, 8, activation, mask3,
                              clamp, backward="autograd")
    for mode in ("recompute", "cache"):
        out, grad = run(memory_scan_chunked, inputs, W, S, torch.float64, 8, activation, mask3, clamp,
                        backward=mode)
        for a, b, c in zip(out + grad, auto_out + auto_grad, ref_out + ref_grad, strict=True):
            assert rel(a, b) < 1e-9 and rel(a, c) < 1e-9


def test_public_op_streaming_equals_one_call():
    inputs, W, S = make_inputs(T=96, depth=2, seed=3)
    y_full, (W_T, S_T) = memory_scan(*inputs, weights=W, momentum=S, chunk_size=16)
    state = (W, S)
    ys = []
    for a, b in [(0, 32), (32, 48), (48, 96)]:  # cut points on chunk boundaries
        part = [t[:, a:b] for t in inputs]
        y, state = memory_scan(*part, weights=state[0], momentum=state[1], chunk_size=16)
        ys.append(y)
    torch.testing.assert_close(torch.cat(ys, 1), y_full, rtol=1e-5, atol=1e-6)
    for a, b in zip(state[0] + state[1], W_T + S_T, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_depth1_without_momentum_is_a_gated_delta_rule():
    """eta = 0, depth 1, chunk 1: W_t = (1 - alpha_t) W_{t-1} + 2 theta_t (v_t - W_{t-1} k_t) k_t^T,
    i.e. the gated delta rule with Titans' ordering (the error is measured against W_{t-1}; Gated
    DeltaNet measures it against the decayed state, the same thing when alpha = 0)."""
    inputs, W, _ = make_inputs(T=50, depth=1, seed=11)
    q, k, v, alpha, eta, theta = inputs
    eta = torch.zeros_like(eta)
    y, (W_T, S_T) = memory_scan(q, k, v, alpha, eta, theta, weights=W, chunk_size=1)
    Wt = W[0].clone()
    ys = []
    for t in range(q.shape[1]):
        kt, vt = k[:, t].unsqueeze(-1), v[:, t].unsqueeze(-1)  # [B, H, d, 1]
        err = vt - Wt @ kt
        Wt = (1 - alpha[:, t])[..., None, None] * Wt + 2 * theta[:, t][..., None, None] * err @ kt.transpose(-1, -2)
        ys.append((Wt @ q[:, t].unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(y, torch.stack(ys, 1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(W_T[0], Wt, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["reference", "chunked"])
def test_masked_tokens_write_nothing(backend):
    inputs, W, S = make_inputs(T=40, depth=2, seed=5)
    q, k, v, alpha, eta, theta = inputs
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[:, 10:14] = False
    mask[1, 30] = False
    # on masked tokens, a neutral gate (no decay, momentum carried as is) must leave S unchanged
    alpha = alpha.masked_fill(~mask[..., None], 0.0)
    eta = eta.masked_fill(~mask[..., None], 1.0)
    y, (W_T, S_T) = memory_scan(q, k, v, alpha, eta, theta, weights=W, momentum=S, chunk_size=4,
                                mask=mask, backend=backend)
    # whatever the keys and values of unobserved tokens are, nothing changes
    k2, v2 = k.clone(), v.clone()
    k2[~mask] = F.normalize(torch.randn_like(k2[~mask]), dim=-1)
    v2[~mask] = 100 * torch.randn_like(v2[~mask])
    y2, (W2, S2) = memory_scan(q, k2, v2, alpha, eta, theta, weights=W, momentum=S, chunk_size=4,
                               mask=mask, backend=backend)
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(S2[0], S_T[0])
    # the surprise is unchanged across a masked token (chunk 1: per-token recurrence)
    _, (_, S_a) = memory_scan(*[t[:, :10] for t in (q, k, v, alpha, eta, theta)], weights=W,
                              momentum=S, chunk_size=1, mask=mask[:, :10], backend=backend)
    _, (_, S_b) = memory_scan(*[t[:, :14] for t in (q, k, v, alpha, eta, theta)], weights=W,
                              momentum=S, chunk_size=1, mask=mask[:, :14], backend=backend)
    for a, b in zip(S_a, S_b, strict=True):
        torch.testing.assert_close(a, b)


def test_short_and_ragged_sequences_update_the_memory():
    """T < chunk_size and T not a multiple of it still write (a bug reported elsewhere)."""
    inputs, W, S = make_inputs(T=5, depth=2, seed=2)
    _, (W_T, _) = memory_scan(*inputs, weights=W, momentum=S, chunk_size=64)
    assert (W_T[0] - W[0]).abs().max() > 1e-4
    ref = memory_scan(*inputs, weights=W, momentum=S, chunk_size=5, backend="reference")
    torch.testing.assert_close(memory_scan(*inputs, weights=W, momentum=S, chunk_size=64)[0], ref[0],
                               rtol=1e-5, atol=1e-6)


def test_bf16_inputs_fp32_state():
    inputs, W, S = make_inputs(T=33, depth=2, seed=4)
    y32, (W32, _) = memory_scan(*inputs, weights=W, momentum=S, chunk_size=8)
    lowp = [t.to(torch.bfloat16) for t in inputs[:3]] + inputs[3:]
    y16, (W16, S16) = memory_scan(*lowp, weights=W, momentum=S, chunk_size=8)
    assert y16.dtype == torch.bfloat16 and W16[0].dtype == torch.float32
    assert rel(y16.float(), y32) < 3e-2


def test_shared_initial_weights_broadcast_over_batch():
    inputs, W, _ = make_inputs(T=9, depth=2, seed=6)
    shared = [w[0] for w in W]  # [H, d_out, d_in]
    y1, _ = memory_scan(*inputs, weights=shared, chunk_size=4)
    y2, _ = memory_scan(*inputs, weights=[w.unsqueeze(0).expand(2, *w.shape) for w in shared], chunk_size=4)
    torch.testing.assert_close(y1, y2)


@pytest.mark.parametrize("backend", ["reference", "chunked"])
def test_inference_under_no_grad_with_trainable_weights(backend):
    # evaluation of a model: weights that require grad, read under torch.no_grad()
    inputs, W, _ = make_inputs(T=21, depth=2, seed=8)
    params = [w[0].clone().requires_grad_(True) for w in W]
    y_grad, _ = memory_scan(*inputs, weights=params, chunk_size=8, backend=backend)
    with torch.no_grad():
        y_nograd, _ = memory_scan(*inputs, weights=params, chunk_size=8, backend=backend)
    assert not y_nograd.requires_grad
    torch.testing.assert_close(y_nograd, y_grad.detach())


def test_keys_and_values_computed_from_the_weights_are_held_fixed_in_the_inner_gradient():
    """The surprise is the partial gradient of ||M_W(k) - v||^2 in W: keys and values computed
    from the memory's own weights (MAC writes what it read from the memory) change nothing in
    it. The reference once took the total derivative there, through k and v as well."""
    inputs, W, S = make_inputs(T=9, depth=2, seed=11)
    W = [w.double().requires_grad_(True) for w in W]
    q, k, v, alpha, eta, theta = (t.double() for t in inputs)
    k = F.normalize(k + 0.1 * W[0].sum(), dim=-1)  # keys and values that depend on the weights
    v = v * (1 + 0.1 * W[1].sum())
    outs = {}
    for backend in ("reference", "chunked"):
        y, _ = memory_scan(q, k, v, alpha, eta, theta, weights=W, chunk_size=4, backend=backend)
        y_fixed, _ = memory_scan(q, k.detach(), v.detach(), alpha, eta, theta, weights=W, chunk_size=4,
                                 backend=backend)
        torch.testing.assert_close(y, y_fixed, rtol=1e-12, atol=1e-12)
        outs[backend] = y
    torch.testing.assert_close(outs["reference"], outs["chunked"], rtol=1e-10, atol=1e-10)
    # and the gradients through those keys and values agree too
    probe = torch.linspace(-1, 1, outs["chunked"].shape[-1], dtype=torch.float64)
    g_ref = torch.autograd.grad((outs["reference"] * probe).sum(), W, retain_graph=True)
    g_chk = torch.autograd.grad((outs["chunked"] * probe).sum(), W)
    for a, b in zip(g_ref, g_chk, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("backward,T,final", [(m, T, f) for m in ("autograd", "recompute", "cache")
                                               for T in (7, 21) for f in (True, False)])
def test_shared_weights_gradients_equal_materialised_copies(backward, T, final):
    """3-D initial weights (kept 3-D inside the scan, gradient reduced over the batch by its
    matmuls) == the same weights copied per sequence, in outputs, final state and gradients; one
    chunk (T=7) and several (T=21), final state read or not."""
    inputs, W, _ = make_inputs(T=T, depth=2, seed=11)
    base = [w[0].clone() for w in W]
    outs = []
    for shared in (True, False):
        leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
        init = [b.detach().clone().requires_grad_(True) for b in base]
        weights = init if shared else [w.unsqueeze(0).expand(2, *w.shape).contiguous() for w in init]
        y, state = memory_scan_chunked(*leaves, weights, [torch.zeros_like(w) for w in weights], 8,
                                       "silu", backward=backward, output_final_state=final)
        loss = (y * torch.linspace(-1, 1, y.shape[-1])).sum()
        if final:
            loss = loss + sum((w * w).sum() for w in state[0]) + sum((s * 0.5).sum() for s in state[1])
        grads = torch.autograd.grad(loss, leaves + init)
        outs.append([y.detach(), *(state[0] if final else ()), *grads])
    for a, b in zip(*outs, strict=True):
        assert a.shape == b.shape and rel(a, b) < 1e-5


@pytest.mark.parametrize(
    "mutate,error,pattern",
    [
        (lambda a: a.__setitem__(0, a[0][..., :4]), ValueError, r"q and k must have the same shape"),
        (lambda a: a.__setitem__(2, a[2][:, :3]), ValueError, r"v must be \[B, T, H, d_v\]"),
        (lambda a: a.__setitem__(3, a[3] + 1.5), ValueError, r"alpha must lie in \[0.0, 1.0\]"),
        (lambda a: a.__setitem__(4, a[4] * float("nan")), ValueError, r"eta must lie in"),
        (lambda a: a.__setitem__(5, -a[5] - 0.1), ValueError, r"theta must lie in >= 0"),
        (lambda a: a.__setitem__(5, a[5][..., 0]), ValueError, r"theta must be \[B, T, H\]"),
        (lambda a: a.__setitem__(0, a[0].long()), TypeError, r"q must be a floating-point tensor"),
    ],
)
def test_validation_errors(mutate, error, pattern):
    inputs, W, _ = make_inputs(T=6, depth=2)
    mutate(inputs)
    with pytest.raises(error, match=pattern):
        memory_scan(*inputs, weights=W)


def test_validation_of_options():
    inputs, W, _ = make_inputs(T=6, depth=2)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        memory_scan(*inputs, weights=W, chunk_size=0)
    with pytest.raises(ValueError, match="activation must be one of"):
        memory_scan(*inputs, weights=W, activation="swish")
    with pytest.raises(ValueError, match="backend must be one of"):
        memory_scan(*inputs, weights=W, backend="cuda")
    with pytest.raises(ValueError, match="last memory layer must output d_v = 8"):
        memory_scan(*inputs, weights=W[:1] + [W[1][:, :, :4]])
    with pytest.raises(ValueError, match=r"weights\[1\] must be \[B=2, H=2, d_out, d_in=16\]"):
        memory_scan(*inputs, weights=[W[0], W[1][..., :5]])
    with pytest.raises(ValueError, match="mask must be"):
        memory_scan(*inputs, weights=W, mask=torch.ones(2, 5))


@pytest.mark.parametrize("dk,dh,dv", [(16, 8, 16), (8, 16, 8), (8, 8, 12)])
def test_both_state_layouts_match_autograd_and_reference(dk, dh, dv):
    """Each layer stacks its weights and momentum on its narrower side ([W; S] when it scales
    its outputs, [W^T; S^T] when it scales its inputs): both layouts, in either layer, == the
    autograd twin == the fp64 per-token reference, final state and gradients included."""
    inputs, W, S = make_inputs(T=21, dk=dk, dh=dh, dv=dv, depth=2, seed=dk + dh + dv)
    ref_out, ref_grad = run(memory_scan_reference, inputs, W, S, torch.float64, 8)
    auto_out, auto_grad = run(memory_scan_chunked, inputs, W, S, torch.float64, 8, backward="autograd")
    for mode in ("recompute", "cache"):
        out, grad = run(memory_scan_chunked, inputs, W, S, torch.float64, 8, backward=mode)
        for a, b, c in zip(out + grad, auto_out + auto_grad, ref_out + ref_grad, strict=True):
            assert rel(a, b) < 1e-9 and rel(a, c) < 1e-9


@pytest.mark.parametrize("last", [15, 6])
def test_per_chunk_gate_coefficients_match_autograd(last):
    """The scan's per-chunk gate coefficients and their hand-derived backward == the all-chunks
    autograd version (the Triton backend's and the autograd twin's), at the log floors too
    (alpha = 1, eta = 0) and for a padded final chunk."""
    from titans_ts.kernels.memory_scan.chunked import (
        COEF_KEYS,
        _gates_backward,
        _gates_forward,
        chunk_gate_coefficients,
    )

    g = torch.Generator().manual_seed(last)
    alpha = torch.rand(2, 3, 16, generator=g, dtype=torch.float64) * 0.3
    eta = torch.rand(2, 3, 16, generator=g, dtype=torch.float64)
    alpha[0, 0, 3], eta[0, 1, 5], alpha[1, 2, 7], eta[1, 0, 2] = 1.0, 0.0, 1 - 1e-31, 1e-31
    leaves = [alpha.clone().requires_grad_(True), eta.clone().requires_grad_(True)]
    ref = chunk_gate_coefficients(leaves[0][:, :, None], leaves[1][:, :, None], torch.tensor([last]))
    ref = {key: val[:, :, 0] for key, val in ref.items()}
    coef, saved = _gates_forward(alpha, eta, last)
    dcoef = {key: torch.randn(val.shape, generator=g, dtype=torch.float64) for key, val in coef.items()}
    ref_grads = torch.autograd.grad([ref[key] for key in COEF_KEYS], leaves,
                                    [dcoef[key] for key in COEF_KEYS])
    for key in COEF_KEYS:
        torch.testing.assert_close(coef[key], ref[key].detach(), rtol=1e-12, atol=0.0)
    for a, b in zip(_gates_backward(saved, dcoef), ref_grads, strict=True):
        assert rel(a, b) < 1e-12


def test_state_buffers_reused_across_calls_change_nothing():
    """The chunk-start states kept for the backward live in buffers reused from one call to the
    next: repeated calls (and the pool switched off) give the same outputs, gradients and final
    state, and a returned final state is never one of the reused buffers."""
    from titans_ts.kernels.memory_scan import chunked

    inputs, W, S = make_inputs(T=37, depth=2, seed=12)
    pool = chunked._STATE_POOL
    pool.clear()
    first = run(memory_scan_chunked, inputs, W, S, torch.float32, 8, backward="cache")
    assert pool._free, "the backward hands its state buffers back"
    kept = [t.clone() for t in first[0]]
    second = run(memory_scan_chunked, inputs, W, S, torch.float32, 8, backward="cache")
    pool.enabled = False
    try:
        pool.clear()
        third = run(memory_scan_chunked, inputs, W, S, torch.float32, 8, backward="cache")
    finally:
        pool.enabled = True
    for a, b, c, d in zip(first[0] + first[1], second[0] + second[1], third[0] + third[1],
                          kept + first[1], strict=True):
        assert torch.equal(a, b) and torch.equal(a, c) and torch.equal(a, d)


@pytest.mark.parametrize("activation", ["silu", "gelu", "tanh", "relu", "identity"])
def test_fused_second_derivative_matches_plain(activation):
    from titans_ts.kernels.memory_scan.common import activation_grad2, mul_activation_grad2_

    z = torch.linspace(-6, 6, 301, dtype=torch.float64)
    x = torch.randn(301, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(mul_activation_grad2_(activation, x.clone(), z),
                               x * activation_grad2(activation, z), rtol=1e-12, atol=1e-15)


def test_dtypes_are_checked():
    inputs, W, S = make_inputs(T=6, depth=2)
    with pytest.raises(TypeError, match="q, k and v must share one dtype; got q torch.float64"):
        memory_scan(inputs[0].double(), *inputs[1:], weights=W)
    with pytest.raises(TypeError, match=r"weights\[0\] must be a floating-point tensor, got torch.int64"):
        memory_scan(*inputs, weights=[W[0].long(), W[1]])
    with pytest.raises(TypeError, match=r"every memory layer's weights must share one dtype"):
        memory_scan(*inputs, weights=[W[0], W[1].double()])
    with pytest.raises(TypeError, match=r"momentum\[1\] must be a floating-point tensor, got torch.int32"):
        memory_scan(*inputs, weights=W, momentum=[S[0], S[1].int()])
    with pytest.raises(TypeError, match=r"momentum\[0\] must have the weights' dtype torch.float32"):
        memory_scan(*inputs, weights=W, momentum=[S[0].double(), S[1]])


@pytest.mark.parametrize("backend", ["reference", "chunked"])
def test_a_fractional_mask_is_a_partial_write(backend):
    """mask m in (0, 1) writes a token with inner learning rate m * theta (documented); outside
    [0, 1] it is refused."""
    inputs, W, S = make_inputs(T=9, depth=2, seed=3)
    m = torch.rand(2, 9, generator=torch.Generator().manual_seed(0))
    y, (WT, _) = memory_scan(*inputs, weights=W, momentum=S, mask=m, chunk_size=4, backend=backend)
    scaled = inputs[:5] + [inputs[5] * m[:, :, None]]
    y2, (WT2, _) = memory_scan(*scaled, weights=W, momentum=S, chunk_size=4, backend=backend)
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(WT[0], WT2[0])
    for bad in (m * 2, m - 0.5, m * float("nan")):
        with pytest.raises(ValueError, match=r"mask must be bool or hold numbers in \[0, 1\]"):
            memory_scan(*inputs, weights=W, mask=bad, backend=backend)


@pytest.mark.parametrize("which", ["q", "v", "weights", "momentum"])
def test_non_finite_inputs_are_refused(which):
    inputs, W, S = make_inputs(T=6, depth=2)
    if which in ("q", "v"):
        i = {"q": 0, "v": 2}[which]
        inputs[i] = inputs[i].clone()
        inputs[i][0, 3, 1, 0] = float("inf")
        name = which
    elif which == "weights":
        W = [W[0], W[1].clone()]
        W[1][1, 0, 0, 0] = float("nan")
        name = r"weights\[1\]"
    else:
        S = [S[0].clone(), S[1]]
        S[0][0, 0, 0, 0] = float("-inf")
        name = r"momentum\[0\]"
    with pytest.raises(ValueError, match=rf"{name} holds non-finite values \(inf / NaN\)"):
        memory_scan(*inputs, weights=W, momentum=S)


def test_a_second_backward_through_the_chunked_scan_is_a_clear_error():
    """The chunked backward frees the chunk states it saved: a second walk of the graph
    (retain_graph=True) says so instead of failing inside the op."""
    inputs, W, S = make_inputs(T=21, depth=2)
    inputs = [x.requires_grad_() for x in inputs]
    y, _ = memory_scan(*inputs, weights=W, momentum=S, chunk_size=4, backend="chunked")
    y.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="a second backward through the chunked memory scan"):
        y.sum().backward()
    y, _ = memory_scan(*inputs, weights=W, momentum=S, chunk_size=4, backend="reference")
    y.sum().backward(retain_graph=True)
    y.sum().backward()


@pytest.mark.parametrize("backend", ["reference", "chunked"])
def test_finite_inputs_that_overflow_are_an_error_not_a_non_finite_output(backend):
    """Issue 35: keys and values near 1e20 are finite (so they pass the input check), but the
    inner updates overflow float32; the op says so instead of returning inf / NaN."""
    inputs, W, S = make_inputs(T=9, depth=2)
    inputs[1], inputs[2] = inputs[1] * 1e20, inputs[2] * 1e20
    with pytest.raises(FloatingPointError, match=r"memory_scan's output is not finite although its inputs are: "
                                                 r"their magnitude overflows float32 in the memory's updates "
                                                 r"\(largest \|q\| .*, \|k\| .*e\+19, \|v\| .*e\+20\)"):
        memory_scan(*inputs, weights=W, momentum=S, chunk_size=4, backend=backend)
    y, _ = memory_scan(*make_inputs(T=9, depth=2)[0], weights=W, momentum=S, chunk_size=4, backend=backend)
    assert torch.isfinite(y).all()  # ordinary inputs go through
