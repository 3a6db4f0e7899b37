"""Render docs/benchmarks/online.md (and its plots) from docs/benchmarks/results/online.jsonl and
docs/benchmarks/results/online_backbones.jsonl.

    titans-ts benchmark online ETTh2 --out docs/benchmarks/results/online.jsonl   # records
    python benchmarks/online_backbones.py ETTh2 --seq-len 336 --grid ...          # backbone choice
    python benchmarks/online_report.py                                            # this report

Every number in the report comes from the records; the published numbers beside them are
Proceed's Table 3 (Zhao & Shen, KDD 2025, arXiv 2412.08435), as quoted in the project's issue 34.
Every table that shows a titans-ts number also shows the simple alternatives a practitioner
would run instead (repeat-last, seasonal naive, online gradient descent), and every comparison
in the Reading section is counted from the records.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from titans_ts.datasets.online import ONLINE_LOOKBACK  # the look-back of Proceed's public scripts
from titans_ts.online.config import MODES, NAIVE_MODES, SEQUENTIAL_MODES, OnlineConfig

#: the modes whose forecasts read the stream memory (its settings change only these)
MEMORY_MODES = ("carried", "carried+online_gd")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "benchmarks" / "results" / "online.jsonl"
BACKBONES = REPO / "docs" / "benchmarks" / "results" / "online_backbones.jsonl"
OUT = REPO / "docs" / "benchmarks" / "online.md"

# Proceed, Table 3, PatchTST backbone, MSE at H = 24 / 48 / 96
PROCEED = {
    "PatchTST + Proceed": {"ETTh2": (1.735, 3.114, 5.555), "ETTm1": (0.424, 0.577, 0.660),
                           "weather": (0.724, 0.973, 1.261)},
    "PatchTST + online GD": {"ETTh2": (2.092, 3.434, 5.770), "ETTm1": (0.455, 0.598, 0.674),
                             "weather": (0.735, 0.979, 1.261)},
}
# an iTransformer frozen at L = 512 in a public OnlineTSF run (unpublished; quoted by issue 34 as a
# guide for the frozen backbone), MSE at H = 24 / 48 / 96
ITRANSFORMER = {"ETTm1": (0.609, 0.797, 0.852), "weather": (0.998, 1.372, 1.724)}
HORIZONS = (24, 48, 96)
# the cells issue 34 asks for at each look-back
ISSUE_CELLS = tuple((d, H) for d in PROCEED["PatchTST + Proceed"] for H in HORIZONS)
ISSUE_SEEDS = 3
# the simple alternatives: what a practitioner would run instead of the memory
ALTERNATIVES = ("repeat_last", "seasonal_naive", "online_gd")
MEMORY = ("carried", "carried+online_gd")  # the memory modes ("the better memory mode": the lower)
REQUIRED = ("dataset", "seq_len", "horizon", "mode", "seed", "mse", "mae")


def load(path: Path = RESULTS) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------- records


def check_records(rows: list[dict]) -> None:
    """Refuse records the report cannot read: a missing field, or two records of one
    (tag, dataset, look-back, horizon, mode, seed) (their mean would mix two runs)."""
    for i, r in enumerate(rows):
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            raise ValueError(f"online record {i + 1} lacks {missing}; every record needs {list(REQUIRED)} "
                             f"(got keys {sorted(r)})")
    seen = Counter((r.get("tag", "main"), r["dataset"], r["seq_len"], r["horizon"], r["mode"], r["seed"])
                   for r in rows)
    twice = [k for k, n in seen.items() if n > 1]
    if twice:
        raise ValueError(f"online records repeated for (tag, dataset, seq_len, horizon, mode, seed) {twice[:5]}"
                         f"{' and more' if len(twice) > 5 else ''}: keep one record per key (another run of "
                         f"the same settings takes its own --tag)")


def _group(rows: list[dict]) -> dict:
    """(tag, dataset, L, H) -> mode -> records. A tagged variant (another setting of some modes)
    is shown beside the main records' other modes of its cell (the baselines it is compared with)."""
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[(r.get("tag", "main"), r["dataset"], r["seq_len"], r["horizon"])][r["mode"]].append(r)
    for (tag, d, L, H), g in list(groups.items()):
        main = groups.get(("main", d, L, H)) if tag != "main" else None
        for mode, records in (main or {}).items():
            if mode not in g:
                g[mode] = records
    return groups


def _lookback(dataset: str, L: int) -> str:
    """Which table a look-back belongs to: the scripts', 96, or another."""
    if ONLINE_LOOKBACK.get(dataset) == L:
        return "scripts"
    return "96" if L == 96 else "other"


def _modes_in(groups, keys) -> list[str]:
    """The modes that ran in these cells, in the runner's order (unknown modes after)."""
    ran = {m for k in keys for m in groups[k]}
    return [m for m in MODES if m in ran] + sorted(ran - set(MODES))


