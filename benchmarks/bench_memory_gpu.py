"""GPU benchmark of the memory op: forward + backward time and peak memory.

Backends at B=8, H=8, d=64 (depth-2 memory with hidden 128, and depth 1), T in {2k, 8k, 32k}:

* titans-ts ``triton`` and ``chunked`` backends of ``memory_scan``;
* ``titans-pytorch``'s ``NeuralMemory`` layer at matched dims (``pip install -e ".[bench]"``);
* speed of light for depth 1 with eta = 0 (no momentum): flash-linear-attention's
  ``chunk_gated_delta_rule`` (``pip install flash-linear-attention``), which solves the same
  recurrence shape (gated delta rule) with a parallel WY form.

Timings use CUDA events (median of ``--repeats`` after ``--warmup`` runs); peak memory is
``torch.cuda.max_memory_allocated`` above the inputs. Needs a CUDA device.

    python benchmarks/bench_memory_gpu.py [--lengths 2048 8192 32768] [--out docs/benchmarks/memory_gpu.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]


def _inputs(B, T, H, d, dh, depth, dtype, device, momentum=True):
    g = torch.Generator(device="cpu").manual_seed(0)
    mk = lambda *s: torch.randn(*s, generator=g).to(device)  # noqa: E731
    q = F.normalize(mk(B, T, H, d), dim=-1).to(dtype)
    k = F.normalize(mk(B, T, H, d), dim=-1).to(dtype)
    v = mk(B, T, H, d).to(dtype)
    alpha = torch.rand(B, T, H, generator=g).to(device) * 0.05
    eta = torch.rand(B, T, H, generator=g).to(device) * (0.9 if momentum else 0.0)
    theta = torch.rand(B, T, H, generator=g).to(device) * 0.1
    dims = [d] + [dh] * (depth - 1) + [d]
    W = [(mk(H, dims[i + 1], dims[i]) / dims[i] ** 0.5) for i in range(depth)]
    leaves = [q, k, v, alpha, eta, theta, *W]
    for t in leaves:
        t.requires_grad_(True)
    return leaves


def _time(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times), (torch.cuda.max_memory_allocated() - base) / 2**20


def bench_memory_scan(backend, B, T, H, d, dh, depth, dtype, warmup, repeats, momentum=True):
    from titans_ts import memory_scan

    q, k, v, alpha, eta, theta, *W = _inputs(B, T, H, d, dh, depth, dtype, "cuda", momentum)

    def step():
        y, _ = memory_scan(q, k, v, alpha, eta, theta, weights=W, chunk_size=64, backend=backend)
        y.float().sum().backward()

    return _time(step, warmup, repeats)


def bench_titans_pytorch(B, T, H, d, dh, warmup, repeats):
    from titans_pytorch import NeuralMemory

    mem = NeuralMemory(dim=H * d, chunk_size=64, heads=H, dim_head=d,
                       default_model_kwargs=dict(depth=2, expansion_factor=dh / d)).cuda()
    x = torch.randn(B, T, H * d, device="cuda", requires_grad=True)

    def step():
        out, _ = mem(x)
        out.sum().backward()

    return _time(step, warmup, repeats)


def bench_fla(B, T, H, d, dtype, warmup, repeats):
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    q = F.normalize(torch.randn(B, T, H, d, device="cuda"), dim=-1).to(dtype).requires_grad_()
    k = F.normalize(torch.randn(B, T, H, d, device="cuda"), dim=-1).to(dtype).requires_grad_()
    v = torch.randn(B, T, H, d, device="cuda", dtype=dtype, requires_grad=True)
    g = F.logsigmoid(torch.randn(B, T, H, device="cuda")).requires_grad_()
    beta = torch.rand(B, T, H, device="cuda", dtype=dtype).requires_grad_()

    def step():
        o, _ = chunk_gated_delta_rule(q, k, v, g, beta)
        o.float().sum().backward()

    return _time(step, warmup, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[2048, 8192, 32768])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks" / "memory_gpu.md"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_memory_gpu.py needs a CUDA device")
    dtype = getattr(torch, args.dtype)
    B, H, d, dh = args.batch, args.heads, args.head_dim, args.hidden
    rows = []

    def cell(fn, *fn_args, **fn_kwargs):
        try:
            t, m = fn(*fn_args, **fn_kwargs)
            return f"{t * 1e3:.1f} ms / {m:.0f} MiB", t
        except Exception as err:  # an optional package missing, or out of memory
            torch.cuda.empty_cache()
            return f"n/a ({type(err).__name__}: {str(err).splitlines()[0][:60]})", None

    for T in args.lengths:
        r = {"T": T}
        reps = (args.warmup, args.repeats)
        r["triton2"], t_tri = cell(bench_memory_scan, "triton", B, T, H, d, dh, 2, dtype, *reps)
        r["chunked2"], t_chk = cell(bench_memory_scan, "chunked", B, T, H, d, dh, 2, dtype, *reps)
        r["tp"], _ = cell(bench_titans_pytorch, B, T, H, d, dh, *reps)
        r["triton1"], t_tri1 = cell(bench_memory_scan, "triton", B, T, H, d, dh, 1, dtype, *reps, momentum=False)
        r["fla"], t_fla = cell(bench_fla, B, T, H, d, dtype, args.warmup, args.repeats)
        r["speedup"] = f"{t_chk / t_tri:.1f}x" if t_tri and t_chk else "n/a"
        r["vs_fla"] = f"{t_tri1 / t_fla:.2f}x" if t_tri1 and t_fla else "n/a"
        rows.append(r)
        print(r, flush=True)
    lines = [
        "# Memory op on GPU: forward + backward",
        "",
        f"Produced by `python benchmarks/bench_memory_gpu.py` on {torch.cuda.get_device_name()}, "
        f"torch {torch.__version__}, {args.dtype} inputs, {time.strftime('%Y-%m-%d')}. "
        f"B={B}, H={H}, d={d}, chunk 64; depth-2 memory hidden {dh}. Median of {args.repeats}.",
        "",
        "| T | triton, depth 2 | chunked, depth 2 | triton / chunked speed-up | titans-pytorch NeuralMemory | "
        "triton, depth 1, eta=0 | fla chunk_gated_delta_rule | triton d1 / fla time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['T']} | {r['triton2']} | {r['chunked2']} | {r['speedup']} | {r['tp']} | "
                     f"{r['triton1']} | {r['fla']} | {r['vs_fla']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
