"""benchmarks/time_to_accuracy.py and its reference models (benchmarks/reference_models.py)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"tta_{name}", REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def refs():
    return _load("reference_models")


@pytest.fixture(scope="module")
def tta():
    return _load("time_to_accuracy")


def test_dlinear_moving_average_matches_a_loop(refs):
    torch.manual_seed(0)
    net = refs.DLinear(20, 5, moving_avg=7)
    x = torch.randn(2, 3, 20)
    rem, trend = net.decompose(x)
    xs = x.numpy()
    padded = np.concatenate([np.repeat(xs[..., :1], 3, -1), xs, np.repeat(xs[..., -1:], 3, -1)], -1)
    slow = np.stack([padded[..., i:i + 7].mean(-1) for i in range(20)], -1)
    np.testing.assert_allclose(trend.numpy(), slow, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose((rem + trend).numpy(), x.numpy(), rtol=1e-6, atol=1e-6)
    assert net(torch.randn(4, 20, 3)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match="odd"):
        refs.DLinear(20, 5, moving_avg=4)


def test_itransformer_forecast_follows_each_variate_scale_and_shift(refs):
    torch.manual_seed(0)
    net = refs.ITransformer(24, 6, d_model=16, d_ff=16, e_layers=2, n_heads=4).eval()
    x = torch.randn(3, 24, 5)
    marks = torch.rand(3, 24, 4) - 0.5
    y = net(x, marks)
    assert y.shape == (3, 6, 5)
    a, b = torch.tensor([2.0, 0.5, 3.0, 1.0, 10.0]), torch.tensor([1.0, -4.0, 0.0, 7.0, 100.0])
    np.testing.assert_allclose(net(x * a + b, marks).detach().numpy(), (y * a + b).detach().numpy(),
                               rtol=1e-4, atol=1e-3)
    # the calendar tokens are read: other marks, other forecasts
    assert not torch.allclose(net(x, marks + 0.3), y)


def test_time_features_are_scaled_calendar_positions(refs):
    f = refs.time_features(pd.date_range("2016-07-01 00:00", periods=48, freq="h"))
    assert f.shape == (48, 4) and f.dtype == np.float32
    assert f.min() >= -0.5 and f.max() <= 0.5
    assert f[0, 0] == pytest.approx(-0.5) and f[23, 0] == pytest.approx(0.5)  # hour 0 and 23
    # TSLib's type1: the first two epochs at the base rate, then halving
    assert [refs.tslib_lr(1e-4, e) for e in range(4)] == pytest.approx([1e-4, 1e-4, 5e-5, 2.5e-5])


def _curve(points):
    return [{"epoch": i, "train_s": t, "val_mse": v, "test_mse": m} for i, (t, v, m) in enumerate(points)]


def test_selection_uses_validation_within_the_budget(tta):
    curve = _curve([(30, 0.70, 0.40), (60, 0.68, 0.372), (90, 0.69, 0.365), (150, 0.66, 0.360)])
    assert tta.selected(curve, 10) is None
    assert tta.selected(curve, 100)["test_mse"] == 0.372  # the lower test MSE at 90 s is not chosen
    assert tta.selected(curve, math.inf)["test_mse"] == 0.360
    assert tta.time_to(curve, 0.370) == 150
    assert tta.time_to(curve, 0.35) is None


def test_fixed_schedule_picks_the_epoch_on_mean_validation(tta):
    """Seed 0's best epoch is its third, which seed 1 did not finish within the budget: only the
    epochs every seed finished are candidates, and their mean validation MSE picks the second."""
    recs = [{"curve": _curve([(30, 0.70, 0.40), (60, 0.69, 0.38), (90, 0.60, 0.37)])},
            {"curve": _curve([(30, 0.72, 0.41), (60, 0.66, 0.36), (200, 0.50, 0.30)])}]
    epoch, val, test = tta.fixed_schedule(recs, 100)
    assert epoch == 1 and val == pytest.approx(0.675)
    assert test.startswith("0.3700")
    assert tta.fixed_schedule(recs, 10) is None


def test_report_states_the_target_and_every_curve(tta):
    recs = []
    for model, params, pts in (("titans", 1000, [(40, 0.70, 0.380), (80, 0.69, 0.368)]),
                               ("dlinear", 10, [(5, 0.72, 0.40)])):
        recs.append({"model": model, "seed": 0, "params": params, "curve": _curve(pts), "budget": 137.0,
                     "machine": "m", "threads": 2, "torch": "2.13.0", "recipe": "recipes/quick/ETTh1_96_96.yaml",
                     "command": "python benchmarks/time_to_accuracy.py"})
    text = tta.render(recs, 137.0)
    rows = [ln for ln in text.splitlines() if ln.startswith("| titans") or ln.startswith("| dlinear")]
    assert len(rows) == 2
    assert "| 80 |" in rows[0]  # seconds to the target
    assert "never" in rows[1]
    assert "1 of 1 seeds below it" in text
    assert "python benchmarks/time_to_accuracy.py" in text


def test_reference_run_records_a_curve(tta, data_root, monkeypatch):
    """One real epoch of DLinear on ETTh1 (seconds): the curve the table is built from."""
    monkeypatch.setitem(tta.TSLIB_SETTINGS, "dlinear", dict(tta.TSLIB_SETTINGS["dlinear"], epochs=1))
    rec = tta.run_reference("dlinear", 0, str(data_root), lambda s: None)
    (point,) = rec["curve"]
    assert point["train_s"] > 0 and 0.3 < point["val_mse"] < 3 and 0.3 < point["test_mse"] < 3
    json.dumps(rec)


def test_a_rerun_replaces_its_record(tta, tmp_path):
    path = tmp_path / "tta.jsonl"
    rows = [{"model": "dlinear", "seed": 0, "v": 1}, {"model": "dlinear", "seed": 1, "v": 2},
            {"model": "dlinear", "seed": 0, "v": 3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert sorted(r["v"] for r in tta._load(path)) == [2, 3]


def test_a_row_refuses_seeds_run_with_other_settings(tta):
    def rec(seed, dropout):
        return {"model": "titans", "seed": seed, "params": 10, "curve": _curve([(5, 0.7, 0.38)]),
                "settings": {"model": {"dropout": dropout}, "data": {"seed": seed}}}
    assert len(tta.table([rec(0, 0.3), rec(1, 0.3)], 137.0)) == 3  # seeds may differ
    with pytest.raises(ValueError, match="differ in their settings"):
        tta.table([rec(0, 0.3), rec(1, 0.2)], 137.0)