def _mean(g: dict, mode: str) -> float | None:
    rs = g.get(mode)
    return statistics.mean(r["mse"] for r in rs) if rs else None


def _ms(vals: list[float], digits: int = 3) -> str:
    if not vals:
        return ""
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def _pct(a: float, b: float) -> str:
    return f"{100 * (a / b - 1):+.1f} %"


def _published(table: dict, dataset: str, horizon: int) -> float | None:
    vals = table.get(dataset)
    return None if vals is None or horizon not in HORIZONS else vals[HORIZONS.index(horizon)]


def best_alternative(g: dict) -> tuple[str, float] | None:
    """The simple alternative with the least mean MSE among those that ran: (mode, MSE)."""
    ran = [(m, _mean(g, m)) for m in ALTERNATIVES if g.get(m)]
    return min(ran, key=lambda x: x[1]) if ran else None


def best_memory(g: dict) -> tuple[str, float] | None:
    """The memory mode (carried or carried+online_gd) with the least mean MSE: (mode, MSE)."""
    ran = [(m, _mean(g, m)) for m in MEMORY if g.get(m)]
    return min(ran, key=lambda x: x[1]) if ran else None


def _is_old(r: dict) -> bool:
    """A record of the earlier runner: a backbone per horizon, no backbone_horizon recorded."""
    return r["mode"] not in NAIVE_MODES and "backbone_horizon" not in r


def _per_seed(records: list[dict]) -> list[dict]:
    """One record per seed (the backbone's fields are the same in every mode of a seed)."""
    return list({r["seed"]: r for r in records}.values())


# ---------------------------------------------------------------------------------- settings


def overrides(r: dict) -> tuple[dict, list[str]]:
    """The ``OnlineConfig`` overrides that give a record's training / network / memory settings
    (those that differ from ``OnlineConfig()``'s, nested as ``--config`` takes them), and the
    recorded settings today's configuration does not have."""
    base = OnlineConfig()
    over, unknown = {}, []
    for section, defaults in (("training", base.training.to_dict()), ("memory", base.memory.to_dict())):
        if section == "memory" and r.get("mode") not in MEMORY_MODES:
            continue  # the stream memory's settings change only the modes that read it
        got = r.get(section)
        if isinstance(got, dict):
            diff = {k: v for k, v in got.items() if k in defaults and v != defaults[k]}
            unknown += [f"{section}.{k}" for k in got if k not in defaults]
            if diff:
                over[section] = diff
    net = r.get("network")
    if isinstance(net, dict):
        diff = {k: v for k, v in net.items() if k != "memory" and base.network.get(k) != v}
        got, default = net.get("memory"), base.network.get("memory")
        if isinstance(got, dict) and isinstance(default, dict):
            mem = {k: v for k, v in got.items() if default.get(k) != v}
            if mem:
                diff["memory"] = mem
        elif got is not None and got != default:
            diff["memory"] = got
        if diff:
            over["network"] = diff
    return over, unknown


def _online_lrs(r: dict) -> tuple[float, ...] | None:
    """The online_gd learning rates a sequential record's run chose among."""
    if r.get("online_lr_val"):
        return tuple(sorted(float(k) for k in r["online_lr_val"]))
    return (float(r["online_lr"]),) if r.get("online_lr") is not None else None


# ---------------------------------------------------------------------------------- report


