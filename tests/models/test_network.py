"""TitansNet: shapes for every tokeniser x head, masks, RevIN, and that a tiny model can learn."""

from __future__ import annotations

import pytest
import torch

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


@pytest.mark.parametrize("variant", ["lmm", "mac", "mag", "mal", "attention"])
def test_variants_run(variant):
    m = net(variant=variant)
    assert m(torch.randn(2, 32, 2)).shape == (2, 8, 2)


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
