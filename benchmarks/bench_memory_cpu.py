"""CPU benchmark of the NeuralMemory layer: forward + backward time and peak memory.

Compares, at matched settings (dim 256, 4 heads of 64, depth-2 memory with hidden 4 x 64, chunk
64, batch 8), titans-ts's ``chunked`` backend, its per-token ``reference`` backend, and the
``titans-pytorch`` package's ``NeuralMemory`` (install the benchmark extra:
``pip install -e ".[bench]"``), side by side at each length, with the speed-up measured in the same
run; also the memory op alone (``memory_scan`` on inputs of the layer's shapes), so the layer's
time splits into the op and the rest (projections, convolution, norms); then sweeps the sequence
length for the chunked backend.

Every measurement runs in a fresh worker process (so one run's memory cannot inflate another's):
one cold forward + backward, then ``--repeats`` timed ones (``--long-repeats`` from T = 8k); the
median is reported. "Peak MiB" is the worker's peak resident memory minus its resident memory just
before the first forward (model, inputs and the Python runtime excluded). Each worker runs under an
address-space cap (an allocation past it fails cleanly instead of thrashing the machine) and
volunteers as the kernel's first out-of-memory victim.

    python benchmarks/bench_memory_cpu.py --threads 1          # writes docs/benchmarks/memory_cpu.md
    python benchmarks/bench_memory_cpu.py --threads 1 --quick  # T in {1k, 4k}: prints, writes nothing
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
DIM, HEADS, HEAD_DIM, CHUNK, EXPANSION = 256, 4, 64, 64, 4.0


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _op_step(T: int, batch: int):
    """``memory_scan`` alone on inputs of the layer's shapes and value ranges (unit q, k; the
    layer's initial gates), forward + backward into every input and the shared initial weights."""
    import torch
    import torch.nn.functional as F

    from titans_ts import memory_scan

    B, H, d, hidden = batch, HEADS, HEAD_DIM, int(HEAD_DIM * EXPANSION)
    q = F.normalize(torch.randn(B, T, H, d), dim=-1).requires_grad_(True)
    k = F.normalize(torch.randn(B, T, H, d), dim=-1).requires_grad_(True)
    v = torch.randn(B, T, H, d, requires_grad=True)
    alpha = torch.sigmoid(-4.0 + 0.5 * torch.randn(B, T, H)).requires_grad_(True)
    eta = torch.sigmoid(2.0 + 0.5 * torch.randn(B, T, H)).requires_grad_(True)
    theta = (0.1 * torch.sigmoid(0.5 * torch.randn(B, T, H))).requires_grad_(True)
    weights = [(torch.randn(H, hidden, d) / d**0.5).requires_grad_(True),
               (torch.randn(H, d, hidden) / hidden**0.5).requires_grad_(True)]
    leaves = [q, k, v, alpha, eta, theta, *weights]

    def step():  # as the layer calls it: final state returned (and unused)
        y, _ = memory_scan(q, k, v, alpha, eta, theta, weights=weights, chunk_size=CHUNK,
                           backend="chunked")
        y.sum().backward()

    def zero_grad():
        for t in leaves:
            t.grad = None

    return step, zero_grad


