#!/usr/bin/env python
"""Monash last-horizon backtest: TitansEstimator against GluonTS baselines on M3 / M1 monthly.

Protocol (the Monash archive's): for each series the last ``horizon`` points (18 for the monthly
sets) are the test window and everything before them is the training data; every model is fitted
on the training parts of all series and forecasts the held-out window once. Metrics are GluonTS's
``Evaluator`` aggregates: MASE (seasonality 12, scaled by the in-sample seasonal naive error),
sMAPE, and the mean weighted quantile loss over the levels 0.1, ..., 0.9.

Models: ``SeasonalNaivePredictor`` (season 12), GluonTS's ``DeepAREstimator`` and
``PatchTSTEstimator``, and ``TitansEstimator``. The neural models get the same budget: the same
``max_epochs`` x ``num_batches_per_epoch`` training batches of the same ``batch_size``, the same
context length, the same gradient clipping, the same sampling of training windows, one CPU
thread, and each is seeded the same way right before training and again before forecasting.

    OMP_NUM_THREADS=1 python benchmarks/backtest_monash.py --data-root ../shared/data

writes ``docs/benchmarks/monash_backtest.md`` (and prints the same table).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import platform
import random
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")  # GluonTS's evaluation progress bars

DATASETS = {
    "m3_monthly": {"horizon": 18, "season": 12, "freq": "ME"},
    "m1_monthly": {"horizon": 18, "season": 12, "freq": "ME"},
}
MODELS = ("seasonal_naive", "deepar", "patchtst", "titans")
QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("TITANS_TS_DATA"),
                   help="folder holding monash/*.tsf.gz (default: $TITANS_TS_DATA)")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--epochs", type=int, default=20, help="max_epochs of every neural model")
    p.add_argument("--batches-per-epoch", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--context-length", type=int, default=36)
    p.add_argument("--num-samples", type=int, default=100, help="sample paths per forecast")
    p.add_argument("--seed", type=int, default=0)
    # Titans settings (the other models keep their GluonTS defaults)
    p.add_argument("--titans-d-model", type=int, default=32)
    p.add_argument("--titans-layers", type=int, default=2)
    p.add_argument("--titans-patch-len", type=int, default=6)
    p.add_argument("--titans-stride", type=int, default=3)
    p.add_argument("--titans-lr", type=float, default=2e-3)
    p.add_argument("--titans-chunk-size", type=int, default=4)
    p.add_argument("--titans-head", default="student_t", choices=["student_t", "quantile"])
    p.add_argument("--out", default="docs/benchmarks/monash_backtest.md",
                   help="Markdown report (relative paths: to the repository); '' to skip")
    return p.parse_args(argv)


def seed_all(seed: int) -> None:
    import lightning.pytorch as pl
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    pl.seed_everything(seed, workers=True, verbose=False)


def load(name: str, root: str | None, horizon: int, freq: str):
    """(train, test) GluonTS datasets: test = full series, train = all but the last ``horizon``."""
    from gluonts.dataset.common import ListDataset

    from titans_ts import datasets as D

    data = D.load_tsf(name, root=root)
    if data.horizon != horizon:
        raise SystemExit(f"{name}: the file's horizon is {data.horizon}, expected {horizon}")
    test_ds = D.to_gluonts(data.to_collection())
    entries = list(test_ds)
    short = [e["item_id"] for e in entries if len(e["target"]) <= horizon]
    if short:
        raise SystemExit(f"{name}: {len(short)} series are not longer than the horizon")
    test = ListDataset(entries, freq=freq)
    train = ListDataset([{**e, "target": e["target"][:-horizon]} for e in entries], freq=freq)
    return train, test, len(entries)


def make_estimator(model: str, args, freq: str, horizon: int, trainer_kwargs: dict):
    common = dict(prediction_length=horizon, context_length=args.context_length,
                  batch_size=args.batch_size, num_batches_per_epoch=args.batches_per_epoch,
                  trainer_kwargs=dict(trainer_kwargs))
    if model == "deepar":
        from gluonts.torch.model.deepar import DeepAREstimator

        return DeepAREstimator(freq=freq, num_parallel_samples=args.num_samples, **common)
    if model == "patchtst":
        from gluonts.torch.model.patch_tst import PatchTSTEstimator

        return PatchTSTEstimator(patch_len=args.titans_patch_len, stride=args.titans_stride, **common)
    if model == "titans":
        from titans_ts.gluonts import TitansEstimator

        return TitansEstimator(freq=freq, head=args.titans_head, num_samples=args.num_samples,
                               patch_len=args.titans_patch_len, stride=args.titans_stride,
                               d_model=args.titans_d_model, n_layers=args.titans_layers,
                               memory={"heads": 4, "depth": 2, "expansion": 2.0,
                                       "chunk_size": args.titans_chunk_size},
                               lr=args.titans_lr,
                               # as recorded: every step trains (no held-out tail), the
                               # configuration's dropout then (its default is 0.2 since)
                               early_stopping=False, dropout=0.1, **common)
    raise ValueError(model)


def score(forecasts, train, test, horizon: int, season: int) -> dict:
    """MASE / sMAPE on the median forecast and the mean weighted quantile loss (titans_ts.metrics,
    the definitions of GluonTS's Evaluator: MASE scaled by the in-sample seasonal naive MAE per
    series then averaged; wQL = 2 * pinball sum / sum |y| per level, averaged over levels)."""
    from titans_ts import metrics

    truth = np.stack([np.asarray(e["target"][-horizon:], dtype=np.float64) for e in test])
    history = [np.asarray(e["target"], dtype=np.float64) for e in train]
    qf = np.stack([np.stack([f.quantile(q) for q in QUANTILES], -1) for f in forecasts])  # [N, H, Q]
    median = qf[..., QUANTILES.index(0.5)]
    return {"MASE": metrics.mase(truth, median, history, season=season),
            "sMAPE": metrics.smape(truth, median),
            "wQL": metrics.weighted_quantile_loss(truth, qf, QUANTILES)}


def run_model(model: str, args, train, test, freq: str, horizon: int, season: int, root_dir: str):
    from gluonts.model.seasonal_naive import SeasonalNaivePredictor
    from gluonts.transform import ExpectedNumInstanceSampler

    seed_all(args.seed)
    t0 = time.perf_counter()
    if model == "seasonal_naive":
        predictor = SeasonalNaivePredictor(prediction_length=horizon, season_length=season)
    else:
        trainer_kwargs = {"max_epochs": args.epochs, "accelerator": "cpu", "devices": 1,
                          "enable_progress_bar": False, "enable_model_summary": False,
                          "logger": False, "gradient_clip_val": 10.0,
                          "default_root_dir": os.path.join(root_dir, model)}
        est = make_estimator(model, args, freq, horizon, trainer_kwargs)
        # the same window sampler for every model (GluonTS's default; Titans' own default skips
        # windows without any observed context)
        est.train_sampler = ExpectedNumInstanceSampler(num_instances=1.0, min_future=horizon)
        predictor = est.train(train)
    train_s = time.perf_counter() - t0
    seed_all(args.seed)
    t0 = time.perf_counter()
    # forecasting from the training parts = forecasting the held-out last window of each series
    forecasts = list(predictor.predict(train, num_samples=args.num_samples))
    for f, e in zip(forecasts, test, strict=True):
        assert f.item_id == e["item_id"] and f.start_date == e["start"] + (len(e["target"]) - horizon)
    res = score(forecasts, train, test, horizon, season)
    return {**res, "train_s": train_s, "eval_s": time.perf_counter() - t0}


def render(rows, args, argv, started: str, threads: int, load_avg, sizes: dict, total_s: float) -> str:
    lines = ["# Monash backtest: Titans vs GluonTS baselines (last-horizon hold-out)", "",
             "Generated by `benchmarks/backtest_monash.py`; do not edit by hand.", "",
             "Protocol: per series, the last 18 points are the test window and the rest the "
             "training data (the Monash archive's split); one forecast per series. MASE "
             "(seasonality 12) and sMAPE (in percent) score the median forecast; mean wQL averages "
             "the weighted quantile loss over levels 0.1, ..., 0.9. Computed with "
             "`titans_ts.metrics`, whose definitions are those of GluonTS's `Evaluator` (`MASE`, "
             "100 x `sMAPE`, `mean_wQuantileLoss`). Lower is better everywhere.", "",
             "| dataset | series | model | MASE | sMAPE | mean wQL | train s | forecast+eval s |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {sizes[r['dataset']]} | {r['model']} | {r['MASE']:.4f} | "
                     f"{r['sMAPE']:.4f} | {r['wQL']:.4f} | {r['train_s']:.1f} | {r['eval_s']:.1f} |")
    lines += ["",
              f"Settings: neural models trained for {args.epochs} epochs x {args.batches_per_epoch} "
              f"batches of {args.batch_size} windows (context {args.context_length}, horizon 18, "
              f"gradient clip 10, GluonTS's ExpectedNumInstanceSampler), {args.num_samples} sample "
              f"paths per forecast, seed {args.seed}. DeepAR and PatchTST (patch {args.titans_patch_len}, "
              f"stride {args.titans_stride}) keep their GluonTS defaults otherwise. Titans: LMM, "
              f"d_model {args.titans_d_model}, {args.titans_layers} layers, patch "
              f"{args.titans_patch_len} / stride {args.titans_stride}, memory heads 4 depth 2 "
              f"chunk {args.titans_chunk_size}, {args.titans_head} head, AdamW lr {args.titans_lr:g} "
              f"(cosine), RevIN.",
              "",
              f"Command: `{argv}`",
              "",
              f"Date: {started}; total {total_s / 60:.1f} min; torch threads: {threads} "
              f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); host: "
              f"{platform.machine()}, {os.cpu_count()} CPUs, load average at start "
              f"{load_avg[0]:.2f} (other jobs share the machine, so timings are indicative).",
              ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from titans_ts.training import quiet_lightning

    if os.environ.get("OMP_NUM_THREADS") == "1":
        torch.set_num_threads(1)
    logging.getLogger("gluonts").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*validation_step.* no `val_dataloader`.*")
    warnings.filterwarnings("ignore", message=r".*The mean prediction is not stored.*")
    warnings.filterwarnings("ignore", message=r".*non-tuple sequence for multidimensional indexing.*")
    started = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load_avg = os.getloadavg()
    words = [sys.argv[0]] + (sys.argv[1:] if argv is None else list(argv))
    # absolute paths are written relative to the repository (the doc names no machine's paths)
    words = [os.path.relpath(w, REPO) if os.path.isabs(w) else w for w in words]
    command = "python " + " ".join(shlex.quote(w) for w in words)
    if os.environ.get("OMP_NUM_THREADS"):
        command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " + command
    rows, sizes = [], {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="titans-monash-") as root_dir, quiet_lightning():
        for name in args.datasets:
            spec = DATASETS[name]
            freq = spec["freq"]
            train, test, n = load(name, args.data_root, spec["horizon"], freq)
            sizes[name] = n
            for model in args.models:
                res = run_model(model, args, train, test, freq, spec["horizon"], spec["season"], root_dir)
                rows.append({"dataset": name, "model": model, **res})
                print(f"{name:11s} {model:15s} MASE {res['MASE']:.4f}  sMAPE {res['sMAPE']:.4f}  "
                      f"wQL {res['wQL']:.4f}  train {res['train_s']:.1f}s  eval {res['eval_s']:.1f}s",
                      flush=True)
    report = render(rows, args, command, started, torch.get_num_threads(), load_avg, sizes,
                    time.perf_counter() - t_start)
    print()
    print(report)
    if args.out:
        out = Path(args.out)
        out = out if out.is_absolute() else REPO / out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