def render(rows: list[dict], out: Path = OUT, plots: bool = True, backbones: list[dict] | None = None) -> str:
    """The report's markdown (also written to ``out``; the plots beside it, in ``plots/``)."""
    check_records(rows)
    groups = _group(rows)
    lines = [
        "# Online forecasting with test-time memory",
        "",
        "Rendered by `python benchmarks/online_report.py` from `docs/benchmarks/results/online.jsonl`, which "
        "`titans-ts benchmark online DATASET --out docs/benchmarks/results/online.jsonl` writes (one record per "
        "dataset, horizon, look-back, mode and seed), and `docs/benchmarks/results/online_backbones.jsonl` "
        "(`benchmarks/online_backbones.py`: the backbone's settings chosen on the validation windows). Every "
        "table that shows a titans-ts number also shows the simple alternatives on the same stream "
        "(`repeat_last`, `seasonal_naive`, `online_gd`).",
        "",
    ]
    lines += _protocol(rows)
    lines += _modes_text(rows)
    order = {"scripts": 0, "96": 1, "other": 2}
    by_table = defaultdict(list)
    for key in groups:
        by_table[(key[0], _lookback(key[1], key[2]))].append(key)
    for (tag, kind), keys in sorted(by_table.items(), key=lambda kv: (kv[0][0] != "main", kv[0][0],
                                                                      order[kv[0][1]])):
        lines += _tables(groups, sorted(keys, key=lambda k: (k[1], k[2], k[3])), tag, kind)
    if rows:
        lines += _reading(groups)
    if backbones:
        lines += _backbones(backbones, rows)
    if rows:
        lines += _commands(rows)
    if plots and rows:
        lines += _plots(groups, out.parent / "plots")
    text = "\n".join(lines).rstrip() + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def _protocol(rows: list[dict]) -> list[str]:
    base = OnlineConfig()
    t, net = base.training, base.network
    lines = [
        "## Protocol (Proceed's, no leakage)",
        "",
        "- Splits by time, 20 : 5 : 75 (train : validation : test), as the public Proceed code "
        "(SJTU-DMTai/OnlineTSF) cuts them: ETT uses the first 20 months (hourly: target rows [0, 2880), "
        "[2880, 3600), [3600, 14400); 15-minute: four times that); weather the first int(0.2 n) rows for "
        "training and the last int(0.75 n) for test. The scaler is fitted on the training rows only.",
        "- The stream moves one step at a time through validation (not scored) and test. The forecast at "
        "origin t reads the L rows before t. The target of the window of origin t - H is fully known at "
        "t: that is the newest ground truth any mode may use there (delayed feedback). A test "
        "(`tests/api/test_online.py`) changes values after a row and checks every earlier forecast is bit "
        "for bit unchanged, in every mode.",
        "- MSE / MAE over every test origin, step and channel, on scaled data; mean ± std over seeds.",
        _lookback_line(rows),
        f"- The backbone: `titans_ts.TitansNet` (LMM, {net['n_layers']} layer(s), d_model {net['d_model']}, "
        f"patches of {net['patch_len']} with stride {net['stride']}, dropout {net['dropout']:g}, RevIN centred "
        f"on the {net['revin_center']} observed value), trained to convergence: epochs of up to "
        f"{t.limit_train_batches} batches of {t.batch_size} windows drawn at random from the training windows "
        f"(a fresh draw each epoch), early stopping on the validation windows with patience {t.patience}, at "
        f"most {t.max_epochs} epochs ({t.optimizer}, learning rate {t.lr:g} on a {t.scheduler} schedule over "
        "the most epochs); the best epoch's weights are kept. One backbone per dataset, look-back and seed, "
        "trained for the longest horizon and read at the shorter ones (its first H steps).",
    ]
    diffs = defaultdict(set)
    for r in rows:
        if r["mode"] not in NAIVE_MODES and not _is_old(r):
            over, _ = overrides(r)
            picked = {k: over[k] for k in ("training", "network") if k in over}
            if picked:
                diffs[(r["dataset"], r["seq_len"])].add(json.dumps(picked, sort_keys=True))
    if diffs:
        lines.append("- Where the records' backbone settings differ from these (chosen on the validation "
                     "windows: Backbone below): " + "; ".join(
                         f"{d} L = {L}: {' / '.join(sorted(s))}" for (d, L), s in sorted(diffs.items())) + ".")
    old = defaultdict(set)
    for r in rows:
        if _is_old(r):
            over, _ = overrides(r)
            old[(r["dataset"], r["seq_len"])].add(json.dumps(over.get("training", {}), sort_keys=True))
    if old:
        lines.append("- Records of an earlier runner (no `backbone_horizon` in them): a backbone per horizon, "
                     "trained with these differences from the settings above: " + "; ".join(
                         f"{d} L = {L}: {' / '.join(sorted(s))}" for (d, L), s in sorted(old.items()))
                     + ". Their rows show `own` in the backbone's horizon column.")
    return lines + [""]


def _lookback_line(rows: list[dict]) -> str:
    """What look-backs the records use, against the one Proceed's scripts use."""
    lengths = defaultdict(set)
    for r in rows:
        lengths[r["dataset"]].add(r["seq_len"])
    scripts = [d for d, Ls in sorted(lengths.items()) if ONLINE_LOOKBACK.get(d) in Ls]
    short = [d for d, Ls in sorted(lengths.items()) if ONLINE_LOOKBACK.get(d) not in Ls]
    text = ("- Look-back: Proceed's scripts use 336 for ETTh2 and 512 for ETTm1 and weather (its paper says "
            "512); the runner takes either (`--seq-len`).")
    if scripts:
        text += (" Recorded at the scripts' look-back (like for like with the published numbers): "
                 + ", ".join(f"{d} (L = {ONLINE_LOOKBACK[d]})" for d in scripts) + ".")
    if short:
        text += (" Recorded only at other look-backs: " + ", ".join(
            f"{d} (L = {', '.join(map(str, sorted(lengths[d])))})" for d in short)
            + "; there the published numbers come from a model that reads another length of history, "
            "so the comparison with them is across look-backs, not like for like.")
    return text


