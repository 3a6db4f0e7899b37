"""Writes docs/rejected-inputs.md: every case below is run and its actual error message recorded.

    python docs/make_rejected_inputs.py

``tests/api/test_rejected_inputs.py`` runs the same cases, so the table cannot drift from the code.
"""

from __future__ import annotations

import gzip
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
RECIPE = HERE.parent / "recipes" / "ltsf" / "ETTh1_96_96.yaml"
TINY = dict(h=4, context_length=16, patch_len=8, stride=4, d_model=16, max_epochs=1,
            limit_train_batches=1, batch_size=8, memory=dict(heads=2, depth=1, expansion=1.0, chunk_size=4))


def _long(T=40, n=2, start="2024-01-01"):
    return pd.concat([pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range(start, periods=T, freq="h"),
                                    "y": np.sin(np.arange(T) / 3.0) + i}) for i in range(n)],
                     ignore_index=True)


def _fitted():
    from titans_ts import TitansForecaster

    if not hasattr(_fitted, "model"):
        _fitted.model = TitansForecaster(**TINY).fit(_long())
    return _fitted.model


def _fitted_t():
    from titans_ts import TitansForecaster

    if not hasattr(_fitted_t, "model"):
        _fitted_t.model = TitansForecaster(**{**TINY, "head": "student_t"}).fit(_long())
    return _fitted_t.model


def _cov_frame(T=40):
    df = _long(T=T)
    return df.assign(promo=(np.arange(len(df)) % 5 == 0).astype(float), temp=np.cos(np.arange(len(df))))


def _static(ids=("s0", "s1")):
    return pd.DataFrame({"unique_id": list(ids), "region": ["north", "south", "east"][:len(ids)]})


def _fitted_cov():
    """A tiny forecaster with a past-only, a future-known and a categorical static covariate,
    fitted on the first 36 steps of ``_cov_frame()``; and the next 4 steps' future-known values."""
    from titans_ts import TitansForecaster

    if not hasattr(_fitted_cov, "model"):
        df = _cov_frame()
        hist = df.groupby("unique_id").head(36)
        _fitted_cov.futr = df.groupby("unique_id").tail(4)[["unique_id", "ds", "promo"]]
        _fitted_cov.model = TitansForecaster(**TINY, hist_exog_list=["temp"], futr_exog_list=["promo"],
                                             stat_exog_list=["region"]).fit(hist, static_df=_static())
    return _fitted_cov.model, _fitted_cov.futr


def _predict_cov(change):
    """predict of the covariate forecaster with ``change(kwargs)`` applied to its arguments."""
    def run():
        model, futr = _fitted_cov()
        kw = {"futr_df": futr.copy(), "static_df": _static()}
        change(kw)
        model.predict(**kw)
    return run


def _in_tmp(fn):
    """Run ``fn`` with a fresh temporary folder as the working directory (messages then name
    files by their relative paths, the same on every run)."""
    def run():
        cwd = os.getcwd()
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)
            try:
                return fn()
            finally:
                os.chdir(cwd)
    return run


def _lightning(*args):
    from titans_ts.lightning_cli import run_lightning_cli

    return lambda: run_lightning_cli([args[0], "--config", str(RECIPE), *args[1:]])


def _checkpoint_clash():
    import torch

    from titans_ts.model.lightning_module import TitansLightningModule

    settings = yaml.safe_load(RECIPE.read_text())["model"]
    module = TitansLightningModule(seq_len=96, horizon=96, n_channels=7, **{**settings, "d_model": 16})
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, "model.ckpt")
    _lightning("test", "--ckpt_path", "model.ckpt", "--model.d_model=32")()


def _saved(write):
    """A file named m.pt holding what ``write(raw bytes of a saved forecaster)`` writes, loaded."""
    def run():
        from titans_ts import TitansForecaster

        raw = Path(_fitted().save("good.pt")).read_bytes()
        Path("m.pt").write_bytes(write(raw))
        TitansForecaster.load("m.pt")
    return _in_tmp(run)


def _crafted(raw):
    import io
    import json

    import torch

    payload = torch.load(io.BytesIO(raw), weights_only=True)
    payload["params"] = json.dumps({**json.loads(payload["params"]), "predict": "x"})
    out = io.BytesIO()
    torch.save(payload, out)
    return out.getvalue()


