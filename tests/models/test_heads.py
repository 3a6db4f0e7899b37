"""Heads as objects: one interface (outputs, loss, point, quantiles, samples) for every head."""

from __future__ import annotations

import math

import pytest
import torch

from titans_ts.model.heads import PointHead, QuantileHead, StudentTHead, make_head
from titans_ts.model.network import RevIN


def _raw(head, B=3, H=4, C=2):
    torch.manual_seed(0)
    return torch.randn(B, H, C, head.n_outputs)


@pytest.mark.parametrize("kind", ["point", "quantile", "student_t"])
def test_interface_shapes_and_denormalisation(kind):
    head = make_head(kind, quantiles=(0.1, 0.5, 0.9))
    raw = _raw(head)
    revin = RevIN()
    x = torch.randn(3, 10, 2) * 4 + 7
    _, stats = revin.normalize(x, None)
    out, out_scaled = head(raw), head(raw, revin, stats)
    assert head.point(out).shape == (3, 4, 2)
    mean, std = stats
    # the point forecast maps back to the data's scale exactly
    torch.testing.assert_close(head.point(out_scaled), head.point(out) * std + mean)
    target = torch.randn(3, 4, 2)
    loss = head.loss(out, target, torch.ones_like(target, dtype=torch.bool))
    assert loss.dim() == 0 and torch.isfinite(loss)
    if kind == "point":
        with pytest.raises(ValueError, match="probabilistic head"):
            head.quantiles(out, [0.5])
        with pytest.raises(ValueError, match="probabilistic head"):
            head.sample(out, 4)
        assert head.band_levels is None
    else:
        q = head.quantiles(out, [0.1, 0.9])
        assert q.shape == (3, 4, 2, 2) and (q[..., 0] <= q[..., 1]).all()
        s = head.sample(out, 200)
        assert s.shape == (200, 3, 4, 2)


def test_quantile_head_is_monotone_and_reads_only_trained_levels():
    head = QuantileHead((0.1, 0.5, 0.9))
    out = head(_raw(head))
    assert (out[..., 1:] >= out[..., :-1]).all()
    torch.testing.assert_close(head.point(out), out[..., 1])
    with pytest.raises(ValueError, match="not among them"):
        head.quantiles(out, [0.25])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        head.quantiles(out, [1.5])
    # samples lie between the lowest and the highest level, and their median is near the median
    torch.manual_seed(1)
    s = head.sample(out, 40000)
    assert s.shape == (40000, *out.shape[:-1])
    assert (s >= out[..., 0] - 1e-6).all() and (s <= out[..., -1] + 1e-6).all()
    torch.testing.assert_close(s.median(0).values, out[..., 1], atol=0.05, rtol=0.0)

    def below(x, strict=False):  # per element, the fraction of samples below x
        return ((s < x) if strict else (s <= x)).float().mean(0)

    # the empirical CDF at each trained level is that level (binomial sd ~ 0.0025 at 40000
    # draws). Draws below the lowest / above the highest level take that level's value, so the
    # lowest level is reached from above (P(s <= q0.1) = 0.1, P(s < q0.1) = 0) and the highest
    # from below (P(s < q0.9) = 0.9, P(s <= q0.9) = 1).
    assert (below(out[..., 0]) - 0.1).abs().max() < 0.02
    assert below(out[..., 0], strict=True).max() == 0.0
    assert (below(out[..., 1]) - 0.5).abs().max() < 0.02
    assert (below(out[..., 1], strict=True) - 0.5).abs().max() < 0.02
    assert (below(out[..., 2], strict=True) - 0.9).abs().max() < 0.02
    assert below(out[..., 2]).min() == 1.0
    # between two levels the quantile function is linear: half-way between q0.1 and q0.5 is q0.3
    assert (below((out[..., 0] + out[..., 1]) / 2) - 0.3).abs().max() < 0.02
    assert (below((out[..., 1] + out[..., 2]) / 2) - 0.7).abs().max() < 0.02
    assert (below(0.75 * out[..., 0] + 0.25 * out[..., 1]) - 0.2).abs().max() < 0.02


def test_student_t_quantiles_match_its_distribution():
    head = StudentTHead()
    dist = head(_raw(head))
    q = head.quantiles(dist, [0.5])[..., 0]
    torch.testing.assert_close(q, dist.loc)
    s = head.sample(dist, 20000)
    frac = (s <= head.quantiles(dist, [0.8])[..., 0]).float().mean(0)
    assert (frac - 0.8).abs().max() < 0.03


def test_scaled_loss_is_unit_free():
    """With a per-window scale, multiplying data and forecast by a constant leaves the loss of
    the point and quantile heads unchanged, and shifts the Student-t NLL by nothing either."""
    for head in (PointHead(), QuantileHead((0.2, 0.5, 0.8))):
        out = head(_raw(head))
        y = torch.randn(3, 4, 2)
        scale = torch.tensor([1.0, 2.0, 3.0])
        a = head.loss(out, y, None, scale=scale)
        b = head.loss(out * 1000.0, y * 1000.0, None, scale=scale * 1000.0)
        torch.testing.assert_close(a, b)

    # Student-t: the NLL of data x1000 grows by log(1000) per point; the scaled loss subtracts the
    # mean log scale over the observed points, which grows by the same amount
    head = StudentTHead()
    g = torch.Generator().manual_seed(2)
    df = 2.0 + 5.0 * torch.rand(3, 4, 2, generator=g, dtype=torch.float64)
    loc = torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
    sd = 0.5 + torch.rand(3, 4, 2, generator=g, dtype=torch.float64)
    y = loc + sd * torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
    scale = torch.tensor([0.5, 2.0, 30.0], dtype=torch.float64)
    mask = torch.rand(3, 4, 2, generator=g) > 0.3
    mask[2] = False  # a window with nothing observed: its scale must not count
    mask[2, 0, 0] = True

    def dist(k):
        return torch.distributions.StudentT(df, loc * k, sd * k)

    for m in (None, mask):
        a = head.loss(dist(1.0), y, m, scale=scale)
        b = head.loss(dist(1000.0), y * 1000.0, m, scale=scale * 1000.0)
        torch.testing.assert_close(a, b, rtol=0.0, atol=1e-9)
        # unscaled, the same change shifts the NLL by log(1000): the scaling is what removes it
        shift = head.loss(dist(1000.0), y * 1000.0, m) - head.loss(dist(1.0), y, m)
        torch.testing.assert_close(shift, torch.tensor(math.log(1000.0), dtype=torch.float64))
    # the scaled loss is the NLL of target / scale (what the docstring promises)
    s3 = scale.view(3, 1, 1)
    nll = -torch.distributions.StudentT(df, loc / s3, sd / s3).log_prob(y / s3)
    torch.testing.assert_close(head.loss(dist(1.0), y, mask, scale=scale), nll[mask].mean())
