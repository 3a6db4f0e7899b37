"""Each fused op equals its plain twin, in values and gradients (and passes gradcheck)."""

from __future__ import annotations

import pytest
import torch

from titans_ts.model.fused import (
    causal_conv_silu,
    causal_conv_silu_reference,
    gated_rms_norm,
    gated_rms_norm_reference,
    l2_normalize,
    l2_normalize_reference,
)


@pytest.mark.parametrize("T,K,with_cache,with_bias", [(17, 4, False, True), (17, 4, True, True),
                                                      (2, 4, True, False), (9, 1, False, True),
                                                      (5, 3, True, True)])
def test_fused_matches_reference(T, K, with_cache, with_bias):
    g = torch.Generator().manual_seed(T * 10 + K)
    x = torch.randn(3, T, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, K, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True) if with_bias else None
    c = torch.randn(3, K - 1, 6, generator=g, dtype=torch.float64, requires_grad=True) if with_cache else None
    leaves = [t for t in (x, w, b, c) if t is not None]
    y_ref = causal_conv_silu_reference(x, w, b, c)
    y = causal_conv_silu(x, w, b, c)
    torch.testing.assert_close(y, y_ref)
    probe = torch.randn(y.shape, generator=g, dtype=torch.float64)
    g_ref = torch.autograd.grad((y_ref * probe).sum(), leaves)
    g_new = torch.autograd.grad((causal_conv_silu(x, w, b, c) * probe).sum(), leaves)
    for a, r in zip(g_new, g_ref, strict=True):
        torch.testing.assert_close(a, r)
    assert torch.autograd.gradcheck(lambda *a: causal_conv_silu(*a), (x, w, b, c))


def test_shape_errors():
    with pytest.raises(ValueError, match=r"x must be \[B, T, C\] and weight \[C, K\]"):
        causal_conv_silu(torch.randn(2, 5, 4), torch.randn(3, 4))
    with pytest.raises(ValueError, match="cache must be"):
        causal_conv_silu(torch.randn(2, 5, 4), torch.randn(4, 4), None, torch.randn(2, 2, 4))


def test_l2_normalize_matches_reference():
    x = torch.randn(3, 7, 2, 5, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(l2_normalize(x), l2_normalize_reference(x))
    assert torch.autograd.gradcheck(l2_normalize, (x,))
    probe = torch.randn(3, 7, 2, 5, dtype=torch.float64)
    g1 = torch.autograd.grad((l2_normalize(x) * probe).sum(), x)[0]
    g2 = torch.autograd.grad((l2_normalize_reference(x) * probe).sum(), x)[0]
    torch.testing.assert_close(g1, g2)


def test_gated_rms_norm_matches_reference():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, 4, 3, 6, generator=g, dtype=torch.float64).transpose(1, 2).requires_grad_(True)
    gate = torch.randn(2, 3, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(gated_rms_norm(y, w, gate), gated_rms_norm_reference(y, w, gate))
    assert torch.autograd.gradcheck(gated_rms_norm, (y, w, gate))
    probe = torch.randn(2, 3, 4, 6, generator=g, dtype=torch.float64)
    g1 = torch.autograd.grad((gated_rms_norm(y, w, gate) * probe).sum(), (y, w, gate))
    g2 = torch.autograd.grad((gated_rms_norm_reference(y, w, gate) * probe).sum(), (y, w, gate))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="gate must match y"):
        gated_rms_norm(y, w, gate[..., :3])
