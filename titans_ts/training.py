"""The one training path, shared by the forecaster, the GluonTS estimator, the recipe runner
(``titans-ts fit`` recipes, the LTSF benchmark, the tuner) and the online backbone.

:func:`fit_module` trains a Lightning module on given training and validation loaders (or a
data module) with a :class:`titans_ts.model.config.TrainingConfig`: the trainer of
:func:`make_trainer` (early stopping and best-checkpointing on the validation loss, gradient
clipping, the budget), then the best checkpoint's weights restored into the module (loaded with
``weights_only=True``). The optimiser is the modules' own ``configure_optimizers``, which every
module takes from :func:`titans_ts.model.optim.configure_optimizers`.

Quiet by default: no progress bar, no model summary, no logger and Lightning's informational
messages silenced; everything Lightning writes goes under an explicitly chosen directory (a
temporary one when none is given), never into the working directory by accident.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import lightning.pytorch as pl

from .integrity import load_checkpoint, use_verified_io
from .model.config import TrainingConfig

__all__ = ["fit_module", "FitResult", "make_trainer", "quiet_lightning", "step_seconds", "training_device",
           "LIGHTNING_LOGGERS",
           "TrainingConfig"]

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning")

_QUIET_WARNINGS = (
    r".*does not have many workers.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*`validation_step` but have no `val_dataloader`.*",  # validation switched off on purpose
)


@contextlib.contextmanager
def quiet_lightning(verbose: bool = False) -> Iterator[None]:
    """Silence Lightning's info messages and known-harmless warnings (unless ``verbose``)."""
    if verbose:
        yield
        return
    saved = {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS}
    # the config-saving callback of Lightning's CLI calls jsonargparse APIs that jsonargparse marks
    # deprecated: Lightning's business, not the user's (JSONARGPARSE_DEPRECATION_WARNINGS=all
    # shows them)
    env_saved = os.environ.get("JSONARGPARSE_DEPRECATION_WARNINGS")
    if env_saved is None:
        os.environ["JSONARGPARSE_DEPRECATION_WARNINGS"] = "off"
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for pattern in _QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        try:
            yield
        finally:
            for name, level in saved.items():
                logging.getLogger(name).setLevel(level)
            if env_saved is None:
                os.environ.pop("JSONARGPARSE_DEPRECATION_WARNINGS", None)


def make_trainer(max_epochs: int | None = 10, patience: int | None = 3, root_dir: str | os.PathLike | None = None,
                 verbose: bool = False, log: bool = False, monitor: str = "val_loss",
                 checkpoint: bool = True, callbacks: list | None = None, **trainer_kwargs) -> pl.Trainer:
    """A CPU/GPU ``Trainer`` with early stopping on ``monitor`` and best-checkpointing.

    Args:
        root_dir: where checkpoints (and logs, with ``log=True``) go; a fresh temporary directory
            if None.
        verbose: progress bar and model summary.
        log: write CSV logs under ``root_dir/logs``.
        patience: early-stopping patience in epochs (None disables early stopping).
        max_epochs: None leaves the limit to Lightning (``max_steps``, or 1000 epochs).

    Checkpoints are written atomically and read back with their content digests checked
    (:class:`titans_ts.integrity.VerifiedCheckpointIO`, unless ``plugins`` brings another reader).
    """
    root = str(root_dir) if root_dir is not None else tempfile.mkdtemp(prefix="titans-ts-")
    cbs = list(callbacks or [])
    if patience is not None:
        cbs.append(pl.callbacks.EarlyStopping(monitor, patience=patience))
    if checkpoint:
        cbs.append(pl.callbacks.ModelCheckpoint(dirpath=os.path.join(root, "checkpoints"),
                                                monitor=monitor, save_top_k=1, save_last=True))
    logger = pl.loggers.CSVLogger(root, name="logs") if log else False
    kwargs: dict[str, Any] = dict(max_epochs=max_epochs, enable_progress_bar=verbose, enable_model_summary=verbose,
                  logger=logger, callbacks=cbs, default_root_dir=root,
                  enable_checkpointing=checkpoint, log_every_n_steps=10)
    kwargs.update(trainer_kwargs)
    with quiet_lightning(verbose):
        trainer = pl.Trainer(**kwargs)
    use_verified_io(trainer)  # atomic checkpoint writes, digests checked at load
    return trainer


def training_device(accelerator: Any) -> str:
    """The device a trainer of ``accelerator`` trains on, for :func:`step_seconds`: "cuda" for
    "gpu" / "cuda" (and "auto" where a GPU is there), else "cpu"."""
    import torch

    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto")
    return "cuda" if gpu and torch.cuda.is_available() else "cpu"


