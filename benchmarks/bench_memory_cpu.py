"""CPU benchmark of the NeuralMemory layer: forward + backward time and peak memory.

Compares, at matched settings (dim 256, 4 heads of 64, depth-2 memory with hidden 4 x 64, chunk
64, batch 8), titans-ts's ``chunked`` backend, its per-token ``reference`` backend, and the
``titans-pytorch`` package's ``NeuralMemory`` (install the benchmark extra:
``pip install -e ".[bench]"``), then sweeps the sequence length for the chunked backend.

Every measurement runs in a fresh worker process (so one run's memory cannot inflate another's):
one cold forward + backward, then ``--repeats`` timed ones; the median is reported. "Peak MiB" is
the worker's peak resident memory minus its resident memory just before the first forward (model,
inputs and the Python runtime excluded).

    python benchmarks/bench_memory_cpu.py                 # writes docs/benchmarks/memory_cpu.md
    python benchmarks/bench_memory_cpu.py --quick         # T in {1k, 4k}, no sweep
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(impl: str, T: int, batch: int, repeats: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dim, heads, head_dim, chunk = 256, 4, 64, 64
    if impl == "titans-pytorch":
        from titans_pytorch import NeuralMemory as TPNeuralMemory

        model = TPNeuralMemory(dim=dim, chunk_size=chunk, heads=heads, dim_head=head_dim,
                               default_model_kwargs=dict(depth=2, expansion_factor=4.0))

        def step(x):
            out, _ = model(x)
            out.sum().backward()
    else:
        from titans_ts import NeuralMemory

        model = NeuralMemory(dim=dim, heads=heads, head_dim=head_dim, depth=2, expansion=4.0,
                             chunk_size=chunk, backend=impl)

        def step(x):
            out, _ = model(x)
            out.sum().backward()

    x = torch.randn(batch, T, dim, requires_grad=True)
    base = _rss_mib()
    t0 = time.perf_counter()
    step(x)
    cold = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        x.grad = None
        t0 = time.perf_counter()
        step(x)
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    return {"impl": impl, "T": T, "batch": batch, "cold_s": cold,
            "median_s": statistics.median(times) if times else cold, "times": times,
            "peak_mib": peak}


def run_worker(impl, T, batch, repeats, threads, timeout, mem_limit_gib=None):
    cmd = [sys.executable, __file__, "--worker", impl, str(T), str(batch), str(repeats), str(threads)]

    def cap():  # address-space cap: an allocation past it fails cleanly instead of thrashing
        if mem_limit_gib:
            lim = int(mem_limit_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=cap)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "T": T, "batch": batch, "error": f"over {timeout:.0f} s"}
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["killed"])[-1]
        if "alloc" in tail.lower() or "memory" in tail.lower():
            tail = f"out of memory under the {mem_limit_gib:g} GiB address-space cap"
        elif res.returncode < 0:
            tail = f"killed by signal {-res.returncode} (out of memory?)"
        return {"impl": impl, "T": T, "batch": batch, "error": tail[:120]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def fmt_k(T):
    return f"{T // 1024}k" if T % 1024 == 0 else str(T)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    ap.add_argument("--sweep", type=int, nargs="*", default=[1024, 2048, 4096, 8192, 16384, 32768, 65536])
    ap.add_argument("--sweep-batch", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--reference-max-T", type=int, default=256,
                    help="the per-token reference backend is timed only up to this length")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--mem-limit-gib", type=float, default=18.0,
                    help="address-space cap per worker (keeps a 24 GiB machine responsive)")
    ap.add_argument("--quick", action="store_true", help="T in {1k, 4k}, one repeat, no sweep")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks" / "memory_cpu.md"))
    args = ap.parse_args()
    if args.worker:
        impl, T, batch, repeats, threads = args.worker
        print(json.dumps(worker(impl, int(T), int(batch), int(repeats), int(threads))))
        return
    if args.quick:
        args.lengths, args.sweep, args.repeats = [256, 1024, 4096], [], 1
    try:
        import titans_pytorch  # noqa: F401
        have_tp = True
    except ImportError:
        have_tp = False
        print("titans-pytorch is not installed (pip install -e '.[bench]'): its column is skipped")

    rows = {}
    for T in args.lengths:
        impls = ["chunked"] + (["titans-pytorch"] if have_tp else [])
        if T <= args.reference_max_T:
            impls.append("reference")
        for impl in impls:
            r = run_worker(impl, T, args.batch, args.repeats if impl != "reference" else 1,
                           args.threads, args.timeout, args.mem_limit_gib)
            rows[(impl, T)] = r
            print(f"{impl:>15} T={fmt_k(T):>4}: " + (f"{r['median_s']:.2f} s, peak {r['peak_mib']:.0f} MiB"
                                                   if "error" not in r else r["error"]), flush=True)
    sweep = {}
    for T in args.sweep:
        r = run_worker("chunked", T, args.sweep_batch, args.repeats, args.threads, args.timeout,
                       args.mem_limit_gib)
        sweep[T] = r
        print(f"{'sweep chunked':>15} T={fmt_k(T):>4}: " + (f"{r['median_s']:.2f} s, peak {r['peak_mib']:.0f} MiB"
                                                         if "error" not in r else r["error"]), flush=True)

    import torch

    def cell(r):
        if r is None:
            return "not run"
        if "error" in r:
            return f"failed: {r['error']}"
        return f"{r['median_s']:.2f} s / {r['peak_mib']:.0f} MiB"

    lines = [
        "# NeuralMemory on CPU: forward + backward",
        "",
        f"Produced by `python benchmarks/bench_memory_cpu.py --threads {args.threads}` on "
        f"{platform.processor() or platform.machine()}, "
        f"{args.threads} threads, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}. "
        "Median of "
        f"{args.repeats} runs after a cold run, each configuration in a fresh process; peak = resident "
        "memory above the pre-forward baseline.",
        "",
        f"Matched settings: dim 256, 4 heads x 64, depth-2 memory (hidden 256), chunk 64, batch {args.batch}.",
        "",
        "| T | titans-ts chunked | titans-ts reference (per-token loop) | titans-pytorch 0.5.5 NeuralMemory "
        "| speed-up vs titans-pytorch |",
        "|---|---|---|---|---|",
    ]
    for T in args.lengths:
        c, r, tp = rows.get(("chunked", T)), rows.get(("reference", T)), rows.get(("titans-pytorch", T))
        ratio = (f"{tp['median_s'] / c['median_s']:.2f}x" if c and tp and "error" not in c and "error" not in tp
                 else "n/a")
        lines.append(f"| {fmt_k(T)} | {cell(c)} | {cell(r)} | {cell(tp)} | {ratio} |")
    c4, c16 = rows.get(("chunked", 4096)), rows.get(("chunked", 16384))
    if c4 and c16 and "error" not in c4 and "error" not in c16:
        lines += ["", f"Linearity at batch {args.batch}: time(16k) / time(4k) = "
                  f"{c16['median_s'] / c4['median_s']:.2f} (linear = 4), peak memory ratio "
                  f"{c16['peak_mib'] / max(c4['peak_mib'], 1e-9):.2f}."]
    if sweep:
        lines += ["", f"## Sequence-length sweep (chunked backend, batch {args.sweep_batch})", "",
                  "| T | time (s) | time / T (us per token) | peak MiB |", "|---|---|---|---|"]
        for T, r in sweep.items():
            if "error" in r:
                lines.append(f"| {fmt_k(T)} | failed: {r['error']} | | |")
            else:
                lines.append(f"| {fmt_k(T)} | {r['median_s']:.2f} | {1e6 * r['median_s'] / T:.1f} | "
                             f"{r['peak_mib']:.0f} |")
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
