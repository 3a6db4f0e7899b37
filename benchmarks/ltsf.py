"""The long-horizon benchmark runner of this repository: train on the exact protocol, test,
record, and report.

    python benchmarks/ltsf.py run recipes/ltsf/ETTh1_96_*.yaml --seeds 0 1 2
    python benchmarks/ltsf.py run recipes/ltsf/ETTh1_96_96.yaml --tag no_momentum --set model.memory.momentum=false
    python benchmarks/ltsf.py report      # writes docs/benchmarks.md from the recorded runs

Each run reads a recipe (the same file ``titans-ts fit --config`` takes), trains with early
stopping on the validation split, tests the best checkpoint (loaded with ``weights_only=True``)
on every test window, and appends one JSON line to ``docs/benchmarks/results/<tag>.jsonl``.
Runs already recorded are skipped, so an interrupted sweep resumes where it stopped. The report
is rendered from those lines only: no number in it is typed by hand.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from titans_ts.recipes import (  # noqa: E402
    DROP_LAST_BATCH,
    TEST_PARTS,
    drop_last_metrics,
    load_recipe,
    machine_description,
    parse_overrides,
    part_metrics,
    repeat_last_window_errors,
    set_dotted,
    train_and_test,
    window_errors,
)

__all__ = ["run_recipe", "run_many", "render_report", "apply_sets", "NUMBERS_TO_BEAT", "main"]

RESULTS = REPO / "docs" / "benchmarks" / "results"
# published models rerun on the protocol by benchmarks/reference_*.py (not titans-ts recipes)
REFERENCE = REPO / "docs" / "benchmarks" / "reference"

# docs/benchmark-protocol.md, look-back 96 (illness 36); mean of the four horizons, MSE / MAE
NUMBERS_TO_BEAT = {
    "ETTh1": {"Titans (paper)": (0.420, 0.421), "TQNet": (0.441, 0.434), "TimeXer": (0.437, 0.437),
              "CycleNet": (0.457, 0.441), "TimeMixer": (0.447, 0.440), "iTransformer": (0.454, 0.447),
              "PatchTST": (0.469, 0.454), "DLinear": (0.456, 0.452)},
    "ETTh2": {"Titans (paper)": (0.336, 0.382), "TQNet": (0.378, 0.402), "TimeXer": (0.367, 0.396),
              "CycleNet": (0.388, 0.409), "TimeMixer": (0.364, 0.395), "iTransformer": (0.383, 0.407),
              "PatchTST": (0.387, 0.407), "DLinear": (0.559, 0.515)},
    "ETTm1": {"Titans (paper)": (0.358, 0.387), "TQNet": (0.377, 0.393), "TimeXer": (0.382, 0.397),
              "CycleNet": (0.379, 0.396), "TimeMixer": (0.381, 0.395), "iTransformer": (0.407, 0.410),
              "PatchTST": (0.387, 0.400), "DLinear": (0.403, 0.407)},
    "ETTm2": {"Titans (paper)": (0.261, 0.309), "TQNet": (0.277, 0.323), "TimeXer": (0.274, 0.322),
              "CycleNet": (0.266, 0.314), "TimeMixer": (0.275, 0.323), "iTransformer": (0.288, 0.332),
              "PatchTST": (0.281, 0.326), "DLinear": (0.350, 0.401)},
    "weather": {"Titans (paper)": (0.231, 0.265), "TQNet": (0.242, 0.269), "TimeXer": (0.241, 0.271),
                "CycleNet": (0.243, 0.271), "TimeMixer": (0.240, 0.271), "iTransformer": (0.258, 0.278),
                "PatchTST": (0.259, 0.281), "DLinear": (0.265, 0.317)},
    "national_illness": {"PatchTST": (1.626, 0.804), "TimeMixer": (1.708, 0.820), "DLinear": (2.616, 1.090)},
}
# docs/benchmark-protocol.md, searched look-back (xPatch's fair re-run): best and by whom
SEARCHED_BEST = {
    "ETTh1": ((0.407, 0.426), "PDF"), "ETTh2": ((0.335, 0.386), "FITS"),
    "ETTm1": ((0.342, 0.376), "PDF"), "ETTm2": ((0.250, 0.313), "PDF"),
    "weather": ((0.219, 0.249), "xPatch"), "national_illness": ((1.633, 0.783), "xPatch"),
}


SELECT_PREFIX = "select-"  # result tags of configuration-selection runs (not ablations)

def apply_sets(cfg: dict, sets: Iterable[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a recipe dict."""
    return set_dotted(cfg, parse_overrides(sets))


def _done(tag: str) -> set[tuple]:
    path = RESULTS / f"{tag}.jsonl"
    if not path.exists():
        return set()
    out = set()
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            out.add((r["recipe"], r["seed"], tuple(r.get("sets", []))))
    return out


