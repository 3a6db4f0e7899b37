"""Lightning glue: checkpoints (safe load, identical predictions, exact resume), CLI, DDP, ensembles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import yaml

from titans_ts.datasets import WindowDataset
from titans_ts.datasets.windows import collate_windows, window_loader
from titans_ts.model.config import TitansConfig
from titans_ts.model.lightning_module import TitansLightningModule
from titans_ts.model.network import EnsembleNet, TitansNet
from titans_ts.training import make_trainer

MEM = dict(heads=2, depth=2, expansion=2.0, chunk_size=4)
SMALL = dict(d_model=16, n_layers=1, memory=MEM, patch_len=8, stride=4)


class ToyData(pl.LightningDataModule):
    """Sine waves with noise: 3 channels, windows of 32 -> 8."""

    def __init__(self, batch_size=16, shuffle=True, n=400):
        super().__init__()
        rng = np.random.default_rng(0)
        t = np.arange(n)
        vals = np.stack([np.sin(t / (4 + c)) + 0.1 * rng.standard_normal(n) for c in range(3)], 1)
        self.train = WindowDataset(vals[:300], 32, 8)
        self.val = WindowDataset(vals[260:], 32, 8)
        self.batch_size, self.shuffle = batch_size, shuffle

    def train_dataloader(self):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # interleaved shards, no shuffle: step s of rank r holds windows 16s + r, 16s + r + 2, ...
            sampler = torch.utils.data.distributed.DistributedSampler(self.train, shuffle=False)
            return torch.utils.data.DataLoader(self.train, self.batch_size, sampler=sampler,
                                               collate_fn=collate_windows)
        return window_loader(self.train, self.batch_size, self.shuffle)

    def val_dataloader(self):
        return window_loader(self.val, 64, False)

    def test_dataloader(self):
        return self.val_dataloader()

    def predict_dataloader(self):
        return self.val_dataloader()


class StopAfter(pl.Callback):
    """Stop after ``n`` epochs of a run configured for more (an interrupted run)."""

    def __init__(self, n):
        self.n = n

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.n:
            trainer.should_stop = True


def _fit(tmp_path, epochs, ckpt_path=None, dropout=0.1, seed=0, stop_after=None):
    pl.seed_everything(seed, verbose=False)
    model = TitansLightningModule(32, 8, dropout=dropout, **SMALL)
    cbs = [StopAfter(stop_after)] if stop_after else []
    trainer = make_trainer(max_epochs=epochs, patience=None, root_dir=tmp_path, callbacks=cbs)
    trainer.fit(model, ToyData(), ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    return model, trainer


def test_checkpoint_roundtrip_gives_identical_predictions(tmp_path):
    model, trainer = _fit(tmp_path, 1)
    ckpt = Path(trainer.checkpoint_callback.last_model_path)
    raw = torch.load(ckpt, weights_only=True)  # a plain, safe checkpoint
    assert "state_dict" in raw and raw["hyper_parameters"]["d_model"] == 16
    loaded = TitansLightningModule.load_from_checkpoint(ckpt, weights_only=True)
    past = torch.randn(4, 32, 3)
    model.eval()
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(past), model(past), rtol=0, atol=0)


@pytest.mark.slow
def test_resume_is_exact(tmp_path):
    straight, _ = _fit(tmp_path / "a", 3)
    _, first = _fit(tmp_path / "b", 3, stop_after=2)  # interrupted after 2 of 3 epochs
    resumed, _ = _fit(tmp_path / "c", 3, ckpt_path=first.checkpoint_callback.last_model_path)
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=0, msg=f"{name} differs after resume")


def test_seed_reproducibility(tmp_path):
    a, _ = _fit(tmp_path / "a", 1, seed=3)
    b, _ = _fit(tmp_path / "b", 1, seed=3)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    # the weights did train (an untrained pair would be trivially equal) ...
    pl.seed_everything(3, verbose=False)
    init = TitansLightningModule(32, 8, dropout=0.1, **SMALL)
    names = [n for n, _ in a.named_parameters()]
    assert names == [n for n, _ in init.named_parameters()]
    moved = max((p.detach() - q.detach()).abs().max().item()
                for p, q in zip(a.parameters(), init.parameters(), strict=True))
    assert moved > 1e-4, f"one epoch moved no weight by more than {moved:.2e}"
    # ... and the seed matters: another seed gives other weights
    c, _ = _fit(tmp_path / "c", 1, seed=4)
    differ = max((p.detach() - q.detach()).abs().max().item()
                 for p, q in zip(a.parameters(), c.parameters(), strict=True))
    assert differ > 1e-4, f"seeds 3 and 4 gave the same weights (max |diff| {differ:.2e})"


def test_non_finite_training_loss_stops_with_advice(tmp_path):
    pl.seed_everything(0, verbose=False)
    model = TitansLightningModule(32, 8, **SMALL)
    before = [p.detach().clone() for p in model.parameters()]
    # a diverged forward pass (what an unstable inner memory update produces)
    model.net.register_forward_hook(lambda mod, inp, out: out * float("nan"))
    trainer = make_trainer(max_epochs=1, patience=None, root_dir=tmp_path)
    with pytest.raises(FloatingPointError, match=r"loss is nan at epoch 0, batch 0.*max_lr"):
        trainer.fit(model, ToyData())
    for p, q in zip(model.parameters(), before, strict=True):  # no optimiser step was taken on it
        torch.testing.assert_close(p.detach(), q, rtol=0, atol=0)


def test_non_finite_loss_from_huge_or_non_finite_data_blames_the_data():
    """A loss that overflows because of the data's magnitude (or non-finite observed values)
    says so, instead of sending the user to the memory's max_lr."""
    pl.seed_everything(0, verbose=False)
    model = TitansLightningModule(32, 8, **SMALL)
    g = torch.Generator().manual_seed(0)
    batch = {"past": torch.randn(4, 32, 2, generator=g) * 1e20, "past_mask": torch.ones(4, 32, 2, dtype=torch.bool),
             "future": torch.randn(4, 8, 2, generator=g) * 1e20, "future_mask": torch.ones(4, 8, 2, dtype=torch.bool)}
    with pytest.raises(FloatingPointError,
                       match=r"data's magnitude is the cause \(observed values up to .*e\+20") as info:
        model.training_step(batch, 0)
    assert "max_lr" not in str(info.value)
    batch["past"] = batch["past"] / 1e20
    batch["future"] = batch["future"] / 1e20
    batch["future"][0, 0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match=r"observed future values are not finite"):
        model.training_step(batch, 0)