def _scan(change):
    """memory_scan on small valid inputs, with ``change(inputs, weights, kwargs)`` applied."""
    import torch

    from titans_ts import memory_scan

    def run():
        g = torch.Generator().manual_seed(0)
        B, T, H, d = 2, 6, 2, 8
        inputs = [torch.randn(B, T, H, d, generator=g) for _ in range(3)] + \
                 [torch.rand(B, T, H, generator=g) * 0.1 for _ in range(3)]
        weights = [torch.randn(B, H, d, d, generator=g) / d ** 0.5 for _ in range(2)]
        kw = {}
        change(inputs, weights, kw)
        memory_scan(*inputs, weights=weights, **kw)
    return run


def _estimator(data=None, **kw):
    def run():
        from gluonts.dataset.common import ListDataset

        from titans_ts.gluonts import TitansEstimator

        est = TitansEstimator(freq="ME", prediction_length=6, context_length=12, **kw)
        if data is not None:
            est.train(ListDataset(data, freq="ME") if data else data)
    return run


def _entry(values, item="a"):
    return {"start": pd.Period("2000-01", freq="M"), "item_id": item, "target": np.asarray(values, dtype=np.float32)}


def _train_from_other():
    from gluonts.dataset.common import ListDataset

    from titans_ts.gluonts import TitansEstimator

    data = ListDataset([_entry(np.arange(30.0))], freq="ME")
    kw = dict(freq="ME", prediction_length=6, context_length=12, trainer_kwargs={"max_epochs": 1},
              num_batches_per_epoch=1)
    predictor = TitansEstimator(**kw, d_model=16, memory={"heads": 2}).train(data)
    TitansEstimator(**kw, d_model=32, memory={"heads": 2}).train_from(predictor, data)


def _edited(raw):
    """The saved file with one weight's first floats changed in place (same size)."""
    import io

    import torch

    state = torch.load(io.BytesIO(raw), weights_only=True)["state_dict"]
    data = max(state.values(), key=lambda t: t.numel()).contiguous().numpy().tobytes()[:32]
    at = raw.find(data)
    return raw[:at] + (np.frombuffer(data, dtype=np.float32) * 1.01).astype(np.float32).tobytes() + raw[at + 32:]


class _Code:
    def __reduce__(self):
        return (os.getpid, ())


def _pickled_code(raw):
    import io

    import torch

    out = io.BytesIO()
    torch.save({"format": "titans-ts-forecaster/3", "x": _Code()}, out)
    return out.getvalue()


def _edited_checkpoint():
    import torch

    from titans_ts.integrity import stamp_checkpoint
    from titans_ts.model.lightning_module import TitansLightningModule

    module = TitansLightningModule(16, 4, d_model=16, n_layers=1, patch_len=8, stride=4,
                                   memory=dict(heads=2, depth=1, chunk_size=4))
    ckpt = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}
    stamp_checkpoint(ckpt)
    ckpt["state_dict"] = {k: v + 1e-3 if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, "model.ckpt")
    TitansLightningModule.load_from_checkpoint("model.ckpt", weights_only=True)


def _save_over_fifo():
    os.mkfifo("pipe")
    _fitted().save("pipe")


def _online_run(*argv):
    from titans_ts.cli import build_parser

    args = build_parser().parse_args(["benchmark", "online", *argv])
    args.func(args)


def _online(*argv):
    return _in_tmp(lambda: _online_run(*argv))


def _out_not_json():
    Path("out.csv").write_text("epoch,mse\n1,0.5\n")
    _online_run("ETTh1", "--seq-len", "96", "--out", "out.csv")


def _predict_entry(entry):
    """A tiny trained GluonTS predictor asked to forecast ``entry``."""
    def run():
        from titans_ts.gluonts import TitansEstimator

        if not hasattr(_predict_entry, "predictor"):
            good = [_daily(np.sin(np.arange(60) / 3.0) + 5, f"s{i}") for i in range(2)]
            _predict_entry.predictor = TitansEstimator(
                freq="D", prediction_length=4, context_length=16, patch_len=8, stride=4, d_model=16, n_layers=1,
                memory={"heads": 2, "chunk_size": 4}, batch_size=8, num_batches_per_epoch=1,
                trainer_kwargs={"max_epochs": 1}).train(good)
        list(_predict_entry.predictor.predict([entry]))
    return run


def _daily(values, item="a", **fields):
    return {"start": pd.Period("2024-01-01", freq="D"), "item_id": item,
            "target": np.asarray(values, dtype=np.float64), **fields}


def _gz_truncated():
    from titans_ts.datasets.catalogue import open_text

    Path("data.csv.gz").write_bytes(gzip.compress(b"a,b\n" * 1000)[:40])
    open_text("data.csv.gz")


