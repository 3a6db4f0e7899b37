"""optuna sweeps: search spaces, storages, exact multi-worker studies, the best recipe, the CLI."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from titans_ts import TitansForecaster
from titans_ts import tuning as T

REPO = Path(__file__).resolve().parents[2]
MEM = dict(heads=2, depth=1, expansion=1.0, chunk_size=4)
TINY_SPACE = {
    "model.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.3},
    "model.memory.max_lr": {"type": "categorical", "choices": [0.05, 0.1]},
}


def tiny_recipe(data_root: Path) -> dict:
    recipe = yaml.safe_load((REPO / "recipes/ltsf/ETTh1_96_96.yaml").read_text())
    recipe["model"].update(d_model=16, memory=dict(MEM))
    # limit_val_batches: 1 would be read as 1.0 (the whole split) by the Lightning CLI
    recipe["trainer"].update(max_epochs=1, limit_train_batches=2, limit_val_batches=2,
                             num_sanity_val_steps=0)
    recipe["data"].update(root=str(data_root), batch_size=32, eval_batch_size=32)
    return recipe


# ------------------------------------------------------------------------------ search space


@pytest.mark.parametrize("space, words", [
    ({"model.lr": {"low": 1, "high": 2}}, ["'model.lr'", "float, int, categorical"]),
    ({"model.lr": {"type": "normal", "low": 1, "high": 2}}, ["'model.lr'", "float, int, categorical"]),
    ({"model.lr": [1, 2]}, ["'model.lr'", "expected a mapping", "categorical"]),
    ({"model.lr": {"type": "float", "low": 1}}, ["'model.lr'", "needs low and high", "high"]),
    ({"model.lr": {"type": "float", "low": 2.0, "high": 1.0}}, ["'model.lr'", "low must be <= high"]),
    ({"model.lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, ["'model.lr'", "low > 0"]),
    ({"model.lr": {"type": "float", "low": 0.1, "high": 1.0, "log": True, "step": 0.1}},
     ["'model.lr'", "log and step"]),
    ({"model.lr": {"type": "float", "low": "a", "high": 1.0}}, ["'model.lr'", "finite number"]),
    ({"model.lr": {"type": "float", "low": 0.1, "high": 1.0, "choices": [1]}},
     ["'model.lr'", "unknown field", "choices", "accepted: type, low, high, log, step"]),
    ({"model.memory.depth": {"type": "int", "low": 1.5, "high": 3}}, ["'model.memory.depth'", "integer"]),
    ({"model.memory.depth": {"type": "int", "low": 1, "high": 3, "step": 0}}, ["step must be positive"]),
    ({"model.d_model": {"type": "categorical", "choices": []}}, ["'model.d_model'", "non-empty list"]),
    ({"model.d_model": {"type": "categorical", "choices": [{"a": 1}]}},
     ["'model.d_model'", "null, bool, int, float, str or lists of those"]),
    ({"hist_exog_list": {"type": "categorical", "choices": [["a"], [1, [2]]]}},
     ["'hist_exog_list'", "null, bool, int, float, str or lists of those"]),
    ({"hist_exog_list": {"type": "categorical", "choices": [["a"], ["a"]]}}, ["repeat"]),
    ({"model.d_model": {"type": "categorical", "choices": [32, 32]}}, ["repeat"]),
    ({"model..lr": {"type": "float", "low": 0.1, "high": 1.0}}, ["dotted recipe paths"]),
    ({"model.memory": {"type": "categorical", "choices": ["a"]},
      "model.memory.depth": {"type": "int", "low": 1, "high": 2}}, ["overlap"]),
    ({}, ["non-empty mapping"]),
    ([1, 2], ["non-empty mapping"]),
])
def test_space_errors_name_the_key_and_what_is_accepted(space, words):
    with pytest.raises(T.SpaceError) as info:
        T.load_space(space)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_space_file_errors_name_the_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("model.lr: {type: float, low: 1.0}\n")
    with pytest.raises(T.SpaceError, match="space.yaml"):
        T.load_space(path)
    with pytest.raises(FileNotFoundError):
        T.load_space(tmp_path / "missing.yaml")


def test_space_reads_yaml_quirks_and_normalises(tmp_path):
    path = tmp_path / "space.yaml"
    # PyYAML reads 1e-4 (no dot) as a string: accepted as a number
    path.write_text("model.lr: {type: float, low: 1e-4, high: 1e-2, log: true}\n"
                    "model.memory.depth: {type: int, low: 1, high: 3}\n"
                    "model.d_model: {type: categorical, choices: [32, 64]}\n")
    space = T.load_space(path)
    assert space["model.lr"] == {"type": "float", "low": 1e-4, "high": 1e-2, "log": True, "step": None}
    assert space["model.memory.depth"]["step"] == 1
    assert T.load_space(space) == space  # idempotent


def test_suggest_types_and_ranges():
    space = {**TINY_SPACE,
             "model.memory.depth": {"type": "int", "low": 1, "high": 3},
             "model.patch_len": {"type": "int", "low": 8, "high": 24, "step": 8},
             "model.d_model": {"type": "categorical", "choices": [32, 64]},
             "model.revin_affine": {"type": "categorical", "choices": [True, False]},
             "model.weight_decay": {"type": "float", "low": 0.0, "high": 0.1, "step": 0.05}}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(30):
        trial = study.ask()
        p = T.suggest(trial, space)
        study.tell(trial, 0.0)
        seen.append(p)
        assert set(p) == set(space)
        assert type(p["model.lr"]) is float and 1e-4 <= p["model.lr"] <= 1e-2
        assert type(p["model.dropout"]) is float and 0.0 <= p["model.dropout"] <= 0.3
        assert type(p["model.memory.depth"]) is int and 1 <= p["model.memory.depth"] <= 3
        assert p["model.patch_len"] in (8, 16, 24)
        assert p["model.d_model"] in (32, 64) and type(p["model.d_model"]) is int
        assert type(p["model.revin_affine"]) is bool
        assert p["model.weight_decay"] in (0.0, 0.05, 0.1)
        assert p["model.memory.max_lr"] in (0.05, 0.1)
    # log scale: a fair share of draws below the geometric middle (1e-3)
    assert sum(p["model.lr"] < 1e-3 for p in seen) >= 8
    assert {p["model.memory.depth"] for p in seen} == {1, 2, 3}
    # FixedTrial (what a user replays) goes through the same path
    fixed = {"model.lr": 1e-3, "model.dropout": 0.1, "model.memory.max_lr": 0.1}
    assert T.suggest(optuna.trial.FixedTrial(fixed), TINY_SPACE) == fixed


def test_set_dotted_sets_dotted_keys():
    from titans_ts.recipes import set_dotted

    cfg = {"model": {"lr": 1.0, "memory": {"depth": 2}}, "data": {"seq_len": 96}}
    out = set_dotted(cfg, {"model.lr": 0.5, "model.memory.depth": 3, "model.new.key": "x"})
    assert out["model"] == {"lr": 0.5, "memory": {"depth": 3}, "new": {"key": "x"}}
    assert cfg["model"]["lr"] == 1.0  # a copy
    with pytest.raises(ValueError, match="model.lr is 1.0, not a mapping"):
        set_dotted(cfg, {"model.lr.x": 1})


def test_example_sweep_fits_the_etth1_recipe():
    space = T.load_space(REPO / "recipes/sweeps/etth1_lmm.yaml")
    recipe = yaml.safe_load((REPO / "recipes/ltsf/ETTh1_96_96.yaml").read_text())
    for key in space:  # every key already exists in the recipe (no typo)
        node = recipe
        for part in key.split("."):
            assert part in node, key
            node = node[part]
    heads = recipe["model"]["memory"]["heads"]
    assert all(d % heads == 0 for d in space["model.d_model"]["choices"])


# ------------------------------------------------------------------------------------ storage


@pytest.mark.slow
def test_storages_open_and_resume(tmp_path):
    def objective(trial):
        return (trial.suggest_float("x", -1.0, 1.0) - 0.3) ** 2

    assert isinstance(T.open_storage(None), optuna.storages.InMemoryStorage)
    journal = T.open_storage(f"journal://{tmp_path}/j/study.log")
    assert isinstance(journal, optuna.storages.JournalStorage)
    for url in (f"journal://{tmp_path}/j/study.log", f"sqlite:///{tmp_path}/s/study.db"):
        study = T.optimize(objective, n_trials=3, storage=url, study_name="s")
        assert len(study.trials) == 3
        again = T.optimize(objective, n_trials=3, storage=url, study_name="s")  # nothing to do
        assert [t.number for t in again.trials] == [0, 1, 2]
        more = T.optimize(objective, n_trials=5, storage=url, study_name="s")  # resumed
        assert [t.state for t in more.trials] == [TrialState.COMPLETE] * 5
    assert (tmp_path / "j" / "study.log").is_file() and (tmp_path / "s" / "study.db").is_file()
    assert T.open_storage(journal) is journal
    with pytest.raises(ValueError, match="sqlite:///study.db"):
        T.open_storage("study.db")
    with pytest.raises(ValueError, match="journal:///"):
        T.open_storage("journal:")
    assert T.describe_storage("postgresql://me:secret@host/db") == "postgresql://me:***@host/db"
    assert T.describe_storage(None) == "in memory"


@pytest.mark.slow
def test_same_seed_same_study_and_failures_are_recorded(caplog):
    def objective(trial):
        x = trial.suggest_float("x", -1.0, 1.0)
        if trial.number == 1:
            raise RuntimeError("boom")
        if trial.number == 2:
            return float("nan")
        return x * x

    with caplog.at_level(logging.INFO, logger="titans_ts.tuning"):
        a = T.optimize(objective, n_trials=4, seed=3)
    b = T.optimize(objective, n_trials=4, seed=3)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    # n_trials counts complete trials: the two failures free their places for new configurations
    assert [t.state for t in a.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL] + [
        TrialState.COMPLETE] * 3
    assert a.trials[1].user_attrs["error"] == "RuntimeError: boom"
    assert "nan" in a.trials[2].user_attrs["error"]
    text = caplog.text
    assert "trial 1 failed" in text and "boom" in text and "Traceback" in text
    assert "trial 2 failed" in text and "trial 0: value" in text
    # an exception outside `catch` fails the trial and propagates
    with pytest.raises(RuntimeError, match="boom"):
        T.optimize(objective, n_trials=2, catch=())


def test_failed_trials_free_their_place_and_a_broken_objective_stops(tmp_path, caplog):
    def flaky(trial):
        x = trial.suggest_float("x", -1.0, 1.0)
        if trial.number % 2:
            raise RuntimeError("odd")
        return x * x

    url = f"sqlite:///{tmp_path}/f.db"
    study = T.optimize(flaky, n_trials=3, storage=url, study_name="f", seed=1)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL] * 2 + [TrialState.COMPLETE]
    assert T.study._n_counted(study) == 3
    # resuming a finished study runs nothing
    assert len(T.optimize(flaky, n_trials=3, storage=url, study_name="f").trials) == 5

    def broken(trial):
        trial.suggest_float("x", -1.0, 1.0)
        raise ValueError("always")

    with caplog.at_level(logging.WARNING, logger="titans_ts.tuning"):
        study = T.optimize(broken, n_trials=3, study_name="b")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3
    assert "stopping: 3 trials of the study failed in the objective (as many as n_trials=3)" in caplog.text


def test_a_trial_past_the_target_is_handed_back(monkeypatch, tmp_path):
    """The race two workers can run into: the count said "one more" but another worker took the
    last place before this one's trial was created."""
    url = f"sqlite:///{tmp_path}/race.db"
    calls = []

    def objective(trial):
        calls.append(trial.number)
        return trial.suggest_float("x", 0.0, 1.0)

    T.optimize(objective, n_trials=2, storage=url, study_name="r")
    real = T.study._n_counted
    monkeypatch.setattr(T.study, "_n_counted", lambda study: 0)  # a stale count, once
    study = T.optimize(objective, n_trials=2, storage=url, study_name="r")
    monkeypatch.setattr(T.study, "_n_counted", real)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [TrialState.WAITING]
    assert study.trials[2].params == {}
    # a later, larger target takes the handed-back trial first
    study = T.optimize(objective, n_trials=3, storage=url, study_name="r")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert calls == [0, 1, 2]


