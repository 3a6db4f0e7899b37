"""Lightning glue: a thin ``LightningModule`` (loss, logging, optimiser) around :class:`TitansNet`.

Logged: ``train_loss`` (per step and epoch), ``val_loss`` (the training loss on the validation
split, what early stopping watches), ``val_mse`` / ``val_mae`` and ``test_mse`` / ``test_mae``
computed exactly over every window (sums of errors and counts, not a mean of batch means, so a
short last batch weighs what it should).
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from .network import TitansNet

__all__ = ["TitansLightningModule", "point_loss", "pinball_loss", "student_t_nll"]

POINT_LOSSES = ("mse", "mae", "huber")


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    m = m.expand_as(x)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def point_loss(pred, target, mask=None, kind: str = "mse", delta: float = 1.0) -> torch.Tensor:
    """MSE / MAE / Huber over observed points."""
    if kind == "mse":
        err = (pred - target) ** 2
    elif kind == "mae":
        err = (pred - target).abs()
    elif kind == "huber":
        err = F.huber_loss(pred, target, reduction="none", delta=delta)
    else:
        raise ValueError(f"loss must be one of {POINT_LOSSES}, got {kind!r}")
    return _masked_mean(err, mask)


def pinball_loss(q_pred, target, quantiles: Sequence[float], mask=None) -> torch.Tensor:
    """Mean pinball loss over quantile levels and observed points; q_pred [..., Q]."""
    qs = torch.as_tensor(quantiles, dtype=q_pred.dtype, device=q_pred.device)
    diff = target.unsqueeze(-1) - q_pred
    loss = torch.maximum(qs * diff, (qs - 1) * diff)
    return _masked_mean(loss, mask)


def student_t_nll(dist: torch.distributions.StudentT, target, mask=None) -> torch.Tensor:
    return _masked_mean(-dist.log_prob(target), mask)


class TitansLightningModule(pl.LightningModule):
    """Training wrapper. Network arguments are those of :class:`TitansNet`.

    Args:
        loss: for the point head, "mse", "mae" or "huber" (the quantile head trains on the pinball
            loss, the Student-t head on its negative log-likelihood).
        optimizer: "adamw" (default) or "sgd" (momentum 0.9).
        lr, weight_decay: learning rate and decoupled weight decay.
        scheduler: "cosine" (to 0 over ``max_epochs``), "onecycle", or "none".
        warmup_epochs: linear warm-up epochs before the cosine schedule.
    """

    def __init__(self, seq_len: int = 96, horizon: int = 96, n_channels: int | None = None,
                 tokenizer: str = "patch", patch_len: int = 16, stride: int = 8,
                 d_model: int = 64, n_layers: int = 2, variant: str = "lmm",
                 memory: dict | None = None, attn_heads: int = 4, window: int | None = None,
                 n_persistent: int = 4, segment_len: int = 16, mlp_expansion: float = 2.0,
                 dropout: float = 0.1, head: str = "point",
                 quantiles: Sequence[float] = (0.1, 0.5, 0.9), revin: bool = True,
                 revin_affine: bool = False, loss: str = "mse", lr: float = 1e-3,
                 weight_decay: float = 1e-4, scheduler: str = "cosine", warmup_epochs: int = 0,
                 optimizer: str = "adamw", cycle_len: int = 0, revin_center: str = "mean") -> None:
        super().__init__()
        if loss not in POINT_LOSSES:
            raise ValueError(f"loss must be one of {POINT_LOSSES}, got {loss!r}")
        if optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
        if scheduler not in ("cosine", "onecycle", "none"):
            raise ValueError(f"scheduler must be 'cosine', 'onecycle' or 'none', got {scheduler!r}")
        self.save_hyperparameters()
        self.net = TitansNet(seq_len, horizon, n_channels, tokenizer, patch_len, stride, d_model,
                             n_layers, variant, memory, attn_heads, window, n_persistent,
                             segment_len, mlp_expansion, dropout, head, quantiles, revin,
                             revin_affine, cycle_len, revin_center)
        self._sums: dict[str, torch.Tensor] = {}

    def forward(self, past, past_mask=None, time_index=None):
        return self.net(past, past_mask, time_index=time_index)

    # ------------------------------------------------------------------ losses
    def _loss(self, out, batch):
        target, mask = batch["future"], batch.get("future_mask")
        kind = self.hparams.head
        if kind == "point":
            return point_loss(out, target, mask, self.hparams.loss)
        if kind == "quantile":
            return pinball_loss(out, target, self.hparams.quantiles, mask)
        return student_t_nll(out, target, mask)

    def _step(self, batch):
        out = self.net(batch["past"], batch.get("past_mask"), time_index=batch.get("time_index"))
        return out, self._loss(out, batch)

    def training_step(self, batch, batch_idx):
        _, loss = self._step(batch)
        if not torch.isfinite(loss):
            # stop here: one optimiser step on a non-finite loss makes every parameter NaN
            raise FloatingPointError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}. "
                "The likeliest cause is the neural memory's inner updates diverging over a long "
                "context (many memory chunks): lower model.memory.max_lr (the cap on the inner "
                "learning rate, e.g. 0.02 instead of 0.1), lower memory.chunk_size, or set "
                "memory.surprise_clamp; a lower outer lr can also help.")
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=batch["past"].shape[0])
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
        out = self.net(batch["past"], batch.get("past_mask"), time_index=batch.get("time_index"))
        return self.net.point_forecast(out) if self.hparams.head == "point" else out

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # random streams (dropout), so a resumed run continues exactly as an uninterrupted one;
        # plain uint8 tensors: the checkpoint still loads with weights_only=True
        checkpoint["titans_rng"] = {"torch": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rng = checkpoint.get("titans_rng")
        if rng is not None:
            torch.set_rng_state(rng["torch"])

    # ------------------------------------------------------------------ optimiser
    def configure_optimizers(self) -> Any:
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            # vectors, the memory's learned initial weights and the position / cycle tables
            table = "init_weights" in name or name.endswith(("pos", "cycle"))
            (no_decay if p.dim() < 2 or table else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.hparams.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        if self.hparams.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=self.hparams.lr, momentum=0.9)
        else:
            opt = torch.optim.AdamW(groups, lr=self.hparams.lr)
        sched = self.hparams.scheduler
        if sched == "none" or self.trainer is None:
            return opt
        epochs = max(1, self.trainer.max_epochs or 1)
        if sched == "onecycle":
            steps = self.trainer.estimated_stepping_batches
            s = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.hparams.lr, total_steps=int(steps),
                                                    pct_start=0.3)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": s, "interval": "step"}}
        warm = self.hparams.warmup_epochs

        def factor(epoch: int) -> float:
            if epoch < warm:
                return (epoch + 1) / (warm + 1)
            span = max(1, epochs - warm)
            import math

            return 0.5 * (1 + math.cos(math.pi * min(epoch - warm, span) / span))

        s = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": s, "interval": "epoch"}}