def worker(impl: str, T: int, batch: int, repeats: int, threads: int, use_cpu_clock: bool = False) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if impl == "chunked-op":
        step, zero_grad = _op_step(T, batch)
    else:
        if impl == "titans-pytorch":
            from titans_pytorch import NeuralMemory as TPNeuralMemory

            model = TPNeuralMemory(dim=DIM, chunk_size=CHUNK, heads=HEADS, dim_head=HEAD_DIM,
                                   default_model_kwargs=dict(depth=2, expansion_factor=EXPANSION))
        else:
            from titans_ts import NeuralMemory

            model = NeuralMemory(dim=DIM, heads=HEADS, head_dim=HEAD_DIM, depth=2,
                                 expansion=EXPANSION, chunk_size=CHUNK, backend=impl)
        x = torch.randn(batch, T, DIM, requires_grad=True)

        def step():
            out, _ = model(x)
            out.sum().backward()

        def zero_grad():
            model.zero_grad(set_to_none=True)
            x.grad = None

    clock = time.process_time if use_cpu_clock else time.perf_counter
    base = _rss_mib()
    t0 = clock()
    step()
    cold = clock() - t0
    times = []
    for _ in range(repeats):
        zero_grad()
        t0 = clock()
        step()
        times.append(clock() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    return {"impl": impl, "T": T, "batch": batch, "cold_s": cold,
            "median_s": statistics.median(times) if times else cold, "times": times,
            "peak_mib": peak}


def run_worker(impl, T, batch, repeats, threads, timeout, mem_limit_gib=None, clock="wall"):
    cmd = [sys.executable, __file__, "--worker", impl, str(T), str(batch), str(repeats), str(threads),
           clock]

    def limits():
        if mem_limit_gib:  # address-space cap: an allocation past it fails cleanly
            lim = int(mem_limit_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        try:  # if the machine runs out of memory anyway, the kernel kills this worker first
            with open("/proc/self/oom_score_adj", "w") as fh:
                fh.write("1000")
        except OSError:
            pass

    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=limits)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "T": T, "batch": batch, "error": f"over {timeout:.0f} s"}
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["killed"])[-1]
        if "alloc" in tail.lower() or "memory" in tail.lower():
            tail = f"out of memory under a {mem_limit_gib:g} GiB address-space cap"
        elif res.returncode < 0:
            tail = f"killed by signal {-res.returncode} (out of memory?)"
        return {"impl": impl, "T": T, "batch": batch, "error": tail[:120]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _merge(results: list[dict]) -> dict:
    """One row from a configuration's rounds: the median over all their timed runs, the largest
    peak; the first failure if any round failed."""
    failed = [r for r in results if "error" in r]
    if failed:
        return failed[0]
    times = [t for r in results for t in (r["times"] or [r["median_s"]])]
    return {**results[0], "median_s": statistics.median(times), "times": times,
            "peak_mib": max(r["peak_mib"] for r in results)}


def fmt_k(T):
    return f"{T // 1024}k" if T % 1024 == 0 else str(T)


def ratio(slow, fast) -> str:
    ok = slow and fast and "error" not in slow and "error" not in fast
    return f"{slow['median_s'] / fast['median_s']:.2f}x" if ok else "n/a"


def cell(r) -> str:
    if r is None:
        return "not run"
    if "error" in r:
        return f"failed: {r['error']}"
    return f"{r['median_s']:.2f} s / {r['peak_mib']:.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time each run by the wall clock, or by the worker's CPU time (with --threads 1 "
                         "the same on an idle machine; on a shared one it leaves out the time the "
                         "kernel gave the core to other processes)")
    ap.add_argument("--lengths", type=int, nargs="+", default=None,
                    help="default 256 1k 4k 8k 16k (1k 4k with --quick)")
    ap.add_argument("--sweep", type=int, nargs="*", default=[1024, 2048, 4096, 8192, 16384, 32768, 65536])
    ap.add_argument("--sweep-batch", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--long-repeats", type=int, default=1,
                    help="timed runs (after the cold one) from T = 8k, where one takes minutes")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every configuration of a length this many times, interleaved")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--reference-max-T", type=int, default=256,
                    help="the per-token reference backend is timed only up to this length")
    ap.add_argument("--no-op", action="store_true", help="skip the memory-op-alone column")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--mem-limit-gib", type=float, default=18.0,
                    help="address-space cap per worker (keeps a 24 GiB machine responsive)")
    ap.add_argument("--tp-mem-limit-gib", type=float, default=None,
                    help="the cap for titans-pytorch's workers (default: --mem-limit-gib)")
    ap.add_argument("--quick", action="store_true",
                    help="T in {1k, 4k}, one timed run, no reference, no sweep; prints only")
    ap.add_argument("--out", default=None,
                    help="markdown file to write (default: docs/benchmarks/memory_cpu.md, none with --quick)")
    args = ap.parse_args()
    if args.worker:
        impl, T, batch, repeats, threads, clock = args.worker
        print(json.dumps(worker(impl, int(T), int(batch), int(repeats), int(threads), clock == "cpu")))
        return
    if args.quick:
        args.sweep, args.repeats, args.reference_max_T = [], 1, 0
    args.lengths = args.lengths or ([1024, 4096] if args.quick else [256, 1024, 4096, 8192, 16384])
    out_path = args.out or (None if args.quick else str(REPO / "docs" / "benchmarks" / "memory_cpu.md"))
    tp_cap = args.tp_mem_limit_gib or args.mem_limit_gib
    try:
        import titans_pytorch  # noqa: F401
        have_tp = True
    except ImportError:
        have_tp = False
        print("titans-pytorch is not installed (pip install -e '.[bench]'): its column is skipped")

    rows = {}
    for T in args.lengths:
        impls = ["chunked"] + (["titans-pytorch"] if have_tp else []) + ([] if args.no_op else ["chunked-op"])
        runs = {impl: [] for impl in impls}
        for rnd in range(args.rounds):  # rounds interleave the implementations (a shared machine)
            for impl in impls:
                reps = args.repeats if T < 8192 else args.long_repeats
                cap = tp_cap if impl == "titans-pytorch" else args.mem_limit_gib
                r = run_worker(impl, T, args.batch, reps, args.threads, args.timeout, cap, args.clock)
                runs[impl].append(r)
                print(f"{impl:>15} T={fmt_k(T):>4}: " + (f"{r['median_s']:.2f} s, peak {r['peak_mib']:.0f} MiB"
                                                       if "error" not in r else r["error"]), flush=True)
            if have_tp:
                print(f"{'':>15} T={fmt_k(T):>4}: chunked is "
                      f"{ratio(runs['titans-pytorch'][-1], runs['chunked'][-1])} faster than "
                      f"titans-pytorch (measured side by side, round {rnd + 1})", flush=True)
        for impl, rs in runs.items():
            rows[(impl, T)] = _merge(rs)
        if T <= args.reference_max_T:
            rows[("reference", T)] = r = run_worker("reference", T, args.batch, 1, args.threads,
                                                    args.timeout, args.mem_limit_gib, args.clock)
            print(f"{'reference':>15} T={fmt_k(T):>4}: " + (f"{r['median_s']:.2f} s" if "error" not in r
                                                          else r["error"]), flush=True)
    sweep = {}
    for T in args.sweep:
        r = run_worker("chunked", T, args.sweep_batch, args.repeats, args.threads, args.timeout,
                       args.mem_limit_gib, args.clock)
        sweep[T] = r
        print(f"{'sweep chunked':>15} T={fmt_k(T):>4}: " + (f"{r['median_s']:.2f} s, peak {r['peak_mib']:.0f} MiB"
                                                         if "error" not in r else r["error"]), flush=True)

    import torch

    command = "python benchmarks/bench_memory_cpu.py " + " ".join(sys.argv[1:])
    lines = [
        "# NeuralMemory on CPU: forward + backward",
        "",
        f"Produced by `{command.strip()}` on {platform.processor() or platform.machine()} "
        f"({os.cpu_count()} cores), {args.threads} thread(s) per worker, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}. Median of {args.repeats} timed runs after a cold run "
        f"({args.long_repeats} from T = 8k), each configuration in a fresh process"
        + (f", {args.rounds} rounds interleaving the implementations (medians over all rounds' runs)"
           if args.rounds > 1 else "")
        + "; peak = resident memory above the pre-forward baseline."
        + (" Times are the workers' CPU times (one thread each: the wall time of an idle machine, "
           "without the time the kernel gave the core to other processes; contention for caches and "
           "memory bandwidth still counts)." if args.clock == "cpu" else ""),
        "",
        f"Matched settings: dim {DIM}, {HEADS} heads x {HEAD_DIM}, depth-2 memory (hidden "
        f"{int(HEAD_DIM * EXPANSION)}), chunk {CHUNK}, batch {args.batch}. \"Memory op alone\" is "
        "`memory_scan` (chunked backend) on inputs of the layer's shapes, forward + backward; the "
        "layer adds the projections, the convolution and the norms around it. Where the time "
        "goes (operation counts, profile, what was tried): [memory_cpu_profile.md](memory_cpu_profile.md).",
        "",
        "| T | titans-ts chunked (layer) | memory op alone | titans-ts reference (per-token loop) "
        "| titans-pytorch 0.5.5 NeuralMemory | speed-up vs titans-pytorch |",
        "|---|---|---|---|---|---|",
    ]
    for T in args.lengths:
        c, tp = rows.get(("chunked", T)), rows.get(("titans-pytorch", T))
        lines.append(f"| {fmt_k(T)} | {cell(c)} | {cell(rows.get(('chunked-op', T)))} | "
                     f"{cell(rows.get(('reference', T)))} | {cell(tp)} | {ratio(tp, c)} |")
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
    if out_path:
        out = Path(out_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"written to {out}")


if __name__ == "__main__":
    main()