WORKER = r'''
import random, sys, time
from titans_ts.tuning import optimize

def objective(trial):
    x = trial.suggest_float("x", -1.0, 1.0)
    y = trial.suggest_int("y", 0, 1000)
    time.sleep(random.random() * 0.03)
    if trial.number in FAILING:
        raise RuntimeError("fails on purpose")
    return x * x + y

FAILING = {int(k) for k in sys.argv[3].split(",") if k}
# heartbeats on (as by default), every second rather than every minute: a worker whose slots are
# all taken waits for the others' running trials in polls of the interval (at most 5 s); the
# grace period stays longer than the test, so no trial is declared dead on a busy machine
optimize(objective, n_trials=int(sys.argv[2]), storage=sys.argv[1], study_name="stress",
         heartbeat_interval=1, grace_period=600)
'''


# the sqlite cases in the slow lane (a sqlite study costs its workers about a second each to open);
# the fast lane keeps the journal storage, and test_failed_trials_free_their_place_and_a_broken_objective_stops
# the failed trials
@pytest.mark.parametrize("kind, failing", [pytest.param("sqlite", "", marks=pytest.mark.slow), ("journal", ""),
                                           pytest.param("sqlite", "2,5", marks=pytest.mark.slow)])
def test_workers_together_run_exactly_n_trials(tmp_path, kind, failing):
    """Three processes, one study, no training: exactly n complete trials, each run once, and no
    two with the same random draws; numbered 0..n-1 without failures, and with failures each
    failed trial's place taken by one more configuration."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    url = f"sqlite:///{tmp_path}/w.db" if kind == "sqlite" else f"journal://{tmp_path}/w.log"
    n = 8
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, str(script), url, str(n), failing], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="stress", storage=T.open_storage(url))
    done = [t for t in study.trials if t.state != TrialState.WAITING]
    n_failing = len(failing.split(",")) if failing else 0
    assert sorted(t.number for t in done) == list(range(n + n_failing))
    assert [t.number for t in done if t.state == TrialState.FAIL] == sorted(int(k) for k in failing.split(",") if k)
    assert sum(t.state == TrialState.COMPLETE for t in done) == n
    assert len({(t.params["x"], t.params["y"]) for t in done}) == n + n_failing


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


def test_a_trial_is_pruned_through_the_forecaster():
    """``TitansForecaster.fit(df, trial=trial)`` reports the validation loss to the trial, and the
    study's pruner stops it: the trial ends PRUNED (not FAIL), with the reported value kept."""
    t = np.arange(80)
    df = pd.concat([pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2024-01-01", periods=80, freq="h"),
                                  "y": 10 + i + np.sin(2 * np.pi * t / 12)}) for i in range(2)],
                   ignore_index=True)
    tiny = dict(h=6, context_length=24, patch_len=8, stride=4, d_model=16, max_epochs=2,
                limit_train_batches=2, batch_size=16, memory=dict(MEM))
    fits = []

    def objective(trial):
        cb = T.pruning_callback(trial)  # what fit(trial=...) adds
        assert isinstance(cb, pl.Callback) and cb.monitor == "val_loss"
        model = TitansForecaster(lr=trial.suggest_float("lr", 1e-4, 1e-2, log=True), **tiny)
        fits.append(model)
        model.fit(df, trial=trial)
        return model.best_val_loss_

    study = T.optimize(objective, n_trials=1, pruner=AlwaysPrune(), catch=())  # a failure propagates
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # pruned after the first validation of 2 epochs
    assert math.isfinite(trial.intermediate_values[0]) and trial.intermediate_values[0] > 0
    assert len(fits) == 1 and not hasattr(fits[0], "model_")  # the fit did not finish
    # the same objective under a pruner that never prunes completes both epochs
    study = T.optimize(objective, n_trials=1, pruner=optuna.pruners.NopPruner(), catch=())
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE and list(trial.intermediate_values) == [0, 1]
    assert trial.value == pytest.approx(min(trial.intermediate_values.values()))