def step_seconds(module: pl.LightningModule, batch: Any, loss: Callable[[Any, Any], Any],
                 steps: int = 3, device: str = "cpu") -> float:
    """Seconds one optimiser step takes on ``device``: ``steps`` timed steps (after one untimed)
    of AdamW on ``loss(copy, batch)`` with a copy of ``module`` (the module itself, and the
    global random state, are left as they were). What the data-aware budget sizes its steps
    with (:func:`titans_ts.defaults.time_steps`); the median of the timed steps."""
    import copy
    import time

    import torch

    probe = copy.deepcopy(module).to(device).train()
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    opt = torch.optim.AdamW([p for p in probe.parameters() if p.requires_grad], lr=1e-6)
    times = []
    cuda = device.startswith("cuda")
    with torch.random.fork_rng(devices=[0] if cuda else []), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a module's self.log outside a trainer)
        for k in range(steps + 1):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            value = loss(probe, batch)
            value.backward()
            opt.step()
            if cuda:
                torch.cuda.synchronize()
            if k:
                times.append(time.perf_counter() - t0)
    del probe, opt
    return float(sorted(times)[len(times) // 2])


@dataclass
class FitResult:
    """What :func:`fit_module` returns."""

    module: Any
    """The trained module, holding the best checkpoint's weights when a checkpoint was kept."""
    epochs: int
    """Epochs actually run (the trainer's ``current_epoch`` after fitting)."""
    best_score: float | None
    """The monitored value of the restored checkpoint (None: no checkpoint was kept)."""
    trainer: pl.Trainer
    """The trainer (its checkpoint folder is gone unless ``root_dir`` was given)."""


def fit_module(module: pl.LightningModule, train: Any, val: Any = None,
               training: TrainingConfig | None = None, *, trainer: pl.Trainer | None = None,
               monitor: str = "val_loss", root_dir: str | os.PathLike | None = None,
               verbose: bool = False, callbacks: list | None = None, ckpt_path: str | None = None,
               **trainer_kwargs: Any) -> FitResult:
    """Train ``module`` on the ``train`` loader (or a ``LightningDataModule``, with ``val`` None)
    and the ``val`` loader, restore the best checkpoint's weights, and report the epochs run.

    Without ``trainer``, one is built by :func:`make_trainer` from ``training``: its
    ``max_epochs`` (None: the trainer's own limit, e.g. a ``max_steps`` in ``trainer_kwargs``),
    ``patience`` (early stopping on ``monitor``; None: none), ``gradient_clip_val`` and
    ``limit_train_batches`` (None: every batch); no sanity validation; the best ``monitor``
    value checkpointed under ``root_dir`` (a temporary folder, removed afterwards, if None).
    Without ``val``, only a ``monitor`` other than "val_loss" (e.g. "train_loss") is watched:
    with the default, nothing is checkpointed or stopped early and the last weights are kept.
    ``callbacks`` are added before early stopping and checkpointing; ``trainer_kwargs`` are
    further ``lightning.pytorch.Trainer`` arguments (they win over the ones above).

    With ``trainer`` (e.g. the one a recipe configures: its callbacks and budget), ``training``
    and the trainer arguments must not be given; it fits and the best weights are restored the
    same way. ``ckpt_path`` resumes from a checkpoint.

    The online backbone (``titans_ts.online.backbone.train_backbone``) trains through it so::

        training = cfg.training   # OnlineConfig.training, a TrainingConfig
        module = TitansLightningModule.from_configs(TitansConfig.from_dict(
            cfg.network, seq_len=L, horizon=H, n_channels=data.n_channels), training)
        fitted = fit_module(module, train_loader, val_loader, training, verbose=verbose,
                            accelerator="cpu", devices=1)
        fitted.module, fitted.epochs   # best weights restored; epochs actually run
    """
    own_root = None
    if trainer is None:
        training = TrainingConfig() if training is None else training
        watched = val is not None or monitor != "val_loss"
        root = root_dir
        if root is None:
            root = own_root = tempfile.mkdtemp(prefix="titans-ts-fit-")
        kwargs: dict[str, Any] = dict(num_sanity_val_steps=0, gradient_clip_val=training.gradient_clip_val,
                      limit_train_batches=training.limit_train_batches)
        if val is None:
            kwargs["limit_val_batches"] = 0
        kwargs.update(trainer_kwargs)
        trainer = make_trainer(max_epochs=training.max_epochs,
                               patience=training.patience if watched else None, root_dir=root,
                               verbose=verbose, monitor=monitor, checkpoint=watched,
                               callbacks=callbacks, **kwargs)
    elif training is not None or trainer_kwargs or callbacks or root_dir is not None:
        raise ValueError("fit_module: give either a trainer, or the training settings (training, callbacks, "
                         "root_dir, trainer arguments) to build one, not both")
    try:
        with quiet_lightning(verbose):
            trainer.fit(module, train, val, ckpt_path=ckpt_path)
        # the first ModelCheckpoint (trainer.checkpoint_callback may be another kind of Checkpoint)
        cb = next((c for c in trainer.checkpoint_callbacks if isinstance(c, pl.callbacks.ModelCheckpoint)), None)
        best = cb.best_model_path if cb is not None else ""
        if best:
            module.load_state_dict(load_checkpoint(best)["state_dict"])  # its content digest checked
        score = float(cb.best_model_score) if cb is not None and best and cb.best_model_score is not None else None
        return FitResult(module, int(trainer.current_epoch), score, trainer)
    finally:
        if own_root is not None:
            shutil.rmtree(own_root, ignore_errors=True)
