"""benchmarks/reference_patchtst.py: the PatchTST rerun that the report sets beside titans-ts."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("reference_patchtst", REPO / "benchmarks" / "reference_patchtst.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TINY = {"e_layers": 1, "d_model": 16, "n_heads": 2, "d_ff": 32, "dropout": 0.1, "patch_len": 16,
        "stride": 8, "lr": 1e-3, "lr_schedule": "halve", "first_epoch_lr": None, "epochs": 2,
        "patience": 3, "batch_size": 32, "train_drop_last": False}


def test_settings_follow_the_ili_scripts_per_horizon_and_the_learning_rate_schedules():
    ref = _script()
    assert [(ref.settings("tslib", h)["d_model"], ref.settings("tslib", h)["n_heads"])
            for h in (24, 36, 48, 60)] == [(1024, 4), (2048, 4), (2048, 4), (2048, 16)]
    assert {ref.settings("paper", h)["d_model"] for h in (24, 60)} == {16}
    with pytest.raises(ValueError, match="sets horizons"):
        ref.settings("tslib", 96)
    with pytest.raises(ValueError, match="config must be one of"):
        ref.settings("tsl", 24)
    tslib, paper = ref.settings("tslib", 24), ref.settings("paper", 24)
    # TSLib "type1": 1e-4 for the first two epochs, then halved after each
    assert [ref.epoch_lr(tslib, e) for e in range(4)] == [1e-4, 1e-4, 5e-5, 2.5e-5]
    # the PatchTST repository's "constant" after its scheduler's first-epoch rate (lr / 25)
    assert [ref.epoch_lr(paper, e) for e in range(3)] == [1e-4, 0.0025, 0.0025]
    with pytest.raises(SystemExit):  # the script knows the illness scripts only
        ref.main(["ETTh1"])


@pytest.mark.parametrize("style,patch_len,stride,n_patches", [("tslib", 16, 8, 4), ("paper", 24, 2, 8)])
def test_patchtst_shapes_patches_and_instance_normalisation(style, patch_len, stride, n_patches):
    ref = _script()
    torch.manual_seed(0)
    net = ref.PatchTST(36, 24, e_layers=2, d_model=16, n_heads=2, d_ff=32, dropout=0.0,
                       patch_len=patch_len, stride=stride, style=style)
    assert net.n_patches == n_patches  # (36 + stride - patch_len) // stride + 1 with the end padding
    x = torch.randn(3, 36, 5)
    net(x).sum().backward()  # a training step's forward and backward (batch statistics)
    assert all(p.grad is not None for p in net.parameters())
    net.eval()
    y = net(x)
    assert y.shape == (3, 24, 5)
    # per-window, per-channel normalisation: shifting and scaling a channel's context shifts and
    # scales its forecast alike, and leaves the other channels' forecasts alone
    x2 = x.clone()
    x2[:, :, 1] = 7.0 * x2[:, :, 1] - 3.0
    y2 = net(x2)
    assert torch.allclose(y2[:, :, 1], 7.0 * y[:, :, 1] - 3.0, atol=1e-4)
    assert torch.allclose(y2[:, :, [0, 2, 3, 4]], y[:, :, [0, 2, 3, 4]], atol=1e-6)
    # channel independence: the same channel series gives the same forecast in any company
    assert torch.allclose(net(x[:, :, 2:3])[:, :, 0], y[:, :, 2], atol=1e-5)
    with pytest.raises(ValueError, match="shorter than patch_len"):
        ref.PatchTST(8, 4, 1, 16, 2, 32, 0.0, 16, 8)
    with pytest.raises(ValueError, match="style must be one of"):
        ref.PatchTST(36, 4, 1, 16, 2, 32, 0.0, 16, 8, style="other")


def test_window_scores_match_a_direct_computation_and_refuse_missing_values():
    ref = _script()
    from titans_ts.datasets.ltsf import WindowDataset

    torch.manual_seed(0)
    values = torch.randn(90, 3).numpy()
    ds = WindowDataset(values, seq_len=36, horizon=8)  # 47 windows
    net = ref.PatchTST(36, 8, e_layers=1, d_model=16, n_heads=2, d_ff=32, dropout=0.0, patch_len=16, stride=8)
    se, ae, n = ref.window_scores(net, ds)
    assert se.shape == (47,) and net.training  # scoring leaves the network in training mode
    net.eval()
    with torch.no_grad():
        for w in (0, 46):
            err = (net(ds[w]["past"][None])[0] - ds[w]["future"]).double()
            assert torch.isclose(se[w], (err ** 2).sum()) and torch.isclose(ae[w], err.abs().sum())
            assert n[w] == 8 * 3
    values[60, 1] = float("nan")
    with pytest.raises(ValueError, match="fully observed windows only"):
        ref.window_scores(net, WindowDataset(values, seq_len=36, horizon=8))


def test_patchtst_run_scores_every_window_and_the_drop_last_subset(data_root):
    ref = _script()
    from titans_ts.datasets import ltsf_splits

    r = ref.train_and_score(24, seed=0, cfg=TINY, root=str(data_root))
    with pytest.raises(ValueError, match="config must be one of"):
        ref.train_and_score(24, seed=0, config="tsl", root=str(data_root))
    test = ltsf_splits("national_illness", 36, 24, root=data_root).test
    assert r["test_windows"] == len(test) == 170 and 1 <= r["epochs"] <= 2
    assert r["model"] == "PatchTST" and r["config"] == "tslib" and r["settings"] == TINY
    dl = r["test_drop_last32"]
    assert dl["windows"] == 160 and dl["batch_size"] == 32
    for key in ("test_mse", "test_mae", "val_mse", "val_mae"):
        assert math.isfinite(r[key]) and r[key] > 0
    # the same seed gives the same run
    again = ref.train_and_score(24, seed=0, cfg=TINY, root=str(data_root))
    assert again["test_mse"] == r["test_mse"] and again["val_mse"] == r["val_mse"]