def torch_full(value):
    import torch

    return torch.full((2, 6), value)


def _online_config(**kw):
    from titans_ts.online import OnlineConfig

    return OnlineConfig(**kw)


def _online_too_long():
    from titans_ts.datasets.online import OnlineData
    from titans_ts.datasets.scaling import StandardScaler
    from titans_ts.online.runner import check_stream_fits

    data = OnlineData("ETTh2", np.zeros((400, 2), np.float32), {"train": (0, 240), "val": (240, 300),
                      "test": (300, 400)}, ["a", "b"], pd.date_range("2024-01-01", periods=400, freq="h"),
                      StandardScaler(), season=24)
    check_stream_fits(data, 250, 24)


def _run_online(*args, **kw):
    from titans_ts.online import run_online

    return run_online(*args, **kw)


def _cases():
    """(what, callable that must raise) pairs."""
    from titans_ts import TitansForecaster
    from titans_ts.datasets import from_frame, ltsf_splits
    from titans_ts.tuning import open_storage, optimize

    def fit(df, **kw):
        return lambda: TitansForecaster(**{**TINY, **kw}).fit(df)

    dup = _long()
    dup.loc[3, "ds"] = dup.loc[2, "ds"]
    unsorted = _long()
    unsorted.loc[[2, 3], "ds"] = unsorted.loc[[3, 2], "ds"].to_numpy()
    gap = _long().drop(index=[5])
    text = _long().astype({"y": object})
    text.loc[7, "y"] = "n/a"
    inf = _long()
    inf.loc[4, "y"] = np.inf
    bad_time = _long().astype({"ds": object})
    bad_time.loc[1, "ds"] = "yesterday"
    daily = pd.date_range("2024-01-01", periods=40, freq="D")
    mixed = pd.concat([_long(n=1), _long(n=1).assign(unique_id="d", ds=daily)])
    return [
        ("long frame with an unnamed extra column", fit(_long().assign(extra=1.0))),
        ("long frame without `y`", fit(_long().rename(columns={"y": "value"}), target_col="y")),
        ("no timestamp column", lambda: from_frame(_long().drop(columns="ds"))),
        ("duplicate timestamp in a series", fit(dup)),
        ("timestamps out of order", fit(unsorted)),
        ("a missing row (gap) in a regular series", fit(gap)),
        ("series of different frequencies", fit(mixed)),
        ("text in the target column", fit(text)),
        ("+inf in the target", fit(inf)),
        ("unparseable timestamp", fit(bad_time)),
        ("empty frame", fit(_long().iloc[:0])),
        ("every series shorter than h + 2 (too short to train on)", fit(_long(T=5))),
        ("time_budget that is not a duration", fit(_long(), time_budget="soon")),
        ("unknown head", fit(_long(), head="gaussian")),
        ("non-positive horizon", fit(_long(), h=0)),
        ("quantile levels outside (0, 1)", fit(_long(), head="quantile", quantiles=(0.1, 1.5))),
        ("naive_fallback that is not a bool", fit(_long(), naive_fallback="yes")),
        ("predict before fit", lambda: TitansForecaster().predict()),
        ("predict beyond the trained horizon", lambda: _fitted().predict(h=10)),
        ("intervals from a point head", lambda: _fitted().predict(levels=[80])),
        ("update() rows that do not continue the series",
         lambda: _fitted().update(_long(T=3, start="2024-03-01"))),
        ("update() with an unseen series",
         lambda: _fitted().update(_long(T=2, n=1, start="2024-01-02 16:00").assign(unique_id="new"))),
        ("cross_validation with refit=-1", lambda: TitansForecaster(**TINY).cross_validation(_long(), refit=-1)),
        ("score with an unknown metric", lambda: _fitted().score(_long(), metric="r2")),
        ("benchmark split of an unknown dataset", lambda: ltsf_splits("ETTh9", 96, 96)),
        # issue 22: no silent wrong result, no lost file, no lost trial
        ("float timestamps (`ds` of floats)", fit(_long().assign(ds=np.arange(80, dtype=float)))),
        ("a value beyond float32's range", lambda: _fitted().predict(df=_long().assign(y=1e39))),
        ("update() rows that would make the forecast non-finite",
         lambda: _fitted().update(_long(T=2, start="2024-01-02 16:00").assign(y=1e30))),
        ("a series without a single observed value",
         fit(_long().assign(y=lambda d: np.where(d["unique_id"] == "s1", np.nan, d["y"])))),
        ("predict levels given as a number", lambda: _fitted_t().predict(levels=95)),
        ("predict quantiles outside (0, 1)", lambda: _fitted_t().predict(quantiles=[0.5, 1.0])),
        ("colliding ids (1 and '1')", fit(pd.concat([_long(n=1).assign(unique_id=1),
                                                     _long(n=1).assign(unique_id="1")], ignore_index=True))),
        ("limit_train_batches=0", fit(_long(), limit_train_batches=0)),
        ("set_params after fit, then predict", lambda: TitansForecaster(**TINY).fit(_long()).set_params(h=3).predict()),
        ("load a truncated file", _saved(lambda raw: raw[: len(raw) // 3])),
        ("load a crafted file (an unknown parameter)", _saved(_crafted)),
        ("save over a folder", _in_tmp(lambda: _fitted().save("."))),
        ("GluonTS: train on an empty dataset", _estimator([])),
        ("GluonTS: every series shorter than the horizon + 2", _estimator([_entry(np.arange(7.0))])),
        ("GluonTS: time_budget that is not a duration", _estimator(time_budget=0)),
        ("GluonTS: infinite target", _estimator([_entry([1.0, 2.0, np.inf] * 8)])),
        ("GluonTS: trainer_kwargs that train nothing", _estimator(trainer_kwargs={"limit_train_batches": 0})),
        ("tune storage of an unknown scheme", lambda: open_storage("foo://study")),
        ("tune storage that is a folder", _in_tmp(lambda: open_storage("sqlite:///."))),
        ("CLI: unknown model option", _lightning("fit", "--model.memory.bogus=1")),
        ("CLI: missing checkpoint", _in_tmp(_lightning("test", "--ckpt_path", "missing.ckpt"))),
        ("CLI: an explicit model argument the checkpoint contradicts", _in_tmp(_checkpoint_clash)),
        ("a truncated .gz data file", _in_tmp(_gz_truncated)),
        ("memory_scan: q, k, v of mixed dtypes", _scan(lambda i, w, kw: i.__setitem__(0, i[0].double()))),
        ("memory_scan: integer weights", _scan(lambda i, w, kw: w.__setitem__(0, w[0].long()))),
        ("memory_scan: mask outside [0, 1]", _scan(lambda i, w, kw: kw.update(mask=torch_full(2.0)))),
        ("memory_scan: non-finite q", _scan(lambda i, w, kw: i[0].__setitem__((0, 0, 0, 0), float("nan")))),
        # issue 35: files, streams in any time zone, no silent result
        ("update() with zoned timestamps for a model fitted on naive ones",
         lambda: _fitted().update(_long(T=2, start="2024-01-02 16:00").assign(
             ds=lambda d: d["ds"].dt.tz_localize("UTC")))),
        ("several series stacked without their id column", fit(_long().drop(columns="unique_id"))),
        ("load a saved model with an edited float", _saved(_edited)),
        ("load a file holding a Python object (not plain data)", _saved(_pickled_code)),
        ("load a Lightning checkpoint with edited weights", _in_tmp(_edited_checkpoint)),
        ("save onto a FIFO (or a device such as /dev/full)", _in_tmp(_save_over_fifo)),
        ("memory_scan: finite keys and values near 1e20",
         _scan(lambda i, w, kw: (i.__setitem__(1, i[1] * 1e20), i.__setitem__(2, i[2] * 1e20)))),
        ("GluonTS: an empty target", _estimator([_entry(np.arange(20.0)), _entry([], "b")])),
        ("GluonTS: an all-NaN target", _estimator([_entry(np.arange(20.0)), _entry([np.nan] * 20, "b")])),
        ("GluonTS: a field the estimator does not read (feat_dynamic_cat)",
         _estimator([{**_entry(np.arange(20.0)), "feat_dynamic_cat": np.zeros((1, 20), dtype=int)}])),
        ("GluonTS: forecast from a context without an observed value",
         _predict_entry(_daily(np.r_[np.ones(40), [np.nan] * 20]))),
        ("GluonTS: a period start of another frequency than the estimator's",
         _predict_entry({**_daily(np.ones(60)), "start": pd.Period("2024-01-04 08:00", "h")})),
        ("benchmark online: unknown dataset", _online("ETTh9", "--out", "o.jsonl")),
        ("benchmark online: --config that is not JSON",
         _online("ETTh1", "--seq-len", "96", "--out", "o.jsonl", "--config", "{max_epochs: 1}")),
        ("benchmark online: an --out file that is not JSON lines", _in_tmp(_out_not_json)),
        # issues 33 and 34: settings objects, the online runner
        ("an unknown memory setting (memory={'dept': 2})", lambda: TitansForecaster(memory={"dept": 2})),
        ("an unknown stream-memory setting in OnlineConfig", lambda: _online_config(memory={"dept": 1})),
        ("a stream-memory gain prior below 0", lambda: _online_config(memory={"gain_prior": -1.0})),
        ("run_online with an unknown mode", lambda: _run_online("ETTh2", 24, 96, modes=("frozen", "bogus"))),
        ("an online look-back that leaves a split without a window", _online_too_long),
        ("tune: a heartbeat grace period not longer than the interval",
         _in_tmp(lambda: optimize(lambda t: 0.0, n_trials=1, storage="sqlite:///s.db", grace_period=5,
                                  heartbeat_interval=10))),
        # issue 36: covariates and continued training
        ("a future-known covariate missing for part of the horizon",
         _predict_cov(lambda kw: kw.update(futr_df=kw["futr_df"].iloc[:-2]))),
        ("predict without the future-known covariates", _predict_cov(lambda kw: kw.pop("futr_df"))),
        ("a static table without some series", _predict_cov(lambda kw: kw.update(static_df=_static(["s0"])))),
        ("a static table with extra series",
         _predict_cov(lambda kw: kw.update(static_df=_static(["s0", "s1", "s2"])))),
        ("a static category unseen at fit",
         _predict_cov(lambda kw: kw.update(static_df=_static().assign(region=["north", "west"])))),
        ("a covariate column of the wrong dtype",
         fit(_cov_frame().drop(columns="promo").astype({"temp": object})
             .assign(temp=lambda d: d["temp"].where(d.index != 3, "hot")), hist_exog_list=["temp"])),
        ("a boolean covariate column", fit(_cov_frame().drop(columns="temp").assign(promo=lambda d: d["promo"] > 0),
                                           futr_exog_list=["promo"])),
        ("a covariate present at fit and absent at predict",
         _predict_cov(lambda kw: kw.update(df=_cov_frame().drop(columns="temp").groupby("unique_id").head(36)))),
        ("a static covariate without static_df", fit(_long(), stat_exog_list=["region"])),
        ("fit(warm_start=True) before fit", lambda: TitansForecaster(**TINY).fit(_long(), warm_start=True)),
        ("GluonTS: a covariate field the estimator does not read",
         _estimator([dict(_entry(np.arange(30.0)), feat_dynamic_real=np.ones((1, 30)))])),
        ("GluonTS: a static category code beyond the cardinality",
         _estimator([dict(_entry(np.arange(30.0)), feat_static_cat=[4])], num_feat_static_cat=1, cardinality=[3])),
        ("GluonTS: train_from a predictor of another network", _train_from_other),
        ("GluonTS: an infinite covariate value",
         _estimator([dict(_entry(np.arange(30.0)), past_feat_dynamic_real=np.r_[np.ones(29), np.inf][None])],
                    num_past_feat_dynamic_real=1)),
    ]


def collect() -> list[tuple[str, str, str]]:
    rows = []
    for what, fn in _cases():
        try:
            fn()
        except ModuleNotFoundError as err:  # a broken case, not a rejected input
            raise AssertionError(f"case {what!r} could not run: {err}") from err
        except Exception as err:  # noqa: BLE001 - recording what each case raises
            rows.append((what, type(err).__name__, str(err).splitlines()[0]))
        else:
            raise AssertionError(f"case {what!r} was accepted; it must raise")
    return rows


def main() -> int:
    rows = collect()
    lines = ["# Rejected inputs", "",
             "What titans-ts refuses, and the message it gives (first line). Generated by "
             "`python docs/make_rejected_inputs.py`, which runs every case; "
             "`tests/api/test_rejected_inputs.py` runs the same cases. Nothing is dropped, filled or "
             "reordered silently: missing values are allowed (NaN / null become unobserved steps) "
             "and gaps can be made explicit with `titans_ts.datasets.fill_gaps`.", "",
             "| input | error | message |", "|---|---|---|"]
    for what, kind, msg in rows:
        msg = msg.replace("|", "\\|")
        lines.append(f"| {what} | `{kind}` | {msg} |")
    out = HERE / "rejected-inputs.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out} ({len(rows)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