def run_recipe(recipe: str, seed: int = 0, sets: Sequence[str] = (), tag: str = "main",
               plot: bool = False, keep_dir: bool = False) -> dict:
    """Train, test and record one recipe with one seed. Returns the result dict.

    ``plot``: draw the forecast plot the report shows, if this run is its dataset's showcase (main
    look-back, first horizon); other runs draw none.
    """

    cfg = load_recipe(recipe, sets)
    cfg["seed_everything"] = int(seed)
    cfg.setdefault("data", {})["seed"] = int(seed)
    run_dir = tempfile.mkdtemp(prefix="titans-bench-")
    try:
        model, dm, trainer, res, fit_s = train_and_test(cfg, run_dir)
        ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else None
        # per-window errors of the tested checkpoint (the model holds it after trainer.validate);
        # their every-window mean must be the test metric, else the weights are not the tested ones
        se, ae, n = window_errors(model.net, dm.splits.test, dm.eval_batch_size)
        full_mse = float(se.sum()) / float(n.sum())
        if not math.isclose(full_mse, float(res["test_mse"]), rel_tol=1e-4, abs_tol=1e-7):
            raise RuntimeError(f"per-window test MSE {full_mse} differs from the test's {res['test_mse']}")
        result = {
            "tag": tag, "recipe": str(Path(recipe).as_posix()), "sets": list(sets), "seed": int(seed),
            "dataset": cfg["data"]["dataset"], "seq_len": cfg["data"]["seq_len"],
            "horizon": cfg["data"]["horizon"], "variant": cfg["model"].get("variant", "lmm"),
            "test_mse": float(res["test_mse"]), "test_mae": float(res["test_mae"]),
            "val_mse": float(res["val_mse"]), "val_mae": float(res["val_mae"]),
            "best_val_loss": float(trainer.checkpoint_callback.best_model_score)
            if ckpt else None,
            "epochs": int(trainer.current_epoch), "fit_seconds": round(fit_s, 1),
            "params": sum(p.numel() for p in model.parameters()),
            "test_windows": len(dm.splits.test),
            f"test_drop_last{DROP_LAST_BATCH}": drop_last_metrics(se, ae, n),
            "test_parts": part_metrics(se, ae, n) if len(se) >= TEST_PARTS else None,
            "machine": machine_description(), "date": time.strftime("%Y-%m-%d"),
        }
        if plot and _is_showcase(result["dataset"], result["seq_len"], result["horizon"]):
            from titans_ts.plotting import plot_test_forecast

            name = f"{result['dataset']}_{result['seq_len']}_{result['horizon']}.png"
            out = REPO / "docs" / "benchmarks" / "plots" / name
            plot_test_forecast(model, dm, out)
            result["plot"] = str(out.relative_to(REPO).as_posix())
        return result
    finally:
        if not keep_dir:
            shutil.rmtree(run_dir, ignore_errors=True)


def run_many(recipes: Sequence[str], seeds: Sequence[int], sets: Sequence[str] = (), tag: str = "main",
             plot_first: bool = True, echo=print) -> list[dict]:
    """Run every recipe x seed not yet recorded under ``tag``; append each result as it lands."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    done = _done(tag)
    out = []
    for recipe in recipes:
        for seed in seeds:
            key = (str(Path(recipe).as_posix()), int(seed), tuple(sets))
            if key in done:
                echo(f"skip (recorded): {recipe} seed {seed} {tag}")
                continue
            # the docs show one plot per dataset, of a main recipe (a variant would overwrite it)
            r = run_recipe(recipe, seed, sets, tag, plot=plot_first and tag == "main" and seed == seeds[0])
            with open(RESULTS / f"{tag}.jsonl", "a") as fh:
                fh.write(json.dumps(r) + "\n")
            echo(f"{r['dataset']} L={r['seq_len']} H={r['horizon']} seed {seed} [{tag}]: "
                 f"MSE {r['test_mse']:.4f} MAE {r['test_mae']:.4f} ({r['epochs'] + 1} epochs, "
                 f"{r['fit_seconds']:.0f} s)")
            out.append(r)
    return out


# ------------------------------------------------------------------------------------ report


# records of the other benchmarks in the same folder (benchmarks/online_report.py, benchmarks/defaults.py,
# benchmarks/defaults_validation.py, ...)
OTHER_RECORDS = ("online.jsonl", "online_backbones.jsonl", "online_design.jsonl", "defaults.jsonl",
                 "defaults_validation.jsonl", "time_to_accuracy.jsonl", "covariates.jsonl")


def _twin_plot(abl: list[dict], main: list[dict], twins: list[str], path: Path) -> None:
    """Test MSE and training seconds against the look-back, per dataset (a column each), for the
    main (memory) model and each twin: means over each model's seeds at every look-back a twin ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = sorted({(r["dataset"], r["horizon"], r["seq_len"]) for r in abl if r["tag"] in twins})
    datasets = sorted({d for d, _, _ in cells})
    fig, axes = plt.subplots(2, len(datasets), figsize=(3.4 * len(datasets), 5.2), squeeze=False)
    for j, d in enumerate(datasets):
        for h in sorted({h for dd, h, _ in cells if dd == d}):
            lengths = sorted({L for dd, hh, L in cells if (dd, hh) == (d, h)})
            for tag, name in [("main", "memory")] + [(t, t.removeprefix("twin-").replace("nomemory", "no memory"))
                                                     for t in twins]:
                pool = main if tag == "main" else [r for r in abl if r["tag"] == tag]
                xs, mse, secs = [], [], []
                for L in lengths:
                    rs = [r for r in pool if (r["dataset"], r["horizon"], r["seq_len"]) == (d, h, L)]
                    if rs:
                        xs.append(L)
                        mse.append(statistics.mean(r["test_mse"] for r in rs))
                        secs.append(statistics.mean(r["fit_seconds"] for r in rs))
                label = name if len({hh for dd, hh, _ in cells if dd == d}) == 1 else f"{name}, H={h}"
                axes[0, j].plot(xs, mse, marker="o", label=label)
                axes[1, j].plot(xs, secs, marker="o", label=label)
        axes[0, j].set_title(d)
        axes[0, j].set_ylabel("test MSE (mean over seeds)")
        axes[1, j].set_ylabel("training seconds (mean)")
        ticks = sorted({L for dd, _, L in cells if dd == d})
        for ax in axes[:, j]:
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [str(L) for L in ticks])
            ax.minorticks_off()
            ax.set_xlabel("look-back L")
        axes[0, j].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _twin_summary(abl: list[dict], main: list[dict], plot_dir: Path | None = None) -> list[str]:
    """The memory against its twins as the look-back grows: per dataset, horizon and look-back,
    the main (memory) model's MSE minus each twin's, paired by seed (negative: the memory helps),
    and the training seconds of both; with ``plot_dir``, a plot of both against the look-back."""
    twins = sorted({r["tag"] for r in abl if r["tag"].startswith("twin-")})
    if not twins:
        return []
    out = ["### The memory against its twins", "",
           "The main model (its memory, tag `main`) against a twin with the memory block replaced "
           "(`twin-nomemory`: the no-memory block with a wider MLP, `model.mlp_expansion=5.1875`; "
           "`twin-attention`: causal attention over the whole context, four heads and four persistent "
           "tokens, in the memory's place, `model.variant=attention model.mlp_expansion=3.171875`; "
           "each twin's parameter count matches the main model's within 0.1 %), paired by seed. "
           "Negative differences: the memory helps.", "",
           "| dataset | H | L | twin | seeds | main MSE | twin MSE | main - twin, per seed | "
           "mean | main s | twin s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in sorted({(r["dataset"], r["horizon"], r["seq_len"], r["tag"]) for r in abl if r["tag"] in twins}):
        d, h, L, tag = key
        tw = {r["seed"]: r for r in abl if (r["dataset"], r["horizon"], r["seq_len"], r["tag"]) == key}
        mm = {r["seed"]: r for r in main if (r["dataset"], r["horizon"], r["seq_len"]) == (d, h, L)}
        seeds = sorted(set(tw) & set(mm))
        if not seeds:
            continue
        diffs = [mm[k]["test_mse"] - tw[k]["test_mse"] for k in seeds]
        out.append(f"| {d} | {h} | {L} | {tag} | {','.join(map(str, seeds))} | "
                   f"{statistics.mean(mm[k]['test_mse'] for k in seeds):.4f} | "
                   f"{statistics.mean(tw[k]['test_mse'] for k in seeds):.4f} | "
                   f"{' / '.join(f'{x:+.4f}' for x in diffs)} | {statistics.mean(diffs):+.4f} | "
                   f"{statistics.mean(mm[k]['fit_seconds'] for k in seeds):.0f} | "
                   f"{statistics.mean(tw[k]['fit_seconds'] for k in seeds):.0f} |")
    out.append("")
    if plot_dir is not None:
        _twin_plot(abl, main, twins, plot_dir / "twins.png")
        out += ["![The memory against its twins: test MSE and training seconds against the look-back]"
                "(benchmarks/plots/twins.png)", ""]
    return out


def _load(tag: str | None = None, folder: str | os.PathLike | None = None) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(str(Path(folder or RESULTS) / "*.jsonl"))):
        if Path(path).name in OTHER_RECORDS:
            continue
        for line in Path(path).read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                if tag is None or r["tag"] == tag:
                    rows.append(r)
    return rows


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


