#!/usr/bin/env python
"""Covariates and continued training (issue 36): three experiments, each beside a simple alternative.

* ``nn5``: NN5 daily (111 series, the Monash archive's last-horizon split, H = 56), with and
  without calendar features (``time_features="auto"``: day of week, day of month, day of year),
  through both front-ends (``TitansForecaster(h=56)`` and ``TitansEstimator(freq="D",
  prediction_length=56)``, their defaults otherwise), beside the seasonal naive (season 7) and
  GluonTS's DeepAR given the same calendar features (``time_features``: the same GluonTS
  functions) or none. MASE (season 7) and sMAPE of the median forecast
  (``benchmarks/backtest_monash.score``).
* ``etth1``: ETTh1, target OT, L = 96, H = 96, the exact protocol
  (``titans_ts.datasets.ltsf_splits``: 12 / 4 / 4 months, train-split standardisation, every
  stride-1 window, metrics on the scaled values), the recipe ``recipes/ltsf/ETTh1_96_96.yaml`` on
  the target only (``data.features=S``): no covariates, the six load columns (HUFL, HULL, MUFL,
  MULL, LUFL, LULL) as past-only covariates (``data.hist_exog``), and as future-known ones
  (``data.futr_exog``: their true values over the horizon, an upper bound). Beside: repeat-last and
  a ridge regression of the horizon on the same inputs (its penalty chosen on the validation split).
* ``warm``: continued training. ``TitansForecaster(h=96, context_length=96)`` on OT fitted on the
  first 80 % of ETTh1's training rows, then ``fit(warm_start=True)`` on all of them with a small
  budget fixed beforehand (``--warm-epochs`` epochs of ``--warm-batches`` batches), against a
  fit from scratch on all of them (the data-aware budget): test MSE over every test window of
  the protocol (in its units) and the seconds of each fit. Beside: repeat-last and the ridge.

    OMP_NUM_THREADS=1 python benchmarks/covariates.py --data-root ../shared/data

appends every (part, model, setting, seed) run to ``docs/benchmarks/results/covariates.jsonl``
(rows already there are skipped unless ``--force``) and renders ``docs/benchmarks/covariates.md``
from it (``--render`` only renders). ``--tiny`` runs every part on tiny settings into a
throw-away record (a check of the script, not a result).
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
from backtest_monash import score, seed_all  # noqa: E402  (the Monash backtest's scoring)

REPO = Path(__file__).resolve().parents[1]
RESULTS = "docs/benchmarks/results/covariates.jsonl"
RECIPE = REPO / "recipes" / "ltsf" / "ETTh1_96_96.yaml"
PARTS = ("nn5", "etth1", "warm")
NN5_MODELS = ("seasonal_naive", "deepar", "titans_forecaster", "titans")
LOADS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]
ETTH1_KINDS = ("none", "past", "future", "past-centred", "future-centred", "future-centred-drop0.25",
               "future-centred-drop0.5")
#: the covariates' kind, the network's ``exog_center`` and its ``exog_dropout`` of each ETTh1 setting
ETTH1_SETTINGS = {"none": (None, "none", 0.0), "past": ("hist_exog", "none", 0.0),
                  "future": ("futr_exog", "none", 0.0), "past-centred": ("hist_exog", "mean", 0.0),
                  "future-centred": ("futr_exog", "mean", 0.0),
                  "future-centred-drop0.25": ("futr_exog", "mean", 0.25),
                  "future-centred-drop0.5": ("futr_exog", "mean", 0.5)}
#: the settings a linear map has (dropout is the network's training only)
RIDGE_KINDS = tuple(k for k in ETTH1_KINDS if not ETTH1_SETTINGS[k][2])
L, H = 96, 96
ALPHAS = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("TITANS_TS_DATA"),
                   help="folder holding monash/ and ltsf/")
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    p.add_argument("--models", nargs="+", default=list(NN5_MODELS), choices=list(NN5_MODELS),
                   help="NN5 models to run")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--etth1-kinds", nargs="+", default=list(ETTH1_KINDS), choices=list(ETTH1_KINDS),
                   help="ETTh1 settings to run (the network's; the ridge twin runs every setting it has)")
    p.add_argument("--deepar-features", nargs="+", default=["calendar", "none"], choices=["calendar", "none"],
                   help="DeepAR settings to run (it is the slowest model)")
    p.add_argument("--warm-epochs", type=int, default=3, help="epochs of the continued training")
    p.add_argument("--warm-batches", type=int, default=50, help="batches per epoch of the continued training")
    p.add_argument("--num-samples", type=int, default=100, help="sample paths per probabilistic forecast")
    p.add_argument("--tiny", action="store_true", help="tiny settings, throw-away record: checks the script")
    p.add_argument("--results", default=RESULTS, help="JSON-lines record (relative: to the repo)")
    p.add_argument("--out", default="docs/benchmarks/covariates.md", help="report ('' to skip)")
    p.add_argument("--force", action="store_true", help="rerun rows already recorded")
    p.add_argument("--render", action="store_true", help="only render the report from the record")
    return p.parse_args(argv)


def _repo_path(p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else REPO / path


# ----------------------------------------------------------------------------------------- NN5


class _PointForecast:
    """A point forecast read as a degenerate distribution (every quantile is the point)."""

    def __init__(self, item_id, point):
        self.item_id, self.point = item_id, point

    def quantile(self, q):
        return self.point


def nn5_data(root, tiny: bool):
    from gluonts.dataset.common import ListDataset

    from titans_ts import datasets as D

    data = D.load_tsf("nn5_daily", root=root)
    entries = list(D.to_gluonts(data.to_collection()))
    if tiny:
        entries = entries[:6]
    horizon, freq = data.horizon, "D"
    test = ListDataset(entries, freq=freq)
    train = ListDataset([{**e, "target": e["target"][:-horizon]} for e in entries], freq=freq)
    return train, test, horizon, freq


def nn5_run(model: str, features: str, seed: int, train, test, horizon: int, freq: str, args,
            root_dir: str) -> dict:
    import pandas as pd
    from gluonts.model.seasonal_naive import SeasonalNaivePredictor

    from titans_ts.datasets import resolve_time_features
    from titans_ts.datasets.timefeatures import time_feature_functions

    season = 7
    calendar = features == "calendar"
    quiet = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
             "enable_model_summary": False, "logger": False, "default_root_dir": root_dir}
    tiny = {"max_epochs": 1, "limit_train_batches": 2} if args.tiny else {}
    seed_all(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    extra: dict = {}
    if model == "titans_forecaster":
        from titans_ts import TitansForecaster

        frames = []
        for e in train:
            n = len(e["target"])
            ds = pd.period_range(e["start"], periods=n, freq=e["start"].freq).to_timestamp()
            frames.append(pd.DataFrame({"unique_id": str(e["item_id"]), "ds": ds, "y": e["target"]}))
        df = pd.concat(frames, ignore_index=True)
        kw = {"max_epochs": 1, "limit_train_batches": 2} if args.tiny else {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*does not beat the naive baselines.*")
            fitted = TitansForecaster(h=horizon, seed=seed, time_features="auto" if calendar else None,
                                      **kw).fit(df)
        train_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        out = fitted.predict()
        by_id = {sid: g["y_hat"].to_numpy(np.float64) for sid, g in out.groupby("unique_id", sort=False)}
        forecasts = [_PointForecast(e["item_id"], by_id[str(e["item_id"])]) for e in train]
        extra = {"epochs_run": fitted.n_epochs_, "context_length": fitted.context_length_,
                 "time_features": fitted.chosen_defaults_["time_features"]}
        return {**score(forecasts, train, test, horizon, season), "train_s": round(train_s, 2),
                "cpu_s": round(cpu_s, 2), **extra}
    if model == "seasonal_naive":
        predictor = SeasonalNaivePredictor(prediction_length=horizon, season_length=season)
    elif model == "titans":
        from titans_ts.gluonts import TitansEstimator

        est = TitansEstimator(freq=freq, prediction_length=horizon, num_samples=args.num_samples,
                              time_features="auto" if calendar else None,
                              trainer_kwargs={"default_root_dir": root_dir, **tiny})
        predictor = est.train(train)
        extra = {"epochs_run": est.chosen_defaults_.get("epochs_run"),
                 "context_length": est.chosen_defaults_["context_length"],
                 "time_features": est.chosen_defaults_["time_features"]}
    elif model == "deepar":
        from gluonts.torch.model.deepar import DeepAREstimator

        names = resolve_time_features("auto", freq) if calendar else []
        predictor = DeepAREstimator(freq=freq, prediction_length=horizon, num_parallel_samples=args.num_samples,
                                    time_features=time_feature_functions(names),
                                    trainer_kwargs={**quiet, **tiny}).train(train)
        extra = {"time_features": names}
    else:
        raise ValueError(model)
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    seed_all(seed)
    forecasts = list(predictor.predict(train, num_samples=args.num_samples))
    return {**score(forecasts, train, test, horizon, season), "train_s": round(train_s, 2),
            "cpu_s": round(cpu_s, 2), **extra}


# --------------------------------------------------------------------------------------- ETTh1


def _windows(values: np.ndarray, length: int) -> np.ndarray:
    """[N, length, D]: every stride-1 window of ``values`` [T, D]."""
    return np.lib.stride_tricks.sliding_window_view(values, length, axis=0).transpose(0, 2, 1)


def _design(split, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Ridge inputs and targets of every window of a split (the target's context; the loads'
    context for "past", context and horizon for "future"; minus their context means, per window,
    for the "-centred" settings)."""
    v = split.values.numpy().astype(np.float64)
    w = _windows(v, L + H)  # [N, L + H, 7]
    parts = [w[:, :L, 0]]
    field, center, _ = ETTH1_SETTINGS[kind]
    loads = w[:, :, 1:] - (w[:, :L, 1:].mean(1, keepdims=True) if center == "mean" else 0.0)
    if field == "hist_exog":
        parts.append(loads[:, :L].reshape(len(w), -1))
    elif field == "futr_exog":
        parts.append(loads.reshape(len(w), -1))
    return np.concatenate(parts, 1), w[:, L:, 0]


