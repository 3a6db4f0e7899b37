#!/usr/bin/env python
"""Defaults benchmark: every model with its own defaults only, on data nobody tuned for.

Sets: the Monash sets in the data folder (M1 and M3 monthly / quarterly / yearly / other, NN5
daily and weekly, hospital) and ETTh1's seven columns as seven univariate hourly series
(horizon 48). Split: the Monash archive's last-horizon hold-out (per series, the last
``horizon`` points are the test window, the rest the training data; one forecast per series).

Models, each given only the frequency and the horizon (no per-dataset settings):
``SeasonalNaivePredictor`` (the dataset's season), GluonTS's ``DeepAREstimator`` and
``PatchTSTEstimator`` (its one required setting, ``patch_len``, at the PatchTST paper's 16,
clipped to its default context of 10 x horizon), and ``TitansEstimator`` (its data-aware
defaults: :mod:`titans_ts.defaults`). Trainers are only made quiet and kept on one CPU thread.

Metrics (``titans_ts.metrics``, GluonTS ``Evaluator`` definitions): MASE (the dataset's season)
and sMAPE of the median forecast, the mean weighted quantile loss over 0.1, ..., 0.9.

    OMP_NUM_THREADS=1 python benchmarks/defaults.py --data-root ../shared/data

records each (dataset, model, seed) in ``docs/benchmarks/results/defaults.jsonl`` (rows already
there are skipped unless ``--force``) and renders ``docs/benchmarks/defaults.md`` from that file
(``--render`` only renders).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from backtest_monash import score, seed_all  # noqa: E402  (same scoring as the Monash backtest)

REPO = Path(__file__).resolve().parents[1]
MONASH = ("m1_monthly", "m1_quarterly", "m1_yearly", "m3_monthly", "m3_quarterly", "m3_yearly",
          "m3_other", "nn5_daily", "nn5_weekly", "hospital")
DATASETS = MONASH + ("etth1",)
MODELS = ("seasonal_naive", "deepar", "patchtst", "titans", "titans_forecaster")
# m3_other has no frequency in the archive; it is given a yearly one (season 1, the catalogue's)
NO_FREQ = "Y"
ETTH1_HORIZON = 48
RESULTS = "docs/benchmarks/results/defaults.jsonl"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("TITANS_TS_DATA"),
                   help="folder holding monash/*.tsf.gz and ltsf/ETTh1.csv.gz")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--num-samples", type=int, default=100, help="sample paths per forecast")
    p.add_argument("--results", default=RESULTS, help="JSON-lines record (relative: to the repo)")
    p.add_argument("--out", default="docs/benchmarks/defaults.md", help="report ('' to skip)")
    p.add_argument("--force", action="store_true",
                   help="rerun rows already recorded (the new row replaces the old one)")
    p.add_argument("--render", action="store_true", help="only render the report from the record")
    return p.parse_args(argv)


def _repo_path(p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else REPO / path


def load(name: str, root: str | None):
    """(train, test, freq, horizon, season, has_freq): GluonTS list datasets of the training
    parts and of the full series."""
    from gluonts.dataset.common import ListDataset

    from titans_ts import datasets as D

    if name == "etth1":
        frame = D.load_ltsf_frame("ETTh1", root=root)
        start = frame["date"].iloc[0]
        cols = [c for c in frame.columns if c != "date"]
        entries = [{"item_id": c, "start": start, "target": frame[c].to_numpy(np.float64)}
                   for c in cols]
        freq, horizon, season = "h", ETTH1_HORIZON, 24
    else:
        info = D.dataset_info(name)
        data = D.load_tsf(name, root=root)
        horizon, season = data.horizon, info.season
        freq = data.freq or NO_FREQ
        coll = data.to_collection()
        if data.freq is None:
            import pandas as pd

            entries = [{"item_id": i, "start": pd.Period("2000", freq="Y"),
                        "target": np.asarray(v[:, 0], np.float64)}
                       for i, v in zip(coll.ids, coll.values, strict=True)]
        else:
            entries = list(D.to_gluonts(coll))
    from titans_ts.datasets.frames import period_freq

    freq = period_freq(freq)  # GluonTS reads starts as periods ("MS" -> "M")
    test = ListDataset(entries, freq=freq)
    train = ListDataset([{**e, "target": e["target"][:-horizon]} for e in entries], freq=freq)
    return train, test, freq, horizon, season, name == "etth1" or data.freq is not None


def make_estimator(model: str, freq: str, horizon: int, num_samples: int, root_dir: str):
    quiet = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
             "enable_model_summary": False, "logger": False, "default_root_dir": root_dir}
    if model == "deepar":
        from gluonts.torch.model.deepar import DeepAREstimator

        return DeepAREstimator(freq=freq, prediction_length=horizon, num_parallel_samples=num_samples,
                               trainer_kwargs=quiet)
    if model == "patchtst":
        from gluonts.torch.model.patch_tst import PatchTSTEstimator

        return PatchTSTEstimator(prediction_length=horizon, patch_len=min(16, 10 * horizon),
                                 trainer_kwargs=quiet)
    if model == "titans":
        from titans_ts.gluonts import TitansEstimator

        return TitansEstimator(freq=freq, prediction_length=horizon, num_samples=num_samples,
                               trainer_kwargs={"default_root_dir": root_dir})
    raise ValueError(model)


class _PointForecast:
    """A point forecast read as a (degenerate) distribution: every quantile is the point."""

    def __init__(self, item_id, point):
        self.item_id, self.point = item_id, point

    def quantile(self, q):
        return self.point


def forecaster_forecasts(train, horizon: int, seed: int, integer_steps: bool):
    """``TitansForecaster(h=horizon)`` with its defaults on the training parts as a long frame
    (unique_id, ds, y; integer steps where the data have no frequency); point forecasts."""
    import pandas as pd

    from titans_ts import TitansForecaster

    frames = []
    for e in train:
        start, n = e["start"], len(e["target"])
        ds = (np.arange(n) if integer_steps
              else pd.period_range(start, periods=n, freq=start.freq).to_timestamp())
        frames.append(pd.DataFrame({"unique_id": str(e["item_id"]), "ds": ds, "y": e["target"]}))
    df = pd.concat(frames, ignore_index=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*does not beat the naive baselines.*")
        model = TitansForecaster(h=horizon, seed=seed).fit(df)
    out = model.predict()
    by_id = {sid: g["y_hat"].to_numpy(np.float64) for sid, g in out.groupby("unique_id", sort=False)}
    return model, [_PointForecast(e["item_id"], by_id[str(e["item_id"])]) for e in train]


def run_model(model: str, seed: int, train, test, freq, horizon, season, num_samples, root_dir,
              has_freq: bool = True):
    from gluonts.model.seasonal_naive import SeasonalNaivePredictor

    seed_all(seed)
    t0 = time.perf_counter()
    extra = {}
    if model == "titans_forecaster":
        fitted, forecasts = forecaster_forecasts(train, horizon, seed, integer_steps=not has_freq)
        train_s = time.perf_counter() - t0
        res = score(forecasts, train, test, horizon, season)
        chosen = fitted.chosen_defaults_
        return {**res, "train_s": round(train_s, 2), "eval_s": 0.0,
                "settings": {**chosen, "max_epochs": chosen["max_epochs"],
                             "num_batches_per_epoch": chosen["batches_per_epoch"],
                             "epochs_run": fitted.n_epochs_}}
    if model == "seasonal_naive":
        predictor = SeasonalNaivePredictor(prediction_length=horizon, season_length=season)
    else:
        est = make_estimator(model, freq, horizon, num_samples, os.path.join(root_dir, model))
        predictor = est.train(train)
        if model == "titans":
            extra = {"settings": {k: v for k, v in est.chosen_defaults_.items()}}
    train_s = time.perf_counter() - t0
    seed_all(seed)
    t0 = time.perf_counter()
    forecasts = list(predictor.predict(train, num_samples=num_samples))
    for f, e in zip(forecasts, test, strict=True):
        assert f.item_id == e["item_id"]
    res = score(forecasts, train, test, horizon, season)
    return {**res, "train_s": round(train_s, 2), "eval_s": round(time.perf_counter() - t0, 2), **extra}


def read_results(path: Path) -> list[dict]:
    """The recorded rows; a row rerun (``--force``) replaces the earlier one of its (dataset,
    model, seed)."""
    if not path.exists():
        return []
    latest = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            latest[(row["dataset"], row["model"], row["seed"])] = row
    return list(latest.values())


def render(rows: list[dict], sizes: dict) -> str:
    """The report: one row per (dataset, model), means over the recorded seeds."""
    order = {m: i for i, m in enumerate(MODELS)}
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["model"]), []).append(r)
    lines = ["# Defaults benchmark: every model with its own defaults, on the Monash sets and ETTh1",
             "", "Generated by `benchmarks/defaults.py` from `docs/benchmarks/results/defaults.jsonl`; "
             "do not edit by hand.", "",
             "Protocol: the Monash archive's last-horizon split (per series the last `horizon` "
             "points are the test window, the rest the training data; one forecast per series). "
             "Every model gets the frequency and the horizon only: seasonal naive (the dataset's "
             "season), GluonTS's DeepAR and PatchTST with their defaults (PatchTST's required "
             "`patch_len` at the paper's 16), `TitansEstimator(freq, prediction_length)` (`titans`) "
             "and `TitansForecaster(h)` on the same series as a long frame (`titans_forecaster`; "
             "a point forecast, so its wQL is that of the point at every level; m3_other's steps "
             "are integers there: no frequency, no season), both with the data-aware defaults of "
             "`titans_ts.defaults`. ETTh1's seven columns are seven "
             "hourly univariate series, horizon 48. m3_other has no frequency; every model is "
             f"given `{NO_FREQ}` (season 1). MASE (the dataset's season) and sMAPE (percent) score "
             "the median forecast, mean wQL the quantiles 0.1 .. 0.9 (`titans_ts.metrics`, GluonTS "
             "`Evaluator` definitions). Lower is better; the best MASE per set is in bold.", "",
             "| dataset | series | H | model | MASE | sMAPE | mean wQL | train s | seeds |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    datasets = [d for d in DATASETS if any(k[0] == d for k in groups)]
    wins: dict = {}
    total_train = 0.0
    for d in datasets:
        models = sorted((m for (dd, m) in groups if dd == d), key=order.get)
        mean = {m: {k: float(np.mean([r[k] for r in groups[(d, m)]]))
                    for k in ("MASE", "sMAPE", "wQL", "train_s", "eval_s")} for m in models}
        best = min(mean[m]["MASE"] for m in models)
        for m in models:
            v = mean[m]
            total_train += sum(r["train_s"] + r["eval_s"] for r in groups[(d, m)])
            mase = f"**{v['MASE']:.3f}**" if v["MASE"] == best else f"{v['MASE']:.3f}"
            lines.append(f"| {d} | {sizes.get(d, '')} | {groups[(d, m)][0]['horizon']} | {m} | {mase} | "
                         f"{v['sMAPE']:.2f} | {v['wQL']:.4f} | {v['train_s']:.1f} | "
                         f"{len(groups[(d, m)])} |")
        for ours in ("titans", "titans_forecaster"):
            for other in ("seasonal_naive", "deepar", "patchtst"):
                if ours in mean and other in mean:
                    w = wins.setdefault((ours, other), [0, 0])
                    w[0] += mean[ours]["MASE"] < mean[other]["MASE"]
                    w[1] += 1
    lines.append("")
    for ours in ("titans", "titans_forecaster"):
        parts = [f"{other} on {wins[(ours, other)][0]} of {wins[(ours, other)][1]} sets"
                 for other in ("seasonal_naive", "deepar", "patchtst") if (ours, other) in wins]
        if parts:
            lines.append(f"`{ours}` (defaults only) has a lower MASE than " + ", ".join(parts) + ".")
            lines.append("")
    per_model: dict = {}
    for r in rows:
        per_model[r["model"]] = per_model.get(r["model"], 0.0) + r["train_s"] + r["eval_s"]
    spent = ", ".join(f"{m} {per_model[m] / 60:.1f}" for m in MODELS if m in per_model)
    lines += [f"Runtime of the whole table: {total_train / 60:.1f} min of training and forecasting "
              f"(sum over rows and seeds, one CPU thread per run; minutes per model, all sets and "
              f"seeds: {spent}). The machine is shared with other work, so timings are "
              f"indicative.", ""]
    settings = {(r["dataset"], r["model"]): r["settings"] for r in rows
                if r["model"].startswith("titans") and "settings" in r and r["seed"] == 0}
    if settings:
        lines += ["The data-aware defaults as chosen per set (context length L, learned cycle, "
                  "training budget, epochs run before early stopping; `titans_ts.defaults`):", "",
                  "| dataset | model | seasons (useful) | L | cycle_len | max_epochs x batches | "
                  "epochs run | early stopping on |",
                  "|---|---|---|---:|---:|---:|---:|---|"]
        for (d, m), s in sorted(settings.items(), key=lambda kv: (DATASETS.index(kv[0][0]),
                                                                  order[kv[0][1]])):
            seasons = f"{s['seasons']} ({s['useful_seasons']})"
            lines.append(f"| {d} | {m} | {seasons} | {s['context_length']} | {s['cycle_len']} | "
                         f"{s['max_epochs']} x {s['num_batches_per_epoch']} | "
                         f"{s.get('epochs_run', '')} | {s['validation']} |")
        lines.append("")
    cmds = sorted({r["command"] for r in rows})
    lines += ["Commands (each appends its rows to the record):", ""]
    lines += [f"    {c}" for c in cmds]
    lines += ["", "and `python benchmarks/defaults.py --render` writes this file from the record. The "
              "baselines ran one seed, the two Titans front-ends three (0, 1, 2); two runs shared "
              "the machine's two cores at a time."]
    hosts = sorted({r["host"] for r in rows})
    dates = sorted(r["date"] for r in rows)
    lines += ["", f"Runs from {dates[0]} to {dates[-1]} on {', '.join(hosts)}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from titans_ts.training import quiet_lightning

    results = _repo_path(args.results)
    words = [sys.argv[0]] + (sys.argv[1:] if argv is None else list(argv))
    words = [os.path.relpath(w, REPO) if os.path.isabs(w) else w for w in words]
    command = "python " + " ".join(shlex.quote(w) for w in words)
    if os.environ.get("OMP_NUM_THREADS"):
        command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " + command
    sizes = {}
    if not args.render:
        if os.environ.get("OMP_NUM_THREADS") == "1":
            torch.set_num_threads(1)
        logging.getLogger("gluonts").setLevel(logging.ERROR)
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        for pattern in (r".*validation_step.* no `val_dataloader`.*", r".*mean prediction is not stored.*",
                        r".*non-tuple sequence for multidimensional indexing.*",
                        r".*does not have many workers.*", r".*Trying to infer the `batch_size`.*"):
            warnings.filterwarnings("ignore", message=pattern)
        done = {(r["dataset"], r["model"], r["seed"]) for r in read_results(results)}
        host = f"{platform.machine()}, {os.cpu_count()} CPUs"
        with tempfile.TemporaryDirectory(prefix="titans-defaults-") as root_dir, quiet_lightning():
            for name in args.datasets:
                train, test, freq, horizon, season, has_freq = load(name, args.data_root)
                for model in args.models:
                    for seed in args.seeds:
                        if (name, model, seed) in done and not args.force:
                            continue
                        res = run_model(model, seed, train, test, freq, horizon, season,
                                        args.num_samples, root_dir, has_freq)
                        row = {"dataset": name, "model": model, "seed": seed, "horizon": horizon,
                               "season": season, "freq": freq, "series": len(test), **res,
                               "torch_threads": torch.get_num_threads(), "host": host,
                               "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                               "command": command}
                        results.parent.mkdir(parents=True, exist_ok=True)
                        with results.open("a") as fh:
                            fh.write(json.dumps(row) + "\n")
                        print(f"{name:12s} {model:15s} seed {seed}  MASE {res['MASE']:.4f}  "
                              f"sMAPE {res['sMAPE']:.3f}  wQL {res['wQL']:.4f}  "
                              f"train {res['train_s']:.1f}s  eval {res['eval_s']:.1f}s", flush=True)
    rows = read_results(results)
    if not rows:
        print("no recorded rows to render")
        return 0
    sizes = {r["dataset"]: r["series"] for r in rows}
    report = render(rows, sizes)
    print(report)
    if args.out:
        _repo_path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
