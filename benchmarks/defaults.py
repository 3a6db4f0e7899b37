#!/usr/bin/env python
"""Defaults benchmark: every model with its own defaults only, on data nobody tuned for.

Sets: the Monash sets in the data folder (M1 and M3 monthly / quarterly / yearly / other, NN5
daily and weekly, hospital), ETTh1's seven columns as seven univariate hourly series (horizon
48), and the hourly development panel (``hourly_panel``: 388 series of 976 or 1024 hourly points
cut from the ETTh1, ETTh2 and weather columns, horizon 48; built at run time by
:func:`titans_ts.datasets.panels.hourly_panel`, whose docs give the construction). Split: the
Monash archive's last-horizon hold-out (per series, the last ``horizon`` points are the test
window, the rest the training data; one forecast per series).

Models, each given only the frequency and the horizon (no per-dataset settings):
``SeasonalNaivePredictor`` (the dataset's season), GluonTS's ``DeepAREstimator`` and
``PatchTSTEstimator`` (its one required setting, ``patch_len``, at the PatchTST paper's 16,
clipped to its default context of 10 x horizon), ``TitansEstimator`` and ``TitansForecaster``
(their data-aware defaults: :mod:`titans_ts.defaults`), and the statistical models a
practitioner reaches for first, statsforecast's ``AutoETS``, ``AutoTheta``, ``AutoARIMA`` and,
on sets whose series show two seasons of the frequency twice (the hourly sets: a day and a
week), ``MSTL`` over those seasons (trend by ``AutoETS(model="ZZN")``), each with the set's
season (the one its MASE uses). Trainers are only made quiet and kept on one CPU thread.

The statistical models (``pip install -e ".[bench]"``) are fitted series by series. Their
quantiles come from their prediction intervals: the q and 1 - q quantiles (q = 0.1 .. 0.4) are
the bounds of the central interval of level 100 (1 - 2q) (``lo-80`` / ``hi-80`` for 0.1 / 0.9,
...), the median is the mean forecast (the intervals are symmetric around it). A series on
which a model fails (an exception) is forecast by the seasonal naive instead, and the row
counts those series (``fallbacks``). ``AutoARIMA`` has a time limit per set
(``--arima-limit``, 600 s): once 10 series are done or 60 s have passed, it projects the set's
time after each series (the mean seconds per series so far times the series); once that passes
the limit it stops, and the set records a row without scores that says how far it got (a ``-``
in the report). It is not run at all on
sets whose season is ``ARIMA_MAX_SEASON`` (24) or more with series of more than 500 points (the
hourly sets): its seasonal search took 212 and 269 s on single hourly-panel series of 976
points (one thread of a loaded 2-core machine), hours for a set.

``--naive-fallback`` also records ``titans_forecaster_fallback``: the same fitted forecaster
predicting with ``naive_fallback=True`` (the series it lost on the validation tail forecast by
their better naive; no second training), to measure the guard against the default.

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
DATASETS = MONASH + ("etth1", "hourly_panel")
STATS = ("auto_ets", "auto_theta", "auto_arima", "mstl")
MODELS = ("seasonal_naive", "deepar", "patchtst", "titans", "titans_forecaster") + STATS
#: recorded with --naive-fallback, from the titans_forecaster fit
FALLBACK = "titans_forecaster_fallback"
ORDER = MODELS + (FALLBACK,)
ARIMA_LIMIT = 600.0  # seconds of AutoARIMA per set (projected), see the module docs
ARIMA_MAX_SEASON = 24  # AutoARIMA is not run at this season or more on series of over 500 points
# m3_other has no frequency in the archive; it is given a yearly one (season 1, the catalogue's)
NO_FREQ = "Y"
ETTH1_HORIZON = 48
PANEL_HORIZON = 48
RESULTS = "docs/benchmarks/results/defaults.jsonl"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("TITANS_TS_DATA"),
                   help="folder holding monash/*.tsf.gz and ltsf/{ETTh1,ETTh2,weather}.csv.gz")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--num-samples", type=int, default=100, help="sample paths per forecast")
    p.add_argument("--arima-limit", type=float, default=ARIMA_LIMIT,
                   help="seconds AutoARIMA may take on a set (projected after each series)")
    p.add_argument("--naive-fallback", action="store_true",
                   help=f"with titans_forecaster, also record {FALLBACK} (the same fit, naive_fallback=True)")
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

    if name == "hourly_panel":
        from titans_ts.datasets.panels import hourly_panel

        frame, report = hourly_panel(root, horizon=PANEL_HORIZON)
        print(f"hourly_panel: {report.summary()}", flush=True)
        entries = [{"item_id": sid, "start": g["ds"].iloc[0], "target": g["y"].to_numpy(np.float64)}
                   for sid, g in frame.groupby("unique_id", sort=False)]
        freq, horizon, season = "h", PANEL_HORIZON, 24
    elif name == "etth1":
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
    return train, test, freq, horizon, season, name in ("etth1", "hourly_panel") or data.freq is not None


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


class _QuantileForecast:
    """A forecast given by its quantiles (the statistical models' intervals)."""

    def __init__(self, item_id, quantiles: dict):
        self.item_id, self.quantiles = item_id, quantiles

    def quantile(self, q):
        return self.quantiles[round(float(q), 2)]


def mstl_seasons(freq: str, train, horizon: int) -> tuple[int, ...]:
    """The seasons of ``freq`` the typical training series shows twice beside the horizon
    (:func:`titans_ts.defaults.useful_seasons`): MSTL runs where there are two or more."""
    from titans_ts.defaults import seasonal_periods, useful_seasons

    typical = int(np.median([len(e["target"]) for e in train]))
    return useful_seasons(seasonal_periods(freq), typical, horizon)


def _stats_model(model: str, season: int, seasons: tuple[int, ...]):
    from statsforecast.models import MSTL, AutoARIMA, AutoETS, AutoTheta

    if model == "auto_ets":
        return AutoETS(season_length=season)
    if model == "auto_theta":
        return AutoTheta(season_length=season)
    if model == "auto_arima":
        return AutoARIMA(season_length=season)
    if model == "mstl":
        return MSTL(season_length=list(seasons), trend_forecaster=AutoETS(model="ZZN"))
    raise ValueError(model)


STATS_LEVELS = (20, 40, 60, 80)  # central intervals whose bounds are the quantiles 0.1 .. 0.9
_WARM: set = set()


def stats_forecasts(model: str, train, horizon: int, season: int, seasons: tuple[int, ...],
                    limit: float | None = None):
    """Forecasts of a statsforecast model fitted on each training series (see the module docs):
    (forecasts, series that fell back to the seasonal naive, None) or, when ``limit`` seconds
    are projected to pass, (None, 0, why it stopped)."""
    from gluonts.dataset.common import ListDataset
    from gluonts.model.seasonal_naive import SeasonalNaivePredictor

    if model not in _WARM:  # compile what the model compiles on first use, outside the timing
        t = np.arange(4 * max(seasons or (season,)) + 8, dtype=np.float64)
        _stats_model(model, season, seasons).forecast(y=10 + np.sin(t) + 0.01 * t, h=horizon,
                                                      level=list(STATS_LEVELS))
        _WARM.add(model)
    out, fallbacks, t0 = [], 0, time.perf_counter()
    entries = list(train)
    for k, e in enumerate(entries):
        y = np.asarray(e["target"], dtype=np.float64)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                f = _stats_model(model, season, seasons).forecast(y=y, h=horizon, level=list(STATS_LEVELS))
            qs = {0.5: np.asarray(f["mean"], dtype=np.float64)}
            for lvl in STATS_LEVELS:
                q = round((100 - lvl) / 200, 2)
                qs[q] = np.asarray(f[f"lo-{lvl}"], dtype=np.float64)
                qs[round(1 - q, 2)] = np.asarray(f[f"hi-{lvl}"], dtype=np.float64)
            if not all(np.isfinite(a).all() and a.shape == (horizon,) for a in qs.values()):
                raise FloatingPointError("a forecast that is not finite")
        except Exception:  # noqa: BLE001  (counted: the row says how many series fell back)
            fallbacks += 1
            one = ListDataset([e], freq=e["start"].freqstr)
            sn = next(iter(SeasonalNaivePredictor(prediction_length=horizon, season_length=season).predict(one)))
            qs = {round(q, 2): np.asarray(sn.quantile(q), dtype=np.float64) for q in np.arange(1, 10) / 10}
        out.append(_QuantileForecast(e["item_id"], qs))
        spent = time.perf_counter() - t0
        if limit is not None and (k >= 9 or spent > 60) and spent / (k + 1) * len(entries) > limit:
            return None, 0, (f"stopped after {k + 1} of {len(entries)} series ({spent:.0f} s): projected "
                             f"{spent / (k + 1) * len(entries):.0f} s > the {limit:.0f} s limit")
    return out, fallbacks, None


def forecaster_forecasts(train, horizon: int, seed: int, integer_steps: bool, fallback: bool = False,
                         freq: str | None = None, **params):
    """``TitansForecaster(h=horizon)`` with its defaults on the training parts as a long frame
    (unique_id, ds, y; integer steps where the data have no frequency); point forecasts, and
    with ``fallback`` those of the same fit with ``naive_fallback=True`` (else None). ``freq``
    (None: inferred) and ``params``: given to the forecaster (the validation study's)."""
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
        model = TitansForecaster(h=horizon, seed=seed, freq=freq, **params).fit(df)

    def points(out):
        by_id = {sid: g["y_hat"].to_numpy(np.float64) for sid, g in out.groupby("unique_id", sort=False)}
        return [_PointForecast(e["item_id"], by_id[str(e["item_id"])]) for e in train]

    plain = points(model.predict())
    if not fallback:
        return model, plain, None
    model.set_params(naive_fallback=True)  # what predict reports only: no refit
    return model, plain, points(model.predict())


def run_model(model: str, seed: int, train, test, freq, horizon, season, num_samples, root_dir,
              has_freq: bool = True, arima_limit: float | None = ARIMA_LIMIT, fallback: bool = False):
    """One row's results (scores and seconds). titans_forecaster with ``fallback``: the
    ``naive_fallback=True`` row's results under the key ``FALLBACK``. A statistical model that
    stopped at its time limit: ``status`` and no scores."""
    from gluonts.model.seasonal_naive import SeasonalNaivePredictor

    seed_all(seed)
    t0 = time.perf_counter()
    extra = {}
    if model == "auto_arima" and season >= ARIMA_MAX_SEASON and np.median([len(e["target"]) for e in train]) > 500:
        return {"MASE": None, "sMAPE": None, "wQL": None, "train_s": 0.0, "eval_s": 0.0,
                "status": f"not run: season {season} >= {ARIMA_MAX_SEASON} on series of over 500 points "
                          f"(minutes per series: hours for the set; see benchmarks/defaults.py)"}
    if model in STATS:
        seasons = mstl_seasons(freq, train, horizon) if model == "mstl" else ()
        forecasts, fallbacks, stopped = stats_forecasts(
            model, train, horizon, season, seasons, arima_limit if model == "auto_arima" else None)
        train_s = round(time.perf_counter() - t0, 2)
        if stopped:
            return {"MASE": None, "sMAPE": None, "wQL": None, "train_s": train_s, "eval_s": 0.0,
                    "status": stopped}
        res = score(forecasts, train, test, horizon, season)
        settings = {"season": season, **({"seasons": list(seasons)} if seasons else {})}
        return {**res, "train_s": train_s, "eval_s": 0.0, "fallbacks": fallbacks, "settings": settings}
    if model == "titans_forecaster":
        fitted, forecasts, guarded = forecaster_forecasts(train, horizon, seed, not has_freq, fallback)
        train_s = time.perf_counter() - t0
        res = score(forecasts, train, test, horizon, season)
        chosen = fitted.chosen_defaults_
        if guarded is not None:
            lost = int((~fitted.validation_report_["model_wins"]).sum()) \
                if fitted.validation_report_ is not None else 0
            extra[FALLBACK] = {**score(guarded, train, test, horizon, season), "train_s": round(train_s, 2),
                               "eval_s": 0.0, "fallback_series": lost}
        return {**res, "train_s": round(train_s, 2), "eval_s": 0.0,
                "settings": {**chosen, "max_epochs": chosen["max_epochs"],
                             "num_batches_per_epoch": chosen["batches_per_epoch"],
                             "epochs_run": fitted.n_epochs_}, **extra}
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


def _mean(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def render(rows: list[dict], sizes: dict) -> str:
    """The report: one row per (dataset, model), means over the recorded seeds."""
    order = {m: i for i, m in enumerate(ORDER)}
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["model"]), []).append(r)
    lines = ["# Defaults benchmark: every model with its own defaults, on the Monash sets, ETTh1 and an "
             "hourly panel",
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
             "`titans_ts.defaults`, and statsforecast's `AutoETS`, `AutoTheta`, `AutoARIMA` "
             "(`auto_ets`, `auto_theta`, `auto_arima`) with the dataset's season and, on the sets "
             "whose series show a day and a week twice (the hourly ones), `MSTL` over both seasons "
             "(`mstl`, trend by `AutoETS(model=\"ZZN\")`). Their quantiles are the bounds of their "
             "central prediction intervals (the q and 1 - q quantiles: the interval of level "
             "100 (1 - 2q)), their median the mean forecast; `AutoARIMA` stops on a set whose "
             "projected time passes its limit (`-` below, with how far it got). "
             "ETTh1's seven columns are seven "
             "hourly univariate series, horizon 48. `hourly_panel` is the hourly development panel "
             "(`titans_ts.datasets.panels.hourly_panel`: the ETTh1, ETTh2 and hourly weather "
             "columns cut into series of 976 or 1024 points, horizon 48, built at run time from "
             "the shared files). m3_other has no frequency; every model is "
             f"given `{NO_FREQ}` (season 1). MASE (the dataset's season) and sMAPE (percent) score "
             "the median forecast, mean wQL the quantiles 0.1 .. 0.9 (`titans_ts.metrics`, GluonTS "
             "`Evaluator` definitions). Lower is better; the best MASE per set is in bold. "
             "`train s` is the mean seconds of training (for the statistical models: fitting and "
             "forecasting every series) per seed.", "",
             "| dataset | series | H | model | MASE | sMAPE | mean wQL | train s | seeds |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    datasets = [d for d in DATASETS if any(k[0] == d for k in groups)]
    others = ("seasonal_naive", "deepar", "patchtst") + STATS
    wins: dict = {}
    total_train = 0.0
    notes = []
    for d in datasets:
        models = sorted((m for (dd, m) in groups if dd == d), key=order.get)
        mean = {m: {k: _mean(groups[(d, m)], k) for k in ("MASE", "sMAPE", "wQL", "train_s", "eval_s")}
                for m in models}
        scored = [m for m in models if mean[m]["MASE"] is not None]
        best = min(mean[m]["MASE"] for m in scored) if scored else None
        for m in models:
            v, rs = mean[m], groups[(d, m)]
            total_train += sum(r["train_s"] + r["eval_s"] for r in rs)
            if v["MASE"] is None:
                lines.append(f"| {d} | {sizes.get(d, '')} | {rs[0]['horizon']} | {m} | - | - | - | "
                             f"{v['train_s']:.1f} | {len(rs)} |")
                notes.append(f"{m} on {d}: {rs[0].get('status', 'no scores')}.")
                continue
            mase = f"**{v['MASE']:.3f}**" if v["MASE"] == best else f"{v['MASE']:.3f}"
            lines.append(f"| {d} | {sizes.get(d, '')} | {rs[0]['horizon']} | {m} | {mase} | "
                         f"{v['sMAPE']:.2f} | {v['wQL']:.4f} | {v['train_s']:.1f} | {len(rs)} |")
            if any(r.get("fallbacks") for r in rs):
                notes.append(f"{m} on {d}: {max(r['fallbacks'] for r in rs)} series forecast by the "
                             f"seasonal naive (the model failed on them).")
        stats = [m for m in STATS if m in scored]
        for ours in ("titans", "titans_forecaster", FALLBACK):
            if ours not in scored:
                continue
            for other in others + ("best statistical model",):
                ref = (min(mean[m]["MASE"] for m in stats) if other == "best statistical model" and stats
                       else mean[other]["MASE"] if other in scored else None)
                if ref is not None:
                    w = wins.setdefault((ours, other), [0, 0])
                    w[0] += mean[ours]["MASE"] < ref
                    w[1] += 1
    lines.append("")
    missing = [f"{m} on {', '.join(d for d in datasets if (d, m) not in groups)}" for m in MODELS
               if any(k[1] == m for k in groups) and any((d, m) not in groups for d in datasets)
               and m not in ("mstl", "auto_arima")]
    if missing:
        notes.append("Not run yet: " + "; ".join(missing) + " (the counts below are over the sets each ran on).")
    if notes:
        lines += ["Notes: " + " ".join(notes), ""]
    for ours in ("titans", "titans_forecaster", FALLBACK):
        parts = [f"{other} on {wins[(ours, other)][0]} of {wins[(ours, other)][1]} sets"
                 for other in others + ("best statistical model",) if (ours, other) in wins]
        if parts:
            lines.append(f"`{ours}` (defaults only) has a lower MASE than " + ", ".join(parts) + ".")
            lines.append("")
    per_model: dict = {}
    for r in rows:
        per_model[r["model"]] = per_model.get(r["model"], 0.0) + r["train_s"] + r["eval_s"]
    spent = ", ".join(f"{m} {per_model[m] / 60:.1f}" for m in ORDER if m in per_model and m != FALLBACK)
    lines += [f"Runtime of the whole table: {total_train / 60:.1f} min of training and forecasting "
              f"(sum over rows and seeds, one CPU thread per run; minutes per model, all sets and "
              f"seeds: {spent}). The machine is shared with other work, so timings are "
              f"indicative.", ""]
    settings = {(r["dataset"], r["model"]): r["settings"] for r in rows
                if r["model"] in ("titans", "titans_forecaster") and "settings" in r and r["seed"] == 0}
    if settings:
        lines += ["The data-aware defaults as chosen per set (context length L, learned cycle, "
                  "training budget, the steps it allowed and what bounded them where the run recorded "
                  "it, epochs run before early stopping; `titans_ts.defaults`):", "",
                  "| dataset | model | seasons (useful) | L | cycle_len | networks | calendar | "
                  "max_epochs x batches | steps (bound) | epochs run | early stopping on |",
                  "|---|---|---|---:|---:|---:|---|---:|---:|---:|---|"]
        for (d, m), s in sorted(settings.items(), key=lambda kv: (DATASETS.index(kv[0][0]),
                                                                  order[kv[0][1]])):
            seasons = f"{s['seasons']} ({s['useful_seasons']})"
            bound = f"{s['steps']} ({s['limited_by']})" if s.get("limited_by") else ""
            lines.append(f"| {d} | {m} | {seasons} | {s['context_length']} | {s['cycle_len']} | "
                         f"{s.get('ensemble', 1)} | {', '.join(s.get('time_features') or []) or '-'} | "
                         f"{s['max_epochs']} x {s['num_batches_per_epoch']} | {bound} | "
                         f"{s.get('epochs_run', '')} | {s['validation']} |")
        lines += ["", "`networks`: the networks whose mean is the forecast, each trained alone "
                  "(`titans_ts.defaults.ensemble_size`: as many as fit one network's steps in the time "
                  "budget, at most 3; rows recorded before the rule existed trained one). `calendar`: "
                  "the calendar features used (`titans_ts.defaults.calendar_needed`: where the context "
                  "cannot hold the year).", ""]
    validation = REPO / "docs" / "benchmarks" / "results" / "defaults_validation.jsonl"
    if validation.exists():
        from defaults_validation import summary

        lines += ["## Design evidence on validation tails", "",
                  "`python benchmarks/defaults_validation.py`: the same sets with every series' test "
                  "window removed, the last horizon of the training data scored (the test windows are "
                  "not read; MASE, series whose fitted part is not longer than the season fitted but not "
                  "scored). Each variant is `TitansForecaster(h)` with the parameters of its tag, one "
                  "fit per seed (0, 1, 2): `(seeds)` is the mean of the three fits' MASE, `(mean "
                  "forecast)` the MASE of the mean of their point forecasts, which is the ensemble the "
                  "defaults train where the time budget has room (its network k is the fit of seed "
                  "k). `single`: one network (`ensemble=1`); `calendar`: one network with "
                  "`time_features=\"auto\"` (none for yearly data). The sets bounded by time "
                  "(ETTh1, the hourly panel) keep one network and are not part of it.", "",
                  summary(validation), ""]
    cmds = sorted({r["command"] for r in rows})
    lines += ["Commands (each appends its rows to the record):", ""]
    lines += [f"    {c}" for c in cmds]
    lines += ["", "and `python benchmarks/defaults.py --render` writes this file from the record. The "
              "baselines and the statistical models ran one seed (the statistical models are "
              "deterministic), the two Titans front-ends three (0, 1, 2); two runs shared "
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
                    if model == "mstl" and len(mstl_seasons(freq, train, horizon)) < 2:
                        print(f"{name:12s} mstl: not run (fewer than two seasons the series show twice)")
                        continue
                    seeds = [0] if model in STATS or model == "seasonal_naive" else args.seeds
                    for seed in seeds:
                        if (name, model, seed) in done and not args.force and not (
                                model == "titans_forecaster" and args.naive_fallback
                                and (name, FALLBACK, seed) not in done):
                            continue
                        res = run_model(model, seed, train, test, freq, horizon, season,
                                        args.num_samples, root_dir, has_freq, args.arima_limit,
                                        args.naive_fallback)
                        guarded = res.pop(FALLBACK, None)
                        for label, r in [(model, res)] + ([(FALLBACK, guarded)] if guarded else []):
                            row = {"dataset": name, "model": label, "seed": seed, "horizon": horizon,
                                   "season": season, "freq": freq, "series": len(test), **r,
                                   "torch_threads": torch.get_num_threads(), "host": host,
                                   "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                   "command": command}
                            results.parent.mkdir(parents=True, exist_ok=True)
                            with results.open("a") as fh:
                                fh.write(json.dumps(row) + "\n")
                            if r["MASE"] is None:
                                print(f"{name:12s} {label:15s} seed {seed}  {r['status']}", flush=True)
                                continue
                            print(f"{name:12s} {label:15s} seed {seed}  MASE {r['MASE']:.4f}  "
                                  f"sMAPE {r['sMAPE']:.3f}  wQL {r['wQL']:.4f}  "
                                  f"train {r['train_s']:.1f}s  eval {r['eval_s']:.1f}s", flush=True)
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