def ridge(root, kind: str) -> dict:
    """Ridge regression of the 96 future OT values on the inputs of ``kind`` (penalty chosen on
    the validation split); test MSE / MAE in the protocol's units."""
    from titans_ts.datasets import ltsf_splits

    t0 = time.perf_counter()
    splits = ltsf_splits("ETTh1", L, H, root=root, features="S", hist_exog=LOADS)  # OT, then the loads
    (xt, yt), (xv, yv), (xs, ys) = (_design(s, kind) for s in (splits.train, splits.val, splits.test))
    mean_x, mean_y = xt.mean(0), yt.mean(0)
    gram = (xt - mean_x).T @ (xt - mean_x)
    cross = (xt - mean_x).T @ (yt - mean_y)
    best = None
    for alpha in ALPHAS:
        coef = np.linalg.solve(gram + alpha * np.eye(len(gram)), cross)
        val = float((((xv - mean_x) @ coef + mean_y - yv) ** 2).mean())
        if best is None or val < best[0]:
            best = (val, alpha, coef)
    val, alpha, coef = best
    pred = (xs - mean_x) @ coef + mean_y
    return {"test_mse": float(((pred - ys) ** 2).mean()), "test_mae": float(np.abs(pred - ys).mean()),
            "val_mse": val, "alpha": alpha, "train_s": round(time.perf_counter() - t0, 2)}


