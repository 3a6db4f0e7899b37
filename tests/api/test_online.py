"""Online forecasting (titans_ts.online): the no-leak protocol, each mode on a small stream."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from titans_ts.datasets.online import OnlineData, online_borders
from titans_ts.datasets.scaling import StandardScaler
from titans_ts.online import MODES, OnlineConfig, StreamMemory, evaluate_modes, train_backbone

L, H = 16, 4


def _data(values: np.ndarray) -> OnlineData:
    T = len(values)
    borders = {"train": (0, 240), "val": (240, 300), "test": (300, T)}
    return OnlineData("synthetic", values.astype(np.float32), borders, ["a", "b"],
                      pd.date_range("2024-01-01", periods=T, freq="h"), StandardScaler())


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
    cfg = OnlineConfig(seq_len=L, horizon=H, max_epochs=1, limit_train_batches=3, batch_size=32,
                       network=dict(patch_len=8, stride=4, d_model=16, n_layers=1, dropout=0.2,
                                    memory=dict(heads=2, depth=1, chunk_size=4)),
                       memory=dict(dim=16, heads=2, depth=1, max_lr=0.2, chunk_size=1, context_features=16))
    data = _data(_values())
    module = train_backbone(data, cfg, seed=0)
    mem = StreamMemory(L, H, **cfg.memory)
    with torch.no_grad():  # a memory that visibly learns: a sizeable inner learning rate
        mem.gates.bias.view(3, -1)[2].fill_(2.0)
    return cfg, data, module, mem


def test_online_borders_follow_proceed():
    assert online_borders("ETTh2", 17420) == {"train": (0, 2880), "val": (2880, 3600), "test": (3600, 14400)}
    assert online_borders("ETTm1", 69680)["test"] == (14400, 57600)
    assert online_borders("weather", 52696) == {"train": (0, 10539), "val": (10539, 13174),
                                                 "test": (13174, 52696)}


def test_every_mode_on_a_small_stream(trained):
    cfg, data, module, mem = trained
    res = evaluate_modes(module, mem, data, cfg, modes=MODES, online_lr=1e-3)
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
    # a memory that is never written is the frozen reading
    quiet = copy.deepcopy(mem)
    with torch.no_grad():
        quiet.gates.bias.view(3, -1)[2].fill_(-1e4)  # theta = 0: nothing written
    r = evaluate_modes(module, quiet, data, cfg, modes=("frozen", "carried"))
    torch.testing.assert_close(r["carried"]["pred"], r["frozen"]["pred"], rtol=1e-5, atol=1e-5)
    # the sequential carried+online_gd with a zero learning rate is the batched carried mode
    z = evaluate_modes(module, mem, data, cfg, modes=("carried", "carried+online_gd"), online_lr=0.0)
    torch.testing.assert_close(z["carried+online_gd"]["pred"], z["carried"]["pred"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cut", [300, 333])
def test_no_leak_a_later_value_never_changes_an_earlier_forecast(trained, cut):
    """Changing values at rows >= cut leaves every forecast made at an origin <= cut bit for bit
    the same, in every mode (and changes later ones)."""
    cfg, data, module, mem = trained
    later = _values()
    later[cut:] += np.random.default_rng(1).standard_normal(later[cut:].shape) * 3
    a = evaluate_modes(module, mem, data, cfg, modes=MODES, online_lr=1e-3)
    b = evaluate_modes(module, mem, _data(later), cfg, modes=MODES, online_lr=1e-3)
    first = int(data.origins("test", L, H)[0])
    k = cut - first + 1  # origins first .. cut
    for mode in MODES:
        assert torch.equal(a[mode]["pred"][:, :k], b[mode]["pred"][:, :k]), mode
        assert not torch.equal(a[mode]["pred"][:, k:], b[mode]["pred"][:, k:]), mode


def test_choosing_and_training_the_memory_with_a_horizon_longer_than_a_segment(trained):
    """The memory's selection and outer training run (and stay finite) when H exceeds the
    training segment (the first tokens' newest known errors lie before the stream)."""
    from titans_ts.online import StreamInputs, backbone_forecasts, choose_stream_memory, train_stream_memory

    cfg, data, module, _ = trained
    cfg = copy.deepcopy(cfg)
    cfg.segment, cfg.streams, cfg.memory_epochs = 2, 8, 2
    cfg.paces = ((-8.0, -4.0, -3.0), (-4.0, -4.0, -4.0))
    cfg.gains = (0.5, 1.0)
    values = torch.from_numpy(data.values)
    so = data.stream_origins(L, H)
    fc_train = backbone_forecasts(module.net, values, np.arange(L, data.borders["train"][1] - H + 1), L, H)
    fc_stream = backbone_forecasts(module.net, values, np.arange(int(so[0]) - H, int(so[-1]) + 1), L, H)
    first = int(so[0]) - H
    stream = StreamInputs.build(StreamMemory(L, H, **cfg.memory), values, first, int(so[-1]), fc_stream, L, H)
    mem, info = choose_stream_memory(stream, data, cfg, seed=0, values=values, fc_train=fc_train)
    assert np.isfinite(info["val"]) and info["pace"] in [list(p) for p in cfg.paces]
    assert info["gain"] in (0.0, *cfg.gains) and isinstance(mem, StreamMemory)
    # the outer training itself (truncated back-propagation through the training stream)
    tuned = StreamMemory(L, H, **cfg.memory)
    va_last = data.borders["val"][1] - H
    train_in = StreamInputs.build(tuned, values, L, data.borders["train"][1] - H, fc_train, L, H)
    val_in = stream.prefix(va_last)
    # the validation part of the stream is the stream built over the validation origins alone
    alone = StreamInputs.build(tuned, values, first, va_last, fc_stream[: va_last - first + 1], L, H)
    assert len(val_in) == len(alone) and all(torch.equal(getattr(val_in, k), getattr(alone, k))
                                             for k in StreamInputs.FIELDS)
    hist = train_stream_memory(tuned, train_in, val_in, H, cfg, seed=0)
    assert len(hist["history"]) >= 2 and np.isfinite(hist["best_val"])