def test_quiet_by_default(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fit(tmp_path / "run", 1)
    out, err = capfd.readouterr()
    assert out.strip() == "", f"training printed: {out[:300]}"
    assert os.listdir(tmp_path) == ["run"], "something was written into the working directory"


@pytest.mark.slow
@pytest.mark.data
def test_cli_fit_on_a_tiny_recipe(tmp_path, data_root):
    recipe = yaml.safe_load((Path(__file__).parents[2] / "recipes/ltsf/ETTh1_96_96.yaml").read_text())
    # with a learned cycle: the data module's time_index must reach the network through the CLI
    recipe["model"].update(d_model=16, memory=MEM, cycle_len=24)
    recipe["trainer"].update(max_epochs=1, limit_train_batches=3, limit_val_batches=2,
                             default_root_dir=str(tmp_path / "run"))
    recipe["data"]["root"] = str(data_root)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "titans_ts.cli", "fit", "--config", str(cfg)],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    ckpts = list((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert ckpts, "no checkpoint written"
    state = torch.load(ckpts[0], map_location="cpu", weights_only=True)["state_dict"]
    assert state["net.cycle"].shape == (24, 7) and state["net.cycle"].abs().sum() > 0
    res = subprocess.run([sys.executable, "-m", "titans_ts.cli", "test", "--config", str(cfg),
                          "--ckpt_path", str(ckpts[0]), "--trainer.limit_test_batches=2"],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "test_mse" in res.stdout
    assert sorted(os.listdir(tmp_path)) == ["run", "tiny.yaml"]


DDP_SCRIPT = r'''
import sys, torch, lightning.pytorch as pl
sys.path.insert(0, sys.argv[1])
from test_lightning import ToyData, SMALL
from titans_ts.model.config import TitansConfig
from titans_ts.model.lightning_module import TitansLightningModule
from titans_ts.model.network import EnsembleNet, TitansNet
from titans_ts.training import make_trainer


def main():
    torch.set_num_threads(1)
    devices, batch, out = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    pl.seed_everything(0, verbose=False)
    # SGD: updates linear in the gradients (Adam's first steps are sign-like, amplifying float
    # noise in near-zero gradient entries into lr-sized differences)
    model = TitansLightningModule(32, 8, dropout=0.0, scheduler="none", optimizer="sgd", lr=0.05,
                                  **SMALL)
    kw = dict(strategy="ddp_spawn", devices=devices) if devices > 1 else dict(devices=1)
    trainer = make_trainer(max_epochs=1, patience=None, checkpoint=False, accelerator="cpu",
                           limit_train_batches=6, limit_val_batches=0,
                           use_distributed_sampler=False, **kw)
    trainer.fit(model, ToyData(batch_size=batch, shuffle=False))
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, out)


if __name__ == "__main__":
    main()
'''


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process(tmp_path):
    """2 CPU processes (gloo) x batch 8 == 1 process x batch 16: same updates, same weights."""
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    here = str(Path(__file__).parent)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    outs = {}
    for devices, batch in ((1, 16), (2, 8)):
        out = tmp_path / f"w{devices}.pt"
        res = subprocess.run([sys.executable, str(script), here, str(devices), str(batch), str(out)],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        outs[devices] = torch.load(out, weights_only=True)
    pl.seed_everything(0, verbose=False)
    init = TitansLightningModule(32, 8, dropout=0.0, **SMALL).state_dict()
    moved = 0.0
    for k, v in outs[1].items():
        torch.testing.assert_close(outs[2][k], v, rtol=1e-4, atol=1e-5, msg=k)
        moved = max(moved, (v.float() - init[k].float()).abs().max().item())
    assert moved > 1e-3, "training did not move the weights: the comparison would be empty"


# ---------------------------------------------------------------- ensembles (model.ensemble = K)
def _module(k, **kw):
    torch.manual_seed(0)
    return TitansLightningModule(32, 8, ensemble=k, n_channels=3, **{**SMALL, **kw})


@pytest.mark.parametrize("head", ["point", "quantile"])
def test_forecast_is_the_members_mean(head):
    m = _module(3, head=head).eval()
    assert isinstance(m.net, EnsembleNet) and len(m.net.members) == 3
    past = torch.randn(5, 32, 3)
    with torch.no_grad():
        outs = [member(past) for member in m.net.members]
        got = m(past)
    torch.testing.assert_close(got, torch.stack(outs).mean(0), rtol=0, atol=1e-7)
    # members start apart (their own initialisation), so the mean is not one member's forecast
    assert not torch.allclose(outs[0], outs[1])
    if head == "quantile":
        assert bool((got.diff(dim=-1) >= 0).all()), "the mean of monotone quantiles must stay monotone"
    assert m.net.point_forecast(got).shape == (5, 8, 3)


def test_each_member_learns_from_its_own_batch():
    """The ensemble's training gradient of each member is that member's own loss gradient on its
    own batch: what K networks trained alone, each on its own order of the windows, would get.
    With one batch for all, each member's loss on it."""
    k = 2
    m = _module(k, dropout=0.0)
    batches = [{"past": torch.randn(6, 32, 3), "future": torch.randn(6, 8, 3)} for _ in range(k)]
    for given, theirs in ((batches, batches), (batches[0], [batches[0]] * k)):
        m.zero_grad()
        m._train_loss(given).backward()
        for member, b in zip(m.net.members, theirs, strict=True):
            alone = TitansNet(m.config)
            alone.load_state_dict(member.state_dict())
            alone.head.loss(alone(b["past"]), b["future"], None, "mse").backward()
            for (name, p), q in zip(member.named_parameters(), alone.parameters(), strict=True):
                if q.grad is None:
                    assert p.grad is None or not p.grad.any(), name
                    continue
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)
    with pytest.raises(ValueError, match="one per ensemble member"):
        m._train_loss(batches * 2)


def test_members_are_clipped_one_by_one():
    m = _module(2, dropout=0.0)
    b = {"past": torch.randn(6, 32, 3), "future": 10 * torch.randn(6, 8, 3)}
    m._train_loss(b).backward()
    norms = [torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in mb.parameters() if p.grad is not None]))
             for mb in m.net.members]
    assert min(norms) > 0.5  # both above the clip below
    m.configure_gradient_clipping(None, 0.5, "norm")
    for mb in m.net.members:
        n = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in mb.parameters() if p.grad is not None]))
        assert float(n) == pytest.approx(0.5, rel=1e-4)