def repeat_last(root) -> dict:
    from titans_ts.datasets import ltsf_splits

    splits = ltsf_splits("ETTh1", L, H, root=root, features="S")
    w = _windows(splits.test.values.numpy().astype(np.float64), L + H)[:, :, 0]
    err = w[:, L:] - w[:, L - 1:L]
    return {"test_mse": float((err ** 2).mean()), "test_mae": float(np.abs(err).mean()), "train_s": 0.0}


def etth1_run(kind: str, seed: int, args, run_dir: str) -> dict:
    from titans_ts.recipes import load_recipe, train_and_test

    sets = ["data.features=S", f"seed_everything={seed}", f"data.seed={seed}"]
    field, center, drop = ETTH1_SETTINGS[kind]
    if field is not None:
        sets.append(f"data.{field}=[{','.join(LOADS)}]")
    if center != "none":
        sets.append(f"model.exog_center={center}")
    if drop:
        sets.append(f"model.exog_dropout={drop}")
    if args.tiny:
        sets += ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
                 "trainer.limit_test_batches=2"]
    cfg = load_recipe(RECIPE, sets)
    cfg["data"]["root"] = args.data_root
    os.makedirs(run_dir, exist_ok=True)
    c0 = time.process_time()
    model, dm, trainer, res, fit_s = train_and_test(cfg, run_dir)
    return {"test_mse": res["test_mse"], "test_mae": res["test_mae"], "val_mse": res["val_mse"],
            "train_s": round(fit_s, 2), "cpu_s": round(time.process_time() - c0, 2),
            "epochs_run": int(trainer.current_epoch),
            "sets": sets}


