"""The one optimiser builder: every front-end's ``configure_optimizers`` is :func:`configure_optimizers`.

Parameter groups (:func:`param_groups`): weight decay on the tensors that want it
(:func:`titans_ts.model.memory.wants_weight_decay`: matrices, not vectors nor parameters marked
:func:`~titans_ts.model.memory.no_weight_decay`), none on the others. The optimiser (AdamW, or SGD
with momentum 0.9) and the learning-rate schedule come from a
:class:`titans_ts.model.config.TrainingConfig`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from .config import TrainingConfig
from .memory import wants_weight_decay

__all__ = ["param_groups", "make_optimizer", "configure_optimizers"]


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups of ``module``'s trainable parameters, in the module's order: those that want
    weight decay (``weight_decay``), then the others (0)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in module.parameters():
        if p.requires_grad:
            (decay if wants_weight_decay(p) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(module: nn.Module, training: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW (or SGD, momentum 0.9) over :func:`param_groups` at ``training.lr``."""
    groups = param_groups(module, training.weight_decay)
    if training.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=training.lr, momentum=0.9)
    return torch.optim.AdamW(groups, lr=training.lr)


def _cosine_epochs(epochs: int, warm: int):
    def factor(epoch: int) -> float:
        if epoch < warm:
            return (epoch + 1) / (warm + 1)
        span = max(1, epochs - warm)
        return 0.5 * (1 + math.cos(math.pi * min(epoch - warm, span) / span))

    return factor


def _cosine_steps(total: int):
    def factor(step: int) -> float:  # cosine from lr down to lr / 20 over the run
        t = min(step, total) / total
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * t))

    return factor


def configure_optimizers(module: nn.Module, training: TrainingConfig, trainer: Any = None,
                         total_steps: int | None = None) -> Any:
    """What a ``LightningModule.configure_optimizers`` returns: the optimiser of
    :func:`make_optimizer` and, unless ``training.scheduler`` is "none", its schedule.

    Args:
        trainer: the Lightning trainer the module is attached to (None: not attached; the
            optimiser is then returned without a schedule). "cosine" reads its ``max_epochs``,
            "onecycle" and "cosine_steps" its ``estimated_stepping_batches``.
        total_steps: the run's optimiser steps for "cosine_steps" (instead of the trainer's
            estimate; the GluonTS estimator knows them from its budget).
    """
    opt = make_optimizer(module, training)
    sched = training.scheduler
    if sched == "cosine_steps" and total_steps is not None:
        s = torch.optim.lr_scheduler.LambdaLR(opt, _cosine_steps(max(1, int(total_steps))))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": s, "interval": "step"}}
    if sched == "none" or trainer is None:
        return opt
    if sched == "cosine_steps":
        s = torch.optim.lr_scheduler.LambdaLR(opt, _cosine_steps(max(1, int(trainer.estimated_stepping_batches))))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": s, "interval": "step"}}
    if sched == "onecycle":
        steps = trainer.estimated_stepping_batches
        cycle = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=training.lr, total_steps=int(steps), pct_start=0.3)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": cycle, "interval": "step"}}
    epochs = max(1, trainer.max_epochs or 1)
    s = torch.optim.lr_scheduler.LambdaLR(opt, _cosine_epochs(epochs, training.warmup_epochs))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": s, "interval": "epoch"}}
