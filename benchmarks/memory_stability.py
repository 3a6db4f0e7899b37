"""Does the neural memory's inner optimisation stay bounded over a long context, at initialisation?

    TITANS_TS_DATA=../shared/data python benchmarks/memory_stability.py \
        recipes/ltsf/ETTh1_720_96.yaml [--windows 128] [--max-lr 0.1 0.05 0.03 0.02 0.01]

Builds the recipe's network with its initial parameters, feeds the first ``--windows`` training
windows through it and, at the first memory layer, replays the memory scan with the recipe's
queries, keys, values and gates for several caps on the inner learning rate
(``theta = max_lr * sigmoid(.)``, so a cap rescales theta exactly). Printed per cap: the share of
sequences whose output is not finite, and the final memory weights' Frobenius norm (median and
max over sequences and heads, layer by layer) beside the initial one.

Why it matters: inside a chunk every surprise is taken at the chunk-start weights, so the
momentum-accumulated step of a chunk of correlated tokens is many times ``theta``. One chunk
(L = 96 with patch 16 / stride 8 is 11 tokens) cannot compound an overshoot; six chunks can.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from titans_ts import memory as memory_mod  # noqa: E402
from titans_ts.datasets.windows import collate_windows  # noqa: E402
from titans_ts.lightning_cli import build_from_recipe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe")
    ap.add_argument("--windows", type=int, default=128)
    ap.add_argument("--max-lr", type=float, nargs="+", default=[0.1, 0.05, 0.03, 0.02, 0.01])
    args = ap.parse_args()

    torch.manual_seed(0)
    cli = build_from_recipe(args.recipe)
    model, dm = cli.model, cli.datamodule
    dm.setup("fit")
    ds = dm.splits.train
    batch = collate_windows([ds[i] for i in range(min(args.windows, len(ds)))])
    mem = next(m for m in model.modules() if isinstance(m, memory_mod.NeuralMemory))
    seen = {}
    real_scan = memory_mod.memory_scan

    def capture(q, k, v, alpha, eta, theta, **kw):
        if not seen:  # the first memory layer only
            seen.update(q=q, k=k, v=v, alpha=alpha, eta=eta, theta=theta, kw=kw)
        return real_scan(q, k, v, alpha, eta, theta, **kw)

    memory_mod.memory_scan = capture
    try:
        model.eval()
        with torch.no_grad():
            model.net(batch["past"], batch.get("past_mask"), time_index=batch.get("time_index"))
    finally:
        memory_mod.memory_scan = real_scan

    kw = dict(seen["kw"], output_final_state=True)
    T = seen["q"].shape[1]
    n_seq = seen["q"].shape[0]
    init = [w.norm(dim=(-2, -1)) for w in kw["weights"]]
    print(f"recipe {args.recipe}: {n_seq} sequences (windows x channels) of {T} memory tokens, "
          f"chunk {kw['chunk_size']} ({-(-T // kw['chunk_size'])} chunks), "
          f"recipe max_lr {mem.max_lr}")
    print(f"initial weight norm per layer (mean over heads): "
          f"{', '.join(f'{w.mean().item():.2f}' for w in init)}")
    print()
    print("| max_lr | non-finite sequences | final weight norm, median per layer | max per layer |")
    print("|---|---|---|---|")
    for cap in args.max_lr:
        theta = seen["theta"] * (cap / mem.max_lr)
        with torch.no_grad():
            y, (W, _) = real_scan(seen["q"], seen["k"], seen["v"], seen["alpha"], seen["eta"],
                                  theta, **kw)
        bad = (~torch.isfinite(y)).flatten(1).any(1).sum().item()
        norms = [w.norm(dim=(-2, -1)).nan_to_num(float("inf")) for w in W]
        med = ", ".join(f"{n.median().item():.3g}" for n in norms)
        mx = ", ".join(f"{n.max().item():.3g}" for n in norms)
        print(f"| {cap:g} | {bad} / {n_seq} | {med} | {mx} |")


if __name__ == "__main__":
    main()