def _modes_text(rows: list[dict]) -> list[str]:
    base = OnlineConfig()
    seasons = sorted({(r["dataset"], r["season"]) for r in rows if r.get("season") is not None})
    gains = sorted({tuple(r["memory"]["gains"]) for r in rows
                    if isinstance(r.get("memory"), dict) and "gains" in r["memory"]}) or [base.memory.gains]
    lines = [
        "## Modes (one trained backbone per dataset, look-back and seed)",
        "",
        "- `frozen`: parameters fixed; the stream memory is never written (every window reads its initial "
        "state, which leaves the backbone's forecast as it is).",
        "- `carried`: parameters fixed; each channel's stream memory is carried along the stream and, at "
        "origin t, written with the realised error of the window of origin t - H, then read for window t "
        "(`titans_ts.model.stream_memory.StreamMemory`: a Titans memory whose surprise is the forecasting "
        "loss). Beside "
        "it runs a level memory: a Titans memory on six summaries of the window (a constant, the "
        "context's last value and recent mean, the forecast's mean, first and last step), its keys "
        "whitened by their running second moment, written with the mean of the window's error; it "
        "corrects the forecast's level.",
        "- `online_gd`: the backbone alone, stepped along the stream: before each forecast one Adam step "
        "on its parameters with the loss of the window completed there (batch 1, the window of origin "
        "t - H), then the forecast; no memory. The learning rate is chosen on the validation stream among "
        "the run's rates (`--online-lrs`; `online_gd lr` below: the chosen one and the seeds that chose it).",
        "- `carried+online_gd`: the carried memory on the stepped backbone's forecasts (written with the "
        "errors of the forecasts it actually issued); the rate is the one `online_gd` chose.",
        "- `repeat_last`: every step of the horizon is the newest known value.",
        "- `seasonal_naive`: each step is the value one season earlier (the season from the data's "
        "frequency" + (": " + ", ".join(f"{d} {s}" for d, s in seasons) if seasons else "") + ").",
        "",
        f"The stream memory's pace (its forgetting, momentum and inner learning-rate gate logits) is chosen "
        f"on the validation stream's carried MSE among {len(base.paces)} slow paces (the level memory's "
        "settings are fixed); the read-out gains are chosen along the stream itself, per channel "
        "(follow-the-leader among the pairs of gains " + " / ".join(
            ", ".join(f"{g:g}" for g in gs) for gs in gains) + " for the two memories, over the discounted "
        "errors of the windows completed so far; no correction until the stream shows one helps). "
        "`gains` is the mean gain used over the test stream (main memory / level memory / fallback; one "
        "number: a record from before the level memory).",
    ]
    fallback = sorted({(r["dataset"], r["seq_len"]) for r in rows if "fallback_gain_mean" in r})
    if fallback:
        fb = sorted({tuple(r["memory"]["fallback_gains"]) for r in rows if "fallback_gain_mean" in r
                     and isinstance(r.get("memory"), dict) and "fallback_gains" in r["memory"]})
        lines += ["", "A third correction, the fallback, moves the forecast onto the newest known value "
                  "(repeat-last), by a gain the stream chooses the same way" + (" among " + " / ".join(
                      ", ".join(f"{g:g}" for g in gs) for gs in fb) if fb else "")
                  + " (0: none): a stream whose best forecast is the newest value can reach it, and one "
                  "where correcting does not pay can reach no correction at all. Records with it: "
                  + ", ".join(f"{d} L = {L}" for d, L in fallback) + "."]
    tags = sorted({r.get("tag", "main") for r in rows} - {"main"})
    if tags:
        known = (" (`fallback-off`: the memory modes without the fallback correction, as they ran before "
                 "it was on)" if "fallback-off" in tags else "")
        lines += ["", "Sections marked with a tag (" + ", ".join(f"`{t}`" for t in tags) + ") show records "
                  f"made with another setting of some modes{known}; their other modes are the main records "
                  "of the same cell."]
    machines = sorted({r["machine"] for r in rows if r.get("machine")})
    lines += ["", "`ms / step` is the cost of one stream step" + (f" on {' / '.join(machines)}" if machines
                                                                  else "")
              + ": for `frozen` and `carried` the backbone forecasts the windows in batches and the memory "
              "runs over the whole stream in one pass (their time divided by the steps); the `online_gd` "
              "modes step one origin at a time (a forward and backward pass per step, then the forecast). "
              "`backbone s` is the training's wall-clock seconds (median over seeds; runs shared the "
              "machine's cores).", ""]
    return lines