def test_streams_give_each_member_its_own_window_order(data_root):
    from titans_ts.data_module import LTSFDataModule

    dm = LTSFDataModule("ETTh1", 96, 96, root=str(data_root), batch_size=64, streams=2)
    dm.setup()
    a, b = dm.train_dataloader()
    first_a, first_b = next(iter(a)), next(iter(b))
    assert not torch.equal(first_a["time_index"], first_b["time_index"])
    single = LTSFDataModule("ETTh1", 96, 96, root=str(data_root), batch_size=64)
    single.setup()
    assert torch.equal(next(iter(single.train_dataloader()))["time_index"], first_a["time_index"])
    with pytest.raises(ValueError, match="streams must be a positive integer"):
        LTSFDataModule("ETTh1", streams=0)


def test_bad_settings_are_refused():
    for bad in (0, -1, True, 2.0, "2"):
        with pytest.raises(ValueError, match="ensemble must be a positive integer"):
            _module(bad)
    with pytest.raises(ValueError, match="point or quantile"):
        _module(2, head="student_t")
    with pytest.raises(ValueError, match="size >= 2"):
        EnsembleNet(TitansConfig(seq_len=32, horizon=8, n_channels=3, **SMALL), 1)
    m = _module(2)
    with pytest.raises(ValueError, match="carries no memory state"):
        m.net(torch.randn(2, 32, 3), return_states=True)


