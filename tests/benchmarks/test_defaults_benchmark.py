"""benchmarks/defaults.py: the record it keeps and the report it renders (no training here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

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