HORIZONS = {"national_illness": [24, 36, 48, 60]}  # every other dataset: LTSF_HORIZONS
LTSF_HORIZONS = [96, 192, 336, 720]
MAIN_LOOKBACK = {"national_illness": 36}  # every other dataset: 96
# variates of the benchmark sets (every column but the date)
LTSF_CHANNELS = {"ETTh1": 7, "ETTh2": 7, "ETTm1": 7, "ETTm2": 7, "weather": 21, "national_illness": 7}


def module_from_recipe(cfg: dict, seq_len: int | None = None):
    """A recipe dict's ``TitansLightningModule``, built without reading its data (the channel
    count comes from ``LTSF_CHANNELS``); ``seq_len`` overrides the recipe's look-back."""
    from titans_ts.model.lightning_module import TitansLightningModule

    data = cfg["data"]
    if data["dataset"] not in LTSF_CHANNELS:
        raise ValueError(f"no channel count known for dataset {data['dataset']!r}; "
                         f"known: {sorted(LTSF_CHANNELS)}")
    return TitansLightningModule(seq_len=int(seq_len or data["seq_len"]), horizon=int(data["horizon"]),
                                 n_channels=LTSF_CHANNELS[data["dataset"]], **cfg["model"])


def _is_showcase(dataset: str, seq_len: int, horizon: int) -> bool:
    """The one run per dataset whose forecast plot the report shows: main look-back, first horizon."""
    return (seq_len == MAIN_LOOKBACK.get(dataset, 96)
            and horizon == HORIZONS.get(dataset, LTSF_HORIZONS)[0])


def _beats(ours: tuple[float, float], theirs: tuple[float, float] | None) -> str:
    """Whether mean (MSE, MAE) ``ours`` is below ``theirs``: "yes", "MSE only", "MAE only",
    "no", or "n/a" without a number to compare with."""
    if theirs is None:
        return "n/a"
    if ours[0] < theirs[0]:
        return "yes" if ours[1] < theirs[1] else "MSE only"
    return "MAE only" if ours[1] < theirs[1] else "no"


