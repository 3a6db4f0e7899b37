"""The ``titans-ts`` command line.

    titans-ts quickstart                      the README's main job (ETTh1, exact protocol)
    titans-ts fit | validate | test | predict --config recipes/ltsf/ETTh1_96_96.yaml
    titans-ts benchmark run RECIPE... [--seeds 0 1 2] [--tag T] [--set key=value]
    titans-ts benchmark report
    titans-ts data list | path NAME | verify [NAME ...] | download NAME
    titans-ts baselines DATASET [--seq-len 96] [--horizons 96 192 336 720]
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _data(args: argparse.Namespace) -> int:
    from titans_ts import datasets as D

    if args.data_cmd == "list":
        print(f"{'name':<20} {'kind':<5} {'freq':<7} {'located':<8} file")
        for info in D.CATALOGUE.values():
            try:
                path = D.find_file(info, root=args.root, verify=False)
                where = "yes"
            except D.DataNotFoundError:
                path, where = info.filename, "no"
            print(f"{info.name:<20} {info.kind:<5} {str(info.freq):<7} {where:<8} {path}")
        return 0
    if args.data_cmd == "path":
        print(D.find_file(args.name, root=args.root, verify=False))
        return 0
    if args.data_cmd == "verify":
        names = args.names or [n for n in D.CATALOGUE]
        bad = 0
        for name in names:
            try:
                path = D.find_file(name, root=args.root, verify=True)
                status = "ok" if D.dataset_info(name).sha256 else "not pinned"
                print(f"{name:<20} {status:<10} {path}")
            except D.DataNotFoundError:
                print(f"{name:<20} {'missing':<10}")
                bad += bool(args.names)
            except D.ChecksumError as err:
                print(f"{name:<20} {'MISMATCH':<10} {err}")
                bad += 1
        return 1 if bad else 0
    if args.data_cmd == "download":
        path = D.download(args.name, root=args.root, force=args.force)
        print(path)
        return 0
    raise AssertionError(args.data_cmd)


def _baselines(args: argparse.Namespace) -> int:
    from titans_ts import datasets as D
    from titans_ts.baselines import evaluate_baseline

    info = D.dataset_info(args.dataset)
    season = args.season or info.season
    print(f"{info.name}: reference baselines on the test split, L={args.seq_len}, scaled data "
          f"(benchmark protocol)")
    print(f"{'horizon':>7} {'windows':>8} {'repeat-last MSE':>16} {'MAE':>7} "
          f"{f'seasonal-naive(m={season}) MSE':>27} {'MAE':>7}")
    for h in args.horizons:
        _, _, test, _ = D.ltsf_splits(info.name, args.seq_len, h, root=args.root)
        last = evaluate_baseline(test, "repeat_last")
        if season <= args.seq_len:
            sn = evaluate_baseline(test, "seasonal_naive", season=season)
            sn_txt = f"{sn['mse']:>27.4f} {sn['mae']:>7.4f}"
        else:
            sn_txt = f"{'(season > L)':>27} {'':>7}"
        print(f"{h:>7} {last['windows']:>8} {last['mse']:>16.4f} {last['mae']:>7.4f} {sn_txt}")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    """The README's main job: the exact ETTh1 protocol, test MSE / MAE."""
    args.dataset, args.seq_len, args.horizons, args.season = "ETTh1", 96, [96, 192, 336, 720], None
    return _baselines(args)


def _benchmark(args: argparse.Namespace) -> int:
    from titans_ts.benchmark import render_report, run_many

    if args.bench_cmd == "run":
        run_many(args.recipes, args.seeds, args.set or [], args.tag, plot_first=not args.no_plot)
        if not args.no_report:
            render_report()
        return 0
    text = render_report(args.out)
    if args.print:
        print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="titans-ts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in LIGHTNING_COMMANDS:  # handled by Lightning's CLI (listed here for --help)
        sub.add_parser(name, help=f"Lightning CLI {name} (--config recipes/...; see --help)")

    d = sub.add_parser("data", help="dataset catalogue: list, locate, verify, download")
    d.add_argument("--root", default=None, help="data folder searched before $TITANS_TS_DATA")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    dsub.add_parser("list", help="every catalogue entry and whether it is found")
    dp = dsub.add_parser("path", help="where a dataset file is found")
    dp.add_argument("name")
    dv = dsub.add_parser("verify", help="check SHA-256 of located files")
    dv.add_argument("names", nargs="*")
    dd = dsub.add_parser("download", help="fetch the canonical file into the cache (network)")
    dd.add_argument("name")
    dd.add_argument("--force", action="store_true")
    d.set_defaults(func=_data)

    b = sub.add_parser("baselines", help="repeat-last and seasonal-naive on the benchmark test split")
    b.add_argument("dataset")
    b.add_argument("--seq-len", type=int, default=96)
    b.add_argument("--horizons", type=int, nargs="+", default=[96, 192, 336, 720])
    b.add_argument("--season", type=int, default=None, help="default: the catalogue's period")
    b.add_argument("--root", default=None)
    b.set_defaults(func=_baselines)

    bm = sub.add_parser("benchmark", help="train + test recipes on the exact protocol; render the report")
    bsub = bm.add_subparsers(dest="bench_cmd", required=True)
    br = bsub.add_parser("run", help="run recipes x seeds (recorded runs are skipped)")
    br.add_argument("recipes", nargs="+")
    br.add_argument("--seeds", type=int, nargs="+", default=[0])
    br.add_argument("--tag", default="main", help="result file name; use one per ablation")
    br.add_argument("--set", action="append", help="override a recipe value: model.memory.depth=1")
    br.add_argument("--no-plot", action="store_true")
    br.add_argument("--no-report", action="store_true")
    bp = bsub.add_parser("report", help="write docs/benchmarks.md from the recorded runs")
    bp.add_argument("--out", default=None)
    bp.add_argument("--print", action="store_true")
    bm.set_defaults(func=_benchmark)

    q = sub.add_parser("quickstart", help="the README's main job on ETTh1")
    q.add_argument("--root", default=None)
    q.set_defaults(func=_quickstart)
    return p


LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from titans_ts.lightning_cli import run_lightning_cli

        return run_lightning_cli(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"titans-ts: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
