"""The stream memory's settings compared on the validation stream alone (the evidence its defaults
are chosen on; docs/architecture.md cites the records).

    python benchmarks/online_memory_design.py ETTh2 --seq-len 336 --horizons 24 48 96 --seeds 0 \
        --config '{"training": {"lr": 5e-4}}' --cache runs/online-backbones \
        --variants '{"default": {}, "fallback": {"fallback_gains": [0, 0.5, 1]}}'

For each seed, the backbone of ``--config`` (trained for the longest horizon, found in ``--cache``
when it is there) forecasts the validation stream; each memory variant (``StreamMemoryConfig``
overrides of ``--config``'s memory) runs carried over it, its pace chosen among the run's paces
as the online runner does, and is scored with frozen, repeat-last and the seasonal naive on the
validation origins only (origins whose whole target lies in the validation rows; the memory
starts empty at the stream's start, H windows before). Nothing of the test split is read.
Records go to ``--out`` (one per dataset, look-back, horizon, seed and variant).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "benchmarks" / "results" / "online_design.jsonl"


def run(args: argparse.Namespace) -> list[dict]:
    import numpy as np
    import torch
    from online_backbones import config_from  # noqa: E402  (the sibling script's reader of --config)

    from titans_ts.datasets.online import online_data
    from titans_ts.datasets.windows import FUTURE, FUTURE_MASK
    from titans_ts.model.stream_memory import StreamMemory
    from titans_ts.online.backbone import backbone_forecasts, origin_batch, train_backbone
    from titans_ts.online.modes import metrics, naive_forecasts
    from titans_ts.online.runner import choose_stream_memory
    from titans_ts.online.streams import StreamInputs

    base, _ = config_from(args.config)
    variants = json.loads(args.variants)
    data = online_data(args.dataset, root=args.root)
    values = torch.from_numpy(data.values)
    L, Hb = args.seq_len, max(args.horizons)
    out = []
    for seed in args.seeds:
        cfg = base.with_overrides({"seq_len": L, "horizon": Hb})
        module = train_backbone(data, cfg, seed=seed, cache=args.cache)
        for H in args.horizons:
            so = data.stream_origins(L, H)
            first = int(so[0]) - H
            last = data.borders["val"][1] - H  # the last origin whose target lies in the validation rows
            fc = backbone_forecasts(module.net, values, np.arange(first, last + 1), L, H)
            origins = np.arange(first + H, last + 1)
            b = origin_batch(values, origins, L, H)
            target = {"target": b[FUTURE].permute(2, 0, 1), "tmask": b[FUTURE_MASK].permute(2, 0, 1)}
            row = {"frozen": metrics(fc[H:].permute(2, 0, 1), target)["mse"]}
            for mode in ("repeat_last", "seasonal_naive"):
                pred = naive_forecasts(values, origins, H, mode, data.season).permute(2, 0, 1)
                row[mode] = metrics(pred, target)["mse"]
            for name, over in variants.items():
                vcfg = cfg.with_overrides({"horizon": H, "memory": over})
                stream = StreamInputs.build(StreamMemory(L, H, vcfg.memory), values, first, last, fc, L, H)
                t0 = time.perf_counter()
                mem, info = choose_stream_memory(stream, data, vcfg, seed=seed)
                rec = {"dataset": data.name, "seq_len": L, "horizon": H, "seed": seed, "variant": name,
                       "memory": over, "config": json.loads(args.config) if args.config else {},
                       "val_carried": info["val"], "pace": info["pace"], "val_frozen": row["frozen"],
                       "val_repeat_last": row["repeat_last"], "val_seasonal_naive": row["seasonal_naive"],
                       "val_origins": len(origins), "seconds": round(time.perf_counter() - t0, 1),
                       "date": time.strftime("%Y-%m-%d")}
                out.append(rec)
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(rec) + "\n")
                print(f"{data.name} L={L} H={H} seed {seed} {name}: carried {info['val']:.4f} | frozen "
                      f"{row['frozen']:.4f} repeat_last {row['repeat_last']:.4f} seasonal_naive "
                      f"{row['seasonal_naive']:.4f}", flush=True)
    return out


def main(argv=None) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset")
    p.add_argument("--seq-len", type=int, required=True)
    p.add_argument("--horizons", type=int, nargs="+", default=[24, 48, 96])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--config", default=None, help="OnlineConfig overrides (inline JSON or a JSON file)")
    p.add_argument("--variants", default='{"default": {}}', help="JSON {name: StreamMemoryConfig overrides}")
    p.add_argument("--cache", default=None)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--root", default=None)
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
