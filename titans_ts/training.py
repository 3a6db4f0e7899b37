"""Training glue shared by the CLI, the benchmark runner and the estimators.

Quiet by default: no progress bar, no model summary, no logger and Lightning's informational
messages silenced; everything Lightning writes goes under an explicitly chosen directory (a
temporary one when none is given), never into the working directory by accident.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from typing import Iterator

import lightning.pytorch as pl

from .integrity import use_verified_io

__all__ = ["make_trainer", "quiet_lightning", "LIGHTNING_LOGGERS"]

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


def make_trainer(max_epochs: int = 10, patience: int | None = 3, root_dir: str | os.PathLike | None = None,
                 verbose: bool = False, log: bool = False, monitor: str = "val_loss",
                 checkpoint: bool = True, callbacks: list | None = None, **trainer_kwargs) -> pl.Trainer:
    """A CPU/GPU ``Trainer`` with early stopping on ``monitor`` and best-checkpointing.

    Args:
        root_dir: where checkpoints (and logs, with ``log=True``) go; a fresh temporary directory
            if None.
        verbose: progress bar and model summary.
        log: write CSV logs under ``root_dir/logs``.
        patience: early-stopping patience in epochs (None disables early stopping).

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
    kwargs = dict(max_epochs=max_epochs, enable_progress_bar=verbose, enable_model_summary=verbose,
                  logger=logger, callbacks=cbs, default_root_dir=root,
                  enable_checkpointing=checkpoint, log_every_n_steps=10)
    kwargs.update(trainer_kwargs)
    with quiet_lightning(verbose):
        trainer = pl.Trainer(**kwargs)
    use_verified_io(trainer)  # atomic checkpoint writes, digests checked at load
    return trainer