def _mean_rows(rows: list[dict]):
    """Per seed, the mean over the dataset's four horizons (only seeds that ran all four)."""
    by_seed = defaultdict(dict)
    for r in rows:
        by_seed[r["seed"]][r["horizon"]] = r
    horizons = HORIZONS.get(rows[0]["dataset"], LTSF_HORIZONS) if rows else []
    full = {s: hs for s, hs in by_seed.items() if sorted(hs) == horizons}
    mse = [statistics.mean(hs[h]["test_mse"] for h in horizons) for hs in full.values()]
    mae = [statistics.mean(hs[h]["test_mae"] for h in horizons) for hs in full.values()]
    return mse, mae, len(full), horizons


def _baseline_means(dataset: str, seq_len: int, horizons: list[int]) -> tuple[float, float] | None:
    try:
        from titans_ts.baselines import evaluate_baseline
        from titans_ts.datasets import dataset_info, ltsf_splits

        season = dataset_info(dataset).season
        if season > seq_len:
            return None
        mses, maes = [], []
        for h in horizons:
            test = ltsf_splits(dataset, seq_len, h).test
            r = evaluate_baseline(test, "seasonal_naive", season=season)
            mses.append(r["mse"])
            maes.append(r["mae"])
        return statistics.mean(mses), statistics.mean(maes)
    except Exception:  # data not present where the report is rendered
        return None


def _recipe_model(recipe: str) -> dict | None:
    """The ``model`` section of a recorded row's recipe file (None if the file is missing)."""
    path = REPO / recipe
    return (yaml.safe_load(path.read_text()) or {}).get("model", {}) if path.exists() else None


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# why a long-look-back recipe changes a setting (docs/architecture.md, docs/benchmarks.md)
_LONG_REASONS = {
    "memory.max_lr": ("the memory's inner learning-rate cap (max_lr {} instead of {}, which can "
                      "diverge over several memory chunks: docs/architecture.md, 'Long contexts')"),
    "lr": "the outer learning rate ({} instead of {}, which overfits after one epoch there)",
}


def _model_changes(long_rows: list[dict], short_rows: list[dict]) -> tuple | None:
    """The (setting, long value, main value, horizons) by which the long-look-back rows' recipes
    differ from the main-look-back recipe of the same dataset and horizon (``short_rows``), as the
    recipe files give them; horizons is empty where the change holds in every long recipe. None
    where a file or a main recipe is missing. ``cycle_len`` is left to the report's own note on
    the learned cycle."""
    main_recipe = {(r["dataset"], r["horizon"]): r["recipe"] for r in short_rows}
    files = {r["recipe"]: r for r in long_rows}  # each file once
    where: dict[tuple, set] = {}
    for recipe, r in files.items():
        other = main_recipe.get((r["dataset"], r["horizon"]))
        model = _recipe_model(recipe)
        base = _recipe_model(other) if other else None
        if model is None or base is None:
            return None
        model, base = _flat(model), _flat(base)
        for k in set(model) | set(base):
            if k != "cycle_len" and model.get(k) != base.get(k):
                where.setdefault((k, model.get(k, "unset"), base.get(k, "unset")), set()).add(recipe)
    changes = [(*c, () if len(rs) == len(files) else tuple(sorted({files[f]["horizon"] for f in rs})))
               for c, rs in where.items()]
    order = list(_LONG_REASONS)
    return tuple(sorted(changes, key=lambda c: (order.index(c[0]) if c[0] in order else len(order),
                                                str(c))))


def _describe_changes(changes: tuple | None) -> str:
    if changes is None:
        return "a recipe file is missing."
    if not changes:
        return "the main-look-back recipes unchanged."
    said = [_LONG_REASONS.get(k, f"`{k}` {{}} instead of {{}}").format(a, b)
            + (f" at H = {', '.join(map(str, hs))}" if hs else "") for k, a, b, hs in changes]
    return (f"except {', '.join(said[:-1])} and {said[-1]}" if len(said) > 1 else
            f"except {said[0]}") + ", chosen on the validation split (selection table below)."


def _cycle_recipes(rows: list[dict]) -> list[str]:
    """'dataset H = h' of the rows whose recipe file has a learned cycle (``cycle_len`` > 0)."""
    cycled = {(r["dataset"], r["horizon"]) for r in {r["recipe"]: r for r in rows}.values()
              if (_recipe_model(r["recipe"]) or {}).get("cycle_len")}
    return [f"{d} H = {h}" for d, h in sorted(cycled)]