def test_ensemble_checkpoint_loads_safely_with_identical_forecasts(tmp_path):
    pl.seed_everything(0, verbose=False)
    model = TitansLightningModule(32, 8, ensemble=2, **SMALL)
    trainer = make_trainer(max_epochs=1, patience=None, root_dir=tmp_path)
    trainer.fit(model, ToyData())
    ckpt = Path(trainer.checkpoint_callback.last_model_path)
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["ensemble"] == 2
    loaded = TitansLightningModule.load_from_checkpoint(ckpt, weights_only=True)
    assert isinstance(loaded.net, EnsembleNet)
    past = torch.randn(4, 32, 3)
    model.eval()
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(past), model(past), rtol=0, atol=0)


class TwoStreams(ToyData):
    """ToyData with one training loader per ensemble member (what LTSFDataModule(streams=2) gives)."""

    def train_dataloader(self):
        return [window_loader(self.train, self.batch_size, True, seed=k) for k in range(2)]


def test_an_ensemble_trains_on_one_loader_per_member(tmp_path):
    pl.seed_everything(0, verbose=False)
    model = TitansLightningModule(32, 8, ensemble=2, **SMALL)
    before = [torch.cat([p.detach().flatten().clone() for p in m.parameters()]) for m in model.net.members]
    trainer = make_trainer(max_epochs=2, patience=None, root_dir=tmp_path, gradient_clip_val=1.0)
    trainer.fit(model, TwoStreams())
    after = [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in model.net.members]
    assert all(not torch.equal(a, b) for a, b in zip(after, before, strict=True)), "every member must learn"
    assert torch.isfinite(torch.stack([a.abs().max() for a in after])).all()
    assert trainer.callback_metrics["val_mse"] < 1.0  # sines with noise: it learnt something
