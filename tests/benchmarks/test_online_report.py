"""benchmarks/online_report.py on synthetic records: look-backs, cells and their comparisons."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _report():
    spec = importlib.util.spec_from_file_location("online_report", REPO / "benchmarks" / "online_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _record(dataset, L, H, mode, seed, mse, parts):
    return {"dataset": dataset, "seq_len": L, "horizon": H, "mode": mode, "seed": seed, "tag": "main",
            "mse": mse, "mae": mse / 2, "gain_mean": 0.5, "memory_pace": [-8.0, -4.0, -5.0], "ms_per_step": 1.0,
            "backbone_seconds": 10.0, "memory_seconds": 1.0, "run_seconds": 12.0, "parts": parts,
            "training": {"batch_size": 128}, "machine": "test"}


def test_two_look_backs_are_told_apart(tmp_path):
    rep = _report()
    rows = []
    for seed in (0, 1):
        # L = 96: carried below frozen; L = 336 (the scripts' look-back): frozen worse than at 96, carried above
        rows += [_record("ETTh2", 96, 96, "frozen", seed, 5.0, [1.0] * 19 + [9.0]),
                 _record("ETTh2", 96, 96, "carried", seed, 4.0, [1.0] * 20),
                 _record("ETTh2", 336, 96, "frozen", seed, 6.0, [1.0] * 19 + [21.0]),
                 _record("ETTh2", 336, 96, "carried", seed, 6.6, [1.0] * 20),
                 _record("ETTm1", 96, 24, "frozen", seed, 1.0, [1.0] * 20),
                 _record("ETTm1", 96, 24, "carried", seed, 0.5, [1.0] * 20)]
    text = rep.render(rows, tmp_path / "online.md", plots=False)
    assert "Recorded at the scripts' look-back (like for like with the published numbers): ETTh2 (L = 336)." in text
    assert "Recorded only at shorter look-backs (the CPU budget below): ETTm1 (L = 96)" in text
    assert "## Results: the look-back of the scripts" in text and "## Results: L = 96" in text
    assert "in 2 of 3 cells; not in: ETTh2 L=336 H=96." in text
    # the gaps to the published numbers name the look-back (two ETTh2 H=96 cells)
    assert "published MSE in 1 of 3 cells (ETTh2 L=96 H=96); the gaps elsewhere: ETTh2 L=336 H=96 +19 %" in text
    # the backbone across look-backs, and the worst twentieth's share of the squared error (9/28, 21/40)
    assert "(worse at the longer one in 1 of 1 cells): ETTh2 H=96 5.000 vs 6.000 (L = 336)" in text
    assert "ETTh2 H=96 32 % vs 52 %" in text


def test_the_gain_column_names_both_memories(tmp_path):
    rep = _report()
    rows = []
    for seed in (0, 1):
        rows += [_record("ETTh2", 96, 48, "frozen", seed, 3.0, [1.0] * 20),
                 {**_record("ETTh2", 96, 48, "carried", seed, 2.5, [1.0] * 20), "gain_mean": 0.25 + 0.5 * seed,
                  "level_gain_mean": 0.5}]
    text = rep.render(rows, tmp_path / "online.md", plots=False)
    row = next(line for line in text.splitlines() if line.startswith("| ETTh2 | 96 | 48 |"))
    assert "| 0.50 ± 0.35 / 0.50 ± 0.00 |" in row