def _tables(groups, keys, tag: str, kind: str) -> list[str]:
    """A look-back's tables: accuracy of every mode, then the comparisons, then settings and costs."""
    title = {"scripts": "the look-back of Proceed's scripts (" + ", ".join(
        f"{d} {ONLINE_LOOKBACK[d]}" for d in sorted({k[1] for k in keys})) + ")",
        "96": "L = 96", "other": "other look-backs"}[kind]
    title = f"## Results: {title}" + ("" if tag == "main" else f" [{tag}]")
    modes = _modes_in(groups, keys)
    lines = [title, "", "MSE ± std over seeds / mean MAE; `(n seeds)` where a mode ran on fewer seeds than the row.",
             "", "| dataset | L | H | seeds | " + " | ".join(modes) + " |", "|" + "---|" * (4 + len(modes))]
    for key in keys:
        _, d, L, H = key
        g = groups[key]
        seeds = max(len(rs) for rs in g.values())
        cells = []
        for m in modes:
            rs = g.get(m, [])
            if not rs:
                cells.append("not run")
                continue
            few = "" if len(rs) == seeds else f" ({len(rs)} seed{'s' if len(rs) > 1 else ''})"
            cells.append(f"{_ms([r['mse'] for r in rs])} / {statistics.mean(r['mae'] for r in rs):.3f}{few}")
        lines.append(f"| {d} | {L} | {H} | {seeds} | " + " | ".join(cells) + " |")
    lines += ["", "Against the alternatives (means over seeds; negative: lower MSE). The best simple alternative "
              "is the least of `repeat_last`, `seasonal_naive` and `online_gd`; the better memory mode the lower "
              "of `carried` and `carried+online_gd`.", "",
              "| dataset | L | H | best simple alternative | carried vs frozen | carried vs best alternative "
              "| better memory mode vs online_gd | PatchTST + Proceed / + online GD (published) "
              "| better memory mode vs Proceed |", "|" + "---|" * 9]
    for key in keys:
        _, d, L, H = key
        g = groups[key]
        alt, mem = best_alternative(g), best_memory(g)
        ca, fr, gd = _mean(g, "carried"), _mean(g, "frozen"), _mean(g, "online_gd")
        pub = [_published(PROCEED[w], d, H) for w in PROCEED]
        cells = [f"{alt[0]} {alt[1]:.3f}" if alt else "none ran",
                 _pct(ca, fr) if ca is not None and fr is not None else "",
                 _pct(ca, alt[1]) if ca is not None and alt else "",
                 f"{mem[0]} {_pct(mem[1], gd)}" if mem and gd is not None else "",
                 " / ".join(f"{p:.3f}" for p in pub) if pub[0] is not None else "",
                 f"{mem[0]} {_pct(mem[1], pub[0])}" if mem and pub[0] is not None else ""]
        lines.append(f"| {d} | {L} | {H} | " + " | ".join(cells) + " |")
    lines += ["", "Settings and costs.", "",
              "| dataset | L | H | gains (carried: main / level / fallback) | pace (chosen / seeds) "
              "| online_gd lr (chosen / seeds) | backbone H | backbone epochs | backbone s | ms / step |",
              "|" + "---|" * 10]
    for key in keys:
        _, d, L, H = key
        g = groups[key]
        cr = g.get("carried", [])
        gains = [_mean_of(cr, k) for k in ("gain_mean", "level_gain_mean", "fallback_gain_mean")]
        paces = Counter(tuple(r["memory_pace"]) for r in cr if "memory_pace" in r)
        lrs = Counter(r["online_lr"] for r in _per_seed([r for m in SEQUENTIAL_MODES for r in g.get(m, [])])
                      if r.get("online_lr") is not None)
        model = _per_seed([r for m, rs in g.items() if m not in NAIVE_MODES for r in rs])
        horizons = sorted({str(r["backbone_horizon"]) if "backbone_horizon" in r else "own" for r in model})
        epochs = [r["backbone_epochs"] for r in model if "backbone_epochs" in r]
        secs = [r["backbone_seconds"] for r in model if "backbone_seconds" in r]
        cost = ", ".join(f"{m} {statistics.mean(r['ms_per_step'] for r in g[m]):.2f}"
                         for m in modes if g.get(m) and all("ms_per_step" in r for r in g[m]))
        cells = [" / ".join(f"{x:.2f}" for x in gains if x is not None),
                 ", ".join(f"({', '.join(f'{x:g}' for x in p)}) {n}" for p, n in sorted(paces.items())),
                 ", ".join(f"{lr:g} {n}" for lr, n in sorted(lrs.items())),
                 ", ".join(horizons),
                 f"{statistics.median(epochs):g}" if epochs else "",
                 f"{statistics.median(secs):.0f}" if secs else "", cost]
        lines.append(f"| {d} | {L} | {H} | " + " | ".join(cells) + " |")
    return lines + [""]


def _mean_of(records: list[dict], key: str) -> float | None:
    vals = [r[key] for r in records if key in r]
    return statistics.mean(vals) if vals else None


# ---------------------------------------------------------------------------------- reading


def _cell(d: str, H: int) -> str:
    return f"{d} H={H}"