def _drop_last_section(main: list[dict], datasets: list[str], short: dict) -> list[str]:
    """The main table's datasets re-scored on the windows a drop_last=True test loader keeps, for
    every dataset whose main-look-back rows all recorded it (a diagnostic, never the headline)."""
    key = f"test_drop_last{DROP_LAST_BATCH}"
    body = []
    for d in datasets:
        rs = [r for r in main if r["dataset"] == d and r["seq_len"] == short[d]]
        if not rs or not all(r.get(key) for r in rs):
            continue
        mse, mae, n_seeds, horizons = _mean_rows(rs)
        if not n_seeds:
            continue
        cut = [dict(r, test_mse=r[key]["mse"], test_mae=r[key]["mae"]) for r in rs]
        c_mse, c_mae, _, _ = _mean_rows(cut)
        kept = ", ".join(f"{next(r[key]['windows'] for r in rs if r['horizon'] == h)} of "
                         f"{next(r['test_windows'] for r in rs if r['horizon'] == h)}" for h in horizons)
        pt = NUMBERS_TO_BEAT.get(d, {}).get("PatchTST")
        body.append(f"| {d} | {kept} | {_ms(mse)} / {_ms(mae)} | {_ms(c_mse)} / {_ms(c_mae)} | "
                    f"{n_seeds} | {f'{pt[0]:.3f} / {pt[1]:.3f}' if pt else 'n/a'} |")
    if not body:
        return []
    return ["## The dropped last batch (diagnostic)", "",
            "Informer-lineage code tested with `drop_last=True` at batch size "
            f"{DROP_LAST_BATCH} (Time-Series-Library's default, until it set `drop_last=False`; see "
            "TFB, Qiu et al., PVLDB 2024, and kwuking/TimeMixer issue #100), which scores only the "
            f"first len // {DROP_LAST_BATCH} * {DROP_LAST_BATCH} test windows and skips the most "
            "recent ones. The published papers do not say which loader produced each number to "
            "beat. Below, the same runs (the same checkpoints) scored both ways, to show how much "
            "that choice alone moves a mean. The headline tables above and every comparison in them "
            "use every window, as the protocol requires. Shown for the datasets whose main rows "
            "all recorded it (rows run before the runner recorded it have no such column).", "",
            "| dataset | windows kept (per horizon) | every window (MSE / MAE) | "
            f"drop_last, batch {DROP_LAST_BATCH} (MSE / MAE) | seeds | PatchTST (published) |",
            "|---|---|---|---|---|---|", *body, ""]


def _reference_section(refs: list[dict], main: list[dict], datasets: list[str], short: dict) -> list[str]:
    """Published models rerun here on the protocol (``benchmarks/reference_*.py`` rows), each
    beside titans-ts on the same split, scored over every test window and over the windows a
    drop_last=True loader keeps; only (model, dataset) pairs with every horizon on some seed."""
    key = f"test_drop_last{DROP_LAST_BATCH}"
    body = []

    def scored(rs):
        mse, mae, n_seeds, _ = _mean_rows(rs)
        if not n_seeds:
            return None
        cut = ("n/a" if not all(r.get(key) for r in rs) else
               "{} / {}".format(*(_ms(v) for v in _mean_rows(
                   [dict(r, test_mse=r[key]["mse"], test_mae=r[key]["mae"]) for r in rs])[:2])))
        return f"{_ms(mse)} / {_ms(mae)}", cut, n_seeds

    for d in datasets:
        here = [r for r in refs if r["dataset"] == d and r["seq_len"] == short[d]]
        pub = NUMBERS_TO_BEAT.get(d, {})
        rows = []
        for model, config in sorted({(r["model"], r["config"]) for r in here}):
            theirs = scored([r for r in here if (r["model"], r["config"]) == (model, config)])
            if theirs is not None:
                p = pub.get(model)
                rows.append(f"| {d} | {short[d]} | {model} ({config} configuration, rerun here) | "
                            f"{theirs[2]} | {theirs[0]} | {theirs[1]} | "
                            f"{f'{p[0]:.3f} / {p[1]:.3f}' if p else 'n/a'} |")
        ours = scored([r for r in main if r["dataset"] == d and r["seq_len"] == short[d]])
        if rows and ours is not None:
            rows.insert(0, f"| {d} | {short[d]} | titans-ts (the main table's runs) | {ours[2]} | "
                           f"{ours[0]} | {ours[1]} | |")
        body += rows
    if not body:
        return []
    return ["## Published models rerun on this protocol", "",
            "The numbers to beat are copied from papers. Here the model a comparison is against "
            "is trained and tested by this repository on exactly the titans-ts rows' splits, "
            "scaling and windows (`benchmarks/reference_patchtst.py`, which states each "
            "configuration: `tslib`, Time-Series-Library's script for the dataset at this look-back; "
            "`paper`, the model's own repository's script), and the same checkpoint is scored "
            "over every test window (the protocol) and over the windows a drop_last=True loader "
            f"of batch {DROP_LAST_BATCH} keeps. Means over the horizons, ± std over seeds. The "
            "headline table's 'beats PatchTST rerun here' compares titans-ts's every-window means "
            "with the lowest MSE and, separately, the lowest MAE among these configurations.", "",
            "| dataset | L | model | seeds | every window (MSE / MAE) | "
            f"drop_last, batch {DROP_LAST_BATCH} (MSE / MAE) | published (MSE / MAE) |",
            "|---|---|---|---|---|---|---|", *body, ""]


