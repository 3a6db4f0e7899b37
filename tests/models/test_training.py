"""The training settings as one validated object (TrainingConfig), the one optimiser builder every
front-end's ``configure_optimizers`` is, and the one training helper (fit_module) they train
through (issue 33, items 2 and 3)."""

from __future__ import annotations

import dataclasses
import inspect
import os
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch

from titans_ts.datasets.windows import SeriesWindows, window_loader
from titans_ts.model.config import MemoryConfig, SettingsError, TitansConfig, TrainingConfig
from titans_ts.model.lightning_module import TitansLightningModule
from titans_ts.model.optim import configure_optimizers, make_optimizer, param_groups
from titans_ts.training import fit_module

RECIPES = os.path.join(os.path.dirname(__file__), "..", "..", "recipes")


# ---------------------------------------------------------------------------- TrainingConfig
def test_training_config_defaults_and_plain_values():
    t = TrainingConfig()
    assert (t.lr, t.weight_decay, t.optimizer, t.scheduler, t.warmup_epochs, t.loss) == \
        (1e-3, 1e-4, "adamw", "cosine", 0, "mse")
    assert (t.batch_size, t.max_epochs, t.patience, t.gradient_clip_val, t.limit_train_batches) == \
        (64, None, None, 1.0, None)
    # NumPy scalars become Python numbers; a copy with changes is validated again
    u = TrainingConfig(lr=np.float32(0.5), max_epochs=np.int64(3), limit_train_batches=np.float64(0.5))
    assert type(u.lr) is float and type(u.max_epochs) is int and u.max_epochs == 3
    assert type(u.limit_train_batches) is float
    assert u.replace(lr=0.25).lr == 0.25 and u.replace(lr=0.25).max_epochs == 3
    assert TrainingConfig.from_dict(u.to_dict()) == u
    assert TrainingConfig.fields() == tuple(f.name for f in dataclasses.fields(TrainingConfig))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.lr = 1.0


@pytest.mark.parametrize("settings, message", [
    (dict(lr=0), r"^lr must be > 0\.0, got 0\.0$"),
    (dict(lr="fast"), r"^lr must be a number, got 'fast'$"),
    (dict(lr=float("nan")), r"^lr must be > 0\.0, got nan$"),
    (dict(weight_decay=-1e-4), r"^weight_decay must be >= 0\.0, got -0\.0001$"),
    (dict(optimizer="adam"), r"^optimizer must be one of \('adamw', 'sgd'\), got 'adam'$"),
    (dict(scheduler="step"), r"^scheduler must be one of \('cosine', 'cosine_steps', 'onecycle', 'none'\)"),
    (dict(warmup_epochs=-1), r"^warmup_epochs must be a non-negative integer, got -1$"),
    (dict(loss="l1"), r"^loss must be one of \('mse', 'mae', 'huber'\), got 'l1'$"),
    (dict(batch_size=0), r"^batch_size must be a positive integer, got 0$"),
    (dict(batch_size=True), r"^batch_size must be a positive integer, got True$"),
    (dict(max_epochs=1.5), r"^max_epochs must be a positive integer or None, got 1\.5$"),
    (dict(patience=-1), r"^patience must be a non-negative integer or None, got -1$"),
    (dict(gradient_clip_val=-1), r"^gradient_clip_val must be >= 0\.0, got -1\.0$"),
    (dict(limit_train_batches=0), r"^limit_train_batches=0 would train on no batch"),
    (dict(limit_train_batches=1.5), r"^limit_train_batches must be None, a positive integer or a fraction"),
])
def test_training_config_refuses_bad_values(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**settings)


def test_unknown_settings_are_one_error_type_at_every_depth():
    cases = [
        (lambda: TrainingConfig(lrr=1), "training", "lrr"),
        (lambda: TrainingConfig.from_dict({"lrr": 1}), "training", "lrr"),
        (lambda: TrainingConfig().replace(pateince=2), "training", "pateince"),
        (lambda: TitansConfig(d_modle=8), "model", "d_modle"),
        (lambda: TitansConfig(memory={"dept": 2}), "memory", "dept"),
        (lambda: TitansConfig().replace(memory={"dept": 2}), "memory", "dept"),
        (lambda: MemoryConfig(dept=2), "memory", "dept"),
        (lambda: TitansLightningModule(memory={"dept": 2}), "memory", "dept"),
        (lambda: TitansLightningModule(lrr=1), "model", "lrr"),
    ]
    for build, what, key in cases:
        with pytest.raises(SettingsError, match=rf"^unknown {what} setting\(s\) \['{key}'\]; allowed: \["):
            build()