def reading_counts(groups, kind: str) -> dict:
    """The acceptance points of issue 34 at one look-back (``kind``: "scripts" or "96"), counted
    from the main records: each point's cells met, cells counted, and the details of the others."""
    cells = {(d, H): g for (tag, d, L, H), g in groups.items() if tag == "main" and _lookback(d, L) == kind}
    every = sorted(set(ISSUE_CELLS) | set(cells))
    out = {}
    # 1. the seeds of frozen, carried and the naive modes in the issue's cells
    need = ("frozen", "carried") + NAIVE_MODES
    short = []
    for c in ISSUE_CELLS:
        g = cells.get(c, {})
        lacking = [f"{m} {len(g.get(m, []))}" for m in need if len(g.get(m, [])) < ISSUE_SEEDS]
        if lacking:
            short.append(f"{_cell(*c)} ({', '.join(lacking)})")
    out["seeds"] = (len(ISSUE_CELLS) - len(short), len(ISSUE_CELLS), short)
    # 2. carried below frozen and both naive modes
    met, n, fails, uncounted = 0, 0, [], []
    for c in every:
        g = cells.get(c, {})
        missing = [m for m in ("carried", "frozen") + NAIVE_MODES if not g.get(m)]
        if missing:
            uncounted.append(f"{_cell(*c)} (not run: {', '.join(missing)})")
            continue
        n += 1
        ca = _mean(g, "carried")
        above = [f"{m} {_mean(g, m):.3f}" for m in ("frozen",) + NAIVE_MODES if not ca < _mean(g, m)]
        if above:
            fails.append(f"{_cell(*c)} (carried {ca:.3f}; {', '.join(above)})")
        else:
            met += 1
    out["carried"] = (met, n, fails, uncounted)
    # 3. the better memory mode below online_gd alone, where online_gd ran
    met, n, fails, uncounted = 0, 0, [], []
    for c in every:
        g = cells.get(c, {})
        mem = best_memory(g)
        if not g.get("online_gd") or mem is None:
            uncounted.append(_cell(*c))
            continue
        n += 1
        gd = _mean(g, "online_gd")
        if mem[1] < gd:
            met += 1
        else:
            fails.append(f"{_cell(*c)} ({mem[0]} {mem[1]:.3f} vs online_gd {gd:.3f})")
    out["online_gd"] = (met, n, fails, uncounted)
    # 4. the better memory mode below PatchTST + Proceed (published)
    met, n, fails = 0, 0, []
    for c in every:
        mem, pub = best_memory(cells.get(c, {})), _published(PROCEED["PatchTST + Proceed"], *c)
        if mem is None or pub is None:
            continue
        n += 1
        if mem[1] < pub:
            met += 1
        else:
            fails.append(f"{_cell(*c)} ({mem[0]} {mem[1]:.3f} vs {pub:.3f}, {_pct(mem[1], pub)})")
    out["proceed"] = (met, n, fails)
    # 5. the frozen backbone against the iTransformer guide
    met, n, detail = 0, 0, []
    for c in every:
        fr, guide = _mean(cells.get(c, {}), "frozen"), _published(ITRANSFORMER, *c)
        if fr is None or guide is None:
            continue
        n += 1
        met += fr <= guide
        detail.append(f"{_cell(*c)} {fr:.3f} vs {guide:.3f}" + ("" if fr <= guide else f" ({_pct(fr, guide)})"))
    out["itransformer"] = (met, n, detail)
    return out


def _reading(groups) -> list[str]:
    """The acceptance points of issue 34, counted from the records, at each look-back."""
    out = ["## Reading", "",
           "Counted from the records (tag `main`; means over seeds), against issue 34's acceptance points.", ""]
    for kind, title in (("scripts", "At the look-back of Proceed's scripts"), ("96", "At L = 96")):
        if not any(tag == "main" and _lookback(d, L) == kind for tag, d, L, _ in groups):
            continue
        c = reading_counts(groups, kind)
        asks = (lambda target: f" (the issue asks {target})") if kind == "scripts" else (lambda target: "")
        out.append(f"{title}:")
        out.append("")
        k, n, short = c["seeds"]
        out.append(f"- {ISSUE_SEEDS} seeds of `frozen`, `carried`, `repeat_last` and `seasonal_naive` in {k} of "
                   f"{n} cells (ETTh2 / ETTm1 / weather x H = 24 / 48 / 96)"
                   + (f"; short of it (seeds recorded): {'; '.join(short)}" if short else "") + ".")
        k, n, fails, uncounted = c["carried"]
        out.append(f"- `carried` below `frozen`, `repeat_last` and `seasonal_naive` in {k} of {n} cells"
                   + asks("all") + (f"; not in: {'; '.join(fails)}" if fails else "")
                   + (f"; not counted: {'; '.join(uncounted)}" if uncounted else "") + ".")
        k, n, fails, uncounted = c["online_gd"]
        out.append(f"- The better memory mode (`carried` or `carried+online_gd`) below `online_gd` alone in {k} of "
                   f"{n} cells where `online_gd` ran" + asks("7 of 9")
                   + (f"; not in: {'; '.join(fails)}" if fails else "")
                   + (f"; `online_gd` not run: {', '.join(uncounted)}" if uncounted else "") + ".")
        k, n, fails = c["proceed"]
        out.append(f"- The better memory mode below PatchTST + Proceed's published MSE in {k} of {n} cells"
                   + asks("6 of 9") + (f"; not in: {'; '.join(fails)}" if fails else "") + ".")
        k, n, detail = c["itransformer"]
        guide = ("the iTransformer guide (frozen, L = 512, from an unpublished public OnlineTSF run, not a "
                 "published result)")
        out.append(f"- `frozen` at or below {guide} in {k} of {n} cells: {'; '.join(detail)}." if n else
                   f"- `frozen` against {guide}: no `frozen` record on {' or '.join(ITRANSFORMER)} here.")
        out.append("")
    pairs = []
    for (tag, d, L, H), g in sorted(groups.items()):
        short = groups.get((tag, d, 96, H), {})
        if tag == "main" and _lookback(d, L) == "scripts" and g.get("frozen") and short.get("frozen"):
            pairs.append((d, L, H, _mean(short, "frozen"), _mean(g, "frozen")))
    if pairs:
        lower = sum(long < s for _, _, _, s, long in pairs)
        out += [f"`frozen` at the scripts' look-back against L = 96: lower at the longer look-back in {lower} of "
                f"{len(pairs)} cells (" + "; ".join(f"{_cell(d, H)} {long:.3f} at L = {L} vs {s:.3f}"
                                                    for d, L, H, s, long in pairs) + ").", ""]
    return out


