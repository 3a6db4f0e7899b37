"""benchmarks/online_report.py on synthetic records: the tables' cells, the counts of the Reading
section, the backbone choice, the commands and the plots (numbers derived from the records)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from titans_ts.online.config import OnlineConfig

REPO = Path(__file__).resolve().parents[2]


def _report():
    spec = importlib.util.spec_from_file_location("online_report", REPO / "benchmarks" / "online_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


NETWORK = {"patch_len": 16, "stride": 8, "d_model": 64, "n_layers": 1, "dropout": 0.2, "revin_center": "last",
           "memory": {"heads": 4, "depth": 2, "expansion": 2.0, "chunk_size": 16, "max_lr": 0.02}}


def _record(dataset, L, H, mode, seed, mse, **extra):
    """A record as the runner writes it now (naive modes: only the naive fields)."""
    r = {"dataset": dataset, "seq_len": L, "horizon": H, "mode": mode, "seed": seed, "tag": "main", "mse": mse,
         "mae": mse / 2, "ms_per_step": 1.0, "parts": [mse] * 20, "test_origins": 100,
         "season": {"ETTh2": 24, "ETTm1": 96, "weather": 144}[dataset]}
    if mode not in ("repeat_last", "seasonal_naive"):
        r.update({"backbone_horizon": 96, "backbone_epochs": 10 + seed, "backbone_seconds": 100.0 + 10 * seed,
                  "backbone_val_curve": [1.0], "memory_pace": [-8.0, -4.0, -5.0], "online_lr": 1e-4,
                  "online_lr_val": {"1e-05": 1.1, "0.0001": 1.0}, "training": OnlineConfig().training.to_dict(),
                  "network": NETWORK, "memory": OnlineConfig().memory.to_dict(),
                  "machine": "test machine", "run_seconds": 5.0})
        if mode in ("carried", "carried+online_gd"):
            r.update({"gain_mean": 0.5, "level_gain_mean": 0.25})
    r.update(extra)
    return r


# (frozen, carried, carried+online_gd, online_gd, repeat_last, seasonal_naive) at the scripts' look-back;
# None: not run. The comments say which acceptance points each cell meets.
CELLS = {
    ("ETTh2", 336, 24): (2.0, 1.9, 1.7, 1.65, 1.8, 2.5),     # carried above repeat_last; memory above online_gd
    ("ETTh2", 336, 48): (3.5, 2.8, 2.9, 2.95, 2.85, 3.5),    # all met
    ("ETTh2", 336, 96): (5.5, 4.7, None, 5.4, 4.785, 5.43),  # all met; repeat_last the best alternative
    ("ETTm1", 512, 24): (0.6, 0.42, None, 0.45, 1.5, 0.91),  # all met (Proceed 0.424, guide 0.609)
    ("ETTm1", 512, 48): (0.8, 0.6, None, 0.59, 2.6, 0.91),   # online_gd 1 seed, below memory; above Proceed, guide
    ("ETTm1", 512, 96): (0.85, 0.65, None, None, 2.7, 0.91),  # online_gd not run
    ("weather", 512, 24): (0.9, 0.7, None, 0.75, 1.4, 2.3),
    ("weather", 512, 48): (1.2, 1.3, None, 1.25, 2.5, 2.3),  # carried above frozen, online_gd; above Proceed
    ("weather", 512, 96): (1.5, 1.2, None, 1.3, 4.0, None),  # seasonal_naive not run
}
ORDER = ("frozen", "carried", "carried+online_gd", "online_gd", "repeat_last", "seasonal_naive")


def _scripts_rows():
    rows = []
    for (d, L, H), values in CELLS.items():
        for mode, mse in zip(ORDER, values, strict=True):
            if mse is None:
                continue
            naive = mode in ("repeat_last", "seasonal_naive")
            seeds = (1,) if (d, H, mode) == ("ETTm1", 48, "online_gd") else (0, 1, 2)
            rows += [_record(d, L, H, mode, s, mse + (0 if naive else 0.01 * (s - 1))) for s in seeds]
    return rows


def _table(text: str, section: str, header: str) -> dict:
    """{(dataset, L, H): {column: cell}} of the table whose header starts with ``header`` in the
    section whose title starts with ``section``."""
    part = text[text.index(section):]
    part = part[:part.find("\n## ", 1)] if "\n## " in part[1:] else part
    lines = part.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(header))
    cols = [c.strip() for c in lines[at].strip("|").split("|")]
    out = {}
    for line in lines[at + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        row = dict(zip(cols, cells, strict=True))
        out[(row["dataset"], int(row["L"]), int(row["H"]))] = row
    return out


SCRIPTS = "## Results: the look-back of Proceed's scripts"


def test_reading_counts_each_acceptance_point():
    rep = _report()
    c = rep.reading_counts(rep._group(_scripts_rows()), "scripts")
    k, n, short = c["seeds"]
    assert (k, n) == (8, 9) and short == ["weather H=96 (seasonal_naive 0)"]
    k, n, fails, uncounted = c["carried"]
    assert (k, n) == (6, 8)
    assert fails == ["ETTh2 H=24 (carried 1.900; repeat_last 1.800)", "weather H=48 (carried 1.300; frozen 1.200)"]
    assert uncounted == ["weather H=96 (not run: seasonal_naive)"]
    k, n, fails, uncounted = c["online_gd"]
    assert (k, n) == (5, 8) and uncounted == ["ETTm1 H=96"]
    assert fails == ["ETTh2 H=24 (carried+online_gd 1.700 vs online_gd 1.650)",
                     "ETTm1 H=48 (carried 0.600 vs online_gd 0.590)", "weather H=48 (carried 1.300 vs online_gd 1.250)"]
    k, n, fails = c["proceed"]
    assert (k, n) == (7, 9)
    assert fails == ["ETTm1 H=48 (carried 0.600 vs 0.577, +4.0 %)", "weather H=48 (carried 1.300 vs 0.973, +33.6 %)"]
    k, n, detail = c["itransformer"]
    assert (k, n) == (5, 6) and "ETTm1 H=48 0.800 vs 0.797 (+0.4 %)" in detail and "ETTm1 H=24 0.600 vs 0.609" in detail


def test_reading_section_states_the_counts(tmp_path):
    rep = _report()
    rows = _scripts_rows() + [_record("ETTh2", 96, 24, m, s, v) for s in (0, 1, 2)
                              for m, v in (("frozen", 2.0), ("carried", 1.8), ("repeat_last", 1.9),
                                           ("seasonal_naive", 2.4))]
    text = rep.render(rows, tmp_path / "online.md", plots=False)
    reading = text[text.index("## Reading"):]
    scripts, short = reading.split("At L = 96:")
    assert "in 8 of 9 cells" in scripts and "in 6 of 8 cells" in scripts and "in 5 of 8 cells" in scripts
    assert "in 7 of 9 cells" in scripts and "in 5 of 6 cells" in scripts
    # at L = 96 one cell: carried below frozen and both naive modes; 3 seeds in 1 of the 9 cells
    assert "in 1 of 9 cells" in short and "in 1 of 1 cells" in short
    # the frozen backbone across look-backs: ETTh2 H=24 2.000 at both
    assert "in 0 of 1 cells" in reading and "ETTh2 H=24 2.000 at L = 336 vs 2.000" in reading


def test_tables_name_the_best_alternative_and_the_percentages(tmp_path):
    rep = _report()
    text = rep.render(_scripts_rows(), tmp_path / "online.md", plots=False)
    comp = _table(text, SCRIPTS, "| dataset | L | H | best simple alternative")
    assert comp[("ETTh2", 336, 24)]["best simple alternative"] == "online_gd 1.650"
    assert comp[("ETTh2", 336, 96)]["best simple alternative"] == "repeat_last 4.785"
    assert comp[("ETTm1", 512, 96)]["best simple alternative"] == "seasonal_naive 0.910"
    row = comp[("ETTh2", 336, 96)]  # carried 4.7, frozen 5.5, repeat_last 4.785, online_gd 5.4, Proceed 5.555
    assert row["carried vs frozen"] == "-14.5 %"
    assert row["carried vs best alternative"] == "-1.8 %"
    assert row["better memory mode vs online_gd"] == "carried -13.0 %"
    assert row["PatchTST + Proceed / + online GD (published)"] == "5.555 / 5.770"
    assert row["better memory mode vs Proceed"] == "carried -15.4 %"
    # carried+online_gd 1.7 is the better memory mode at ETTh2 H=24: +3.0 % against online_gd 1.65
    assert comp[("ETTh2", 336, 24)]["better memory mode vs online_gd"] == "carried+online_gd +3.0 %"
    assert comp[("ETTm1", 512, 96)]["better memory mode vs online_gd"] == ""  # online_gd not run
    acc = _table(text, SCRIPTS, "| dataset | L | H | seeds |")
    assert acc[("ETTh2", 336, 96)]["carried"] == "4.700 ± 0.010 / 2.350"
    assert acc[("ETTh2", 336, 96)]["carried+online_gd"] == "not run"
    # a mode with fewer seeds than its row
    assert acc[("ETTm1", 512, 48)]["seeds"] == "3"
    assert acc[("ETTm1", 512, 48)]["online_gd"] == "0.590 / 0.295 (1 seed)"
    costs = _table(text, SCRIPTS, "| dataset | L | H | gains")
    row = costs[("ETTh2", 336, 24)]
    assert row["gains (carried: main / level / fallback)"] == "0.50 / 0.25"
    assert row["pace (chosen / seeds)"] == "(-8, -4, -5) 3"
    assert row["online_gd lr (chosen / seeds)"] == "0.0001 3"
    assert (row["backbone H"], row["backbone epochs"], row["backbone s"]) == ("96", "11", "110")


def test_the_fallback_gain_and_fewer_seeds_of_the_backbone(tmp_path):
    rep = _report()
    rows = [_record("ETTh2", 336, 48, "frozen", s, 3.0) for s in (0, 1)]
    rows += [_record("ETTh2", 336, 48, "carried", s, 2.5, gain_mean=0.25 + 0.5 * s, level_gain_mean=0.5,
                     fallback_gain_mean=0.1 * s) for s in (0, 1)]
    text = rep.render(rows, tmp_path / "online.md", plots=False)
    row = _table(text, SCRIPTS, "| dataset | L | H | gains")[("ETTh2", 336, 48)]
    assert row["gains (carried: main / level / fallback)"] == "0.50 / 0.50 / 0.05"
    assert (row["backbone epochs"], row["backbone s"]) == ("10.5", "105")


def test_a_tagged_variant_is_compared_with_the_main_baselines(tmp_path):
    """Records of another memory setting (tag `fallback-off`) get their own section, beside the
    main records' frozen and naive modes of the same cell; the memory's settings show in the
    commands of the memory modes only."""
    rep = _report()
    off = {**OnlineConfig().memory.to_dict(), "fallback_gains": [0.0]}
    rows = [_record("ETTh2", 336, 48, m, s, v) for s in (0, 1, 2)
            for m, v in (("frozen", 3.0), ("carried", 2.5), ("repeat_last", 2.6))]
    rows += [_record("ETTh2", 336, 48, "carried", s, 2.8, tag="fallback-off", memory=off) for s in (0, 1, 2)]
    rows += [_record("ETTh2", 336, 48, "frozen", 3, 3.0, memory=off)]  # frozen reads no memory
    text = rep.render(rows, tmp_path / "online.md", plots=False)
    main, variant = text.split("[fallback-off]")[0], text.split("[fallback-off]")[1].split("## Reading")[0]
    assert "| ETTh2 | 336 | 48 | repeat_last 2.600 | -16.7 % | -3.8 % |" in main
    assert "| ETTh2 | 336 | 48 | repeat_last 2.600 | -6.7 % | +7.7 % |" in variant
    assert "`fallback-off`: the memory modes without the fallback correction" in text
    commands = text.split("## Commands")[1]
    assert commands.count('"fallback_gains": [0.0]') == 1  # the variant's carried, not the frozen seed
    assert ("--modes carried --config '{\"memory\": {\"fallback_gains\": [0.0]}}' --backbone-cache "
            "runs/online-backbones --tag fallback-off") in commands


def test_old_records_still_render(tmp_path):
    """Records of the earlier runner: no backbone_horizon, memory_trained, one gain, a 6-epoch budget."""
    rep = _report()
    old_training = {"max_epochs": 6, "limit_train_batches": 24, "batch_size": 128, "lr": 0.001, "patience": 3}
    rows = []
    for s in (0, 1, 2):
        for mode, mse in (("frozen", 1.0), ("carried", 0.8)):
            r = {"dataset": "ETTm1", "seq_len": 96, "horizon": 24, "mode": mode, "seed": s, "tag": "main",
                 "mse": mse, "mae": 0.5, "memory_trained": False, "backbone_seconds": 50.0, "memory_seconds": 1.0,
                 "backbone_epochs": 7, "online_lr": 3e-5, "online_lr_val": {}, "memory_pace": [-10.0, -4.0, -4.0],
                 "training": old_training, "network": NETWORK, "ms_per_step": 2.0, "parts": [1.0] * 20,
                 "memory": {"dim": 64, "heads": 4, "depth": 1, "max_lr": 0.5, "chunk_size": 1, "soft_norm": True,
                            "learn_gates": False}, "run_seconds": 200.0}
            if mode == "carried":
                r["gain_mean"] = 0.5
            rows.append(r)
    text = rep.render(rows, tmp_path / "online.md", plots=False)
    acc = _table(text, "## Results: L = 96", "| dataset | L | H | seeds |")[("ETTm1", 96, 24)]
    assert acc["carried"] == "0.800 ± 0.000 / 0.500"
    comp = _table(text, "## Results: L = 96", "| dataset | L | H | best simple alternative")[("ETTm1", 96, 24)]
    assert comp["carried vs frozen"] == "-20.0 %" and comp["best simple alternative"] == "none ran"
    costs = _table(text, "## Results: L = 96", "| dataset | L | H | gains")[("ETTm1", 96, 24)]
    assert costs["gains (carried: main / level / fallback)"] == "0.50"
    assert (costs["backbone H"], costs["backbone epochs"], costs["backbone s"]) == ("own", "7", "50")
    # the command reruns the recorded budget (the settings differing from today's defaults)
    assert ("titans-ts benchmark online ETTm1 --seq-len 96 --horizons 24 --seeds 0 1 2 --modes frozen carried "
            "--config '{\"training\": {\"limit_train_batches\": 24, \"max_epochs\": 6, \"patience\": 3}}' "
            "--backbone-cache runs/online-backbones --out docs/benchmarks/results/online.jsonl") in text
    assert "memory.learn_gates" in text  # a recorded setting today's configuration does not have


def test_naive_only_rows(tmp_path):
    rep = _report()
    rows = [_record("weather", 512, H, m, s, v + H / 100) for s in (0, 1, 2) for H in (24, 48)
            for m, v in (("repeat_last", 1.4), ("seasonal_naive", 2.3))]
    text = rep.render(rows, tmp_path / "online.md", plots=False)
    acc = _table(text, SCRIPTS, "| dataset | L | H | seeds |")
    assert set(acc[("weather", 512, 24)]) == {"dataset", "L", "H", "seeds", "repeat_last", "seasonal_naive"}
    assert acc[("weather", 512, 48)]["repeat_last"] == "1.880 ± 0.000 / 0.940"
    comp = _table(text, SCRIPTS, "| dataset | L | H | best simple alternative")[("weather", 512, 24)]
    assert comp["best simple alternative"] == "repeat_last 1.640"
    assert comp["carried vs frozen"] == "" and comp["better memory mode vs Proceed"] == ""
    assert _table(text, SCRIPTS, "| dataset | L | H | gains")[("weather", 512, 24)]["backbone H"] == ""
    # a naive-only command trains no backbone
    assert ("titans-ts benchmark online weather --seq-len 512 --horizons 24 48 --seeds 0 1 2 --modes repeat_last "
            "seasonal_naive --out docs/benchmarks/results/online.jsonl") in text
    c = rep.reading_counts(rep._group(rows), "scripts")
    assert c["carried"][:2] == (0, 0) and c["proceed"][:2] == (0, 0) and c["seeds"][:2] == (0, 9)


def test_commands_take_the_records_settings(tmp_path):
    rep = _report()
    training = {**OnlineConfig().training.to_dict(), "lr": 5e-4}
    network = {**NETWORK, "d_model": 128, "memory": {**NETWORK["memory"], "depth": 1}}
    rows = [_record("ETTh2", 336, H, m, s, 1.0, training=training, network=network)
            for s in (0, 1) for H in (24, 96) for m in ("frozen", "carried", "online_gd")]
    text = rep.render(rows, tmp_path / "online.md", plots=False)
    config = json.dumps({"network": {"d_model": 128, "memory": {"depth": 1}}, "training": {"lr": 0.0005}},
                        sort_keys=True)
    assert (f"titans-ts benchmark online ETTh2 --seq-len 336 --horizons 24 96 --seeds 0 1 --modes frozen carried "
            f"online_gd --config '{config}' --online-lrs 1e-05 0.0001 --backbone-cache runs/online-backbones "
            f"--out docs/benchmarks/results/online.jsonl") in text
    assert rep.overrides(rows[0]) == (json.loads(config), [])


def test_the_backbone_section_marks_the_choice(tmp_path):
    rep = _report()

    def bb(d, L, over, val, seed=0, net=NETWORK):
        return {"dataset": d, "seq_len": L, "horizon": 96, "seed": seed, "overrides": over, "val_mse": val,
                "epochs": 12, "seconds": 300.0, "params": 1000, "val_curve": [val], "network": net,
                "training": {**OnlineConfig().training.to_dict(), **over.get("training", {})}}

    backbones = [bb("ETTh2", 336, {}, 1.03), bb("ETTh2", 336, {"training": {"lr": 5e-4}}, 0.95),
                 bb("ETTh2", 336, {"network": {"d_model": 128}}, 0.99, net={**NETWORK, "d_model": 128}),
                 bb("ETTm1", 512, {}, 0.40)]
    training = {**OnlineConfig().training.to_dict(), "lr": 5e-4}
    rows = [_record("ETTh2", 336, 96, m, 0, 1.0, training=training) for m in ("frozen", "carried")]
    rows += [_record("ETTh2", 336, 96, "frozen", 1, 1.0)]  # trained with the defaults: not the chosen
    text = rep.render(rows, tmp_path / "online.md", plots=False, backbones=backbones)
    section = text[text.index("## Backbone"):text.index("## Commands")]
    chosen = [line for line in section.splitlines() if line.endswith("| yes |")]
    assert chosen == ['| `{"training": {"lr": 0.0005}}` | 96 | 0 | 0.9500 | 12 | 300 | 1000 | yes |',
                      "| `defaults` | 96 | 0 | 0.4000 | 12 | 300 | 1000 | yes |"]
    assert "at ETTh2 L = 336 trained with the chosen settings: 2 of 3." in section


def test_plots_have_a_panel_per_horizon(tmp_path):
    rep = _report()
    rows = [_record("ETTh2", 336, H, m, 0, 1.0) for H in (24, 48, 96) for m in rep.MODES]
    rows += [_record("ETTm1", 96, 24, m, 0, 1.0) for m in ("frozen", "repeat_last")]
    text = rep.render(rows, tmp_path / "online.md", plots=True)
    for name, panels in (("online_ETTh2_336.png", 3), ("online_ETTm1_96.png", 1)):
        assert f"(plots/{name})" in text
        png = (tmp_path / "plots" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(png[16:20], "big") == round(420 * panels)  # 4.2 inches a panel at 100 dpi


def test_repeated_records_are_refused(tmp_path):
    rep = _report()
    rows = [_record("ETTh2", 336, 24, "frozen", 0, 1.0), _record("ETTh2", 336, 24, "frozen", 0, 1.1)]
    with pytest.raises(ValueError, match=r"repeated .*\('main', 'ETTh2', 336, 24, 'frozen', 0\)"):
        rep.render(rows, tmp_path / "online.md", plots=False)
    with pytest.raises(ValueError, match=r"lacks \['mae'\]"):
        rep.render([{k: v for k, v in rows[0].items() if k != "mae"}], tmp_path / "online.md", plots=False)
