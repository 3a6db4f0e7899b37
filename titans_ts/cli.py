"""The ``titans-ts`` command line.

    titans-ts quickstart                      the README's main job (ETTh1, exact protocol)
    titans-ts fit | validate | test | predict --config recipes/ltsf/ETTh1_96_96.yaml
    titans-ts data list | path NAME | verify [NAME ...] | download NAME
    titans-ts baselines DATASET [--seq-len 96] [--horizons 96 192 336 720]
    titans-ts tune --config RECIPE --space SPACE --n-trials N [--storage URL] [--study-name NAME]
    titans-ts benchmark online DATASET --out FILE.jsonl [--horizons 24 48 96] [--seeds 0 1 2]

A failure prints one line (``titans-ts: error: ...``) and exits with status 2; add --debug to
any command for the Python traceback.
"""

from __future__ import annotations

import argparse
import sys
import time

from titans_ts.online.config import MODES as ONLINE_MODES

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """An argument parser that takes no abbreviations (``--seed`` is not ``--seeds``): an option
    is spelt out or refused. Its subcommands' parsers are of this class too."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def _positive_int(text: str) -> int:
    """argparse type: a positive integer (0 epochs or batches would train nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value} (0 would train nothing)")
    return value


def _positive_count(text: str) -> int:
    """argparse type: a count of at least 1 (a look-back, a horizon, epochs)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer (give 1 or more)")
    return value


def _data(args: argparse.Namespace) -> int:
    from titans_ts import datasets as D

    if args.data_cmd == "list":
        print(f"{'name':<20} {'kind':<5} {'freq':<7} {'located':<8} file")
        for info in D.CATALOGUE.values():
            try:
                shown = str(D.find_file(info, root=args.root, verify=False))
                where = "yes"
            except D.DataNotFoundError:
                shown, where = info.filename, "no"
            print(f"{info.name:<20} {info.kind:<5} {str(info.freq):<7} {where:<8} {shown}")
        return 0
    if args.data_cmd == "path":
        print(D.find_file(args.name, root=args.root, verify=False))
        return 0
    if args.data_cmd == "verify":
        names = args.names or [n for n in D.CATALOGUE]
        bad = 0
        for name in names:  # every file is reported; one bad file does not stop the others
            try:
                path = D.find_file(name, root=args.root, verify=True, rehash=True)  # every byte, again
                status = "ok" if D.dataset_info(name).sha256 else "not pinned"
                print(f"{name:<20} {status:<10} {path}")
            except D.DataNotFoundError:
                print(f"{name:<20} {'missing':<10}")
                bad += bool(args.names)
            except D.ChecksumError as err:
                word = "MISMATCH" if "does not match" in str(err) else "CORRUPT"
                print(f"{name:<20} {word:<10} {err}")
                bad += 1
            except (OSError, KeyError) as err:
                print(f"{name:<20} {'UNREADABLE':<10} {err}")
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
    """The README's main job: a short Titans (LMM) training on ETTh1 with the exact benchmark
    protocol (L = 96, H = 96), its test MSE / MAE beside the reference baselines, and a plot."""
    import tempfile

    from titans_ts import datasets as D
    from titans_ts.baselines import evaluate_baseline
    from titans_ts.plotting import plot_test_forecast
    from titans_ts.recipes import packaged_recipe, set_dotted, train_and_test

    # the quick recipe (shipped in the package: recipes/quick/ETTh1_96_96.yaml), its budget
    # shortened further only when asked
    cfg = packaged_recipe("ETTh1_96_96_quick")
    over = {}
    if args.epochs is not None:
        over["trainer.max_epochs"] = args.epochs
    if args.batches is not None:
        over["trainer.limit_train_batches"] = args.batches
    cfg = set_dotted(cfg, over)
    if args.root:
        cfg["data"]["root"] = args.root
    budget = f"{cfg['trainer']['max_epochs']} epochs" + (f" x {args.batches} batches" if args.batches else "")
    print(f"titans-ts quickstart: ETTh1, L=96, H=96, exact protocol; Titans LMM (quick recipe), {budget}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="titans-ts-quickstart-") as tmp:
        model, dm, _, res, fit_s = train_and_test(cfg, tmp)
        out = plot_test_forecast(model, dm, args.plot)
    test = dm.splits.test
    last = evaluate_baseline(test, "repeat_last")
    season = D.dataset_info("ETTh1").season
    sn = evaluate_baseline(test, "seasonal_naive", season=season)
    print(f"{'model':<28} {'test MSE':>9} {'test MAE':>9}")
    print(f"{'titans-ts LMM (quick recipe)':<28} {res['test_mse']:>9.4f} {res['test_mae']:>9.4f}   "
          f"({fit_s:.0f} s training, {len(test)} test windows, "
          f"{sum(p.numel() for p in model.parameters())} parameters)")
    print(f"{f'seasonal naive (m={season})':<28} {sn['mse']:>9.4f} {sn['mae']:>9.4f}")
    print(f"{'repeat last value':<28} {last['mse']:>9.4f} {last['mae']:>9.4f}")
    print(f"forecast plot: {out}")
    print("full benchmark (from a checkout of the repository): python benchmarks/ltsf.py run "
          "recipes/ltsf/ETTh1_96_*.yaml (see docs/benchmarks.md)")
    return 0


def _benchmark_online(args: argparse.Namespace) -> int:
    """``titans-ts benchmark online``: the online protocol, every mode, records appended to --out."""
    import json
    from pathlib import Path

    from titans_ts import datasets as D
    from titans_ts.datasets.online import ONLINE_LOOKBACK, ONLINE_SPLITS
    from titans_ts.online import OnlineConfig, run_online

    online_sets = [i.name for i in D.CATALOGUE.values() if i.split in ONLINE_SPLITS]
    try:
        dataset = D.dataset_info(args.dataset).name
    except KeyError:
        raise ValueError(f"unknown dataset {args.dataset!r} for the online benchmark; it runs on: "
                         f"{', '.join(online_sets)}") from None
    if dataset not in online_sets:
        raise ValueError(f"{dataset} has no online split (the protocol's 20:5:75 split applies to the "
                         f"long-horizon sets); it runs on: {', '.join(online_sets)}")
    cfg = OnlineConfig()
    if args.max_epochs is not None:
        cfg = cfg.with_overrides({"training": {"max_epochs": args.max_epochs}})
    if args.config:
        try:
            over = json.loads(args.config)
        except ValueError as err:
            raise ValueError(f"--config is not valid JSON ({err}); give an object of OnlineConfig "
                             f"settings, e.g. '{{\"network\": {{\"variant\": \"none\"}}}}'") from None
        if not isinstance(over, dict):
            raise ValueError(f"--config must be a JSON object of OnlineConfig settings, e.g. "
                             f"'{{\"training\": {{\"max_epochs\": 3}}}}'; got {type(over).__name__} {args.config!r}")
        cfg = cfg.with_overrides(over)
    seq_len = args.seq_len or ONLINE_LOOKBACK.get(dataset)
    if seq_len is None:
        raise ValueError(f"no default look-back for {dataset!r}: pass --seq-len")
    out = Path(args.out)
    done = set()
    if out.exists():
        for n, line in enumerate(out.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except ValueError as err:
                raise ValueError(f"--out {out}: line {n} is not a JSON record ({err}); --out must be a "
                                 f"JSON-lines file of titans-ts benchmark online (or a new file)") from None
            keys = ("dataset", "horizon", "seq_len", "seed", "mode")
            missing = [k for k in keys if not isinstance(r, dict) or k not in r]
            if missing:
                raise ValueError(f"--out {out}: line {n} is not a record of titans-ts benchmark online "
                                 f"(no {missing[0]!r}); --out must be a JSON-lines file it wrote (or a new file)")
            done.add((r["dataset"], r["horizon"], r["seq_len"], r["seed"], r.get("tag", "main"), r["mode"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        todo = {H: tuple(m for m in args.modes if (dataset, H, seq_len, seed, args.tag, m) not in done)
                for H in args.horizons}
        for H in [H for H, t in todo.items() if not t]:
            print(f"skip (recorded): {dataset} L={seq_len} H={H} seed {seed} [{args.tag}]")
        horizons = [H for H, t in todo.items() if t]
        if not horizons:
            continue
        modes = tuple(m for m in args.modes if any(m in todo[H] for H in horizons))
        t0 = time.perf_counter()
        # one backbone for every horizon asked for (the longest), also when some are recorded
        recs = run_online(dataset, horizons, seq_len, seed, modes=modes, root=args.root, cfg=cfg,
                          online_lrs=tuple(args.online_lrs), log=print if args.verbose else None,
                          backbone_cache=args.backbone_cache, backbone_horizon=max(args.horizons))
        total = round(time.perf_counter() - t0, 1)
        recs = [r for r in recs if r["mode"] in todo[r["horizon"]]]
        with open(out, "a") as fh:
            for r in recs:
                fh.write(json.dumps({**r, "tag": args.tag, "run_seconds": total}) + "\n")
        for H in horizons:
            print(f"{dataset} L={seq_len} H={H} seed {seed} ({total:.0f} s): " + ", ".join(
                f"{r['mode']} {r['mse']:.4f}" for r in recs if r["horizon"] == H), flush=True)
    return 0


def _tune(args: argparse.Namespace) -> int:
    from titans_ts.tuning import run_tune_command

    return run_tune_command(args)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="titans-ts", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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

    bm = sub.add_parser("benchmark", help="benchmarks that ship with the package")
    bsub = bm.add_subparsers(dest="bench_cmd", required=True)
    bo = bsub.add_parser(
        "online", help="online forecasting on the no-leak protocol (Proceed's), every mode",
        description="Train on the online split (20:5:75, scaler on the training rows), then stream "
        "through validation and test one step at a time with delayed feedback; modes frozen, "
        "carried, online_gd, carried+online_gd compared on one trained model. Appends one JSON "
        "line per (dataset, horizon, look-back, mode, seed) to --out; modes already recorded there are skipped.")
    bo.add_argument("dataset")
    bo.add_argument("--horizons", type=_positive_count, nargs="+", default=[24, 48, 96])
    bo.add_argument("--seq-len", type=_positive_count, default=None,
                    help="look-back (default: the one Proceed's scripts use: 336 ETTh2, 512 ETTm1 / weather)")
    bo.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    bo.add_argument("--modes", nargs="+", default=list(ONLINE_MODES), choices=list(ONLINE_MODES))
    bo.add_argument("--online-lrs", type=float, nargs="+", default=[1e-5, 1e-4],
                    help="learning rates of the online_gd modes (chosen on the validation stream)")
    bo.add_argument("--backbone-cache", default=None,
                    help="folder where trained backbones are kept and found again (default: none kept)")
    bo.add_argument("--max-epochs", type=_positive_count, default=None,
                    help="most backbone epochs (default: OnlineConfig.max_epochs; early stopping on the "
                    "validation windows ends training sooner)")
    bo.add_argument("--config", default=None,
                    help='JSON overrides of OnlineConfig, e.g. \'{"network": {"variant": "none"}}\'')
    bo.add_argument("--tag", default="main", help="a name for these settings in the records")
    bo.add_argument("--out", required=True, help="JSON-lines file the records are appended to")
    bo.add_argument("--root", default=None, help="data folder searched before $TITANS_TS_DATA")
    bo.add_argument("--verbose", action="store_true")
    bm.set_defaults(func=_benchmark_online)

    q = sub.add_parser("quickstart", help="the README's main job: a short Titans run on ETTh1")
    q.add_argument("--root", default=None)
    q.add_argument("--epochs", type=_positive_int, default=None, help="epochs (default: the quick recipe's 5)")
    q.add_argument("--batches", type=_positive_int, default=None,
                   help="training batches per epoch (default: every batch)")
    q.add_argument("--plot", default="titans-ts-quickstart.png", help="where the forecast plot goes")
    q.set_defaults(func=_quickstart)
    t = sub.add_parser(
        "tune", help="optuna sweep of a recipe (resumable; start it several times for more workers)",
        description="Tune a recipe with optuna (TPE, median pruning on val_loss). Start the same "
        "command several times, here or on machines sharing the storage, for parallel workers: "
        "--n-trials is the study's total, which the workers together run exactly; re-running "
        "resumes the study. Search-space format: titans_ts/tuning/space.py; example: "
        "recipes/sweeps/etth1_lmm.yaml.")
    t.add_argument("--config", required=True, help="the recipe to tune (recipes/ltsf/...yaml)")
    t.add_argument("--space", required=True, help="search-space YAML: dotted recipe key -> spec")
    t.add_argument("--n-trials", type=int, required=True,
                   help="trials in the study in all (finished or running, over every worker)")
    t.add_argument("--storage", default=None,
                   help="optuna storage URL: sqlite:///FILE.db, postgresql://..., mysql://..., or "
                   "journal:///PATH/FILE.log (a journal file, for workers on several machines); "
                   "default: sqlite:///<study-name>.db in the current folder")
    t.add_argument("--study-name", default=None,
                   help="default: <recipe stem>-<space stem>, e.g. ETTh1_96_96-etth1_lmm")
    t.add_argument("--output", default=None,
                   help="where the best configuration is written as a recipe; default: "
                   "<study-name>.best.yaml in the current folder")
    t.add_argument("--set", action="append", help="override a recipe value in every trial: "
                   "trainer.max_epochs=5 (applied before the trial's suggestions)")
    t.add_argument("--seed", type=int, default=0, help="sampler seed (trial k draws from seed and k)")
    t.add_argument("--timeout", type=float, default=None, help="start no trial after SECONDS")
    t.add_argument("--heartbeat-grace", type=_positive_count, default=None, metavar="SECONDS",
                   help="a running trial without a heartbeat (every 10 s) for this long belongs to a "
                   "dead worker and is retried by another (default 30; longer for storages that are "
                   "slow to write or machines whose clocks disagree)")
    t.add_argument("--verbose", action="store_true", help="Lightning and optuna messages")
    t.set_defaults(func=_tune)
    return p


LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def _one_line(err: BaseException) -> str:
    """An exception as one line: its message (a KeyError's without the quotes), whitespace
    folded, and its type when the message alone would not say what failed."""
    msg = err.args[0] if isinstance(err, KeyError) and len(err.args) == 1 else str(err)
    if isinstance(err, OSError) and err.strerror:  # without the "[Errno N]" prefix
        msg = f"{err.filename}: {err.strerror}" if err.filename and str(err.filename) not in err.strerror \
            else err.strerror
    msg = " ".join(str(msg).split())
    known = (ValueError, KeyError, OSError, ImportError)
    return msg if msg and isinstance(err, known) else f"{type(err).__name__}: {msg}"


def main(argv: list[str] | None = None) -> int:
    """The ``titans-ts`` command. A failure prints one line, ``titans-ts: error: ...``, on stderr
    and returns 2; ``--debug`` (anywhere on the command line) shows the traceback instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        if argv and argv[0] in LIGHTNING_COMMANDS:
            from titans_ts.lightning_cli import run_lightning_cli

            return run_lightning_cli(argv)
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print("titans-ts: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the command line reports every failure the same way
        if debug:
            raise
        print(f"titans-ts: error: {_one_line(err)} (--debug shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