# ---------------------------------------------------------------------------------- backbones


def _backbones(backbones: list[dict], rows: list[dict]) -> list[str]:
    """The backbone settings tried per dataset and look-back, chosen on the validation windows."""
    out = ["## Backbone: settings chosen on the validation windows", "",
           "From `docs/benchmarks/results/online_backbones.jsonl` (`benchmarks/online_backbones.py`): each "
           "setting trains a backbone on the online training split, early-stopped on the validation windows; "
           "the chosen one has the least validation MSE (the early-stopping criterion) among the settings "
           "tried at the same horizon and seed. The choice reads the validation windows only: nothing of the "
           "test split.", ""]
    groups = defaultdict(list)
    for b in backbones:
        groups[(b["dataset"], b["seq_len"])].append(b)
    for (d, L), recs in sorted(groups.items()):
        chosen = {}
        for b in recs:
            k = (b["horizon"], b["seed"])
            if k not in chosen or b["val_mse"] < chosen[k]["val_mse"]:
                chosen[k] = b
        out += [f"{d}, L = {L}:", "",
                "| settings (overrides of the defaults) | H | seed | validation MSE | epochs | seconds | parameters "
                "| chosen |", "|" + "---|" * 8]
        for b in sorted(recs, key=lambda b: (b["horizon"], b["seed"], b["val_mse"])):
            settings = json.dumps(b["overrides"], sort_keys=True) if b.get("overrides") else "defaults"
            out.append(f"| `{settings}` | {b['horizon']} | {b['seed']} | {b['val_mse']:.4f} | {b['epochs']} | "
                       f"{b['seconds']:.0f} | {b.get('params', '')} | "
                       f"{'yes' if chosen[(b['horizon'], b['seed'])] is b else ''} |")
        runs = [r for r in rows if r["dataset"] == d and r["seq_len"] == L and not _is_old(r)
                and r["mode"] not in NAIVE_MODES and r.get("tag", "main") == "main"]
        if runs:
            best = [chosen[k] for k in sorted(chosen)]
            use = sum(any(_same_backbone(r, b) for b in best) for r in runs)
            out += ["", f"The online records (tag `main`) at {d} L = {L} trained with the chosen settings: "
                    f"{use} of {len(runs)}."]
        out.append("")
    return out


def _same_backbone(r: dict, b: dict) -> bool:
    """Whether an online record's backbone has a backbone record's network and training (the
    training settings both record)."""
    rt, bt = r.get("training") or {}, b.get("training") or {}
    return r.get("network") == b.get("network") and all(rt[k] == bt[k] for k in rt.keys() & bt.keys())


# ---------------------------------------------------------------------------------- commands


