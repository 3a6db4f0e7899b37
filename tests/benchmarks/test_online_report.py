"""benchmarks/online_report.py on synthetic records: look-backs, cells and their comparisons."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

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


def _tables(text: str) -> dict:
    """{section title: {(dataset, L, H): {column: cell}}}: the report's tables, cell by cell."""
    tables, title, header = {}, None, None
    for line in text.splitlines():
        if line.startswith("## "):
            title, header = line[3:], None
        elif line.startswith("| ") and title is not None:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            else:
                tables.setdefault(title, {})[tuple(cells[:3])] = dict(zip(header, cells))
    return tables


def _look_back_records():
    rows = []
    for seed, d in ((0, -0.2), (1, 0.2)):
        # L = 96: carried below frozen; L = 336 (the scripts' look-back): frozen worse than at 96, carried above
        rows += [_record("ETTh2", 96, 96, "frozen", seed, 5.0 + d, [1.0] * 19 + [9.0]),
                 _record("ETTh2", 96, 96, "carried", seed, 4.0 + d / 2, [1.0] * 20),
                 _record("ETTh2", 336, 96, "frozen", seed, 6.0, [1.0] * 19 + [21.0]),
                 _record("ETTh2", 336, 96, "carried", seed, 6.6, [1.0] * 20),
                 _record("ETTm1", 96, 24, "frozen", seed, 1.0, [1.0] * 20),
                 _record("ETTm1", 96, 24, "carried", seed, 0.5, [1.0] * 20)]
    return rows


def test_two_look_backs_are_told_apart(tmp_path):
    rep = _report()
    rows = _look_back_records()
    # ETTh2 ran at the scripts' look-back (336), ETTm1 only at 96
    assert rep.lookbacks(rows) == (["ETTh2"], {"ETTm1": [96]})
    text = rep.render(rows, tmp_path / "online.md", plots=False)
    tables = _tables(text)
    long, short = tables["Results: the look-back of the scripts"], tables["Results: L = 96"]
    assert list(long) == [("ETTh2", "336", "96")] and list(short) == [("ETTh2", "96", "96"), ("ETTm1", "96", "24")]
    cell = short[("ETTh2", "96", "96")]
    # means and standard deviations over the two seeds (MAE = MSE / 2 in these records)
    assert cell["seeds"] == "2" and cell["frozen MSE / MAE"] == "5.000 ± 0.283 / 2.500 ± 0.141"
    assert cell["carried MSE / MAE"] == "4.000 ± 0.141 / 2.000 ± 0.071" and cell["online_gd MSE / MAE"] == "not run"
    # 4.0 / 5.0 and 4.0 / 5.555 (Proceed's published ETTh2 H=96), each against its own look-back's cell
    assert (cell["carried vs frozen"], cell["PatchTST + Proceed"], cell["carried vs Proceed"]) == \
        ("-20.0 %", "5.555", "-28.0 %")
    cell = long[("ETTh2", "336", "96")]
    assert (cell["carried vs frozen"], cell["carried vs Proceed"]) == ("+10.0 % **(not below)**", "+18.8 %")
    cell = short[("ETTm1", "96", "24")]
    assert (cell["carried vs frozen"], cell["PatchTST + Proceed"], cell["carried vs Proceed"]) == \
        ("-50.0 %", "0.424", "+17.9 %")
    # what the reading section counts
    n = rep.reading_numbers(rep.group(rows))
    assert n["cells"] == [("ETTh2", 96, 96), ("ETTh2", 336, 96), ("ETTm1", 96, 24)]
    assert n["below"] == [("ETTh2", 96, 96), ("ETTm1", 96, 24)] and n["sequential"] == []
    assert n["gaps"] == [("ETTh2", 96, 96, pytest.approx(4.0), 5.555), ("ETTh2", 336, 96, pytest.approx(6.6), 5.555),
                         ("ETTm1", 96, 24, pytest.approx(0.5), 0.424)]
    # the frozen backbone across look-backs, and the worst twentieth's share of the squared error
    assert n["pairs"] == [("ETTh2", 336, 96, pytest.approx(5.0), pytest.approx(6.0), pytest.approx(9 / 28),
                           pytest.approx(21 / 40))]
    # the reading states those numbers (rounded), each with its cell
    reading = text.split("## Reading")[1].split("## ")[0]
    for stated in ("2 of 3 cells", "ETTh2 L=336 H=96 +19 %", "ETTm1 L=96 H=24 +18 %", "5.000 vs 6.000 (L = 336)",
                   "32 % vs 52 %"):
        assert stated in reading, stated


def test_the_gain_column_names_both_memories(tmp_path):
    rep = _report()
    rows = []
    for seed in (0, 1):
        rows += [_record("ETTh2", 96, 48, "frozen", seed, 3.0, [1.0] * 20),
                 {**_record("ETTh2", 96, 48, "carried", seed, 2.5, [1.0] * 20), "gain_mean": 0.25 + 0.5 * seed,
                  "level_gain_mean": 0.5}]
    cell = _tables(rep.render(rows, tmp_path / "online.md", plots=False))["Results: L = 96"][("ETTh2", "96", "48")]
    # main memory 0.25 and 0.75 over the seeds, level memory 0.5 in both
    assert cell["gain"] == "0.50 ± 0.35 / 0.50 ± 0.00"
