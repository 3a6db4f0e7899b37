"""Online forecasting (titans_ts.online): the no-leak protocol, each mode on a small stream."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from titans_ts.datasets.online import OnlineData, online_borders
from titans_ts.datasets.scaling import StandardScaler
from titans_ts.model.config import SettingsError
from titans_ts.model.stream_memory import GainSelector, StreamMemoryConfig
from titans_ts.online import MODES, OnlineConfig, StreamMemory, evaluate_modes, train_backbone

L, H = 16, 4


def _data(values: np.ndarray) -> OnlineData:
    T = len(values)
    borders = {"train": (0, 240), "val": (240, 300), "test": (300, T)}
    return OnlineData("synthetic", values.astype(np.float32), borders, ["a", "b"],
                      pd.date_range("2024-01-01", periods=T, freq="h"), StandardScaler(), season=12)


def _values(T=420, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    drift = np.where(t > 300, 0.01 * (t - 300), 0.0)  # the test period drifts away
    a = np.sin(2 * np.pi * t / 12) + drift + 0.1 * rng.standard_normal(T)
    b = np.cos(2 * np.pi * t / 8) * (1 + drift) + 0.1 * rng.standard_normal(T)
    return np.stack([a, b], 1)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    cfg = OnlineConfig(seq_len=L, horizon=H, training=dict(max_epochs=1, limit_train_batches=3, batch_size=32),
                       network=dict(patch_len=8, stride=4, d_model=16, n_layers=1, dropout=0.2,
                                    memory=dict(heads=2, depth=1, chunk_size=4)),
                       memory=dict(dim=16, heads=2, depth=1, max_lr=0.2, chunk_size=1, context_features=16))
    data = _data(_values())
    module = train_backbone(data, cfg, seed=0)
    mem = StreamMemory(L, H, cfg.memory, pace=(-8.0, -4.0, 2.0))  # visibly learning: a sizeable inner rate
    return cfg, data, module, mem


def test_online_borders_follow_proceed():
    assert online_borders("ETTh2", 17420) == {"train": (0, 2880), "val": (2880, 3600), "test": (3600, 14400)}
    assert online_borders("ETTm1", 69680)["test"] == (14400, 57600)
    assert online_borders("weather", 52696) == {"train": (0, 10539), "val": (10539, 13174),
                                                 "test": (13174, 52696)}


def test_every_mode_on_a_small_stream(trained, every_mode):
    cfg, data, module, mem = trained
    res = every_mode
    n_test = len(data.origins("test", L, H))
    for mode in MODES:
        r = res[mode]
        assert r["pred"].shape == (2, n_test, H) and torch.isfinite(r["pred"]).all()
        assert np.isfinite(r["mse"]) and r["ms_per_step"] > 0
    # the memory is written in the carried modes: their forecasts differ from the frozen ones
    assert not torch.allclose(res["carried"]["pred"], res["frozen"]["pred"])
    # parameters move in the online modes
    assert not torch.allclose(res["online_gd"]["pred"], res["frozen"]["pred"])
    assert not torch.allclose(res["carried+online_gd"]["pred"], res["carried"]["pred"])
    # a memory that is never written is the frozen reading (without the fallback onto the newest
    # value, which needs no writes)
    quiet = StreamMemory(L, H, cfg.memory, pace=(-8.0, -4.0, -1e4), level_lr=0.0,  # nothing written, anywhere
                         fallback_gains=(0.0,))
    r = evaluate_modes(module, quiet, data, L, H, modes=("frozen", "carried"))
    torch.testing.assert_close(r["carried"]["pred"], r["frozen"]["pred"], rtol=1e-5, atol=1e-5)
    # the online gradient step with a zero learning rate is the backbone (frozen, and the
    # carried memory on top of it)
    z = evaluate_modes(module, mem, data, L, H, modes=("frozen", "carried", "online_gd", "carried+online_gd"),
                       online_lr=0.0)
    torch.testing.assert_close(z["online_gd"]["pred"], z["frozen"]["pred"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(z["carried+online_gd"]["pred"], z["carried"]["pred"], rtol=1e-4, atol=1e-4)
    # the naive modes read the stream's own values
    v = torch.from_numpy(data.values)
    first = int(data.origins("test", L, H)[0])
    torch.testing.assert_close(res["repeat_last"]["pred"][:, 0], v[first - 1][:, None].expand(2, H))
    torch.testing.assert_close(res["seasonal_naive"]["pred"][:, 0], v[first - 12:first - 12 + H].T)


@pytest.fixture(scope="module")
def every_mode(trained):
    cfg, data, module, mem = trained
    return evaluate_modes(module, mem, data, L, H, modes=MODES, online_lr=1e-3)


@pytest.mark.parametrize("cut", [300, pytest.param(333, marks=pytest.mark.slow)])
def test_no_leak_a_later_value_never_changes_an_earlier_forecast(trained, every_mode, cut):
    """Changing values at rows >= cut leaves every forecast made at an origin <= cut bit for bit
    the same, in every mode (and changes later ones)."""
    cfg, data, module, mem = trained
    later = _values()
    later[cut:] += np.random.default_rng(1).standard_normal(later[cut:].shape) * 3
    a = every_mode
    b = evaluate_modes(module, mem, _data(later), L, H, modes=MODES, online_lr=1e-3)
    first = int(data.origins("test", L, H)[0])
    k = cut - first + 1  # origins first .. cut
    for mode in MODES:
        assert torch.equal(a[mode]["pred"][:, :k], b[mode]["pred"][:, :k]), mode
        assert not torch.equal(a[mode]["pred"][:, k:], b[mode]["pred"][:, k:]), mode


def test_the_pace_is_chosen_on_the_validation_stream_alone(trained):
    """The memory's pace is the one of ``cfg.paces`` with the least carried MSE on the validation
    part of the stream, and that part is the stream built over the validation origins alone."""
    from titans_ts.online import StreamInputs, backbone_forecasts, choose_stream_memory

    cfg, data, module, _ = trained
    cfg = cfg.with_overrides({"paces": ((-8.0, -4.0, -3.0), (-4.0, -4.0, -4.0))})
    values = torch.from_numpy(data.values)
    so = data.stream_origins(L, H)
    first = int(so[0]) - H
    fc_stream = backbone_forecasts(module.net, values, np.arange(first, int(so[-1]) + 1), L, H)
    stream = StreamInputs.build(StreamMemory(L, H, cfg.memory), values, first, int(so[-1]), fc_stream, L, H)
    mem, info = choose_stream_memory(stream, data, cfg, seed=0)
    assert np.isfinite(info["val"]) and info["pace"] in [list(p) for p in cfg.paces]
    assert mem.config.pace == tuple(info["pace"])
    assert 0.0 <= info["val_gain_mean"] <= max(mem.config.gains)
    va_last = data.borders["val"][1] - H
    alone = StreamInputs.build(mem, values, first, va_last, fc_stream[: va_last - first + 1], L, H)
    val_in = stream.prefix(va_last)
    assert len(val_in) == len(alone) and all(torch.equal(getattr(val_in, k), getattr(alone, k))
                                             for k in StreamInputs.FIELDS)
    # a later test stream does not change the choice
    later = data.values.copy()
    later[data.borders["test"][0]:] += 5.0
    fc_later = backbone_forecasts(module.net, torch.from_numpy(later), np.arange(first, int(so[-1]) + 1), L, H)
    other = StreamInputs.build(mem, torch.from_numpy(later), first, int(so[-1]), fc_later, L, H)
    assert choose_stream_memory(other, _data(later), cfg, seed=0)[1] == info


def test_gain_selector_follows_the_leader_with_delayed_feedback():
    sel = GainSelector((0.0, 1.0), half_life=1e9, level=False)
    se = torch.tensor([[[1.0, 1.0, 1.0, 1.0, 1.0]], [[0.0, 0.0, 5.0, 0.0, 0.0]]])  # [G=2, N=1, T=5]
    choice, (acc, pending) = sel.choose(se, delay=2)
    # token j sees the errors of tokens <= j - 2; ties go to gain 0 (no correction)
    assert choice.tolist() == [[0, 0, 1, 1, 0]]
    torch.testing.assert_close(acc, torch.tensor([[4.0], [5.0]]))
    assert pending.shape == (2, 1, 1)  # the last read is not known yet
    # the step by step rule (accumulate, best) is the batched one
    run = sel.initial(1)
    for j in range(5):
        assert sel.best(run).tolist() == [sel.candidates[choice[0, j]].tolist()]
        if j >= 1:
            run = sel.accumulate(run, se[:, :, j - 1])
    # causal: errors that become known after token j never change its choice
    later = se.clone()
    later[:, :, 3:] = torch.tensor([[[0.0]], [[9.0]]])
    assert torch.equal(sel.choose(later, 2)[0], choice)
    # a short half-life forgets: the old error of gain 1 no longer counts against it
    se2 = torch.tensor([[[0.0, 0.0, 1.0, 1.0, 1.0, 1.0]], [[9.0, 0.0, 0.0, 0.0, 0.0, 0.0]]])
    assert sel.choose(se2, 1)[0][0, -1] == 0
    assert GainSelector((0.0, 1.0), half_life=0.5, level=False).choose(se2, 1)[0][0, -1] == 1
    # a prior: the stronger correction must beat no correction by its weight (1 + 0.5 * 1 here)
    acc = torch.tensor([[1.0], [0.7]])
    assert sel.leader(acc).tolist() == [1]
    assert GainSelector((0.0, 1.0), 1e9, level=False, prior=0.5).leader(acc).tolist() == [0]
    assert GainSelector((0.0, 1.0), 1e9, level=False, prior=0.5).leader(torch.tensor([[1.0], [0.6]])).tolist() == [1]
    # errors: the squared error of each candidate's corrected forecast, summed over the horizon
    f, c, y = torch.zeros(1, 3), torch.ones(1, 2, 3), torch.full((1, 3), 2.0)
    torch.testing.assert_close(sel.errors(f, 2.0, c, y, torch.ones(1, 3, dtype=torch.bool)),
                               torch.tensor([[12.0], [0.0]]))


def test_stream_memory_settings_are_checked():
    with pytest.raises(ValueError, match="gains"):
        StreamMemory(L, H, gains=())
    with pytest.raises(ValueError, match="gain_half_life"):
        StreamMemory(L, H, gain_half_life=0)
    with pytest.raises(ValueError, match="level_window"):
        StreamMemory(L, H, level_window=0)
    with pytest.raises(ValueError, match="level_momentum"):
        StreamMemory(L, H, level_momentum=1.5)
    with pytest.raises(ValueError, match="level_half_life"):
        StreamMemoryConfig(level_half_life=0.0)
    with pytest.raises(ValueError, match="pace"):
        StreamMemoryConfig(pace=(1.0, 2.0))
    with pytest.raises(ValueError, match="divisible"):
        StreamMemoryConfig(dim=10, heads=4)
    # unknown keys, at every depth, the same exception at construction
    for build in (lambda: StreamMemory(L, H, dept=1), lambda: StreamMemoryConfig.from_dict({"dept": 1}),
                  lambda: OnlineConfig(memory={"dept": 1}), lambda: OnlineConfig(network={"memory": {"dept": 1}}),
                  lambda: OnlineConfig().with_overrides({"memory": {"dept": 1}}),
                  lambda: OnlineConfig().with_overrides({"memry": {}})):
        with pytest.raises(SettingsError, match="dept|memry"):
            build()
    # the memory has no trained parameter
    assert not any(p.requires_grad for p in StreamMemory(L, H).parameters())


def test_modes_are_checked_and_splits_must_hold_a_window(trained):
    from titans_ts.online.runner import check_stream_fits

    cfg, data, module, mem = trained
    with pytest.raises(ValueError, match=r"unknown online mode\(s\) \['bogus'\]"):
        evaluate_modes(module, mem, data, L, H, modes=("frozen", "bogus"))
    with pytest.raises(ValueError, match="distinct"):
        evaluate_modes(module, mem, data, L, H, modes=("frozen", "frozen"))
    from titans_ts.online import run_online

    with pytest.raises(ValueError, match=r"unknown online mode\(s\) \['bogus'\]"):  # before any data is read
        run_online("ETTh2", 24, 96, modes=("frozen", "bogus"), root="/nonexistent")
    with pytest.raises(ValueError, match=r"seq_len=250 and horizon=4 leave no window in the train"):
        check_stream_fits(data, 250, H)


def test_the_backbone_records_the_epochs_it_ran(trained):
    cfg, data, module, _ = trained
    assert module.fit_epochs_ == cfg.training.max_epochs == 1


def _level_reference(mem, xr, xw, resid, mask):
    """The level memory written out token by token: the second moment summed afresh over the
    written windows, a Cholesky whitening, one gradient step of ||m k - v||^2 by autograd."""
    N, T, D = xw.shape
    c = mem.config
    lam = 0.5 ** (1.0 / c.level_half_life)
    W = torch.zeros(N, D, dtype=torch.float64, requires_grad=True)
    S = torch.zeros_like(W)
    out = []
    for t in range(T):
        wts = torch.stack([lam ** (t - j) * mask[:, j].double() for j in range(t + 1)], 1)  # [N, t + 1]
        x = xw[:, :t + 1].double()
        second = torch.einsum("nj,nja,njb->nab", wts, x, x)
        sigma = second / wts.sum(1).clamp_min(1.0)[:, None, None] + c.level_ridge * torch.eye(D, dtype=torch.float64)
        inv = torch.linalg.inv(torch.linalg.cholesky(sigma))
        k = torch.einsum("nab,nb->na", inv, xw[:, t].double())
        q = torch.einsum("nab,nb->na", inv, xr[:, t].double())
        v = mem.clip(resid[:, t]).mean(-1).double()
        with torch.enable_grad():  # create_graph: the outer gradients flow through the step too
            grad, = torch.autograd.grad((((W * k).sum(-1) - v) ** 2).sum(), W, create_graph=True)
        S = c.level_momentum * S - c.level_lr * mask[:, t].double()[:, None] * grad
        W = (1 - c.level_forget) * W + S
        out.append((W * q).sum(-1))
    return torch.stack(out, 1)


@pytest.mark.parametrize("block", [4096, 7])
def test_the_level_memory_matches_its_token_by_token_reference(block):
    torch.manual_seed(0)
    mem = StreamMemory(L, H, dim=8, heads=2, level_lr=0.05, level_momentum=0.3, level_forget=0.01,
                       level_half_life=20.0)
    N, T = 3, 40
    ctx_r, ctx_w = torch.randn(N, T, L), torch.randn(N, T, L)
    yhat_r, yhat_w = torch.randn(N, T, H), torch.randn(N, T, H)
    resid = torch.randn(N, T, H) * 2
    mask = torch.rand(N, T) > 0.2
    xr, xw = mem.level_summaries(ctx_r, yhat_r), mem.level_summaries(ctx_w, yhat_w)
    got, _ = mem._level_scan(xr, xw, resid, mask, None, block=block)
    ref = _level_reference(mem, xr, xw, resid, mask)
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-5)
    # the state carries on: two halves give the one pass
    a, state = mem._level_scan(xr[:, :25], xw[:, :25], resid[:, :25], mask[:, :25], None, block=block)
    b, _ = mem._level_scan(xr[:, 25:], xw[:, 25:], resid[:, 25:], mask[:, 25:], state, block=block)
    torch.testing.assert_close(torch.cat([a, b], 1), got, rtol=1e-5, atol=1e-6)
    # and through the public scan and read: component 1 is the level memory's, the same at every step
    feats = lambda ctx, yhat: mem.features(ctx, yhat)  # noqa: E731
    corr, final = mem.scan(feats(ctx_r, yhat_r), feats(ctx_w, yhat_w), resid, mask)
    torch.testing.assert_close(corr[:, :, 1], got[..., None].expand(N, T, H), rtol=1e-5, atol=1e-6)
    last = mem.read(feats(ctx_r[:, -1], yhat_r[:, -1]), final)
    torch.testing.assert_close(last[:, 1, 0], got[:, -1], rtol=1e-4, atol=1e-5)


def test_the_level_memory_gradients_match_the_reference():
    """Outer gradients (what online_gd's step sends back through the level correction) equal the
    token-by-token reference's, with respect to the window summaries and the errors."""
    torch.manual_seed(1)
    mem = StreamMemory(L, H, dim=8, heads=2, level_lr=0.05, level_momentum=0.5, level_half_life=10.0)
    N, T = 2, 12
    xr = mem.level_summaries(torch.randn(N, T, L), torch.randn(N, T, H)).double().requires_grad_(True)
    xw = mem.level_summaries(torch.randn(N, T, L), torch.randn(N, T, H)).double().requires_grad_(True)
    resid = torch.randn(N, T, H, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(N, T, dtype=torch.bool)
    w = torch.randn(N, T)
    g1 = torch.autograd.grad((mem._level_scan(xr, xw, resid, mask, None)[0].double() * w).sum(), (xr, xw, resid))
    g2 = torch.autograd.grad((_level_reference(mem, xr, xw, resid, mask) * w).sum(), (xr, xw, resid))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_the_level_memory_learns_a_level_error_the_main_memory_does_not():
    """A backbone whose forecast sits 1 below the truth whenever the context ends above its mean
    (and on it otherwise): the level memory learns that map along the stream, and the carried
    forecast (gain pairs chosen along the stream) ends far below the frozen one's error."""
    from titans_ts.online.streams import carried_forecast, scan_stream

    torch.manual_seed(0)
    mem = StreamMemory(L, H, dim=8, heads=2, level_lr=0.02)
    N, T = 2, 2000
    ctx = torch.randn(N, T + H, L)
    yhat = torch.randn(N, T + H, H) * 0.3
    offset = (ctx[..., -1] > ctx.mean(-1)).float()  # the error the backbone makes, in window units
    target = yhat + offset[..., None] + 0.1 * torch.randn(N, T + H, H)
    std = torch.ones(N, T + H)

    def tokens(a, b):
        return {"ctx": ctx[:, a:b], "yhat": yhat[:, a:b], "std": std[:, a:b], "forecast": yhat[:, a:b],
                "target": target[:, a:b], "tmask": torch.ones(N, b - a, H, dtype=torch.bool),
                "resid": target[:, a:b] - yhat[:, a:b], "observed": torch.ones(N, b - a, dtype=torch.bool),
                "prev": torch.zeros(N, b - a, H)}

    write, read = tokens(0, T), tokens(H, T + H)
    read["prev"] = write["resid"]
    with torch.no_grad():
        corr, _ = scan_stream(mem, read, write, None, False)
        pred, gain = carried_forecast(mem, read, corr, H)
    late = slice(T // 2, None)
    frozen = float(((read["forecast"] - read["target"])[:, late] ** 2).mean())
    carried = float(((pred - read["target"])[:, late] ** 2).mean())
    assert carried < 0.3 * frozen
    assert float(gain[:, late, 1].mean()) > 0.5  # the level memory's correction is the one used
    torch.manual_seed(0)
    alone = StreamMemory(L, H, dim=8, heads=2, level=False)
    with torch.no_grad():
        p_alone, _ = carried_forecast(alone, read, scan_stream(alone, read, write, None, False)[0], H)
    assert carried < 0.5 * float(((p_alone - read["target"])[:, late] ** 2).mean())


@pytest.mark.slow
def test_on_a_random_walk_the_stream_chooses_the_newest_value():
    """A random walk forecast by a backbone that misses its level: with the fallback correction
    the gains chosen along the stream move the forecast onto the newest value (repeat-last), and
    the carried forecast ends no worse than repeat-last; the memory's own corrections alone cannot
    get all the way."""
    from titans_ts.online.streams import carried_forecast, scan_stream

    torch.manual_seed(0)
    N, T = 2, 2000
    walk = torch.cumsum(torch.randn(N, T + 2 * H + L), -1)
    idx = torch.arange(T + H)[:, None]
    ctx_raw = walk[:, idx + torch.arange(L)]                   # [N, T + H, L]
    target = walk[:, idx + L + torch.arange(H)]                # [N, T + H, H]
    mean, std = ctx_raw.mean(-1), ctx_raw.std(-1) + 1e-3
    forecast = mean[..., None].expand_as(target)             # the context's mean: off the level
    ctx = (ctx_raw - mean[..., None]) / std[..., None]
    yhat = (forecast - mean[..., None]) / std[..., None]
    resid = (target - forecast) / std[..., None]

    def tokens(a, b):
        return {"ctx": ctx[:, a:b], "yhat": yhat[:, a:b], "std": std[:, a:b], "forecast": forecast[:, a:b],
                "target": target[:, a:b], "tmask": torch.ones(N, b - a, H, dtype=torch.bool),
                "resid": resid[:, a:b], "observed": torch.ones(N, b - a, dtype=torch.bool),
                "prev": torch.zeros(N, b - a, H)}

    write, read = tokens(0, T), tokens(H, T + H)
    read["prev"] = write["resid"]
    late = slice(T // 2, None)
    last = read["ctx"][..., -1:] * read["std"][..., None] + mean[:, H:, None]
    naive = float(((last - read["target"])[:, late] ** 2).mean())
    out = {}
    for fallback in ((0.0,), (0.0, 0.5, 1.0)):
        torch.manual_seed(0)
        mem = StreamMemory(L, H, dim=8, heads=2, fallback_gains=fallback)
        with torch.no_grad():
            pred, gain = carried_forecast(mem, read, scan_stream(mem, read, write, None, False)[0], H)
        out[fallback] = (float(((pred - read["target"])[:, late] ** 2).mean()), gain)
    with_fb, gain = out[(0.0, 0.5, 1.0)]
    assert gain.shape[-1] == 3 and float(gain[:, late, 2].mean()) > 0.9
    assert with_fb <= 1.02 * naive
    assert out[(0.0,)][0] > 1.05 * naive  # the memories alone come near it, not onto it


def test_on_a_random_walk_the_memory_reaches_no_correction():
    """A random walk forecast as well as it can be (the newest value): corrections are noise
    here, and the stream's own choice stays at no correction (gains 0 in the record) instead of
    paying a small price on every window; plain follow-the-leader (gain_prior 0) does pay it."""
    from titans_ts.online.streams import carried_forecast, scan_stream

    torch.manual_seed(0)
    N, T = 2, 2000
    walk = torch.cumsum(torch.randn(N, T + 2 * H + L), -1)
    idx = torch.arange(T + H)[:, None]
    ctx_raw = walk[:, idx + torch.arange(L)]
    target = walk[:, idx + L + torch.arange(H)]
    mean, std = ctx_raw.mean(-1), ctx_raw.std(-1) + 1e-3
    forecast = ctx_raw[..., -1:].expand(N, T + H, H)  # repeat-last: the best forecast of a random walk
    tok = {"ctx": (ctx_raw - mean[..., None]) / std[..., None], "yhat": (forecast - mean[..., None]) / std[..., None],
           "std": std, "forecast": forecast, "target": target, "resid": (target - forecast) / std[..., None],
           "tmask": torch.ones(N, T + H, H, dtype=torch.bool), "observed": torch.ones(N, T + H, dtype=torch.bool)}
    write = {k: v[:, :T] for k, v in tok.items()}
    read = {k: v[:, H:] for k, v in tok.items()}
    write["prev"] = torch.zeros(N, T, H)
    read["prev"] = write["resid"]
    frozen = float(((read["forecast"] - read["target"]) ** 2).mean())
    out = {}
    for prior in (0.0, 0.05):
        torch.manual_seed(0)
        mem = StreamMemory(L, H, dim=8, heads=2, gain_prior=prior)
        with torch.no_grad():
            pred, gain = carried_forecast(mem, read, scan_stream(mem, read, write, None, False)[0], H)
        out[prior] = (float(((pred - read["target"]) ** 2).mean()), float(gain.mean()))
    assert out[0.05] == (frozen, 0.0)  # no correction, and the record's gains say so
    assert out[0.0][1] > 0.1 and out[0.0][0] > frozen  # plain follow-the-leader chases the noise


@pytest.mark.parametrize("fallback", [(0.0,), pytest.param((0.0, 0.5, 1.0), marks=pytest.mark.slow)])
def test_the_forecasters_carried_memory_is_the_benchmarks_carried_mode(trained, fallback):
    """The forecaster's store (TitansForecaster(test_time_memory=True)) written with a stream's
    windows gives the forecast, and the read-out gain, of the benchmark's carried mode."""
    from titans_ts.forecaster.memory_store import SeriesMemory
    from titans_ts.online import StreamInputs, backbone_forecasts
    from titans_ts.online.streams import carried_forecast, scan_stream, stream_tokens

    cfg, data, module, mem = trained
    if fallback != (0.0,):
        torch.manual_seed(0)
        mem = StreamMemory(L, H, cfg.memory, pace=(-8.0, -4.0, 2.0), fallback_gains=fallback)
    values = torch.from_numpy(data.values)
    first, end = 40, 330  # stream origins first .. end; the store sees the rows before end
    fc = backbone_forecasts(module.net, values, np.arange(first, end + 1), L, H)
    stream = StreamInputs.build(mem, values, first, end, fc, L, H)
    read, write = stream_tokens(stream, 0, len(stream) - H, H)
    with torch.no_grad():
        pred, gain = carried_forecast(mem, read, scan_stream(mem, read, write, None, False)[0], H)
    assert (gain > 0).any() and (gain == 0).any()  # the gain choice is exercised
    C = values.shape[1]
    store = SeriesMemory(1, anchors=[(first, torch.ones(C))])
    v = data.values[:end]
    store.write(module.net, mem, [v], [~np.isnan(v)], None, L, H, C, [0])
    past = values[end - L:end]
    corr = store.correction(0, mem, past, torch.ones_like(past, dtype=torch.bool), fc[-1])
    torch.testing.assert_close(store.gain(0, mem), gain[:, -1])
    torch.testing.assert_close(fc[-1] + corr, pred[:, -1].T, rtol=1e-4, atol=1e-4)
    # written in two steps (fit, then update), the store ends where it did
    two = SeriesMemory(1, anchors=[(first, torch.ones(C))])
    for stop in (200, end):
        two.write(module.net, mem, [data.values[:stop]], [~np.isnan(data.values[:stop])], None, L, H, C, [0])
    torch.testing.assert_close(two[0].gain_errors, store[0].gain_errors, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(two.correction(0, mem, past, torch.ones_like(past, dtype=torch.bool), fc[-1]), corr,
                               rtol=1e-4, atol=1e-5)


def test_the_command_runs_only_the_modes_not_yet_recorded(tmp_path, monkeypatch):
    import titans_ts.online as online
    from titans_ts import cli

    calls = []

    def fake(dataset, horizons, seq_len, seed, modes, backbone_horizon=None, **_kw):
        calls.append((tuple(horizons), seed, modes, backbone_horizon))
        return [{"dataset": dataset, "horizon": h, "seq_len": seq_len, "seed": seed, "mode": m,
                 "mse": 1.0, "mae": 1.0, "ms_per_step": 1.0} for h in horizons for m in modes]

    monkeypatch.setattr(online, "run_online", fake)
    out = tmp_path / "records.jsonl"
    args = ["benchmark", "online", "ETTh2", "--seq-len", "16", "--seeds", "0", "--out", str(out)]
    assert cli.main(args + ["--horizons", "4", "--modes", "frozen", "carried"]) == 0
    assert cli.main(args + ["--horizons", "4", "--modes", "frozen", "carried", "online_gd"]) == 0
    assert cli.main(args + ["--horizons", "4", "--modes", "carried"]) == 0  # all recorded: nothing runs
    # a horizon added later: only its modes run, on the backbone of the longest horizon asked for
    assert cli.main(args + ["--horizons", "4", "8", "--modes", "frozen"]) == 0
    assert calls == [((4,), 0, ("frozen", "carried"), 4), ((4,), 0, ("online_gd",), 4), ((8,), 0, ("frozen",), 8)]
    assert [(json.loads(line)["horizon"], json.loads(line)["mode"]) for line in out.read_text().splitlines()] == \
        [(4, "frozen"), (4, "carried"), (4, "online_gd"), (8, "frozen")]


def test_one_backbone_serves_every_horizon_and_is_found_again_in_the_cache(trained, tmp_path, monkeypatch):
    """Records of several horizons come from one backbone trained for the longest; a cached
    backbone is loaded instead of trained again, and the records are the same."""
    import titans_ts.datasets.online as dso
    from titans_ts.online import run_online

    cfg, data, _, _ = trained
    monkeypatch.setattr(dso, "online_data", lambda name, root=None: data)
    kw = dict(modes=("frozen", "carried", "repeat_last"), cfg=cfg, backbone_cache=tmp_path)
    a = run_online("synthetic", (2, H), L, seed=0, **kw)
    assert [(r["horizon"], r["mode"]) for r in a] == [(h, m) for h in (2, H) for m in kw["modes"]]
    assert {r["backbone_horizon"] for r in a} == {H} and len(list(tmp_path.iterdir())) == 1
    b = run_online("synthetic", (2, H), L, seed=0, **kw)
    assert [r["mse"] for r in b] == [r["mse"] for r in a]
    assert b[0]["backbone_seconds"] == a[0]["backbone_seconds"]  # the cached training's, not a new one
    # read at H = 2, the backbone's forecasts are the first two steps of its H-step forecasts
    short = [r for r in a if r["horizon"] == 2 and r["mode"] == "frozen"][0]
    assert short["backbone_mse"] != [r for r in a if r["horizon"] == H and r["mode"] == "frozen"][0]["backbone_mse"]
    with pytest.raises(ValueError, match="backbone_horizon"):
        run_online("synthetic", (2, H), L, backbone_horizon=2, **kw)
    # a cached backbone edited after it was written is refused, naming the file
    path = next(tmp_path.iterdir())
    saved = torch.load(path, weights_only=True)
    name = next(iter(saved["state_dict"]))
    saved["state_dict"][name] = saved["state_dict"][name] + 1e-3
    torch.save(saved, path)
    with pytest.raises(ValueError, match=f"checkpoint {path}.*failed its content check"):
        run_online("synthetic", (2, H), L, seed=0, **kw)
