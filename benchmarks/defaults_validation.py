#!/usr/bin/env python
"""The defaults' design evidence on validation tails: the sets of ``benchmarks/defaults.py``
with each series' test window removed, so the last ``horizon`` points of the *training* part are
scored (the test windows are never read).

What it measures: ``TitansForecaster(h)`` with its defaults, one fit per seed, and the mean of
the seeds' point forecasts (a deep ensemble of that many independently trained networks, as
``ensemble=K`` would train): the MASE of each seed and of the mean, per set. Every series is
fitted; those whose fitted part is not longer than the season are not scored (MASE's scale).

    OMP_NUM_THREADS=1 python benchmarks/defaults_validation.py --data-root ../shared/data

appends one row per (dataset, seed) and one per (dataset, "mean") to
``docs/benchmarks/results/defaults_validation.jsonl`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from backtest_monash import score  # noqa: E402
from defaults import DATASETS, _PointForecast, forecaster_forecasts, load  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = "docs/benchmarks/results/defaults_validation.jsonl"


def validation_split(train, horizon: int):
    """(fit part, scored part): every training series without / with its last ``horizon``
    points (series with fewer than ``horizon + 1`` training points keep them all in both: the
    forecaster's tiny-series rule forecasts them)."""
    from gluonts.dataset.common import ListDataset

    entries = list(train)
    freq = entries[0]["start"].freq
    fit = [{**e, "target": e["target"][:-horizon] if len(e["target"]) > horizon else e["target"]}
           for e in entries]
    return ListDataset(fit, freq=freq), ListDataset(entries, freq=freq)


def scorable(forecasts, fit, scored, season: int):
    """The forecasts and series whose fitted part is longer than ``season`` (MASE's scale needs
    a seasonal difference); every series is fitted, the shorter ones are not scored."""
    keep = [i for i, e in enumerate(fit) if len(e["target"]) > season]
    fit_l, sc_l = list(fit), list(scored)
    return [forecasts[i] for i in keep], [fit_l[i] for i in keep], [sc_l[i] for i in keep]


def timestamp_freq(data) -> str:
    """The frequency of the timestamps ``forecaster_forecasts`` builds, inferred on the longest
    series and given to the forecaster (a series cut short may have too few points to infer it
    from: two quarterly points read as 91 days)."""
    import pandas as pd

    e = max(data, key=lambda e: len(e["target"]))
    start = e["start"]
    return pd.infer_freq(pd.period_range(start, periods=len(e["target"]), freq=start.freq).to_timestamp())


def summary(path: Path) -> str:
    """Per set and variant: the seeds' mean MASE and the MASE of their mean forecast (the latest
    row of each (tag, dataset, seed) counts)."""
    latest = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            latest[(r.get("tag", "defaults"), r["dataset"], r["seed"])] = r
    tags = sorted({k[0] for k in latest})
    lines = ["| set | " + " | ".join(f"{t} (seeds) | {t} (mean forecast)" for t in tags) + " |",
             "|---|" + "---:|---:|" * len(tags)]
    for d in [d for d in DATASETS if any(k[1] == d for k in latest)]:
        cells = []
        for t in tags:
            seeds = [r["MASE"] for (tt, dd, s), r in latest.items() if tt == t and dd == d and s != "mean"]
            ens = latest.get((t, d, "mean"))
            cells += [f"{np.mean(seeds):.4f}" if seeds else "", f"{ens['MASE']:.4f}" if ens else ""]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=os.environ.get("TITANS_TS_DATA"))
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--params", default="{}", help="JSON: forecaster parameters of the variant measured")
    p.add_argument("--tag", default="defaults", help="the variant's name in the record")
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--summary", action="store_true", help="only print the table of the record")
    a = p.parse_args(argv)
    if a.summary:
        print(summary(Path(a.results) if os.path.isabs(a.results) else REPO / a.results))
        return 0
    out = Path(a.results) if os.path.isabs(a.results) else REPO / a.results
    params = json.loads(a.params)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "OMP_NUM_THREADS=1 python benchmarks/defaults_validation.py " + shlex.join(
        [x for x in (argv if argv is not None else sys.argv[1:])])
    for name in a.datasets:
        train, _test, freq, horizon, season, has_freq = load(name, a.data_root)
        fit, scored = validation_split(train, horizon)
        points = []
        pd_freq = timestamp_freq(fit) if has_freq else None
        for seed in a.seeds:
            t0 = time.perf_counter()
            _, fc, _ = forecaster_forecasts(fit, horizon, seed, not has_freq, freq=pd_freq, **params)
            res = score(*scorable(fc, fit, scored, season), horizon, season)
            points.append(np.stack([f.quantile(0.5) for f in fc]))
            row = {"tag": a.tag, "params": params, "dataset": name, "seed": seed, "MASE": res["MASE"],
                   "sMAPE": res["sMAPE"],
                   "train_s": round(time.perf_counter() - t0, 2), "command": command}
            print(json.dumps(row), flush=True)
            with out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
        mean = np.mean(points, 0)
        ens = [_PointForecast(e["item_id"], m) for e, m in zip(fit, mean, strict=True)]
        res = score(*scorable(ens, fit, scored, season), horizon, season)
        row = {"tag": a.tag, "params": params, "dataset": name, "seed": "mean", "seeds": list(a.seeds),
               "MASE": res["MASE"],
               "sMAPE": res["sMAPE"], "command": command}
        print(json.dumps(row), flush=True)
        with out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