def test_cli_defaults_are_derived_from_the_names():
    from titans_ts.cli import build_parser

    args = build_parser().parse_args(["tune", "--config", "recipes/ltsf/ETTh1_96_96.yaml", "--space",
                                      "recipes/sweeps/etth1_lmm.yaml", "--n-trials", "3"])
    assert T.tune_paths(args) == ("ETTh1_96_96-etth1_lmm", "sqlite:///ETTh1_96_96-etth1_lmm.db",
                                  "ETTh1_96_96-etth1_lmm.best.yaml")
    args = build_parser().parse_args(["tune", "--config", "a.yaml", "--space", "b.yaml", "--n-trials",
                                      "3", "--study-name", "x/y z", "--storage", "journal://j.log",
                                      "--output", "o.yaml"])
    assert T.tune_paths(args) == ("x/y z", "journal://j.log", "o.yaml")


# ----------------------------------------------------------------------------- with training


@pytest.mark.data
def test_tune_recipe_writes_a_best_recipe_that_loads(tmp_path, data_root, monkeypatch):
    from titans_ts.lightning_cli import build_from_recipe

    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(data_root)))
    space = {**TINY_SPACE, "model.d_model": {"type": "categorical", "choices": [8, 16]}}
    out = tmp_path / "sweep" / "best.yaml"
    study = T.tune_recipe(recipe, space, n_trials=2, output=out, sets=["model.stride=4"])
    assert sorted(os.listdir(tmp_path)) == ["sweep", "tiny.yaml"]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    best = study.best_trial
    assert math.isfinite(best.value) and best.user_attrs["epochs"] == 1
    text = out.read_text()
    assert f"trial {best.number}," in text.splitlines()[0] and f"{best.value:.6g}" in text
    assert "--set model.stride=4" in text
    cfg = yaml.safe_load(text)
    assert cfg["model"]["d_model"] == best.params["model.d_model"]
    assert cfg["model"]["memory"]["max_lr"] == best.params["model.memory.max_lr"]
    assert cfg["model"]["stride"] == 4 and cfg["model"]["memory"]["heads"] == 2
    cli = build_from_recipe(out)  # a valid recipe for `titans-ts fit --config`
    assert cli.model.hparams.d_model == best.params["model.d_model"]
    assert cli.model.hparams.lr == pytest.approx(best.params["model.lr"])