def _parts_section(main: list[dict], datasets: list[str], short: dict,
                   baselines: bool = True) -> list[str]:
    """For every dataset whose main-look-back rows all recorded ``test_parts``: the test windows
    cut in time order into parts, titans-ts's and repeat-last's MSE in each (means over the
    horizons; titans-ts also over seeds) and the part's share of titans-ts's squared error
    (repeat-last "n/a" without ``baselines`` or the data)."""
    body = []
    for d in datasets:
        rs = [r for r in main if r["dataset"] == d and r["seq_len"] == short[d]]
        if not rs or not all(r.get("test_parts") for r in rs):
            continue
        horizons = sorted({r["horizon"] for r in rs})
        counts = {len(r["test_parts"]) for r in rs}
        if horizons != HORIZONS.get(d, LTSF_HORIZONS) or len(counts) != 1:
            continue
        k = counts.pop()
        base = None
        if baselines:
            from titans_ts.datasets import ltsf_splits
            from titans_ts.datasets.catalogue import DataNotFoundError

            try:
                base = [part_metrics(*repeat_last_window_errors(ltsf_splits(d, short[d], h).test), k)
                        for h in horizons]
            except DataNotFoundError:  # data not present where the report is rendered
                base = None
        per_h = []  # [horizon][part] -> (mean MSE over seeds, mean share over seeds)
        for h in horizons:
            hr = [r["test_parts"] for r in rs if r["horizon"] == h]
            parts = []
            for i in range(k):
                shares = [p[i]["mse"] * p[i]["values"] / sum(q["mse"] * q["values"] for q in p)
                          for p in hr]
                parts.append((statistics.mean(p[i]["mse"] for p in hr), statistics.mean(shares)))
            per_h.append(parts)
        seeds = len({r["seed"] for r in rs})
        for i in range(k):
            ours = statistics.mean(ph[i][0] for ph in per_h)
            share = statistics.mean(ph[i][1] for ph in per_h)
            rl = f"{statistics.mean(b[i]['mse'] for b in base):.3f}" if base else "n/a"
            label = {0: " (earliest)", k - 1: " (latest)"}.get(i, "")
            body.append(f"| {d} | {i + 1} of {k}{label} | {ours:.3f} | {rl} | "
                        f"{100 * share:.0f} % | {seeds} |")
    if not body:
        return []
    return ["## Where the test error sits (diagnostic)", "",
            "The same runs' test windows cut, in time order, into contiguous parts of near-equal "
            "size: the MSE of titans-ts (the tested checkpoints) and of the repeat-last "
            "baseline (every future step equals the last observed value) in each part, and the "
            "part's share of titans-ts's squared error; means over the horizons (titans-ts: and "
            "over the seeds). A mean over every window weighs each stretch of the test period by its "
            "errors: a part far above the others, or one where repeat-last does better, is a "
            "stretch the model did not foresee. Shown for the datasets whose main rows all "
            "recorded it.", "",
            "| dataset | part of the test windows | titans-ts MSE | repeat-last MSE | "
            "share of titans-ts squared error | seeds |",
            "|---|---|---|---|---|---|", *body, ""]


