"""Settings as objects at every front-end: an unknown key, at any depth, is one exception type
(SettingsError) raised at construction and naming the key; the stored parameters are left as
given; the command line takes no abbreviations (issue 33, item 2)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from titans_ts import SettingsError, TitansForecaster
from titans_ts.cli import build_parser, main
from titans_ts.gluonts import TitansEstimator
from titans_ts.lightning_cli import CLISettingsError, CLIUsageError, build_from_recipe
from titans_ts.model.config import TrainingConfig
from titans_ts.model.lightning_module import TitansLightningModule
from titans_ts.recipes import build_in_dir, load_recipe

QUICK = Path(__file__).resolve().parents[2] / "recipes" / "quick" / "ETTh1_96_96.yaml"


@pytest.mark.parametrize("build, key", [
    (lambda: TitansForecaster(memory={"dept": 2}), "dept"),
    (lambda: TitansForecaster(h=4, lrr=1e-3), "lrr"),
    (lambda: TitansEstimator(freq="h", prediction_length=4, memory={"dept": 2}), "dept"),
    (lambda: TitansEstimator(freq="h", prediction_length=4, lrr=1e-3), "lrr"),
    (lambda: TitansLightningModule(memory={"dept": 2}), "dept"),
    (lambda: TitansLightningModule(lrr=1e-3), "lrr"),
    (lambda: TrainingConfig(lrr=1e-3), "lrr"),
])
def test_unknown_keys_fail_at_construction_naming_the_key(build, key):
    with pytest.raises(SettingsError, match=rf"unknown .*setting\(s\) \['{key}'\]; allowed: \["):
        build()


def test_construction_stores_the_parameters_unchanged():
    memory, quantiles, lr = {"depth": 1}, [0.1, 0.9], np.float64(3e-4)
    f = TitansForecaster(h=4, memory=memory, quantiles=quantiles, lr=lr, batch_size=np.int64(8))
    assert f.memory is memory and f.quantiles is quantiles and f.lr is lr and memory == {"depth": 1}
    clone(f)  # scikit-learn's clone checks that __init__ stored every parameter as given
    # a key set after construction is refused by fit, before anything trains
    g = TitansForecaster(h=4).set_params(memory={"dept": 2})
    with pytest.raises(SettingsError, match=r"\['dept'\]"):
        g.fit(None)


def test_the_estimator_feeds_a_training_config():
    est = TitansEstimator(freq="h", prediction_length=4, lr=3e-4,
                          trainer_kwargs={"max_epochs": 2, "gradient_clip_val": 0.5})
    assert est.training_config == TrainingConfig(lr=3e-4, batch_size=32, scheduler="cosine_steps", max_epochs=2,
                                                 gradient_clip_val=0.5)
    assert est.trainer_kwargs["max_epochs"] == 2  # the trainer arguments are kept as given
    with pytest.raises(ValueError, match=r"^gradient_clip_val must be >= 0\.0, got -1\.0$"):
        TitansEstimator(freq="h", prediction_length=4, trainer_kwargs={"gradient_clip_val": -1})


def _one_line(capsys, argv) -> str:
    assert main(argv) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("titans-ts: error: "), lines
    return lines[0]


def test_cli_refuses_abbreviations_and_unknown_keys(capsys, data_root, tmp_path):
    # --model.memory.dept once set memory.depth (argparse's prefix matching)
    line = _one_line(capsys, ["fit", "--config", str(QUICK), "--model.memory.dept=2"])
    assert "unknown setting(s) ['model.memory.dept']" in line and "'depth'" in line
    line = _one_line(capsys, ["fit", "--config", str(QUICK), "--trainer.max_ep=1"])
    assert "unknown setting(s) ['trainer.max_ep']" in line and "titans-ts fit --help" in line
    for overrides, key in ((["--model.memory.dept=2"], "model.memory.dept"), (["--model.d_mod=8"], "model.d_mod")):
        with pytest.raises(SettingsError, match=rf"unknown setting\(s\) \['{key}'\]") as err:
            build_from_recipe(str(QUICK), overrides)
        assert isinstance(err.value, CLIUsageError) and isinstance(err.value, CLISettingsError)
    # the same key in a recipe file
    cfg = load_recipe(QUICK, ["model.memory.dept=2"])
    with pytest.raises(SettingsError, match=r"unknown setting\(s\) \['model\.memory\.dept'\]"):
        build_in_dir(cfg, tmp_path)
    # the full names still work
    cli = build_from_recipe(str(QUICK), ["--model.memory.depth=3", "--trainer.max_epochs=2"])
    assert cli.model.config.memory.depth == 3 and cli.trainer.max_epochs == 2


def test_the_command_parsers_take_no_abbreviations(capsys):
    def parsers(p):
        yield p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    every = list(parsers(build_parser()))
    assert len(every) > 10 and all(not p.allow_abbrev for p in every)
    for argv, bad in ((["benchmark", "online", "ETTh1", "--out", "x.jsonl", "--seed", "1"], "--seed 1"),
                      (["quickstart", "--epoch", "1"], "--epoch 1"),
                      (["baselines", "ETTh1", "--seq", "96"], "--seq 96")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert f"unrecognized arguments: {bad}" in capsys.readouterr().err