@pytest.mark.data
def test_a_rejected_trial_is_recorded_as_failed(tmp_path, data_root, caplog):
    recipe = tiny_recipe(data_root)
    space = {"model.no_such_option": {"type": "float", "low": 0.0, "high": 1.0}}
    with caplog.at_level(logging.WARNING, logger="titans_ts.tuning"):
        study = T.tune_recipe(recipe, space, n_trials=1, output=tmp_path / "best.yaml")
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL
    assert "no_such_option" in trial.user_attrs["error"]
    assert "trial 0 failed" in caplog.text and "no recipe written" in caplog.text
    assert not (tmp_path / "best.yaml").exists()


@pytest.mark.slow
@pytest.mark.data
def test_two_cli_workers_share_one_study(tmp_path, data_root):
    """THE multi-worker contract: two `titans-ts tune` processes on one SQLite study finish exactly
    n_trials trials between them, none failed, none run twice, nothing written into the cwd but
    what was named."""
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_recipe(data_root)))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    n = 4
    cmd = [sys.executable, "-m", "titans_ts.cli", "tune", "--config", "tiny.yaml", "--space",
           "space.yaml", "--n-trials", str(n), "--storage", "sqlite:///study.db", "--study-name",
           "tiny", "--output", "best.yaml", "--set", "trainer.max_epochs=1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "best: trial" in out and "best recipe: best.yaml" in out
    assert sorted(os.listdir(tmp_path)) == ["best.yaml", "space.yaml", "study.db", "tiny.yaml"]
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/study.db")
    done = [t for t in study.trials if t.state != TrialState.WAITING]
    assert sorted(t.number for t in done) == list(range(n))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in done)
    params = [tuple(sorted(t.params.items())) for t in done]
    assert len(set(params)) == n
    # each trial ran in exactly one worker
    logs = "".join(err for _, err in outs)
    for t in done:
        assert logs.count(f"[tune] trial {t.number}:") + logs.count(f"[tune] trial {t.number} pruned") == 1
    header = (tmp_path / "best.yaml").read_text().splitlines()[0]
    number = int(header.split("trial ")[1].split(",")[0])
    assert study.trials[number].state == TrialState.COMPLETE
    assert f"{study.trials[number].value:.6g}" in header