def render_report(out: str | os.PathLike | None = None, baselines: bool = True,
                  results: str | os.PathLike | None = None,
                  reference: str | os.PathLike | None = None) -> str:
    """docs/benchmarks.md from the recorded runs (``results``: another results folder;
    ``reference``: another folder of rerun published models, default the ``reference`` folder
    beside the results folder)."""
    rows = _load(folder=results)
    refs = _load(folder=reference or (Path(results).parent / "reference" if results else REFERENCE))
    main = [r for r in rows if r["tag"] == "main"]
    lines = ["# Benchmarks", "",
             "Every number below is produced by `python benchmarks/ltsf.py run` (recorded in "
             "`docs/benchmarks/results/*.jsonl`) and rendered by `python benchmarks/ltsf.py report`. "
             "Protocol: `docs/benchmark-protocol.md` (Time-Series-Library splits, train-only "
             "standardisation, metrics on scaled data, every test window, no drop_last). Early "
             "stopping on the validation split; the best checkpoint is tested.", ""]
    datasets = [d for d in NUMBERS_TO_BEAT if any(r["dataset"] == d for r in main)]
    short = {d: min(r["seq_len"] for r in main if r["dataset"] == d) for d in datasets}
    summary = ["## Look-back 96 (illness 36): mean of the four horizons", "",
               "| dataset | titans-ts (MSE / MAE, mean ± std over seeds) | seeds | beats PatchTST | "
               "beats DLinear | beats PatchTST rerun here | beats Titans paper | seasonal naive | "
               "train time per run (median) |",
               "|---|---|---|---|---|---|---|---|---|"]
    detail, incomplete = [], []
    for d in datasets:
        rs = [r for r in main if r["dataset"] == d and r["seq_len"] == short[d]]
        mse, mae, n_seeds, horizons = _mean_rows(rs)
        if not n_seeds:
            done = sorted({r["horizon"] for r in rs})
            incomplete.append(f"{d} ({len(done)} of 4 horizons: " + ", ".join(
                f"H={h} {statistics.mean(r['test_mse'] for r in rs if r['horizon'] == h):.3f} / "
                f"{statistics.mean(r['test_mae'] for r in rs if r['horizon'] == h):.3f}" for h in done) + ")")
            continue
        beat = NUMBERS_TO_BEAT[d]
        m_mse, m_mae = statistics.mean(mse), statistics.mean(mae)

        def beats(name, ours=(m_mse, m_mae), beat=beat):
            return _beats(ours, beat.get(name))

        # PatchTST rerun here on the same windows: the lowest mean MSE and the lowest mean MAE
        # among its configurations
        reruns = [_mean_rows([r for r in refs if (r["dataset"], r["seq_len"], r["model"], r["config"])
                              == (d, short[d], "PatchTST", c)])
                  for c in sorted({r["config"] for r in refs if r["dataset"] == d})]
        reruns = [(statistics.mean(x[0]), statistics.mean(x[1])) for x in reruns if x[2]]
        rerun = (min(x[0] for x in reruns), min(x[1] for x in reruns)) if reruns else None
        sn = _baseline_means(d, short[d], horizons) if baselines else None
        sn_txt = f"{sn[0]:.3f} / {sn[1]:.3f}" if sn else "n/a"
        t_med = statistics.median(r["fit_seconds"] for r in rs)
        summary.append(f"| {d} | {_ms(mse)} / {_ms(mae)} | {n_seeds} | {beats('PatchTST')} | "
                       f"{beats('DLinear')} | {_beats((m_mse, m_mae), rerun)} | {beats('Titans (paper)')} | "
                       f"{sn_txt} | {t_med / 60:.1f} min |")
        detail += [f"### {d} (L = {short[d]})", "",
                   "| horizon | MSE | MAE | epochs | train time | seeds |", "|---|---|---|---|---|---|"]
        for h in horizons:
            hr = [r for r in rs if r["horizon"] == h]
            if not hr:
                continue
            detail.append(f"| {h} | {_ms([r['test_mse'] for r in hr])} | {_ms([r['test_mae'] for r in hr])} | "
                          f"{statistics.median(r['epochs'] + 1 for r in hr):.0f} | "
                          f"{statistics.median(r['fit_seconds'] for r in hr) / 60:.1f} min | {len(hr)} |")
        detail.append(f"| **mean** | **{_ms(mse)}** | **{_ms(mae)}** | | | {n_seeds} |")
        others = " · ".join(f"{k} {v[0]:.3f}/{v[1]:.3f}" for k, v in beat.items())
        detail += ["", f"Published (mean of 4 horizons, MSE/MAE): {others}.", ""]
        # the showcase run's plot (older rows may name plots of other horizons, since redrawn away)
        first = next((r for r in rs if r.get("plot") and _is_showcase(d, r["seq_len"], r["horizon"])
                      and (REPO / r["plot"]).exists()), None)
        if first:
            detail += [f"![{d} forecast]({Path(first['plot']).relative_to('docs').as_posix()})", ""]
    lines += summary + [""]
    if incomplete:
        lines += ["Not all horizons recorded yet (no mean row): " + "; ".join(incomplete) + ".", ""]
    budget = [r for r in main if r["dataset"] in ("ETTh1", "ETTh2") and r["seed"] == 0
              and r["seq_len"] == short.get(r["dataset"])]
    if len({(r["dataset"], r["horizon"]) for r in budget}) == 8:
        total = sum(r["fit_seconds"] for r in budget)
        lines += [f"Whole L = 96 ETTh1 + ETTh2 run (8 trainings, seed 0): {total / 60:.1f} min of "
                  f"training in total on {budget[0].get('machine', '?')}.", ""]
    recipe_note = sorted({r["recipe"] for r in main if r["seq_len"] == short.get(r["dataset"])})
    if recipe_note:
        lines += [f"Configurations: the recipes `{recipe_note[0]}` ... (variant, model size and "
                  "training settings are in each file; `recipes/make_recipes.py` writes them).", ""]
    lines += detail
    lines += _drop_last_section(main, datasets, short)
    lines += _reference_section(refs, main, datasets, short)
    lines += _parts_section(main, datasets, short, baselines)
    # long look-back
    long_rows = [r for r in main if r["seq_len"] != short.get(r["dataset"], r["seq_len"])]
    body = []
    for d in datasets:
        for L in sorted({r["seq_len"] for r in long_rows if r["dataset"] == d}):
            rs = [r for r in long_rows if r["dataset"] == d and r["seq_len"] == L]
            mse, mae, n_seeds, horizons = _mean_rows(rs)
            (b, by) = SEARCHED_BEST.get(d, ((math.nan, math.nan), "n/a"))
            if n_seeds and len(horizons) == 4:
                body.append(f"| {d} | {L} | mean of 4 | {_ms(mse)} / {_ms(mae)} | {n_seeds} | "
                            f"{b[0]:.3f} / {b[1]:.3f} ({by}) |")
            for h in sorted({r["horizon"] for r in rs}):
                hr = [r for r in rs if r["horizon"] == h]
                body.append(f"| {d} | {L} | {h} | {_ms([r['test_mse'] for r in hr])} / "
                            f"{_ms([r['test_mae'] for r in hr])} | {len(hr)} | |")
    if body:
        # the values named in the text are read from the recipes the rows ran
        long_sets = {r["dataset"] for r in long_rows}
        short_rows = [r for r in main if r["dataset"] in long_sets
                      and r["seq_len"] == short.get(r["dataset"])]
        # datasets grouped by how their long recipes differ from their main ones
        groups: dict[tuple | None, list[str]] = {}
        for d in datasets:
            if d in long_sets:
                key = _model_changes([r for r in long_rows if r["dataset"] == d],
                                     [r for r in short_rows if r["dataset"] == d])
                groups.setdefault(key, []).append(d)
        parts = [f"{', '.join(names)}: {_describe_changes(key)}" for key, names in groups.items()]
        cycled = _cycle_recipes(short_rows)
        cycle_note = (f" The learned cycle (`cycle_len`) adopted at L = 96 for {', '.join(cycled)} "
                      "was not tried at the long look-backs, whose recipes have none."
                      if cycled and not _cycle_recipes(long_rows) else "")
        lines += ["## Long look-back", "",
                  "Same model and training settings as each dataset's main-look-back recipe at "
                  f"the same horizon, longer context. {' '.join(parts)}{cycle_note} The searched "
                  "best is a mean over the four horizons (docs/benchmark-protocol.md).", "",
                  "| dataset | L | horizon | MSE / MAE | seeds | best searched result, mean (by) |",
                  "|---|---|---|---|---|---|", *body, ""]
    # configuration selection on the validation split
    sel = [r for r in rows if r.get("val_mse") is not None
           and (r["tag"].startswith(SELECT_PREFIX) or r["tag"] == "main")]
    keys = sorted({(r["dataset"], r["seq_len"], r["horizon"]) for r in sel if r["tag"] != "main"})
    if keys:
        lines += ["## Configuration selection (validation split)", "",
                  f"Candidate settings (tags `{SELECT_PREFIX}*`: the `--set` overrides of the current "
                  "recipe that reproduce each run) are compared with the adopted recipe (`main`) on the validation "
                  "split's MSE / MAE of the checkpoint each run keeps, on the seeds all candidates "
                  "share. Per horizon the lowest validation MSE (bold) is adopted once the candidate "
                  "has run every seed main has (a bold candidate that is not `main` has run fewer "
                  "seeds so far). The loss candidates, run at H = 96 only, had their winner applied "
                  "to every horizon; later candidates change only the horizons where they won. Test "
                  "numbers are shown for transparency, never used to choose.", "",
                  "| dataset | L | H | candidate | seeds | val MSE / MAE | test MSE / MAE |",
                  "|---|---|---|---|---|---|---|"]
        for d, L, h in keys:
            here = [r for r in sel if (r["dataset"], r["seq_len"], r["horizon"]) == (d, L, h)]
            tags = sorted({r["tag"] for r in here}, key=lambda t: (t != "main", t))
            seeds = set.intersection(*[{r["seed"] for r in here if r["tag"] == t} for t in tags])
            cands = []
            for tag in tags:
                rs = [r for r in here if r["tag"] == tag and r["seed"] in seeds]
                if rs:
                    change = ("recipe (adopted)" if tag == "main" else
                              ", ".join(rs[0].get("sets", [])) or "recipe as it was")
                    means = [statistics.mean(r[key] for r in rs)
                             for key in ("val_mse", "val_mae", "test_mse", "test_mae")]
                    cands.append((*means, tag, change, len(rs)))
            best = min(c[0] for c in cands)
            for vm, va, tm, ta, tag, change, n in cands:
                val = f"{vm:.4f} / {va:.4f}"
                lines.append(f"| {d} | {L} | {h} | {tag}: `{change}` | {n} | "
                             f"{'**' + val + '**' if vm == best else val} | {tm:.3f} / {ta:.3f} |")
        lines.append("")
    # ablations
    abl = [r for r in rows if r["tag"] != "main" and not r["tag"].startswith(SELECT_PREFIX)]
    if abl:
        lines += ["## Ablations", "",
                  "Same recipe as the main table with one change (`--set`); mean ± standard deviation "
                  "over the seeds listed. The last column pairs each seed with the main run of the "
                  "same seed: the change's MSE minus the main model's, per seed (positive: the "
                  "change is worse, so the removed part helped).", "",
                  "| dataset | L | H | change | seeds | MSE | MAE | main (same seeds) | "
                  "MSE change - main, per seed |", "|---|---|---|---|---|---|---|---|---|"]
        for r_key in sorted({(r["dataset"], r["seq_len"], r["horizon"], r["tag"]) for r in abl}):
            d, L, h, tag = r_key
            rs = sorted((r for r in abl if (r["dataset"], r["seq_len"], r["horizon"], r["tag"]) == r_key),
                        key=lambda r: r["seed"])
            seeds = {r["seed"] for r in rs}
            ref = {r["seed"]: r for r in main
                   if (r["dataset"], r["seq_len"], r["horizon"]) == (d, L, h) and r["seed"] in seeds}
            ref_txt = (f"{statistics.mean(r['test_mse'] for r in ref.values()):.3f} / "
                       f"{statistics.mean(r['test_mae'] for r in ref.values()):.3f}") if ref else "n/a"
            diffs = " / ".join(f"{r['test_mse'] - ref[r['seed']]['test_mse']:+.4f}" for r in rs
                               if r["seed"] in ref) or "n/a"
            change = ", ".join(rs[0].get("sets", [])) or tag
            lines.append(f"| {d} | {L} | {h} | {tag}: `{change}` | {','.join(str(x) for x in sorted(seeds))} | "
                         f"{_ms([r['test_mse'] for r in rs])} | {_ms([r['test_mae'] for r in rs])} | "
                         f"{ref_txt} | {diffs} |")
        lines.append("")
        lines += _twin_summary(abl, main, (Path(out).parent if out else REPO / "docs") / "benchmarks" / "plots")
    machines = sorted({r.get("machine", "?") for r in rows})
    lines += [f"Runs recorded on: {'; '.join(machines)}. Training times are wall-clock there "
              "(the machine was shared with other work while the sweeps ran, so they are upper "
              "bounds). A run repeats bit for bit on the same host; on another CPU the float "
              "kernels round differently and early stopping can amplify that (a rerun of the "
              "illness rows on a new host moved single runs by up to 0.10 MSE).", ""]
    text = "\n".join(lines)
    path = Path(out) if out else REPO / "docs" / "benchmarks.md"
    path.write_text(text)
    return text


# ------------------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/ltsf.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    br = sub.add_parser("run", help="run recipes x seeds (recorded runs are skipped)")
    br.add_argument("recipes", nargs="+")
    br.add_argument("--seeds", type=int, nargs="+", default=[0])
    br.add_argument("--tag", default="main", help="result file name; use one per ablation")
    br.add_argument("--set", action="append", help="override a recipe value: model.memory.depth=1")
    br.add_argument("--no-plot", action="store_true")
    br.add_argument("--no-report", action="store_true")
    bp = sub.add_parser("report", help="write docs/benchmarks.md from the recorded runs")
    bp.add_argument("--out", default=None)
    bp.add_argument("--print", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "run":
        run_many(args.recipes, args.seeds, args.set or [], args.tag, plot_first=not args.no_plot)
        if not args.no_report:
            render_report()
        return 0
    text = render_report(args.out)
    if args.print:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