def test_front_end_defaults_are_training_configs():
    """lr and weight_decay are declared once: every front-end's default is TrainingConfig's."""
    from titans_ts import TitansForecaster
    from titans_ts.forecaster.core import TRAINING_PARAMS
    from titans_ts.gluonts import TitansEstimator, TitansGluonTSModule

    t = TrainingConfig()
    for init in (TitansForecaster.__init__, TitansEstimator.__init__, TitansLightningModule.__init__,
                 TitansGluonTSModule.__init__):
        params = inspect.signature(init).parameters
        assert (params["lr"].default, params["weight_decay"].default) == (t.lr, t.weight_decay), init
    assert (TRAINING_PARAMS["lr"], TRAINING_PARAMS["weight_decay"]) == (t.lr, t.weight_decay)
    assert TitansLightningModule(32, 8, d_model=16).training_config == TrainingConfig()
    f = TitansForecaster(h=6, lr=3e-4, weight_decay=0.0, batch_size=8, loss="huber")
    assert f._training() == TrainingConfig(lr=3e-4, weight_decay=0.0, batch_size=8, loss="huber")


# ---------------------------------------------------------------------------- the optimiser builder
def _config(**kw):
    return TitansConfig(seq_len=24, horizon=6, n_channels=1, patch_len=8, stride=4, d_model=16, cycle_len=4,
                        head="student_t", memory=dict(heads=2, depth=2, chunk_size=4), **kw)


def _named_groups(module, opt):
    names = {id(p): n for n, p in module.named_parameters()}
    return [([names[id(p)] for p in g["params"]], g["weight_decay"], g["lr"]) for g in opt.param_groups]


def test_every_front_end_builds_the_same_param_groups():
    from titans_ts import TitansForecaster
    from titans_ts.gluonts import TitansGluonTSModule

    cfg = _config()
    torch.manual_seed(0)
    lightning = TitansLightningModule.from_configs(cfg, TrainingConfig(weight_decay=0.05))
    gluonts = TitansGluonTSModule(model_kwargs=cfg.to_dict(), weight_decay=0.05)
    forecaster = TitansForecaster(h=6, context_length=24, patch_len=8, stride=4, d_model=16, cycle_len=4,
                                  head="student_t", memory=dict(heads=2, depth=2, chunk_size=4),
                                  weight_decay=0.05, loss="mse")._module(1)
    groups = [_named_groups(m, m.configure_optimizers()) for m in (lightning, gluonts, forecaster)]
    assert groups[0] == groups[1] == groups[2]
    (decay, wd, lr), (no_decay, wd0, _) = groups[0]
    assert (wd, wd0, lr) == (0.05, 0.0, 1e-3)
    # matrices are decayed; vectors, the positions, the cycle and the memory's initial weights not
    assert "net.embed.weight" in decay and "net.proj.weight" in decay
    assert {"net.pos", "net.cycle", "net.embed.bias"} <= set(no_decay)
    assert any(n.startswith("net.blocks.0.memory.") and n in no_decay for n in
               (name for name, p in lightning.named_parameters() if p.dim() >= 2))
    params = dict(lightning.named_parameters())
    assert all(params[n].dim() >= 2 for n in decay) and sorted(decay + no_decay) == sorted(params)
    assert type(lightning.configure_optimizers()) is torch.optim.AdamW
    sgd = make_optimizer(lightning, TrainingConfig(optimizer="sgd", lr=0.1))
    assert type(sgd) is torch.optim.SGD and sgd.defaults["momentum"] == 0.9
    assert [len(g["params"]) for g in param_groups(lightning, 0.05)] == [len(decay), len(no_decay)]


