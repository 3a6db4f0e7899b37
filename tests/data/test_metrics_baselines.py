"""Shared metrics and the reference baselines, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from titans_ts import metrics as M
from titans_ts.baselines import evaluate_baseline, repeat_last, seasonal_naive
from titans_ts.datasets import WindowDataset, ltsf_splits


def test_point_metrics_with_mask():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    f = np.array([1.0, 3.0, 1.0, 100.0])
    m = np.array([True, True, True, False])
    assert M.mse(y, f, m) == pytest.approx((0 + 1 + 4) / 3)
    assert M.mae(y, f, m) == pytest.approx(1.0)
    assert M.smape([0.0, 2.0], [0.0, 1.0]) == pytest.approx(100 * (1 / 3))
    with pytest.raises(ValueError, match="shape"):
        M.mse(y, f[:3])
    with pytest.raises(ValueError, match="no observed value"):
        M.mae(y, f, np.zeros(4, bool))


def test_mase_and_quantiles_and_coverage():
    hist = np.array([1.0, 3.0, 1.0, 3.0, 1.0])  # season-1 naive MAE = 2
    assert M.mase([2.0, 2.0], [3.0, 1.0], hist, season=1) == pytest.approx(0.5)
    assert M.mase([2.0, 2.0], [3.0, 1.0], hist, season=2) == pytest.approx(np.inf)
    y = np.array([1.0, 2.0])
    q = np.stack([y - 1, y, y + 1], axis=-1)
    # q=0.1: residual +1 each -> 0.1*2 ; q=0.5: 0 ; q=0.9: residual -1 -> 0.1*2
    expected = np.mean([2 * 0.2 / 3, 0.0, 2 * 0.2 / 3])
    assert M.weighted_quantile_loss(y, q, [0.1, 0.5, 0.9]) == pytest.approx(expected)
    assert M.coverage([1.0, 5.0], [0.0, 0.0], [2.0, 2.0]) == 0.5


def test_baselines_by_hand():
    past = torch.arange(12.0).view(1, 12, 1)
    assert repeat_last(past, 3).flatten().tolist() == [11.0, 11.0, 11.0]
    assert seasonal_naive(past, 5, 4).flatten().tolist() == [8.0, 9.0, 10.0, 11.0, 8.0]
    mask = torch.ones_like(past, dtype=torch.bool)
    mask[0, 11, 0] = False
    assert repeat_last(past, 2, mask).flatten().tolist() == [10.0, 10.0]
    assert seasonal_naive(past, 4, 4, mask).flatten().tolist() == [8.0, 9.0, 10.0, 7.0]
    with pytest.raises(ValueError, match="season must be between 1 and the context length 12"):
        seasonal_naive(past, 4, 13)


def test_evaluate_baseline_uses_every_window():
    vals = np.sin(np.arange(200) * 2 * np.pi / 10)[:, None]
    ds = WindowDataset(vals, 20, 7)
    res = evaluate_baseline(ds, "seasonal_naive", season=10, batch_size=16)
    assert res["windows"] == 200 - 27 + 1 and res["mse"] < 1e-10


def test_etth1_seasonal_naive_reference(data_root):
    _, _, test, _ = ltsf_splits("ETTh1", 96, 96, root=data_root)
    res = evaluate_baseline(test, "repeat_last")
    # the long-horizon literature's "Repeat" row for ETTh1-96 (e.g. Autoformer / FEDformer papers)
    assert res["windows"] == 2785 and res["mse"] == pytest.approx(1.295, abs=0.002)
