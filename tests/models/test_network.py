"""TitansNet: the pipeline written out for every tokeniser x head, channel independence and order,
shapes, masks, RevIN, and that a tiny model can learn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from titans_ts.model.lightning_module import TitansLightningModule, pinball_loss, point_loss
from titans_ts.model.network import RevIN, TitansNet

MEM = dict(heads=2, depth=2, expansion=2.0, chunk_size=4)


def net(**kw):
    torch.manual_seed(0)
    args = dict(seq_len=32, horizon=8, d_model=16, n_layers=1, memory=MEM, dropout=0.0,
                patch_len=8, stride=4)
    args.update(kw)
    return TitansNet(**args)


@pytest.mark.parametrize("tokenizer", ["patch", "variate"])
@pytest.mark.parametrize("head", ["point", "quantile", "student_t"])
def test_shapes_forward_backward(tokenizer, head):
    m = net(tokenizer=tokenizer, head=head, quantiles=(0.1, 0.5, 0.9))
    past = torch.randn(5, 32, 3)
    out = m(past)
    if head == "point":
        assert out.shape == (5, 8, 3)
        loss = out.pow(2).mean()
    elif head == "quantile":
        assert out.shape == (5, 8, 3, 3)
        assert (out[..., 1:] >= out[..., :-1]).all(), "quantiles must not cross"
        loss = pinball_loss(out, torch.randn(5, 8, 3), (0.1, 0.5, 0.9))
    else:
        assert out.batch_shape == (5, 8, 3) and out.sample((2,)).shape == (2, 5, 8, 3)
        loss = -out.log_prob(torch.randn(5, 8, 3)).mean()
    loss.backward()
    assert m.point_forecast(out).shape == (5, 8, 3)
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def slow_forward(m, past, mask):
    """TitansNet's pipeline written out window by window and channel by channel: RevIN on the
    observed values, patches cut by index (the last value repeated ``stride`` times at the end)
    or one token per channel, the blocks, the final RMSNorm and map, the head's transform, RevIN
    undone. Returns the raw head outputs' meaning: [B, H, C, k] forecast values (point: k = 1,
    quantiles: one per level, student_t: location, scale, degrees of freedom)."""
    B, L, C = past.shape
    mf = mask.double()
    x = torch.where(mask, past, torch.zeros_like(past))
    n = mf.sum(1, keepdim=True).clamp_min(1.0)
    mean = (x * mf).sum(1, keepdim=True) / n
    std = torch.sqrt((((x - mean) * mf) ** 2).sum(1, keepdim=True) / n + m.revin.eps)
    z = (x - mean) / std * mf
    if m.tokenizer == "patch":
        P, S = m.patch_len, m.stride
        toks, tmask = [], []
        for b in range(B):
            for c in range(C):
                zs = torch.cat([z[b, :, c], z[b, -1:, c].repeat(S)])
                ms = torch.cat([mf[b, :, c], mf[b, -1:, c].repeat(S)])
                toks.append(torch.stack([torch.cat([zs[i * S:i * S + P], ms[i * S:i * S + P]])
                                         for i in range(m.n_tokens)]))
                tmask.append(torch.stack([ms[i * S:i * S + P].max() > 0 for i in range(m.n_tokens)]))
        h = F.linear(torch.stack(toks), m.embed.weight, m.embed.bias) + m.pos  # [B * C, tokens, d]
        tmask = torch.stack(tmask)
    else:
        tok = torch.stack([torch.stack([torch.cat([z[b, :, c], mf[b, :, c]]) for c in range(C)]) for b in range(B)])
        h = F.linear(tok, m.embed.weight, m.embed.bias)  # [B, C, d]: the channels are the tokens
        tmask = mf.amax(1) > 0
    for block in m.blocks:
        h, _ = block(h, None, tmask)
    h = h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + m.norm.eps) * m.norm.weight
    k = m.head.n_outputs
    raw = F.linear(h.reshape(B, C, -1), m.proj.weight, m.proj.bias).view(B, C, m.horizon, k).permute(0, 2, 1, 3)
    std, mean = std.view(B, 1, C, 1), mean.view(B, 1, C, 1)
    if m.head.kind == "point":
        return raw * std + mean
    if m.head.kind == "quantile":
        levels = [raw[..., 0]]
        for j in range(1, k):
            levels.append(levels[-1] + F.softplus(raw[..., j]))
        return torch.stack(levels, -1) * std + mean
    loc = raw[..., 0] * std[..., 0] + mean[..., 0]
    scale = (F.softplus(raw[..., 1]) + 1e-3) * std[..., 0]
    return torch.stack([loc, scale, 2 + F.softplus(raw[..., 2])], -1)


@pytest.mark.parametrize("tokenizer", ["patch", "variate"])
@pytest.mark.parametrize("head", ["point", "quantile", "student_t"])
def test_the_forecast_is_the_pipeline_written_out(tokenizer, head):
    m = net(tokenizer=tokenizer, head=head, quantiles=(0.1, 0.5, 0.9), variant="mag").double().eval()
    torch.manual_seed(1)
    past = 3.0 + 2.0 * torch.randn(3, 32, 2, dtype=torch.float64)
    mask = torch.rand(3, 32, 2) > 0.2
    mask[1, -9:, 0] = False  # a channel whose last patches hold no observed value
    with torch.no_grad():
        out, want = m(past, mask), slow_forward(m, past, mask)
    if head == "student_t":
        out = torch.stack([out.loc, out.scale, out.df], -1)
    elif head == "point":
        out = out.unsqueeze(-1)
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", ["lmm", "mac", "mag", "mal", "attention", "none"])
def test_patches_forecast_every_window_and_channel_on_its_own(variant):
    """Patch tokens are channel-independent: a channel's forecast reads that channel of that
    window only, so changing one channel of one window changes its forecast and nothing else, and
    permuting the channels permutes the forecast."""
    m = net(variant=variant).eval()
    torch.manual_seed(1)
    past = torch.randn(3, 32, 4)
    changed = past.clone()
    changed[1, :, 2] = torch.randn(32)
    with torch.no_grad():
        a, b = m(past), m(changed)
        perm = torch.tensor([2, 0, 3, 1])
        torch.testing.assert_close(m(past[:, :, perm]), a[:, :, perm], rtol=1e-5, atol=1e-6)
    same = torch.ones_like(a, dtype=torch.bool)
    same[1, :, 2] = False
    torch.testing.assert_close(b[same], a[same], rtol=0, atol=0)
    assert (b[1, :, 2] - a[1, :, 2]).abs().min() > 1e-4


@pytest.mark.parametrize("variant", ["lmm", "mac", "mag", "mal", "attention"])
def test_variate_tokens_read_the_channels_in_order(variant):
    """With one token per channel the blocks run over the channel axis, causally: channel c's
    forecast reads channels 0..c only (exactly), and every later channel reads channel 0."""
    m = net(tokenizer="variate", variant=variant).eval()
    torch.manual_seed(1)
    past = torch.randn(2, 32, 4)
    last, first = past.clone(), past.clone()
    last[:, :, 3] = torch.randn(2, 32)
    first[:, :, 0] = torch.randn(2, 32)
    with torch.no_grad():
        a, b, c = m(past), m(last), m(first)
    torch.testing.assert_close(b[..., :3], a[..., :3], rtol=0, atol=0)
    assert (c[..., 1:] - a[..., 1:]).abs().amax(1).min() > 1e-5  # every (window, later channel)


def test_revin_makes_the_forecast_scale_equivariant():
    m = net().eval()
    past = torch.randn(2, 32, 3)
    with torch.no_grad():
        a = m(past)
        b = m(past * 10 + 3)
    torch.testing.assert_close(b, a * 10 + 3, rtol=1e-3, atol=1e-3)


def test_revin_last_center_subtracts_the_last_observed_value():
    torch.manual_seed(0)
    x = torch.randn(3, 10, 2)
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[0, 7:, 1] = False  # channel 1 of window 0: last observed step is 6
    out, (center, std) = RevIN(center="last").normalize(x, mask)
    for b in range(3):
        for c in range(2):
            obs = x[b, mask[b, :, c], c]
            last = obs[-1]
            sd = torch.sqrt(obs.var(unbiased=False) + 1e-5)
            torch.testing.assert_close(center[b, 0, c], last)
            torch.testing.assert_close(std[b, 0, c], sd)
            want = torch.where(mask[b, :, c], (x[b, :, c] - last) / sd, torch.zeros(()))
            torch.testing.assert_close(out[b, :, c], want)
    y = torch.randn(3, 4, 2)
    torch.testing.assert_close(RevIN(center="last").denormalize(y, (center, std)), y * std + center)
    with pytest.raises(ValueError, match="RevIN center must be one of"):
        RevIN(center="median")
    with pytest.raises(ValueError, match="RevIN center must be one of"):
        net(revin_center="first")


def test_revin_last_center_keeps_scale_equivariance_and_ignores_masked_values():
    m = net(revin_center="last").eval()
    past = torch.randn(2, 32, 3)
    mask = torch.ones_like(past, dtype=torch.bool)
    mask[:, -3:, 2] = False  # the final steps of a channel unobserved: the anchor moves back
    past2 = past.clone()
    past2[:, -3:, 2] = 1e4
    with torch.no_grad():
        a = m(past, mask)
        torch.testing.assert_close(m(past * 10 + 3, mask), a * 10 + 3, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(m(past2, mask), a)
        assert not torch.allclose(net(revin_center="mean").eval()(past, mask), a)


def test_masked_values_do_not_matter():
    m = net().eval()
    past = torch.randn(2, 32, 3)
    mask = torch.ones_like(past, dtype=torch.bool)
    mask[:, 5:9, 1] = False
    past2 = past.clone()
    past2[:, 5:9, 1] = 1e4
    with torch.no_grad():
        torch.testing.assert_close(m(past2, mask), m(past, mask))
    assert point_loss(torch.zeros(2, 3), torch.tensor([[1.0, 2.0, 100.0]] * 2),
                      torch.tensor([[True, True, False]] * 2)).item() == pytest.approx(2.5)


@pytest.mark.slow
def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = TitansLightningModule(32, 8, d_model=32, n_layers=1, memory=MEM, dropout=0.0,
                                  patch_len=8, stride=4, lr=3e-3)
    t = torch.arange(40, dtype=torch.float32)
    series = torch.stack([torch.sin(t / 3 + p) + 0.3 * torch.randn(40) for p in range(8)], 0)
    batch = {"past": series[:, :32, None], "future": series[:, 32:, None]}
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    first = None
    for _ in range(300):
        out = model(batch["past"])
        loss = ((out - batch["future"]) ** 2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * first, f"loss went from {first:.3f} to {loss.item():.3f}"


def test_bad_arguments():
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        net(tokenizer="fft")
    with pytest.raises(ValueError, match=r"past must be \[B, 32, C\]"):
        net()(torch.randn(2, 30, 3))
    with pytest.raises(ValueError, match="quantiles must be levels"):
        net(head="quantile", quantiles=(0.5, 1.2))


@pytest.mark.parametrize("head", ["point", "quantile", "student_t"])
def test_learned_cycle_is_periodic_and_shifts_every_head(head):
    m = net(n_channels=3, cycle_len=12, head=head).eval()
    with torch.no_grad():
        m.cycle.normal_()
    past = torch.randn(2, 32, 3)
    t = torch.tensor([0, 7])
    with torch.no_grad():
        a, b, c = (m.point_forecast(m(past, time_index=i)) for i in (t, t + 12 * 5, t + 1))
        torch.testing.assert_close(a, b)  # only the phase (time_index mod cycle_len) matters
        assert (a - c).abs().max() > 1e-3
        # with the blocks' contribution zeroed, the forecast is the cycle continued (RevIN scale)
        m.blocks = torch.nn.ModuleList()
        m.proj.weight.zero_()
        m.proj.bias.zero_()
        ctx = m.cycle_at(t, 0, 32) * 2.0 + 5.0
        out = m.point_forecast(m(ctx, time_index=t))
        _, (mean, std) = m.revin.normalize(ctx, None)
    if head != "quantile":  # the quantile head's median sits above its lowest level (the location)
        torch.testing.assert_close(out, m.cycle_at(t, 32, 8) * std + mean)


def test_learned_cycle_trains_and_rejects_bad_input():
    m = net(n_channels=3, cycle_len=24)
    out = m(torch.randn(4, 32, 3), time_index=torch.arange(4))
    out.pow(2).mean().backward()
    assert m.cycle.grad is not None and m.cycle.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs time_index"):
        m(torch.randn(4, 32, 3))
    with pytest.raises(ValueError, match=r"time_index must be an integer tensor of shape \[4\]"):
        m(torch.randn(4, 32, 3), time_index=torch.zeros(4))
    with pytest.raises(ValueError, match="3 channels, past has 2"):
        m(torch.randn(4, 32, 2), time_index=torch.arange(4))
    with pytest.raises(ValueError, match="needs n_channels"):
        net(cycle_len=24)
    with pytest.raises(ValueError, match="cycle_len must be a non-negative integer"):
        net(n_channels=3, cycle_len=-1)


def test_train_step_benchmark_backends_agree_on_a_recipe_network():
    """benchmarks/bench_train_step.py at a tiny batch: the ETTh1 recipe's whole network, one
    training step through the chunked and the per-token reference memory backends, same loss
    and gradients (the table's agreement column, computed the way the script computes it)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_train_step.py"
    spec = importlib.util.spec_from_file_location("bench_train_step", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.run_config("ETTh1 L=96 H=96", "recipes/ltsf/ETTh1_96_96.yaml", None, 2,
                            ["chunked", "reference"], torch.device("cpu"), steps=1, warmup=0)
    assert [r["backend"] for r in rows] == ["chunked", "reference"]
    assert rows[0]["agree"] == "(baseline)" and rows[1]["batch"] == "2 x 7"
    loss_err, grad_err = (float(x.split()[1].rstrip(",")) for x in rows[1]["agree"].split(", "))
    assert loss_err < 1e-5 and grad_err < 1e-4, rows[1]["agree"]
