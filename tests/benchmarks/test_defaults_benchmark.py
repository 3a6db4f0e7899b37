"""benchmarks/defaults.py: the record it keeps and the report it renders (no training here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


def _module():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("defaults_benchmark", REPO / "benchmarks" / "defaults.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(dataset, model, seed, mase, **extra):
    return {"dataset": dataset, "model": model, "seed": seed, "horizon": 6, "series": 3, "MASE": mase,
            "sMAPE": 10.0, "wQL": 0.1, "train_s": 2.0, "eval_s": 1.0, "host": "h", "date": "d",
            "command": "python benchmarks/defaults.py", **extra}


def test_a_rerun_replaces_its_row_and_the_report_counts_wins(tmp_path):
    mod = _module()
    settings = {"context_length": 12, "cycle_len": 0, "max_epochs": 12, "num_batches_per_epoch": 50,
                "epochs_run": 7, "validation": "last 6 steps of every series", "seasons": [],
                "useful_seasons": []}
    rows = [_row("m3_yearly", "seasonal_naive", 0, 3.0), _row("m3_yearly", "deepar", 0, 2.5),
            _row("m3_yearly", "titans", 0, 2.9, settings=settings),
            _row("m3_yearly", "titans", 0, 2.0, settings=settings),  # the forced rerun
            _row("m1_yearly", "seasonal_naive", 0, 4.0), _row("m1_yearly", "deepar", 0, 3.0),
            _row("m1_yearly", "titans", 0, 3.5, settings=settings),
            _row("m1_yearly", "titans", 1, 4.5, settings=settings)]
    path = tmp_path / "defaults.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kept = mod.read_results(path)
    assert len(kept) == 7
    assert [r["MASE"] for r in kept if r["dataset"] == "m3_yearly" and r["model"] == "titans"] == [2.0]
    text = mod.render(kept, {"m3_yearly": 3, "m1_yearly": 3})
    # m1_yearly: titans' mean over its two seeds (4.0) ties the naive, so it does not beat it
    assert "| m1_yearly | 3 | 6 | titans | 4.000 |" in text
    assert "| m3_yearly | 3 | 6 | titans | **2.000** |" in text
    assert "`titans` (defaults only) has a lower MASE than seasonal_naive on 1 of 2 sets, deepar on 1 of 2 sets." \
        in text


def test_the_report_scores_the_statistical_models_and_says_where_one_stopped(tmp_path):
    mod = _module()
    rows = [_row("etth1", "seasonal_naive", 0, 1.0), _row("etth1", "auto_ets", 0, 1.8, fallbacks=2),
            _row("etth1", "auto_theta", 0, 0.9), _row("etth1", "mstl", 0, 0.95),
            {**_row("etth1", "auto_arima", 0, None), "sMAPE": None, "wQL": None,
             "status": "stopped after 10 of 7 series (700 s): projected 800 s > the 600 s limit"},
            _row("etth1", "titans_forecaster", 0, 0.92), _row("etth1", "titans_forecaster_fallback", 0, 0.91),
            _row("m1_yearly", "seasonal_naive", 0, 4.0), _row("m1_yearly", "auto_ets", 0, 3.9),
            _row("m1_yearly", "auto_theta", 0, 3.6), _row("m1_yearly", "titans_forecaster", 0, 3.7)]
    text = mod.render(rows, {"etth1": 7, "m1_yearly": 181})
    assert "| etth1 | 7 | 6 | auto_arima | - | - | - |" in text
    assert "auto_arima on etth1: stopped after 10 of 7 series" in text
    assert "auto_ets on etth1: 2 series forecast by the seasonal naive" in text
    # the best statistical model: AutoTheta on both sets (0.9, 3.6); the forecaster beats AutoETS twice
    assert ("`titans_forecaster` (defaults only) has a lower MASE than seasonal_naive on 2 of 2 sets, "
            "auto_ets on 2 of 2 sets, auto_theta on 0 of 2 sets, mstl on 1 of 1 sets, best statistical model "
            "on 0 of 2 sets.") in text
    assert "`titans_forecaster_fallback` (defaults only) has a lower MASE than" in text
    assert "| etth1 | 7 | 6 | auto_theta | **0.900** |" in text


@pytest.mark.data
def test_the_hourly_panel_is_built_as_documented(data_root):
    from titans_ts.datasets.panels import hourly_panel

    df, report = hourly_panel(data_root)
    lengths = df.groupby("unique_id", sort=False).size()
    # ETTh1 / ETTh2: 7 columns x 17 pieces of 1024 hours; weather: 19 columns x 9 pieces of 976,
    # less the 21 pieces with a missing hour
    assert report.kept == {"ETTh1": 119, "ETTh2": 119, "weather": 150} and len(lengths) == 388
    assert set(lengths) == {1024, 976} and not report.zero_scale and len(report.missing_values) == 21
    assert "weather/OT/1" in report.missing_values and not df["y"].isna().any()
    one = df[df["unique_id"] == "ETTh1/OT/16"]
    assert one["ds"].iloc[-1] == pd.Timestamp("2018-06-26 19:00") and one["ds"].diff().iloc[1:].eq(
        pd.Timedelta("1h")).all()
    assert not df["unique_id"].str.contains("rain").any()
    again, _ = hourly_panel(data_root)
    pd.testing.assert_frame_equal(df, again)
    with pytest.raises(ValueError, match="length must be an integer of at least"):
        hourly_panel(data_root, length=50)
