"""The command line's failures: one line on stderr, exit status 2, the traceback only with
--debug; settings that would train nothing refused; a checkpoint that contradicts an explicit
--model argument refused (issue 22, items 8 and 14)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import yaml

from titans_ts.cli import main
from titans_ts.model.lightning_module import TitansLightningModule
from titans_ts.online import OnlineConfig
from titans_ts.tuning import open_storage

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "ltsf" / "ETTh1_96_96.yaml"


def _fails(capsys, argv) -> str:
    """Run the command; it must return 2 with a single ``titans-ts: error:`` line on stderr."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("titans-ts: error: "), err[-2000:]
    assert "Traceback" not in err and lines[0].endswith("(--debug shows the traceback)")
    return lines[0]


def test_cli_failures_are_one_line_and_debug_shows_the_traceback(capsys):
    line = _fails(capsys, ["baselines", "ETTh9"])
    assert line.startswith("titans-ts: error: unknown dataset 'ETTh9'; the catalogue knows: ETTh1,")
    with pytest.raises(KeyError, match="unknown dataset 'ETTh9'"):
        main(["baselines", "ETTh9", "--debug"])
    # the Lightning subcommands' parser errors: one line, not a page of usage
    line = _fails(capsys, ["fit", "--config", str(RECIPE), "--model.memory.bogus=1"])
    assert "bogus" in line and "--help lists the options" in line


def test_missing_and_corrupt_checkpoints_are_one_line(tmp_path, capsys):
    line = _fails(capsys, ["test", "--config", str(RECIPE), "--ckpt_path", str(tmp_path / "none.ckpt")])
    assert f"--ckpt_path {tmp_path / 'none.ckpt'}: no such checkpoint file" in line
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint at all")
    line = _fails(capsys, ["test", "--config", str(RECIPE), "--ckpt_path", str(bad)])
    assert f"--ckpt_path {bad} is not a readable checkpoint (truncated, corrupt or not written by torch.save)" \
        in line


def _checkpoint(tmp_path, **model) -> Path:
    """A checkpoint as Lightning writes its hyper-parameters (no training needed to read them)."""
    settings = yaml.safe_load(RECIPE.read_text())["model"]
    settings.update(model)
    module = TitansLightningModule(seq_len=96, horizon=96, n_channels=7, **settings)
    path = tmp_path / "model.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


def test_an_explicit_model_argument_the_checkpoint_contradicts_is_refused(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, d_model=16)
    line = _fails(capsys, ["test", "--config", str(RECIPE), "--ckpt_path", str(ckpt), "--model.d_model=32"])
    assert (f"--ckpt_path {ckpt} was trained with other model settings than the command line gives: "
            f"--model.d_model=32 (the checkpoint's: 16). A checkpoint fixes the network") in line
    # nested settings too, in the "--model.KEY VALUE" spelling
    line = _fails(capsys, ["test", "--config", str(RECIPE), "--ckpt_path", str(ckpt),
                           "--model.memory.heads", "2", "--model.d_model=16"])
    assert "--model.memory.heads=2 (the checkpoint's: 4)" in line and "d_model" not in line


def test_storage_urls_that_cannot_be_opened_are_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"^storage foo://x: unknown scheme 'foo'; use sqlite:///FILE\.db"):
        open_storage("foo://x")
    with pytest.raises(ValueError, match=rf"^storage sqlite:///{tmp_path}: {tmp_path} is a folder; name a database"):
        open_storage(f"sqlite:///{tmp_path}")
    with pytest.raises(ValueError, match=rf"^storage journal://{tmp_path}: {tmp_path} is a folder; name a file"):
        open_storage(f"journal://{tmp_path}")
    if importlib.util.find_spec("psycopg2") is None:  # a database driver that is not installed
        with pytest.raises(ImportError, match=r"^storage postgresql\+psycopg2://me:\*\*\*@host/db: the Python "
                                              r"driver for postgresql is not installed \(no module 'psycopg2'\); "
                                              r"install it \(pip install psycopg2\)"):
            open_storage("postgresql+psycopg2://me:secret@host/db")


def test_settings_that_would_train_nothing_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["quickstart", "--batches", "0"])
    assert exit_.value.code == 2
    assert "argument --batches: expected a positive integer, got 0 (0 would train nothing)" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"limit_train_batches=0 would train on no batch"):
        OnlineConfig(training={"limit_train_batches": 0})
    cfg = OnlineConfig()
    cfg.training = {"max_epochs": 0}  # set directly: validate() refuses it too
    with pytest.raises(ValueError, match=r"max_epochs must be a positive integer"):
        cfg.validate()
    with pytest.raises(ValueError, match=r"OnlineConfig.training.max_epochs must be a positive integer, got None"):
        OnlineConfig(training={"max_epochs": None})
    assert OnlineConfig(training={"limit_train_batches": None}).training.limit_train_batches is None


def test_tune_with_a_storage_that_cannot_be_opened_is_one_line(tmp_path, capsys):
    space = RECIPE.parents[1] / "sweeps" / "etth1_lmm.yaml"
    base = ["tune", "--config", str(RECIPE), "--space", str(space), "--n-trials", "1"]
    line = _fails(capsys, [*base, "--storage", "foo://x"])
    assert "storage foo://x: unknown scheme 'foo'" in line
    line = _fails(capsys, [*base, "--storage", f"sqlite:///{tmp_path}"])
    assert f"{tmp_path} is a folder; name a database file in it" in line
    assert list(tmp_path.iterdir()) == []


def test_benchmark_online_arguments_are_checked_before_anything_runs(tmp_path, capsys):
    """Issue 35: an unknown dataset, a look-back of 0, broken --config JSON and an --out file
    that is not JSON lines each get one line naming what is wrong (nothing is trained)."""
    out = tmp_path / "online.jsonl"
    base = ["benchmark", "online", "--out", str(out), "--horizons", "24", "--seeds", "0"]
    line = _fails(capsys, [*base[:2], "ETTh9", *base[2:]])
    assert "unknown dataset 'ETTh9' for the online benchmark; it runs on: ETTh1, ETTh2, ETTm1" in line
    assert "m3_monthly" not in line
    line = _fails(capsys, [*base[:2], "m3_monthly", *base[2:]])
    assert "m3_monthly has no online split" in line and "it runs on: ETTh1" in line
    with pytest.raises(SystemExit) as exit_:
        main([*base[:2], "ETTh1", *base[2:], "--seq-len", "0"])
    assert exit_.value.code == 2
    assert "argument --seq-len: '0' is not a positive integer" in capsys.readouterr().err
    line = _fails(capsys, [*base[:2], "ETTh1", *base[2:], "--seq-len", "96", "--config", '{"max_epochs": 1,}'])
    assert "--config is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 18" in line
    line = _fails(capsys, [*base[:2], "ETTh1", *base[2:], "--seq-len", "96", "--config", "[1]"])
    assert "--config must be a JSON object of OnlineConfig settings" in line
    out.write_text("epoch,mse\n1,0.5\n")
    line = _fails(capsys, [*base[:2], "ETTh1", *base[2:], "--seq-len", "96"])
    assert f"--out {out}: line 1 is not a JSON record (Expecting value: line 1 column 1" in line
    out.write_text('{"dataset": "ETTh1", "horizon": 24, "seq_len": 96, "seed": 0, "mode": "frozen"}\n{"mse": 1}\n')
    line = _fails(capsys, [*base[:2], "ETTh1", *base[2:], "--seq-len", "96"])
    assert f"--out {out}: line 2 is not a record of titans-ts benchmark online (no 'dataset'" in line
    assert out.read_text().count("\n") == 2  # untouched
