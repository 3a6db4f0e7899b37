"""Self-check of the Triton memory kernels: ``python -m titans_ts.kernels.selfcheck``.

On a CUDA machine: the triton backend against the chunked PyTorch backend at real shapes
(B=2, H=4, T=2048, d=64; depth 1 and 2; fp32 values and gradients, relative error < 1e-4; a
bf16 forward within 2e-2), then a timing table (forward + backward, triton vs chunked). Exits 1
on any mismatch.

Without CUDA: the same equivalence at small shapes through Triton's interpreter
(``TRITON_INTERPRET=1`` is set here before triton is imported), and a note that GPU timings
need a GPU.

The first run on a machine compiles the kernels: on an H200, 30 s for depth 1 at head width 64;
depth 2 at hidden width 128 had not finished compiling after 85 s (``--depths 1`` skips it).
"""

from __future__ import annotations

import os
import sys
import time


def _rel(a, b) -> float:
    return ((a.double() - b.double()).norm() / (b.double().norm() + 1e-30)).item()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m titans_ts.kernels.selfcheck")
    ap.add_argument("--depths", type=int, nargs="+", default=[1, 2], choices=[1, 2],
                    help="memory depths to check (default: 1 2)")
    depths = ap.parse_args(argv).depths
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import torch.nn.functional as F

    from titans_ts import memory_scan

    device = "cuda" if cuda else "cpu"
    B, H, T, d, dh = (2, 4, 2048, 64, 128) if cuda else (1, 2, 48, 16, 32)
    g = torch.Generator().manual_seed(0)
    failures = 0
    print(f"titans-ts kernel self-check on {torch.cuda.get_device_name() if cuda else 'CPU (Triton interpreter)'}")
    print(f"shapes: B={B} H={H} T={T} d={d} hidden={dh}, chunk {64 if cuda else 16}")
    chunk = 64 if cuda else 16
    for depth in depths:
        q = F.normalize(torch.randn(B, T, H, d, generator=g), dim=-1).to(device)
        k = F.normalize(torch.randn(B, T, H, d, generator=g), dim=-1).to(device)
        v = torch.randn(B, T, H, d, generator=g).to(device)
        gates = [(torch.rand(B, T, H, generator=g) * s).to(device) for s in (0.05, 0.9, 0.1)]
        dims = [d] + [dh] * (depth - 1) + [d]
        W = [(torch.randn(H, dims[i + 1], dims[i], generator=g) / dims[i] ** 0.5).to(device)
             for i in range(depth)]
        res, first = {}, {}
        for backend in ("chunked", "triton"):
            leaves = [t.clone().requires_grad_(True) for t in [q, k, v, *gates, *W]]
            t0 = time.perf_counter()
            y, (WT, ST) = memory_scan(*leaves[:6], weights=leaves[6:], chunk_size=chunk, backend=backend)
            loss = (y * torch.linspace(-1, 1, d, device=device)).sum() + sum((w * 0.3).sum() for w in WT)
            res[backend] = [y.detach(), *torch.autograd.grad(loss, leaves)]
            if cuda:
                torch.cuda.synchronize()
            first[backend] = time.perf_counter() - t0
        errs = [_rel(a, b) for a, b in zip(res["triton"], res["chunked"], strict=True)]
        ok = max(errs) < 1e-4
        failures += not ok
        print(f"depth {depth} fp32: max relative error (output and {len(errs) - 1} gradients) "
              f"{max(errs):.2e} -> {'ok' if ok else 'FAIL'}; first call (triton: compile included, "
              f"unless cached) {first['triton']:.1f} s, chunked {first['chunked']:.1f} s", flush=True)
        if cuda:
            yb, _ = memory_scan(q.bfloat16(), k.bfloat16(), v.bfloat16(), *gates, weights=W,
                                chunk_size=chunk, backend="triton")
            e = _rel(yb.float(), res["chunked"][0])
            failures += e >= 2e-2
            print(f"depth {depth} bf16 inputs: forward relative error {e:.2e} -> {'ok' if e < 2e-2 else 'FAIL'}",
                  flush=True)
    if cuda:
        print()
        print("| depth | T | triton fwd+bwd (ms) | chunked fwd+bwd (ms) | speed-up |")
        print("|---|---|---|---|---|")
        for depth in depths:
            for T in (2048, 8192):
                times = {}
                for backend in ("triton", "chunked"):
                    q = F.normalize(torch.randn(8, T, 8, 64, device=device), dim=-1).requires_grad_()
                    k = F.normalize(torch.randn(8, T, 8, 64, device=device), dim=-1).requires_grad_()
                    v = torch.randn(8, T, 8, 64, device=device, requires_grad=True)
                    gates = [torch.rand(8, T, 8, device=device) * s for s in (0.05, 0.9, 0.1)]
                    dims = [64] + [128] * (depth - 1) + [64]
                    W = [torch.randn(8, dims[i + 1], dims[i], device=device).requires_grad_() for i in range(depth)]

                    def step(q=q, k=k, v=v, gates=gates, W=W, backend=backend):
                        y, _ = memory_scan(q, k, v, *gates, weights=W, chunk_size=64, backend=backend)
                        y.sum().backward()

                    step()
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    for _ in range(3):
                        step()
                    torch.cuda.synchronize()
                    times[backend] = (time.perf_counter() - t0) / 3 * 1e3
                print(f"| {depth} | {T} | {times['triton']:.1f} | {times['chunked']:.1f} | "
                      f"{times['chunked'] / times['triton']:.1f}x |", flush=True)
        print("\nFull comparison (titans-pytorch, flash-linear-attention): benchmarks/bench_memory_gpu.py")
    else:
        print("no CUDA device: GPU timings need a GPU (run this again there)")
    print("self-check " + ("FAILED" if failures else "passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