# ------------------------------------------------------------------------------- continued training


def _ot_frame(root):
    import pandas as pd

    from titans_ts.datasets import load_ltsf_frame

    frame = load_ltsf_frame("ETTh1", root=root)
    return pd.DataFrame({"unique_id": "OT", "ds": frame["date"], "y": frame["OT"].to_numpy(np.float64)})


def window_mse(model, series, a: int, b: int, mean: float, std: float) -> float:
    """Test MSE (protocol units) of ``model``'s forecasts at every stride-1 window whose context
    starts in rows [a, b - L - H] of ``series`` (the rows of the protocol's test split)."""
    import torch

    from titans_ts.datasets.windows import PAST, PAST_MASK, TIME_INDEX, SeriesWindows, collate_windows, exog_of
    from titans_ts.forecaster.scaling import scale_values

    hist = model.history_
    loc, scale = hist["loc"][0], hist["scale"][0]  # the series' units, fixed at fit
    raw = series.to_numpy(np.float64)[:, None]
    values = scale_values(raw, loc, scale)
    firsts = model._firsts([series.index], model.freq_)
    ends = [(0, e) for e in range(a + L, b - H + 1)]
    data = SeriesWindows([values], L, 0, ends, first_index=firsts)
    net = model.model_.net.eval()
    preds = []
    with torch.no_grad():
        for k in range(0, len(ends), 512):
            batch = collate_windows([data[j] for j in range(k, min(len(ends), k + 512))])
            out = net(batch[PAST], batch[PAST_MASK], time_index=batch.get(TIME_INDEX), exog=exog_of(batch))
            preds.append(net.point_forecast(out)[..., 0].double().numpy())
    pred = np.concatenate(preds) * scale[0] + loc[0]
    truth = np.stack([raw[e:e + H, 0] for _, e in ends])
    return float((((pred - truth) / std) ** 2).mean())


def warm_runs(seed: int, args) -> list[dict]:
    import pandas as pd

    from titans_ts import TitansForecaster

    frame = _ot_frame(args.data_root)
    n_train, test = 8640, (11520 - L, 14400)
    values = frame["y"].to_numpy(np.float64)
    mean, std = values[:n_train].mean(), values[:n_train].std()  # the protocol's scaler
    series = pd.Series(values, index=pd.DatetimeIndex(frame["ds"]))
    first = frame.iloc[: int(0.8 * n_train)]
    whole = frame.iloc[:n_train]
    kw = dict(h=H, context_length=L, seed=seed)
    if args.tiny:
        kw.update(max_epochs=1, limit_train_batches=2)
    rows = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*does not beat the naive baselines.*")
        t0, c0 = time.perf_counter(), time.process_time()
        model = TitansForecaster(**kw).fit(first)
        rows.append({"run": "first80", "seconds": round(time.perf_counter() - t0, 2),
                     "cpu_s": round(time.process_time() - c0, 2),
                     "steps": model.chosen_defaults_["steps"], "epochs_run": model.n_epochs_,
                     "test_mse": window_mse(model, series, *test, mean, std)})
        budget = dict(max_epochs=1, limit_train_batches=2) if args.tiny else \
            dict(max_epochs=args.warm_epochs, limit_train_batches=args.warm_batches)
        model.set_params(**budget)
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(whole, warm_start=True)
        rows.append({"run": "warm", "seconds": round(time.perf_counter() - t0, 2),
                     "cpu_s": round(time.process_time() - c0, 2), "budget": budget,
                     "epochs_run": model.n_epochs_, "test_mse": window_mse(model, series, *test, mean, std)})
        t0, c0 = time.perf_counter(), time.process_time()
        scratch = TitansForecaster(**kw).fit(whole)
        rows.append({"run": "scratch", "seconds": round(time.perf_counter() - t0, 2),
                     "cpu_s": round(time.process_time() - c0, 2),
                     "steps": scratch.chosen_defaults_["steps"], "epochs_run": scratch.n_epochs_,
                     "test_mse": window_mse(scratch, series, *test, mean, std)})
    return rows


