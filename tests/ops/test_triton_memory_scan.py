"""Triton kernels == chunked PyTorch backend, values and gradients (fp32 relative error < 1e-4).

On CPU these run through Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1 when no
CUDA device is present), at small shapes; on a CUDA machine the same tests run on the GPU.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

triton_backend = pytest.importorskip("titans_ts.kernels.memory_scan.triton",
                                   reason="triton is not installed on this platform")
from titans_ts import memory_scan  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not triton_backend.interpreter_enabled():
    pytest.skip("no CUDA device and TRITON_INTERPRET is off", allow_module_level=True)


def make(B=1, T=40, H=2, dk=16, dv=16, dh=32, depth=2, seed=0, dtype=torch.float32, momentum=True):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(B, T, H, dk, generator=g), dim=-1)
    k = F.normalize(torch.randn(B, T, H, dk, generator=g), dim=-1)
    v = torch.randn(B, T, H, dv, generator=g)
    gates = [torch.rand(B, T, H, generator=g) * 0.2, torch.rand(B, T, H, generator=g),
             torch.rand(B, T, H, generator=g) * 0.1]
    dims = [dk] + [dh] * (depth - 1) + [dv]
    W = [torch.randn(B, H, dims[i + 1], dims[i], generator=g) / dims[i] ** 0.5 for i in range(depth)]
    S = [torch.randn(w.shape, generator=g) * 0.02 * momentum for w in W]
    to = lambda t: t.to(DEVICE)  # noqa: E731
    return [to(q).to(dtype), to(k).to(dtype), to(v).to(dtype)] + [to(x) for x in gates], \
        [to(w) for w in W], [to(s) for s in S]


def outputs_and_grads(backend, inputs, W, S, chunk_size, mask=None, activation="silu"):
    leaves = [t.detach().clone().requires_grad_(True) for t in [*inputs, *W, *S]]
    L = len(W)
    y, (WT, ST) = memory_scan(*leaves[:6], weights=leaves[6:6 + L], momentum=leaves[6 + L:],
                              chunk_size=chunk_size, mask=mask, backend=backend,
                              activation=activation)
    probe = torch.linspace(-1, 1, y.shape[-1], device=y.device)
    loss = (y.float() * probe).sum() + sum((w * 0.3).sum() for w in WT) + sum((s * s).sum() for s in ST)
    grads = torch.autograd.grad(loss, leaves)
    return [y.float(), *WT, *ST], [g.float() for g in grads]


def rel(a, b):
    return ((a.double() - b.double()).norm() / (b.double().norm() + 1e-30)).item()


@pytest.mark.parametrize("depth,chunk_size,T,masked,init_state", [
    (1, 16, 40, False, True),
    (1, 32, 37, True, False),
    (2, 16, 40, False, True),
    (2, 16, 50, True, True),
    (2, 32, 20, False, False),  # T < chunk size
    (2, 16, 32, True, False),   # T a multiple of the chunk
])
def test_triton_matches_chunked(depth, chunk_size, T, masked, init_state):
    inputs, W, S = make(T=T, depth=depth, seed=depth + chunk_size + T, momentum=init_state)
    mask = None
    if masked:
        mask = (torch.rand(1, T, generator=torch.Generator().manual_seed(T)) > 0.3).to(DEVICE)
    ref_out, ref_grad = outputs_and_grads("chunked", inputs, W, S, chunk_size, mask)
    out, grad = outputs_and_grads("triton", inputs, W, S, chunk_size, mask)
    for i, (a, b) in enumerate(zip(out, ref_out, strict=True)):
        assert rel(a, b) < 1e-4, f"output {i}: {rel(a, b):.2e}"
    names = ["q", "k", "v", "alpha", "eta", "theta"] + [f"W{i}" for i in range(depth)] + [f"S{i}" for i in range(depth)]
    for name, a, b in zip(names, grad, ref_grad, strict=True):
        assert rel(a, b) < 1e-4, f"d/d{name}: {rel(a, b):.2e}"


@pytest.mark.parametrize("activation", ["gelu", "tanh"])
def test_triton_other_activations(activation):
    inputs, W, S = make(T=24, depth=2, seed=9)
    ref_out, ref_grad = outputs_and_grads("chunked", inputs, W, S, 16, activation=activation)
    out, grad = outputs_and_grads("triton", inputs, W, S, 16, activation=activation)
    for a, b in zip(out + grad, ref_out + ref_grad, strict=True):
        assert rel(a, b) < 1e-4


def test_triton_unpadded_feature_widths():
    """Widths that are not powers of two are zero-padded tiles: still exact."""
    inputs, W, S = make(T=20, depth=2, dk=12, dv=20, dh=24, seed=4)
    ref_out, ref_grad = outputs_and_grads("chunked", inputs, W, S, 16)
    out, grad = outputs_and_grads("triton", inputs, W, S, 16)
    for a, b in zip(out + grad, ref_out + ref_grad, strict=True):
        assert rel(a, b) < 1e-4


@pytest.mark.skipif(DEVICE != "cuda", reason="half-precision inputs are a GPU path")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_triton_half_inputs(dtype):
    inputs, W, S = make(T=64, depth=2, seed=5, dtype=dtype)
    out, _ = outputs_and_grads("triton", inputs, W, S, 16)
    ref, _ = outputs_and_grads("chunked", [t.float() for t in inputs], W, S, 16)
    assert rel(out[0], ref[0]) < 2e-2 and out[1].dtype == torch.float32


def test_triton_rejects_what_it_does_not_support():
    inputs, W, S = make(T=16, depth=2)
    with pytest.raises(ValueError, match="power of two >= 16"):
        memory_scan(*inputs, weights=W, chunk_size=8, backend="triton")
    with pytest.raises(ValueError, match="surprise_clamp"):
        memory_scan(*inputs, weights=W, chunk_size=16, backend="triton", surprise_clamp=1.0)
    inputs3, W3, _ = make(T=16, depth=3)
    with pytest.raises(ValueError, match="depth 1 or 2"):
        memory_scan(*inputs3, weights=W3, chunk_size=16, backend="triton")


def test_auto_takes_triton_on_cuda_only_at_widths_checked_on_a_gpu():
    """backend="auto" on CUDA tensors: triton within ``GPU_CHECKED`` (the recipes' networks:
    width 16, hidden 32), chunked beyond it (depth 2, width 64, hidden 128: not yet compiled
    and checked on a GPU), and never on CPU tensors."""
    from titans_ts.kernels.memory_scan.op import _triton_for

    def w(*dims):  # [H, d_out, d_in] per layer
        return [torch.zeros(2, dims[i + 1], dims[i]) for i in range(len(dims) - 1)]

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert _triton_for(cuda, w(16, 32, 16), 16, "silu", None)
    assert _triton_for(cuda, w(12, 24, 20), 16, "silu", None)   # padded to 16 / 32 / 32
    assert _triton_for(cuda, w(64, 64), 64, "silu", None)        # depth 1, head width 64
    assert not _triton_for(cuda, w(64, 128, 64), 64, "silu", None)
    assert not _triton_for(cuda, w(32, 64, 32), 16, "silu", None)
    assert not _triton_for(cuda, w(128, 128), 64, "silu", None)
    assert not _triton_for(cuda, w(16, 32, 16), 8, "silu", None)  # chunk not a power of two >= 16
    assert not _triton_for(cpu, w(16, 32, 16), 16, "silu", None)


def test_selfcheck_passes(capsys):
    """``python -m titans_ts.kernels.selfcheck`` (here at its small interpreter shapes, or at its
    real shapes on a GPU): exit status 0 and a verdict line."""
    if DEVICE == "cuda":
        pytest.skip("at real shapes the self-check compiles for minutes: run it by hand on a GPU")
    from titans_ts.kernels.selfcheck import main

    assert main(["--depths", "1"]) == 0
    out = capsys.readouterr().out
    assert "depth 1 fp32" in out and "-> ok" in out and out.rstrip().endswith("self-check passed")