KILLABLE = r'''
import json, os, sys, time
from titans_ts.tuning import optimize

url, n, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def objective(trial):
    x = trial.suggest_float("x", -1.0, 1.0)
    if os.environ.get("VICTIM"):  # announce the trial, then hang until killed
        with open(marker + ".tmp", "w") as fh:
            json.dump({"number": trial.number, "x": x}, fh)
        os.replace(marker + ".tmp", marker)
        time.sleep(120)
    time.sleep(0.1)
    return x * x

optimize(objective, n_trials=n, storage=url, study_name="kill", heartbeat_interval=1, grace_period=5)
'''


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_killed_worker_loses_no_trial(tmp_path, kind):
    """A worker SIGKILLed mid-trial: its trial goes stale (no heartbeat for the grace period), a
    live worker fails it and reruns its configuration, and the study still ends with exactly
    n complete trials: the killed one does not count, its retry does."""
    import json
    import signal
    import time

    script = tmp_path / "worker.py"
    script.write_text(KILLABLE)
    marker = tmp_path / "victim.json"
    url = f"sqlite:///{tmp_path}/k.db" if kind == "sqlite" else f"journal://{tmp_path}/k.log"
    n = 4
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))

    def start(**extra):
        return subprocess.Popen([sys.executable, str(script), url, str(n), str(marker)], cwd=tmp_path,
                                env=dict(env, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    victim = start(VICTIM="1")
    t0 = time.monotonic()
    while not marker.exists():
        assert victim.poll() is None, victim.communicate()[1][-3000:]
        assert time.monotonic() - t0 < 60, "the victim never started its trial"
        time.sleep(0.05)
    killed = json.loads(marker.read_text())
    worker = start()  # a live worker beside the doomed one
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    restarted = start()  # the killed worker, restarted
    for p in (worker, restarted):
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="kill", storage=T.open_storage(url))
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == n and TrialState.RUNNING not in states, states
    dead = study.trials[killed["number"]]
    assert dead.state == TrialState.FAIL and dead.params["x"] == killed["x"]
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed["number"]]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert T.study._n_counted(study) == n  # the dead trial and its retry hold one slot
    assert time.monotonic() - t0 < 30