def _commands(rows: list[dict]) -> list[str]:
    """The commands that write the records: per dataset, look-back, settings and tag, the modes
    recorded for the same horizons and seeds in one command."""
    runs = defaultdict(lambda: {"horizons": set(), "seeds": set(), "backbone": set()})
    unknown = defaultdict(set)
    for r in rows:
        over, miss = overrides(r)
        lrs = _online_lrs(r) if r["mode"] in SEQUENTIAL_MODES else None
        key = (_is_old(r), r["dataset"], r["seq_len"], r.get("tag", "main"), json.dumps(over, sort_keys=True),
               r["mode"], lrs)
        runs[key]["horizons"].add(r["horizon"])
        runs[key]["seeds"].add(r["seed"])
        if "backbone_horizon" in r:
            runs[key]["backbone"].add(r["backbone_horizon"])
        if miss:
            unknown[(r["dataset"], r["seq_len"])].update(miss)
    commands = defaultdict(lambda: {"modes": [], "backbone": set()})
    for (old, d, L, tag, cfg, mode, lrs), g in runs.items():
        c = commands[(old, d, L, tag, cfg, tuple(sorted(g["horizons"])), tuple(sorted(g["seeds"])), lrs)]
        c["modes"].append(mode)
        c["backbone"] |= g["backbone"]
    # the batched modes of a run go with its sequential modes where one set of rates ran
    for key in [k for k in commands if k[-1] is None]:
        partners = [k for k in commands if k[:-1] == key[:-1] and k[-1] is not None]
        if len(partners) == 1:
            commands[partners[0]]["modes"] += commands[key]["modes"]
            commands[partners[0]]["backbone"] |= commands.pop(key)["backbone"]
    out = ["## Commands", "", "Each writes its records (`TITANS_TS_DATA` pointing at the data folder; "
           "`OMP_NUM_THREADS=1`); modes already recorded in the file are skipped. `--config` gives the settings "
           "where the records differ from `OnlineConfig()`'s defaults.", ""]
    for old in (False, True):
        mine = sorted((k for k in commands if k[0] == old),
                      key=lambda k: (k[1:4], any(m in SEQUENTIAL_MODES for m in commands[k]["modes"]), k[4:-1],
                                     k[-1] or ()))
        if not mine:
            continue
        if old:
            names = sorted({n for k in mine for n in unknown.get((k[1], k[2]), ())})
            out += ["Records of an earlier runner (a backbone per horizon): these commands rerun their recorded "
                    "settings with today's runner (one backbone per dataset, look-back and seed; the settings "
                    "the records do not name take today's defaults"
                    + (f"; recorded settings that no longer exist: {', '.join(names)}" if names else "")
                    + "), so they reproduce the settings, not the numbers.", ""]
        out.append("```")
        for key in mine:
            _, d, L, tag, cfg, hs, seeds, lrs = key
            c = commands[key]
            modes = [m for m in MODES if m in c["modes"]] + sorted(set(c["modes"]) - set(MODES))
            cmd = (f"titans-ts benchmark online {d} --seq-len {L} --horizons {' '.join(map(str, hs))} "
                   f"--seeds {' '.join(map(str, seeds))} --modes {' '.join(modes)}")
            if cfg != "{}":
                cmd += f" --config '{cfg}'"
            if lrs:
                cmd += f" --online-lrs {' '.join(f'{x:g}' for x in lrs)}"
            if not set(modes) <= set(NAIVE_MODES):
                cmd += " --backbone-cache runs/online-backbones"
            if tag != "main":
                cmd += f" --tag {tag}"
            extra = sorted(b for b in c["backbone"] if b not in hs)
            if extra:
                out.append(f"# the backbone was trained for H = {extra[0]}, the longest horizon asked, so H = "
                           f"{extra[0]} is asked too: its modes not recorded there run as well")
                cmd = cmd.replace(f"--horizons {' '.join(map(str, hs))}",
                                  f"--horizons {' '.join(map(str, sorted(set(hs) | set(extra))))}")
            out.append(cmd + " --out docs/benchmarks/results/online.jsonl")
        out += ["```", ""]
    return out


# ---------------------------------------------------------------------------------- plots


def _plots(groups, folder: Path) -> list[str]:
    """One figure per dataset and look-back (tag main): a panel per horizon, a line per mode (one
    colour per mode throughout), the test MSE along the stream's twentieths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = ["## Error along the test stream", ""]
    every = _modes_in(groups, list(groups))
    colour = {m: f"C{i}" for i, m in enumerate(list(MODES) + [m for m in every if m not in MODES])}
    for dataset, L in sorted({(k[1], k[2]) for k in groups if k[0] == "main"}):
        keys = sorted(k for k in groups if k[0] == "main" and k[1] == dataset and k[2] == L)
        fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.0), squeeze=False)
        for ax, key in zip(axes[0], keys, strict=True):
            for m in every:
                rs = [r for r in groups[key].get(m, []) if r.get("parts")]
                if not rs:
                    continue
                parts = [statistics.mean(p) for p in zip(*[r["parts"] for r in rs], strict=True)]
                ax.plot(range(1, len(parts) + 1), parts, marker=".", label=m, color=colour[m])
            ax.set_yscale("log")
            ax.set_title(f"{dataset} L={L} H={key[3]}", fontsize=9)
            ax.set_xlabel("twentieth of the test stream", fontsize=8)
            ax.legend(fontsize=7)  # each panel: the modes that ran there differ
        axes[0, 0].set_ylabel("MSE (log scale)", fontsize=8)
        fig.tight_layout()
        folder.mkdir(parents=True, exist_ok=True)
        name = f"online_{dataset}_{L}.png"
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)
        out += [f"![{dataset} L={L}](plots/{name})", ""]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--backbones", default=str(BACKBONES), help="records of benchmarks/online_backbones.py")
    p.add_argument("--out", default=str(OUT), help="the markdown file (its plots go to plots/ beside it)")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    text = render(load(Path(args.results)), Path(args.out), plots=not args.no_plots,
                  backbones=load(Path(args.backbones)))
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
