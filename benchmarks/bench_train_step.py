"""One training step of the whole forecaster, per memory backend: time, peak memory, agreement.

For each configuration (the benchmark recipes' networks at their real batch shapes, plus long
look-backs on synthetic data), the script builds the recipe's ``TitansLightningModule`` once,
then for every backend available on the device (``triton`` and ``chunked`` on CUDA; ``chunked``
on CPU) runs AdamW training steps (forward, the recipe's loss, backward, optimiser step) on the
same random batch from the same initial weights, and prints one table row per backend:
median step time, peak memory, and the relative difference of the loss and of the gradients
against the ``chunked`` backend at the first step (fp32; the kernels are held to < 1e-4).

No data files are read: the batch is random with the dataset's channel count.

    python benchmarks/bench_train_step.py                        # the default configurations
    python benchmarks/bench_train_step.py --out docs/benchmarks/train_step_gpu.md
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # ltsf.py, the benchmark runner

# (label, recipe, look-back override or None, batch override or None)
DEFAULT_CONFIGS = [
    ("ETTh1 L=96 H=96", "recipes/ltsf/ETTh1_96_96.yaml", None, None),
    ("weather L=96 H=96", "recipes/ltsf/weather_96_96.yaml", None, None),
    ("ETTh1 L=720 H=96", "recipes/ltsf/ETTh1_720_96.yaml", None, None),
    ("ETTh1 net, L=8192", "recipes/ltsf/ETTh1_720_96.yaml", 8192, 16),
    ("ETTh1 net, L=32768", "recipes/ltsf/ETTh1_720_96.yaml", 32768, 4),
]


def _build(recipe: str, seq_len: int | None):
    from ltsf import module_from_recipe

    cfg = yaml.safe_load((REPO / recipe).read_text())
    model = module_from_recipe(cfg, seq_len)
    return model, cfg, model.hparams.seq_len


def _set_backend(model, backend: str) -> None:
    from titans_ts.model.memory import NeuralMemory

    n = 0
    for m in model.modules():
        if isinstance(m, NeuralMemory):
            m.backend = backend
            n += 1
    if n == 0:
        raise RuntimeError("the network has no NeuralMemory layer")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / (b.double().norm() + 1e-30)).item()


def run_config(label, recipe, seq_len, batch, backends, device, steps, warmup, dtype=torch.float32):
    torch.manual_seed(0)
    base, cfg, L = _build(recipe, seq_len)
    base = base.to(dtype)
    B = int(batch or cfg["data"]["batch_size"])
    C, H = base.hparams.n_channels, base.hparams.horizon
    g = torch.Generator().manual_seed(1)
    past = torch.randn(B, L, C, generator=g).cumsum(1).div(L ** 0.5).to(device, dtype)
    future = torch.randn(B, H, C, generator=g).to(device, dtype)
    # window positions, which a recipe with a learned cycle (cycle_len > 0) reads
    time_index = torch.randint(0, 100_000, (B,), generator=g).to(device)
    batch_d = {"past": past, "future": future, "time_index": time_index}
    rows, ref = [], None
    for backend in backends:
        model = copy.deepcopy(base).to(device)
        model.train()
        _set_backend(model, backend)
        opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["model"].get("lr", 1e-3)))

        def step(model=model, opt=opt):
            opt.zero_grad(set_to_none=True)
            _, loss = model._step(batch_d)
            loss.backward()
            return loss

        # agreement at the first step (same weights, same batch; dropout off for the check)
        model.eval()
        loss0 = step()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        model.train()
        if ref is None:
            ref = (loss0.detach(), grads.detach())
            agree = "(baseline)"
        else:
            agree = f"loss {_rel(loss0.detach(), ref[0]):.1e}, grads {_rel(grads, ref[1]):.1e}"
        cuda = device.type == "cuda"
        for _ in range(warmup):
            step()
            opt.step()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            opt.step()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f}" if cuda else "n/a"
        rows.append({"config": label, "L": L, "batch": f"{B} x {C}", "backend": backend,
                     "ms": statistics.median(times) * 1e3, "peak": peak, "agree": agree})
        print(rows[-1], flush=True)
        del model, opt
        if cuda:
            torch.cuda.empty_cache()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--backends", nargs="+", default=None,
                    help="default: triton and chunked on CUDA, chunked on CPU")
    ap.add_argument("--only", nargs="+", default=None, help="labels of DEFAULT_CONFIGS to run")
    ap.add_argument("--batch", type=int, default=None, help="windows per batch (default: the recipe's)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                    help="parameters and data (float64: only the chunked and reference backends)")
    ap.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backends = args.backends or (["chunked", "triton"] if device.type == "cuda" else ["chunked"])
    if "chunked" in backends:  # the reference for the agreement column comes first
        backends = ["chunked"] + [b for b in backends if b != "chunked"]
    configs = [c for c in DEFAULT_CONFIGS if args.only is None or c[0] in args.only]
    rows = []
    for label, recipe, L, B in configs:
        try:
            rows += run_config(label, recipe, L, args.batch or B, backends, device, args.steps,
                               args.warmup, getattr(torch, args.dtype))
        except torch.OutOfMemoryError as err:
            print(f"{label}: out of memory ({str(err).splitlines()[0][:80]})", flush=True)
            torch.cuda.empty_cache()
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    lines = [
        "# One training step of the forecaster, per memory backend",
        "",
        f"Produced by `python benchmarks/bench_train_step.py` on {where}, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}. Each row: the recipe's network ({args.dtype}) at the given batch "
        f"(windows x variates; channel-independent patches, so the memory sees batch x variates "
        f"sequences), AdamW step included, median of {args.steps} after {args.warmup} warm-up "
        "steps. Agreement: relative difference of the loss and of all parameter gradients "
        f"against the {backends[0]} backend at the first step (dropout off).",
        "",
        f"| configuration | look-back | batch | backend | ms / step | peak MiB | agreement with {backends[0]} |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['config']} | {r['L']} | {r['batch']} | {r['backend']} | {r['ms']:.1f} | "
                     f"{r['peak']} | {r['agree']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