def test_the_heartbeat_grace_period_is_a_documented_setting_with_a_short_default(tmp_path, monkeypatch, capsys):
    """Issue 35: a killed worker's trial was retried only after 120 s. The grace period is now
    GRACE_PERIOD (30 s, heartbeats every 10 s) by default, and a setting of optimize,
    tune_recipe, tune_forecaster and ``titans-ts tune --heartbeat-grace``."""
    assert T.GRACE_PERIOD == 30 and T.HEARTBEAT_INTERVAL == 10
    for kind in ("sqlite", "journal"):
        url = f"sqlite:///{tmp_path}/g.db" if kind == "sqlite" else f"journal://{tmp_path}/g.log"
        study = T.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1, storage=url, study_name="g")
        def storage_of(study):  # (sqlite: behind optuna's cache)
            return study._storage if hasattr(study._storage, "grace_period") else study._storage._backend

        storage = storage_of(study)
        assert (storage.heartbeat_interval, storage.grace_period) == (10, 30)
        study = T.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2, storage=url, study_name="g",
                           grace_period=12)
        assert storage_of(study).grace_period == 12
    with pytest.raises(ValueError, match=r"grace_period \(10 s\) must be longer than the heartbeat interval "
                                         r"\(10 s\)"):
        T.optimize(lambda t: 0.0, n_trials=1, storage=f"sqlite:///{tmp_path}/h.db", grace_period=10)
    seen = {}
    monkeypatch.setattr("titans_ts.tuning.recipe.tune_recipe", lambda *a, **k: seen.update(k) or 1 / 0)
    from titans_ts.cli import main

    recipe = REPO / "recipes" / "ltsf" / "ETTh1_96_96.yaml"
    space = REPO / "recipes" / "sweeps" / "etth1_lmm.yaml"
    base = ["tune", "--config", str(recipe), "--space", str(space), "--n-trials", "1",
            "--storage", f"sqlite:///{tmp_path}/c.db"]
    main([*base, "--heartbeat-grace", "45"])
    assert seen["grace_period"] == 45
    main(base)
    assert seen["grace_period"] == T.GRACE_PERIOD
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*base, "--heartbeat-grace", "0"])
    assert "argument --heartbeat-grace: '0' is not a positive integer" in capsys.readouterr().err