def test_schedules():
    module = TitansLightningModule.from_configs(_config())

    def factors(out, n):
        sched = out["lr_scheduler"]["scheduler"]
        return out["lr_scheduler"]["interval"], [sched.lr_lambdas[0](i) for i in range(n)]

    # not attached to a trainer, or "none": the optimiser alone
    assert isinstance(configure_optimizers(module, TrainingConfig()), torch.optim.AdamW)
    trainer = SimpleNamespace(max_epochs=4, estimated_stepping_batches=10)
    assert isinstance(configure_optimizers(module, TrainingConfig(scheduler="none"), trainer), torch.optim.AdamW)
    interval, f = factors(configure_optimizers(module, TrainingConfig(warmup_epochs=1), trainer), 4)
    assert interval == "epoch" and np.allclose(f, [0.5, 1.0, 0.75, 0.25])
    # the GluonTS estimator's: per step, down to lr / 20 over the run
    for out in (configure_optimizers(module, TrainingConfig(scheduler="cosine_steps"), None, total_steps=10),
                configure_optimizers(module, TrainingConfig(scheduler="cosine_steps"), trainer)):
        interval, f = factors(out, 11)
        assert interval == "step" and np.allclose([f[0], f[5], f[10]], [1.0, 0.525, 0.05])
    out = configure_optimizers(module, TrainingConfig(scheduler="onecycle", lr=0.01), trainer)
    assert out["lr_scheduler"]["interval"] == "step"
    assert out["lr_scheduler"]["scheduler"].total_steps == 10


# ---------------------------------------------------------------------------- fit_module
def _loaders(seed=0):
    t = np.arange(300)
    vals = [np.stack([np.sin(t / 4.0), np.cos(t / 7.0)], 1).astype(np.float32)]
    train = SeriesWindows(vals, 32, 8, [(0, e) for e in range(32, 220)], first_index=[0])
    val = SeriesWindows(vals, 32, 8, [(0, e) for e in range(220, 292)], first_index=[0])
    return window_loader(train, 16, True, seed=seed), window_loader(val, 64, False)


def _module():
    pl.seed_everything(0, verbose=False)
    return TitansLightningModule(32, 8, n_channels=2, patch_len=8, stride=4, d_model=16,
                                 memory=dict(heads=2, depth=1, chunk_size=4), lr=5e-3)


class _Snapshots(pl.Callback):
    """The weights and validation loss at every validation (where the checkpoint is taken)."""

    def __init__(self):
        self.seen = []

    def on_validation_end(self, trainer, module):
        self.seen.append((float(trainer.callback_metrics["val_loss"]),
                          {k: v.detach().clone() for k, v in module.state_dict().items()}))


def test_fit_module_restores_the_best_weights_and_counts_epochs():
    snaps = _Snapshots()
    train, val = _loaders()
    training = TrainingConfig(max_epochs=3, patience=5, limit_train_batches=3, gradient_clip_val=0.5)
    fitted = fit_module(_module(), train, val, training, callbacks=[snaps], accelerator="cpu", devices=1)
    assert fitted.epochs == fitted.trainer.current_epoch == 3 and len(snaps.seen) == 3
    best_loss, best = min(snaps.seen, key=lambda s: s[0])
    assert fitted.best_score == pytest.approx(best_loss)
    state = fitted.module.state_dict()
    assert all(torch.equal(state[k], best[k]) for k in state)
    trainer = fitted.trainer
    assert trainer.gradient_clip_val == 0.5 and trainer.limit_train_batches == 3
    stop = [cb for cb in trainer.callbacks if isinstance(cb, pl.callbacks.EarlyStopping)]
    assert len(stop) == 1 and stop[0].patience == 5 and stop[0].monitor == "val_loss"
    # the temporary checkpoint folder is gone
    assert not os.path.exists(trainer.checkpoint_callback.dirpath)


def test_fit_module_restores_the_best_weights_beside_another_kind_of_checkpoint(tmp_path):
    """A caller's checkpoint callback that is not a ModelCheckpoint (Lightning's
    OnExceptionCheckpoint) comes first in the trainer's checkpoint callbacks: the best weights
    are still read from fit_module's own ModelCheckpoint."""
    snaps = _Snapshots()
    train, val = _loaders()
    on_error = pl.callbacks.OnExceptionCheckpoint(str(tmp_path))
    fitted = fit_module(_module(), train, val, TrainingConfig(max_epochs=3, patience=5, limit_train_batches=3),
                        callbacks=[snaps, on_error], accelerator="cpu", devices=1)
    assert fitted.trainer.checkpoint_callback is on_error
    best_loss, best = min(snaps.seen, key=lambda s: s[0])
    assert fitted.best_score == pytest.approx(best_loss)
    state = fitted.module.state_dict()
    assert all(torch.equal(state[k], best[k]) for k in state)


