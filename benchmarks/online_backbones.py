"""Choose the online backbone's width, depth and learning rate on the validation windows alone.

    python benchmarks/online_backbones.py ETTh2 --seq-len 336 \
        --grid '[{}, {"training": {"lr": 5e-4}}, {"network": {"d_model": 128}}]' \
        --cache runs/online-backbones --out docs/benchmarks/results/online_backbones.jsonl

Each entry of ``--grid`` is a set of ``OnlineConfig`` overrides (of ``--config``'s settings, or the
defaults); every one trains a backbone on the online training split for ``--horizon`` steps
(the longest horizon the online runs read), early-stopped on the validation windows, and appends
a record: its best validation MSE (the early-stopping criterion), the epochs and seconds it took,
its parameter count and its validation curve. Nothing of the test split is read. With ``--cache``
the trained backbones are kept, so the online run of the chosen settings (same seed, same
folder) does not train again. ``--choose`` prints the settings with the least validation MSE
among the records of a dataset and look-back.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "benchmarks" / "results" / "online_backbones.jsonl"


def load(path: Path = RESULTS) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def config_from(text: str | None):
    """An ``OnlineConfig`` from inline JSON or a JSON file's path (None: the defaults)."""
    from titans_ts.online import OnlineConfig

    if not text:
        return OnlineConfig(), {}
    over = json.loads(Path(text).read_text()) if os.path.exists(text) else json.loads(text)
    return OnlineConfig().with_overrides(over), over


def run(args: argparse.Namespace) -> None:
    import torch

    from titans_ts.datasets.online import online_data
    from titans_ts.online.backbone import train_backbone

    base, base_over = config_from(args.config)
    data = online_data(args.dataset, root=args.root)
    done = {(r["dataset"], r["seq_len"], r["horizon"], r["seed"], json.dumps(r["overrides"], sort_keys=True))
            for r in load(Path(args.out))}
    for over in json.loads(args.grid):
        merged = {**base_over, **over}
        for key in ("network", "memory", "training"):
            if isinstance(base_over.get(key), dict) and isinstance(over.get(key), dict):
                merged[key] = {**base_over[key], **over[key]}
        key = (data.name, args.seq_len, args.horizon, args.seed, json.dumps(merged, sort_keys=True))
        if key in done:
            print(f"skip (recorded): {merged}")
            continue
        cfg = base.with_overrides({**over, "seq_len": args.seq_len, "horizon": args.horizon})
        t0 = time.perf_counter()
        module = train_backbone(data, cfg, seed=args.seed, cache=args.cache)
        rec = {"dataset": data.name, "seq_len": args.seq_len, "horizon": args.horizon, "seed": args.seed,
               "overrides": merged, "val_mse": min(module.val_curve_), "epochs": module.fit_epochs_,
               "seconds": round(module.fit_seconds_, 1), "wall_seconds": round(time.perf_counter() - t0, 1),
               "params": sum(p.numel() for p in module.parameters()), "val_curve": module.val_curve_,
               "network": cfg.network, "training": cfg.training.to_dict(),
               "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}
        with open(args.out, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(f"{data.name} L={args.seq_len} {merged}: val {rec['val_mse']:.4f} ({rec['epochs']} epochs, "
              f"{rec['seconds']:.0f} s)", flush=True)


def choose(rows: list[dict], dataset: str, seq_len: int) -> dict | None:
    """The record with the least validation MSE for ``dataset`` at ``seq_len`` (any horizon, seed 0
    first)."""
    mine = [r for r in rows if r["dataset"] == dataset and r["seq_len"] == seq_len]
    return min(mine, key=lambda r: r["val_mse"]) if mine else None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset")
    p.add_argument("--seq-len", type=int, required=True)
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=None, help="base OnlineConfig overrides (inline JSON or a JSON file)")
    p.add_argument("--grid", default="[{}]", help="JSON list of OnlineConfig overrides, one backbone each")
    p.add_argument("--cache", default=None, help="folder of trained backbones (kept and found again)")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--root", default=None)
    p.add_argument("--choose", action="store_true", help="print the recorded choice and exit")
    args = p.parse_args(argv)
    if args.choose:
        best = choose(load(Path(args.out)), args.dataset, args.seq_len)
        print(json.dumps(best["overrides"] if best else None))
        return
    run(args)


if __name__ == "__main__":
    main()
