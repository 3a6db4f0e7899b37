"""The benchmark protocol, exactly: borders, window counts, train-only scaling, no dropped window."""

from __future__ import annotations

import numpy as np
import pytest

from titans_ts import datasets as D


@pytest.mark.parametrize(
    "name,L,H,counts",
    [
        ("ETTh1", 96, 96, (8449, 2785, 2785)),
        ("ETTh1", 96, 720, (7825, 2161, 2161)),
        ("ETTh2", 96, 192, (8353, 2689, 2689)),
        ("ETTm1", 96, 96, (34369, 11425, 11425)),
        ("ETTm1", 96, 720, (33745, 10801, 10801)),
        ("weather", 96, 96, (36696, 5175, 10444)),
        ("weather", 96, 720, (36072, 4551, 9820)),
        ("national_illness", 36, 24, (617, 74, 170)),
    ],
)
def test_window_counts(data_root, name, L, H, counts):
    train, val, test, scaler = D.ltsf_splits(name, L, H, root=data_root)
    assert (len(train), len(val), len(test)) == counts


def test_etth1_borders_and_scaling(data_root):
    train, val, test, scaler = D.ltsf_splits("ETTh1", 96, 96, root=data_root)
    frame = D.load_ltsf_frame("ETTh1", root=data_root)
    raw = frame.iloc[:, 1:].to_numpy()
    # scaler fitted on the 8640 training rows only (population std, like sklearn)
    np.testing.assert_allclose(scaler.mean_, raw[:8640].mean(0), rtol=1e-12)
    np.testing.assert_allclose(scaler.scale_, raw[:8640].std(0), rtol=1e-12)
    # the test split starts L rows before row 11520 and ends at 14400
    first = test[0]
    np.testing.assert_allclose(first["past"].numpy(), scaler.transform(raw[11520 - 96:11520]), atol=1e-6)
    np.testing.assert_allclose(first["future"].numpy(), scaler.transform(raw[11520:11616]), atol=1e-6)
    last = test[len(test) - 1]
    np.testing.assert_allclose(last["future"].numpy()[-1], scaler.transform(raw[14399]), atol=1e-6)
    assert test.timestamps[0] == frame["date"].iloc[11520 - 96]
    v0 = val[0]
    np.testing.assert_allclose(v0["past"].numpy(), scaler.transform(raw[8640 - 96:8640]), atol=1e-6)
    assert train.columns == list(frame.columns[1:]) and train.columns[-1] == "OT"
    # time_index: the file row of each window's first context step (what a learned cycle reads)
    assert train[5]["time_index"].item() == 5 and val[0]["time_index"].item() == 8640 - 96
    assert test[len(test) - 1]["time_index"].item() == 14400 - 96 - 96
    assert first["past"].shape == (96, 7) and first["future_mask"].all()


def test_univariate_features_and_bad_args(data_root):
    train, _, _, _ = D.ltsf_splits("ETTh1", 96, 96, root=data_root, features="S")
    assert train.n_channels == 1 and train.columns == ["OT"]
    with pytest.raises(ValueError, match="features must be"):
        D.ltsf_splits("ETTh1", 96, 96, root=data_root, features="X")
    with pytest.raises(ValueError, match="seq_len must be a positive integer"):
        D.WindowDataset(np.zeros((10, 1)), 0, 2)
    with pytest.raises(ValueError, match="has no window"):
        D.WindowDataset(np.zeros((10, 1)), 8, 4)


def test_ratio_split_rule():
    b = D.ltsf_borders("weather", 52696, 96)
    assert b == {"train": (0, 36887), "val": (36887 - 96, 36887 + 5270), "test": (52696 - 10539 - 96, 52696)}


def test_window_dataset_mask_and_stride():
    vals = np.arange(20, dtype=np.float32).reshape(10, 2)
    vals[3, 1] = np.nan
    ds = D.WindowDataset(vals, 4, 2, stride=2)
    assert len(ds) == 3
    item = ds[1]
    assert item["past"][1, 1] == 0.0 and not item["past_mask"][1, 1]
    assert item["past_mask"].sum() == 7
    assert ds[-1]["future"][-1, 0] == 18.0
    with pytest.raises(IndexError):
        ds[3]
    assert "time_index" not in item  # only with first_index
    assert D.WindowDataset(vals, 4, 2, stride=2, first_index=100)[2]["time_index"].item() == 104
    with pytest.raises(ValueError, match="first_index must be an integer"):
        D.WindowDataset(vals, 4, 2, first_index=1.5)
