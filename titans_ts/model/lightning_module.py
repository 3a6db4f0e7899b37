"""Lightning glue: a thin ``LightningModule`` (loss, logging, optimiser) around :class:`TitansNet`.

Logged: ``train_loss`` (per step and epoch), ``val_loss`` (the training loss on the validation
split, what early stopping watches), ``val_mse`` / ``val_mae`` and ``test_mse`` / ``test_mae``
computed exactly over every window (sums of errors and counts, not a mean of batch means, so a
short last batch weighs what it should).
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch

from ..datasets.windows import exog_of
from ..integrity import load_checkpoint, stamp_checkpoint, verify_checkpoint
from .config import TitansConfig, TrainingConfig, check_keys
from .heads import POINT_LOSSES, pinball_loss, point_loss, student_t_nll
from .network import EnsembleNet, TitansNet
from .optim import configure_optimizers

__all__ = ["TitansLightningModule", "point_loss", "pinball_loss", "student_t_nll", "POINT_LOSSES",
           "TRAINING_SETTINGS"]

#: the Lightning module's own settings: those of :class:`titans_ts.model.config.TrainingConfig`
#: it reads, and ``ensemble``; every other ``model:`` key of a recipe is a network setting of
#: :class:`titans_ts.model.config.TitansConfig`
MODULE_TRAINING = ("loss", "lr", "weight_decay", "scheduler", "warmup_epochs", "optimizer")
TRAINING_SETTINGS = (*MODULE_TRAINING, "ensemble")


#: observed values beyond this magnitude overflow float32 in the loss or RevIN's variance
#: (squares of ~1e19 exceed float32's 3.4e38), whatever the memory does
DATA_MAGNITUDE_LIMIT = 1e15


def _nonfinite_loss_message(loss, batch, epoch: int, batch_idx: int) -> str:
    """Why the training loss is not finite: the data (non-finite or huge observed values) is
    checked first; only data of ordinary magnitude points at the memory diverging."""
    where = f"training loss is {loss.item()} at epoch {epoch}, batch {batch_idx}"
    biggest, bad = 0.0, []
    for key in ("past", "future"):
        x = batch.get(key)
        if x is None:
            continue
        m = batch.get(f"{key}_mask")
        x = x.detach().double() if m is None else torch.where(m.bool(), x.detach().double(), 0.0)
        if not torch.isfinite(x).all():
            bad.append(key)
        finite = torch.where(torch.isfinite(x), x, 0.0)
        biggest = max(biggest, float(finite.abs().max()) if finite.numel() else 0.0)
    if bad:
        return (f"{where}: the batch's observed {' and '.join(bad)} values are not finite (inf or NaN "
                f"where the mask says observed); fix the data (NaN with mask 0 marks a missing value).")
    if biggest > DATA_MAGNITUDE_LIMIT:
        return (f"{where}: the data's magnitude is the cause (observed values up to {biggest:.3g}; "
                f"squares of values this large overflow float32 in the loss and the normalisation). "
                f"Standardise the data or change its units (the benchmark data module scales "
                f"every channel; TitansForecaster scales every series itself).")
    return (f"{where}. The data's magnitude is ordinary (observed values up to {biggest:.3g}), so the "
            "likeliest cause is the neural memory's inner updates diverging over a long "
            "context (many memory chunks): lower model.memory.max_lr (the cap on the inner "
            "learning rate, e.g. 0.02 instead of 0.1), lower memory.chunk_size, or set "
            "memory.surprise_clamp; a lower outer lr can also help.")


class TitansLightningModule(pl.LightningModule):
    """Training wrapper around :class:`TitansNet`.

    Args:
        seq_len, horizon: context and forecast lengths (a recipe links them from its data).
        loss, lr, weight_decay, scheduler, warmup_epochs, optimizer: the training settings of
            :class:`titans_ts.model.config.TrainingConfig` (its defaults; held as
            ``training_config``; :meth:`from_configs` takes one); the trainer sets the budget.
        ensemble: how many networks to train side by side (1: one :class:`TitansNet`; more: an
            :class:`titans_ts.model.network.EnsembleNet` whose forecast is the members' mean, point and
            quantile heads). Each member trains on its own loss; given a list of ``ensemble``
            batches per step (``LTSFDataModule(streams=ensemble)``, which recipes link to this
            setting) member ``k`` trains on batch ``k``, its own order of the training windows,
            as an independently trained network would.
        **network: the network's settings, the fields of :class:`titans_ts.model.config.TitansConfig`
            (tokenizer, patch_len, d_model, n_layers, variant, memory, attention, RevIN, head,
            cycle_len, ...).
    """

    # what the online benchmark's backbone training records on it (titans_ts.online.backbone)
    fit_epochs_: int
    fit_seconds_: float
    val_curve_: list[float]

    def __init__(self, seq_len: int = TitansConfig.seq_len, horizon: int = TitansConfig.horizon,
                 loss: str = TrainingConfig.loss, lr: float = TrainingConfig.lr,
                 weight_decay: float = TrainingConfig.weight_decay,
                 scheduler: str = TrainingConfig.scheduler, warmup_epochs: int = TrainingConfig.warmup_epochs,
                 optimizer: str = TrainingConfig.optimizer, ensemble: int = 1, **network) -> None:
        super().__init__()
        self.training_config = TrainingConfig(loss=loss, lr=lr, weight_decay=weight_decay, scheduler=scheduler,
                                              warmup_epochs=warmup_epochs, optimizer=optimizer)
        check_keys(network, TitansConfig.fields(), "model")
        # (``**network`` goes straight to TitansConfig: the CLI's parser reads the network's
        # settings, ``--model.memory.depth`` and the others, off this call)
        config = TitansConfig(seq_len=seq_len, horizon=horizon, **network)
        self.config = config
        if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
            raise ValueError(f"ensemble must be a positive integer (networks trained side by side), got {ensemble!r}")
        training = {k: getattr(self.training_config, k) for k in MODULE_TRAINING}
        # plain values only: the checkpoint loads with weights_only=True and rebuilds this module
        self.save_hyperparameters({**config.to_dict(), **training, "ensemble": ensemble})
        self.net = TitansNet(config) if ensemble == 1 else EnsembleNet(config, ensemble)
        self._sums: dict[str, torch.Tensor] = {}

    @classmethod
    def from_configs(cls, config: TitansConfig, training: TrainingConfig | None = None,
                     ensemble: int = 1) -> "TitansLightningModule":
        """The module of a network configuration and a training configuration (its optimiser
        settings; the budget is the trainer's: :func:`titans_ts.training.fit_module`)."""
        training = TrainingConfig() if training is None else training
        return cls(**config.to_dict(), **{k: getattr(training, k) for k in MODULE_TRAINING},
                   ensemble=ensemble)

    def forward(self, past, past_mask=None, time_index=None, exog=None):
        return self.net(past, past_mask, time_index=time_index, exog=exog)

    # ------------------------------------------------------------------ losses
    def _loss(self, out, batch):
        return self.net.head.loss(out, batch["future"], batch.get("future_mask"), self.hparams.loss)

    def _step(self, batch):
        out = self.net(batch["past"], batch.get("past_mask"), time_index=batch.get("time_index"),
                       exog=exog_of(batch))
        return out, self._loss(out, batch)

    def _train_loss(self, batch):
        """The training loss. An ensemble's is the sum of its members' own losses (so each member's
        gradient is its own loss's, as if it trained alone), member ``k`` on ``batch[k]`` when the
        step brings one batch per member (its own window order), else every member on the one
        batch; a single network's is its loss."""
        k = len(self.net.members) if isinstance(self.net, EnsembleNet) else 1
        if isinstance(batch, (list, tuple)):
            if len(batch) != k:
                raise ValueError(f"a training step brought {len(batch)} batches; the module takes one batch, "
                                 f"or one per ensemble member ({k}): set data.streams to model.ensemble")
            if k == 1:
                batch = batch[0]
        if k == 1:
            return self._step(batch)[1]
        batches = list(batch) if isinstance(batch, (list, tuple)) else [batch] * k
        losses = []
        for member, b in zip(self.net.members, batches, strict=True):
            out = member(b["past"], b.get("past_mask"), time_index=b.get("time_index"), exog=exog_of(b))
            losses.append(self._loss(out, b))
        return torch.stack(losses).sum()

    def training_step(self, batch, batch_idx):
        loss = self._train_loss(batch)
        first = batch[0] if isinstance(batch, (list, tuple)) else batch
        if not torch.isfinite(loss):
            # stop here: one optimiser step on a non-finite loss makes every parameter NaN
            raise FloatingPointError(_nonfinite_loss_message(loss, first, self.current_epoch, batch_idx))
        # an ensemble logs its members' mean loss (the sum is what trains them)
        k = len(self.net.members) if isinstance(self.net, EnsembleNet) else 1
        self.log("train_loss", loss.detach() / k, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=first["past"].shape[0])
        return loss

    def _accumulate(self, prefix, out, batch):
        pred = self.net.point_forecast(out)
        target, mask = batch["future"], batch.get("future_mask")
        m = torch.ones_like(target) if mask is None else mask.to(target.dtype)
        err = (pred - target) * m
        for key, val in ((f"{prefix}_se", (err ** 2).sum()), (f"{prefix}_ae", err.abs().sum()),
                         (f"{prefix}_n", m.sum())):
            self._sums[key] = self._sums.get(key, 0.0) + val.detach().double()

    def _emit(self, prefix):
        keys = [f"{prefix}_se", f"{prefix}_ae", f"{prefix}_n"]
        if keys[2] not in self._sums:
            return
        vals = torch.stack([torch.as_tensor(self._sums.pop(k)) for k in keys]).to(self.device)
        if self.trainer is not None and self.trainer.world_size > 1:
            vals = self.trainer.strategy.reduce(vals, reduce_op="sum")
        n = vals[2].clamp_min(1.0)
        self.log(f"{prefix}_mse", (vals[0] / n).float(), sync_dist=False)
        self.log(f"{prefix}_mae", (vals[1] / n).float(), sync_dist=False)

    def validation_step(self, batch, batch_idx):
        out, loss = self._step(batch)
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, batch_size=batch["past"].shape[0],
                 sync_dist=True)
        self._accumulate("val", out, batch)

    def on_validation_epoch_end(self):
        self._emit("val")

    def test_step(self, batch, batch_idx):
        out, _ = self._step(batch)
        self._accumulate("test", out, batch)

    def on_test_epoch_end(self):
        self._emit("test")

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self.net(batch["past"], batch.get("past_mask"), time_index=batch.get("time_index"),
                        exog=exog_of(batch))

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # random streams (dropout), so a resumed run continues exactly as an uninterrupted one;
        # plain uint8 tensors: the checkpoint still loads with weights_only=True
        checkpoint["titans_rng"] = {"torch": torch.get_rng_state()}
        # the content digests, last (titans_ts.integrity): whoever writes the file (Lightning's
        # ModelCheckpoint, trainer.save_checkpoint), an edit made after it is caught at load
        stamp_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # the weights and the training state (the hyper-parameters may have been overridden by
        # load_from_checkpoint's keyword arguments; that one checks the file as written)
        where = getattr(self._trainer, "ckpt_path", None) if self._trainer is not None else None
        verify_checkpoint(checkpoint, where, parts=("state_dict", "rest"))
        rng = checkpoint.get("titans_rng")
        if rng is not None:
            torch.set_rng_state(rng["torch"])

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):
        """Lightning's ``load_from_checkpoint``, with the file's content digests checked first
        (an edited or corrupted checkpoint is refused naming the file)."""
        if isinstance(checkpoint_path, (str, os.PathLike)) and "://" not in str(checkpoint_path) \
                and os.path.isfile(checkpoint_path):
            load_checkpoint(checkpoint_path)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    # ------------------------------------------------------------------ optimiser
    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """The trainer's gradient clipping; an ensemble's members are clipped one by one (each as
        if it trained alone), not by the norm of all their gradients together."""
        if not isinstance(self.net, EnsembleNet) or not gradient_clip_val:
            return self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        strategy = type(self.trainer.strategy).__name__ if self._trainer is not None else ""
        if "FSDP" in strategy or "DeepSpeed" in strategy:
            # sharded parameters: a member's norm needs the strategy's own clipping, which clips
            # all parameters together
            raise ValueError(f"an ensemble clips its members one by one, which {strategy} (sharded "
                             "parameters) does not support; train it with DDP or one device, or set "
                             "gradient_clip_val to None")
        for member in self.net.members:
            params = [p for p in member.parameters() if p.grad is not None]
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    def configure_optimizers(self) -> Any:
        """:func:`titans_ts.model.optim.configure_optimizers` on ``training_config``."""
        return configure_optimizers(self, self.training_config, self._trainer)
