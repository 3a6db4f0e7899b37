"""Online forecasting (titans_ts.online): the no-leak protocol, each mode on a small stream."""

from __future__ import annotations

import copy
import json

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
    values = torch.from_numpy(data.values)
    so = data.stream_origins(L, H)
    fc_train = backbone_forecasts(module.net, values, np.arange(L, data.borders["train"][1] - H + 1), L, H)
    fc_stream = backbone_forecasts(module.net, values, np.arange(int(so[0]) - H, int(so[-1]) + 1), L, H)
    first = int(so[0]) - H
    stream = StreamInputs.build(StreamMemory(L, H, **cfg.memory), values, first, int(so[-1]), fc_stream, L, H)
    mem, info = choose_stream_memory(stream, data, cfg, seed=0, values=values, fc_train=fc_train)
    assert np.isfinite(info["val"]) and info["pace"] in [list(p) for p in cfg.paces]
    assert 0.0 <= info["val_gain_mean"] <= max(mem.gains) and isinstance(mem, StreamMemory)
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


def test_online_gain_choice_follows_the_leader_with_delayed_feedback():
    from titans_ts.online.stream_memory import online_gain_choice

    se = torch.tensor([[[1.0, 1.0, 1.0, 1.0, 1.0]], [[0.0, 0.0, 5.0, 0.0, 0.0]]])  # [G=2, N=1, T=5]
    choice, (acc, pending) = online_gain_choice(se, delay=2, half_life=1e9)
    # token j sees the errors of tokens <= j - 2; ties go to gain 0 (no correction)
    assert choice.tolist() == [[0, 0, 1, 1, 0]]
    torch.testing.assert_close(acc, torch.tensor([[4.0], [5.0]]))
    assert pending.shape == (2, 1, 1)  # the last read is not known yet
    # causal: errors that become known after token j never change its choice
    later = se.clone()
    later[:, :, 3:] = torch.tensor([[[0.0]], [[9.0]]])
    assert torch.equal(online_gain_choice(later, 2, 1e9)[0], choice)
    # a short half-life forgets: the old error of gain 1 no longer counts against it
    se2 = torch.tensor([[[0.0, 0.0, 1.0, 1.0, 1.0, 1.0]], [[9.0, 0.0, 0.0, 0.0, 0.0, 0.0]]])
    assert online_gain_choice(se2, 1, 1e9)[0][0, -1] == 0
    assert online_gain_choice(se2, 1, 0.5)[0][0, -1] == 1


def test_stream_memory_settings_are_checked():
    with pytest.raises(ValueError, match="gains"):
        StreamMemory(L, H, gains=())
    with pytest.raises(ValueError, match="gain_half_life"):
        StreamMemory(L, H, gain_half_life=0)


def test_the_forecasters_carried_memory_is_the_benchmarks_carried_mode(trained):
    """The forecaster's store (TitansForecaster(test_time_memory=True)) written with a stream's
    windows gives the forecast, and the read-out gain, of the benchmark's carried mode."""
    from titans_ts.forecaster.memory_store import SeriesMemory
    from titans_ts.online import StreamInputs, backbone_forecasts
    from titans_ts.online.streams import carried_forecast, scan_stream, stream_tokens

    cfg, data, module, mem = trained
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
    torch.testing.assert_close(two.gain_errors[0], store.gain_errors[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(two.correction(0, mem, past, torch.ones_like(past, dtype=torch.bool), fc[-1]), corr,
                               rtol=1e-4, atol=1e-5)


def test_the_command_runs_only_the_modes_not_yet_recorded(tmp_path, monkeypatch):
    import titans_ts.online as online
    from titans_ts import cli

    calls = []

    def fake(dataset, horizon, seq_len, seed, modes, **_kw):
        calls.append((horizon, seed, modes))
        return [{"dataset": dataset, "horizon": horizon, "seq_len": seq_len, "seed": seed, "mode": m,
                 "mse": 1.0, "mae": 1.0, "ms_per_step": 1.0} for m in modes]

    monkeypatch.setattr(online, "run_online", fake)
    out = tmp_path / "records.jsonl"
    args = ["benchmark", "online", "ETTh2", "--seq-len", "16", "--horizons", "4", "--seeds", "0", "--out", str(out)]
    assert cli.main(args + ["--modes", "frozen", "carried"]) == 0
    assert cli.main(args + ["--modes", "frozen", "carried", "online_gd"]) == 0
    assert cli.main(args + ["--modes", "carried"]) == 0  # all recorded: nothing runs
    assert calls == [(4, 0, ("frozen", "carried")), (4, 0, ("online_gd",))]
    assert [json.loads(line)["mode"] for line in out.read_text().splitlines()] == ["frozen", "carried", "online_gd"]