# ------------------------------------------------------------------------------------ records


def read_results(path: Path) -> list[dict]:
    """The recorded rows; a rerun (``--force``) replaces the earlier row of its key."""
    if not path.exists():
        return []
    latest = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            latest[_key(row)] = row
    return list(latest.values())


def _key(row: dict) -> tuple:
    return (row["part"], row["model"], row.get("setting"), row["seed"])


def _ms(values) -> str:
    values = [float(v) for v in values]
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def _secs(values) -> str:
    return f"{np.mean([float(v) for v in values]):.1f}"


def render(rows: list[dict]) -> str:
    lines = ["# Covariates and continued training", "",
             "Generated by `benchmarks/covariates.py` from `docs/benchmarks/results/covariates.jsonl`; "
             "do not edit by hand. Means ± standard deviations over the seeds run (column `seeds`); "
             "lower is better. Times are wall-clock seconds of one process on one thread "
             "(`OMP_NUM_THREADS=1`) on a machine shared with other work: indicative.", ""]
    by = {}
    for r in rows:
        by.setdefault((r["part"], r["model"], r.get("setting")), []).append(r)

    def cell(part, model, setting, key):
        rs = by.get((part, model, setting), [])
        fmt = _secs if key in ("train_s", "seconds", "cpu_s", "epochs_run") else _ms
        return (fmt([r[key] for r in rs]), len(rs)) if rs else ("", 0)

    verdicts = []
    # NN5
    if any(k[0] == "nn5" for k in by):
        lines += ["## NN5 daily: calendar features", "",
                  "The Monash archive's split (per series the last 56 days are the test window, the "
                  "rest the training data; one forecast per series), 111 series. `calendar`: "
                  "`time_features=\"auto\"` (day of week, day of month, day of year: GluonTS's table "
                  "for daily data); DeepAR gets the same GluonTS functions as its `time_features` "
                  "(`none`: `time_features=[]`; DeepAR's lags and age feature stay). MASE (season 7) "
                  "and sMAPE (percent) of the median forecast; `TitansForecaster` forecasts a point.", "",
                  "| model | features | MASE | sMAPE | train s (wall) | train s (CPU) | epochs run | "
                  "CPU s / epoch | seeds |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for model in NN5_MODELS:
            for setting in ("none", "calendar"):
                mase, n = cell("nn5", model, setting, "MASE")
                if not n:
                    continue
                smape, _ = cell("nn5", model, setting, "sMAPE")
                secs, _ = cell("nn5", model, setting, "train_s")
                rs = by[("nn5", model, setting)]
                cpu = _secs([r["cpu_s"] for r in rs]) if all("cpu_s" in r for r in rs) else ""
                ep = _secs([r["epochs_run"] for r in rs]) if all(r.get("epochs_run") for r in rs) else ""
                per = (f"{np.mean([r['cpu_s'] / r['epochs_run'] for r in rs]):.2f}" if cpu and ep else "")
                lines.append(f"| {model} | {setting} | {mase} | {smape} | {secs} | {cpu} | {ep} | {per} | {n} |")
        lines.append("")
        ratios = []
        for model in ("titans_forecaster", "titans"):
            a, b = by.get(("nn5", model, "none"), []), by.get(("nn5", model, "calendar"), [])
            if a and b and all("cpu_s" in r and r.get("epochs_run") for r in a + b):
                ratios.append(np.mean([r["cpu_s"] / r["epochs_run"] for r in b])
                              / np.mean([r["cpu_s"] / r["epochs_run"] for r in a]))
        if ratios:
            L0 = by[("nn5", "titans_forecaster", "none")][0].get("context_length")
            lines += [f"Where the seconds go: an epoch with calendar features costs {min(ratios):.1f} to "
                      f"{max(ratios):.1f} times one without (CPU seconds per epoch): their horizon tokens "
                      f"(56 steps in patches of 16 with stride 8: 7 tokens) run through the blocks beside "
                      f"the {L0}-step context's 14; the rest of the difference in training time is the "
                      f"number of epochs early stopping ran. DeepAR trains for its fixed 100 epochs.", ""]
        for model, label in (("titans_forecaster", "TitansForecaster"), ("titans", "TitansEstimator"),
                             ("deepar", "DeepAR")):
            a, b = by.get(("nn5", model, "none")), by.get(("nn5", model, "calendar"))
            if a and b:
                ma, mb = np.mean([r["MASE"] for r in a]), np.mean([r["MASE"] for r in b])
                verdicts.append(f"NN5 daily, {label}: calendar features {'lower' if mb < ma else 'do not lower'} "
                                f"the MASE (mean of {len(b)} seeds: {mb:.4f} with, {ma:.4f} without, "
                                f"{100 * (mb / ma - 1):+.1f} %).")
    # ETTh1
    if any(k[0] == "etth1" for k in by):
        lines += ["## ETTh1, target OT: the load columns as covariates", "",
                  "The exact protocol at L = 96, H = 96 on the target OT alone (`ltsf_splits(features=\"S\")`, "
                  "2785 test windows, metrics on the train-standardised values). titans-ts: the recipe "
                  "`recipes/ltsf/ETTh1_96_96.yaml` with `data.features=S` (10 epochs, early stopping on "
                  "the validation split); `past`: the six load columns (HUFL, HULL, MUFL, MULL, LUFL, LULL) "
                  "as past-only covariates (`data.hist_exog`), `future`: as future-known covariates "
                  "(`data.futr_exog`, their true values over the horizon: an upper bound, as a perfect "
                  "forecast of the loads would give). `-centred`: the same columns minus their mean "
                  "over each window's context (`model.exog_center=mean`: their changes enter, not their "
                  "levels, as RevIN does for the target). `-drop p`: in training each load column of a window is "
                  "hidden as a missing covariate with probability p (`model.exog_dropout=p`), so the network "
                  "keeps a forecast that does not lean on any one load. Ridge: a linear least-squares map "
                  "from the same inputs to the 96 future values (penalty chosen on the validation split).", "",
                  "| model | covariates | test MSE | test MAE | val MSE | train s | seeds |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for model in ("repeat_last", "ridge", "titans"):
            for setting in ETTH1_KINDS:
                mse, n = cell("etth1", model, setting, "test_mse")
                if not n:
                    continue
                mae, _ = cell("etth1", model, setting, "test_mae")
                val = cell("etth1", model, setting, "val_mse")[0] if model != "repeat_last" else ""
                secs, _ = cell("etth1", model, setting, "train_s")
                lines.append(f"| {model} | {setting} | {mse} | {mae} | {val} | {secs} | {n} |")
        lines.append("")
        a = by.get(("etth1", "titans", "none"))
        # the future-known setting whose covariate center has the lower validation MSE
        futures = {k: by[("etth1", "titans", k)] for k in ETTH1_KINDS
                   if k.startswith("future") and ("etth1", "titans", k) in by}
        if a and futures:
            chosen = min(futures, key=lambda k: np.mean([r["val_mse"] for r in futures[k]]))
            b = futures[chosen]
            ma, mb = np.mean([r["test_mse"] for r in a]), np.mean([r["test_mse"] for r in b])
            va, vb = np.mean([r["val_mse"] for r in a]), np.mean([r["val_mse"] for r in b])
            vals = ", ".join(f"`{k}` {np.mean([r['val_mse'] for r in v]):.4f}" for k, v in futures.items())
            how = (f" (`{chosen}`, the future-known setting with the lowest validation MSE: {vals})"
                   if len(futures) > 1 else "")
            verdicts.append(f"ETTh1: the future-known load columns{how} {'lower' if mb < ma else 'do not lower'} "
                            f"the OT test MSE against no covariates ({mb:.4f} against {ma:.4f}, "
                            f"{100 * (mb / ma - 1):+.1f} %); on the validation split they "
                            f"{'lower' if vb < va else 'do not lower'} it ({vb:.4f} against {va:.4f}, "
                            f"{100 * (vb / va - 1):+.1f} %).")
            # (a dropout setting's linear twin: the same inputs, which a linear map reads without dropout)
            r0 = by.get(("etth1", "ridge", "none"))
            rf = by.get(("etth1", "ridge", chosen)) or by.get(("etth1", "ridge", chosen.split("-drop")[0]))
            if r0 and rf:
                base = chosen.split("-drop")[0]
                lines += [f"The ridge regression, given the same load columns (`{base}`), moves the same "
                          f"way: on validation they lower its MSE ({rf[0]['val_mse']:.4f} against "
                          f"{r0[0]['val_mse']:.4f} without), on the test split they raise it "
                          f"({rf[0]['test_mse']:.4f} against {r0[0]['test_mse']:.4f}): the loads' relation "
                          f"to the oil temperature learned on the training months does not hold in the "
                          f"test months, for a linear map as for the network. What the validation split "
                          f"picks for the network is to read the loads' changes, not their levels "
                          f"(centred per window), and not to lean on any one of them (covariate "
                          f"dropout); with both, the network's test MSE comes just below the one without "
                          f"covariates, by less than the spread over seeds: the loads are no longer a "
                          f"cost on the test months, and not yet a clear gain.", ""]
    # continued training
    if any(k[0] == "warm" for k in by):
        lines += ["## Continued training (`fit(warm_start=True)`), ETTh1 OT", "",
                  "`TitansForecaster(h=96, context_length=96)` on OT (its defaults otherwise: the "
                  "data-aware budget, early stopping on the last 96 training steps). `first80`: fitted on "
                  "the first 80 % of the 8640 training rows; `warm`: that model, `fit(warm_start=True)` on "
                  "all 8640 rows with the small budget shown (fixed beforehand, not tuned), its units "
                  "kept; `scratch`: a new model fitted on all 8640 rows. Test MSE over the protocol's "
                  "2785 test windows in its units (forecast from each window's context); seconds of "
                  "that fit alone. Repeat-last and the ridge (no covariates) as above.", "",
                  "| model | run | test MSE | fit s (wall) | fit s (CPU) | epochs run | seeds |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for model, runs in (("repeat_last", ("none",)), ("ridge", ("none",))):
            for setting in runs:
                mse, n = cell("etth1", model, setting, "test_mse")
                if n:
                    lines.append(f"| {model} | (all training rows) | {mse} | "
                                 f"{cell('etth1', model, setting, 'train_s')[0]} | | | {n} |")
        for run in ("first80", "warm", "scratch"):
            mse, n = cell("warm", "titans_forecaster", run, "test_mse")
            if not n:
                continue
            secs, _ = cell("warm", "titans_forecaster", run, "seconds")
            cpu, _ = cell("warm", "titans_forecaster", run, "cpu_s")
            ep, _ = cell("warm", "titans_forecaster", run, "epochs_run")
            budget = by[("warm", "titans_forecaster", run)][0].get("budget")
            label = run + (f" ({budget['max_epochs']} x {budget['limit_train_batches']} batches)" if budget else "")
            lines.append(f"| titans_forecaster | {label} | {mse} | {secs} | {cpu} | {ep} | {n} |")
        lines.append("")
        w, s = by.get(("warm", "titans_forecaster", "warm")), by.get(("warm", "titans_forecaster", "scratch"))
        if w and s:
            mw, ms = np.mean([r["test_mse"] for r in w]), np.mean([r["test_mse"] for r in s])
            tw, ts = np.mean([r["seconds"] for r in w]), np.mean([r["seconds"] for r in s])
            cw, cs = np.mean([r["cpu_s"] for r in w]), np.mean([r["cpu_s"] for r in s])
            ok = mw <= 1.02 * ms and tw <= 0.5 * ts and cw <= 0.5 * cs
            verdicts.append(f"Continued training {'reaches' if ok else 'does not reach'} the from-scratch MSE "
                            f"within 2 % in at most half its seconds: MSE {mw:.4f} against {ms:.4f} "
                            f"({100 * (mw / ms - 1):+.1f} %) in {tw:.1f} s against {ts:.1f} s of wall-clock "
                            f"time ({100 * tw / ts:.0f} %), {cw:.1f} s against {cs:.1f} s of CPU time "
                            f"({100 * cw / cs:.0f} %).")
    if verdicts:
        lines += ["## Acceptance", ""] + [f"- {v}" for v in verdicts] + [""]
    total = sum(float(r.get("train_s", r.get("seconds", 0.0))) for r in rows)
    cmds = sorted({r["command"] for r in rows})
    lines += [f"Total fit time over the record: {total / 60:.1f} min.", "",
              "Commands (each appends its rows to the record):", ""] + [f"    {c}" for c in cmds]
    lines += ["", "and `python benchmarks/covariates.py --render` writes this file from the record."]
    hosts = sorted({r["host"] for r in rows})
    dates = sorted(r["date"] for r in rows)
    lines += ["", f"Runs from {dates[0]} to {dates[-1]} on {', '.join(hosts)}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from titans_ts.training import quiet_lightning

    results = _repo_path(args.results)
    if args.tiny:
        results = Path(tempfile.mkdtemp(prefix="titans-cov-tiny-")) / "covariates.jsonl"
        args.out = str(results.with_suffix(".md"))
    words = [sys.argv[0]] + (sys.argv[1:] if argv is None else list(argv))
    words = [os.path.relpath(w, REPO) if os.path.isabs(w) else w for w in words]
    command = "python " + " ".join(shlex.quote(w) for w in words)
    if os.environ.get("OMP_NUM_THREADS"):
        command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " + command
    if not args.render:
        if os.environ.get("OMP_NUM_THREADS") == "1":
            torch.set_num_threads(1)
        logging.getLogger("gluonts").setLevel(logging.ERROR)
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        for pattern in (r".*validation_step.* no `val_dataloader`.*", r".*mean prediction is not stored.*",
                        r".*non-tuple sequence for multidimensional indexing.*",
                        r".*does not have many workers.*", r".*Trying to infer the `batch_size`.*"):
            warnings.filterwarnings("ignore", message=pattern)
        done = {_key(r) for r in read_results(results)}
        host = f"{platform.machine()}, {os.cpu_count()} CPUs"

        def record(row: dict) -> None:
            row = {**row, "torch_threads": torch.get_num_threads(), "host": host,
                   "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   "command": command}
            results.parent.mkdir(parents=True, exist_ok=True)
            with results.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            shown = {k: v for k, v in row.items() if k not in ("command", "host", "date", "sets")}
            print(json.dumps(shown), flush=True)

        def todo(part, model, setting, seed) -> bool:
            return args.force or (part, model, setting, seed) not in done

        with tempfile.TemporaryDirectory(prefix="titans-covariates-") as root_dir, quiet_lightning():
            if "nn5" in args.parts:
                train, test, horizon, freq = nn5_data(args.data_root, args.tiny)
                for model in args.models:
                    settings = (("none",) if model == "seasonal_naive" else
                                tuple(args.deepar_features) if model == "deepar" else ("none", "calendar"))
                    seeds = args.seeds[:1] if model == "seasonal_naive" else args.seeds
                    for setting in settings:
                        for seed in seeds:
                            if todo("nn5", model, setting, seed):
                                res = nn5_run(model, setting, seed, train, test, horizon, freq, args,
                                              os.path.join(root_dir, f"{model}-{setting}-{seed}"))
                                record({"part": "nn5", "model": model, "setting": setting, "seed": seed,
                                        "series": len(test), "horizon": horizon, **res})
            if "etth1" in args.parts or "warm" in args.parts:
                for kind in RIDGE_KINDS if "etth1" in args.parts else ("none",):
                    if todo("etth1", "ridge", kind, 0):
                        record({"part": "etth1", "model": "ridge", "setting": kind, "seed": 0,
                                **ridge(args.data_root, kind)})
                if todo("etth1", "repeat_last", "none", 0):
                    record({"part": "etth1", "model": "repeat_last", "setting": "none", "seed": 0,
                            **repeat_last(args.data_root)})
            if "etth1" in args.parts:
                for kind in args.etth1_kinds:
                    for seed in args.seeds:
                        if todo("etth1", "titans", kind, seed):
                            res = etth1_run(kind, seed, args, os.path.join(root_dir, f"etth1-{kind}-{seed}"))
                            record({"part": "etth1", "model": "titans", "setting": kind, "seed": seed, **res})
            if "warm" in args.parts:
                for seed in args.seeds:
                    if all(todo("warm", "titans_forecaster", run, seed) for run in ("first80", "warm", "scratch")):
                        for row in warm_runs(seed, args):
                            record({"part": "warm", "model": "titans_forecaster", "setting": row.pop("run"),
                                    "seed": seed, **row})
    rows = read_results(results)
    if not rows:
        print("no recorded rows to render")
        return 0
    report = render(rows)
    print(report)
    if args.out:
        _repo_path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