def test_fit_module_without_validation_keeps_the_last_weights(tmp_path):
    snaps = _Snapshots()
    train, _ = _loaders()
    fitted = fit_module(_module(), train, None, TrainingConfig(max_epochs=2, patience=1, limit_train_batches=2),
                        root_dir=tmp_path, callbacks=[snaps], accelerator="cpu", devices=1)
    assert fitted.best_score is None and fitted.epochs == 2 and snaps.seen == []
    assert fitted.trainer.checkpoint_callback is None and fitted.trainer.limit_val_batches == 0
    assert not any(isinstance(cb, pl.callbacks.EarlyStopping) for cb in fitted.trainer.callbacks)
    with pytest.raises(ValueError, match="give either a trainer, or the training settings"):
        fit_module(_module(), train, None, TrainingConfig(), trainer=fitted.trainer)


def test_every_front_end_trains_through_fit_module_and_the_one_builder(monkeypatch, data_root, tmp_path):
    """The forecaster, the GluonTS estimator and the recipe runner train through fit_module, and
    their modules build their optimisers with titans_ts.model.optim (the online backbone is
    documented to call fit_module the same way)."""
    from gluonts.dataset.common import ListDataset

    import titans_ts.gluonts as gluonts_front
    import titans_ts.model.optim as optim
    import titans_ts.training as training_mod
    from titans_ts import TitansForecaster
    from titans_ts.recipes import load_recipe, train_and_test

    calls, optimisers = [], []
    real_fit, real_make = training_mod.fit_module, optim.make_optimizer

    def spy_fit(module, *args, **kwargs):
        calls.append(type(module).__name__)
        return real_fit(module, *args, **kwargs)

    def spy_make(module, training):
        optimisers.append((type(module).__name__, training))
        return real_make(module, training)

    monkeypatch.setattr(training_mod, "fit_module", spy_fit)
    monkeypatch.setattr(gluonts_front, "fit_module", spy_fit)
    monkeypatch.setattr(optim, "make_optimizer", spy_make)

    t = np.arange(60)
    df = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2024-01-01", periods=60, freq="h"),
                       "y": np.sin(t / 3.0)})
    TitansForecaster(h=4, context_length=16, patch_len=8, stride=4, d_model=8, max_epochs=1,
                     limit_train_batches=1, memory=dict(heads=2, depth=1, chunk_size=4), lr=2e-3).fit(df)
    ds = ListDataset([{"start": pd.Period("2000-01", freq="M"), "target": np.sin(np.arange(40) / 2.0)}],
                     freq="ME")
    gluonts_front.TitansEstimator(freq="ME", prediction_length=4, context_length=8, patch_len=4, stride=2,
                                  d_model=8, memory={"heads": 2, "chunk_size": 4}, batch_size=4,
                                  num_batches_per_epoch=1, weight_decay=0.0,
                                  trainer_kwargs={"max_epochs": 1}).train(ds)
    # (2 batches: the Lightning CLI reads an integer 1 as the fraction 1.0, every batch)
    cfg = load_recipe(os.path.join(RECIPES, "quick", "ETTh1_96_96.yaml"),
                      ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
                       "trainer.limit_test_batches=2", "trainer.accelerator=cpu", "model.ensemble=1",
                       "model.d_model=8", f"data.root={data_root}"])
    train_and_test(cfg, tmp_path)
    assert calls == ["TitansLightningModule", "TitansGluonTSModule", "TitansLightningModule"]
    assert [name for name, _ in optimisers] == calls
    lrs = [(t.lr, t.weight_decay, t.scheduler) for _, t in optimisers]
    assert lrs == [(2e-3, 1e-4, "cosine"), (1e-3, 0.0, "cosine_steps"), (0.002, 1e-4, "cosine")]
