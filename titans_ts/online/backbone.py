"""The online runs' backbone: windows of given origins, training on the online split, forecasts."""

from __future__ import annotations

import numpy as np
import torch

from ..datasets.online import OnlineData
from ..datasets.windows import FUTURE, FUTURE_MASK, PAST, PAST_MASK, TIME_INDEX, SeriesWindows, window_loader
from .config import OnlineConfig

__all__ = ["origin_batch", "train_backbone", "backbone_forecasts", "backbone_key"]


def origin_batch(values: torch.Tensor, origins, seq_len: int, horizon: int) -> dict:
    """Windows of the given origins from a [T, C] tensor: ``past`` [B, L, C] (context rows
    ``[t - L, t)``), ``future`` [B, H, C] (rows ``[t, t + H)``, where they exist), masks, and
    ``time_index`` (the first context row)."""
    origins = torch.as_tensor(np.asarray(origins), dtype=torch.long)
    if len(origins) and int(origins.min()) < seq_len:
        raise ValueError(f"origin {int(origins.min())} has fewer than seq_len={seq_len} rows before it")
    ctx = origins[:, None] - seq_len + torch.arange(seq_len)
    past = values[ctx]
    out = {PAST: torch.nan_to_num(past), PAST_MASK: ~torch.isnan(past), TIME_INDEX: origins - seq_len}
    fut = origins[:, None] + torch.arange(horizon)
    if int(fut.max()) < values.shape[0]:
        future = values[fut]
        out[FUTURE_MASK] = ~torch.isnan(future)
        out[FUTURE] = torch.nan_to_num(future)
    return out


class _ValCurve:
    """Collects each epoch's validation loss (a Lightning callback, built lazily)."""

    def __new__(cls):
        import lightning.pytorch as pl

        class Curve(pl.Callback):
            def __init__(self):
                self.values: list[float] = []

            def on_validation_epoch_end(self, trainer, module):
                if not trainer.sanity_checking and "val_loss" in trainer.callback_metrics:
                    self.values.append(round(float(trainer.callback_metrics["val_loss"]), 6))

        return Curve()


def backbone_key(data: OnlineData, cfg: OnlineConfig, seed: int) -> str:
    """A file name that identifies a trained backbone: dataset, look-back, horizon, seed and a
    digest of every setting its training reads."""
    import hashlib
    import json

    settings = {"network": cfg.network, "lr": cfg.lr, "batch_size": cfg.batch_size, "max_epochs": cfg.max_epochs,
                "patience": cfg.patience, "limit_train_batches": cfg.limit_train_batches, "rows": data.values.shape,
                "borders": data.borders}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{data.name}_L{cfg.seq_len}_H{cfg.horizon}_s{seed}_{digest}.pt"


def train_backbone(data: OnlineData, cfg: OnlineConfig, seed: int = 0, verbose: bool = False, cache=None):
    """The backbone trained on the training windows (``cfg.horizon`` steps), early-stopped on the
    validation windows (offline MSE), best weights restored. Returns the Lightning module (eval
    mode, CPU) with ``fit_epochs_`` (epochs run), ``fit_seconds_`` and ``val_curve_`` (the
    validation loss of each epoch).

    ``cache``: a folder where trained backbones are kept (by :func:`backbone_key`): a backbone
    already there is loaded (``weights_only``) instead of trained again."""
    import os
    import shutil
    import tempfile
    import time

    import lightning.pytorch as pl

    from ..atomic import atomic_write
    from ..model.lightning_module import TitansLightningModule
    from ..training import make_trainer, quiet_lightning

    L, H = cfg.seq_len, cfg.horizon
    path = None if cache is None else os.path.join(os.fspath(cache), backbone_key(data, cfg, seed))
    pl.seed_everything(seed, verbose=False)
    module = TitansLightningModule(L, H, n_channels=data.n_channels, lr=cfg.lr, **cfg.network)
    if path is not None and os.path.exists(path):
        saved = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(saved["state_dict"])
        module.fit_epochs_, module.fit_seconds_ = int(saved["epochs"]), float(saved["seconds"])
        module.val_curve_ = [float(v) for v in saved["val_curve"]]
        return module.cpu().eval()

    def loader(split, shuffle):
        ends = [(0, int(t)) for t in data.origins(split, L, H)]
        ds = SeriesWindows([data.values], L, H, ends, first_index=[0])
        return window_loader(ds, cfg.batch_size if shuffle else 512, shuffle, seed=seed)

    limit = cfg.limit_train_batches
    root = tempfile.mkdtemp(prefix="titans-online-")
    curve = _ValCurve()
    t0 = time.perf_counter()
    try:
        trainer = make_trainer(max_epochs=cfg.max_epochs, patience=cfg.patience, root_dir=root,
                               verbose=verbose, accelerator="cpu", devices=1, gradient_clip_val=1.0,
                               limit_train_batches=1.0 if limit is None else limit,
                               num_sanity_val_steps=0, callbacks=[curve])
        with quiet_lightning(verbose):
            trainer.fit(module, loader("train", True), loader("val", False))
        best = trainer.checkpoint_callback.best_model_path
        if best:
            module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
        module.fit_epochs_ = int(trainer.current_epoch)  # epochs run (Lightning counts them from 0 up)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    module.fit_seconds_ = time.perf_counter() - t0
    module.val_curve_ = list(curve.values)
    if path is not None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        payload = {"state_dict": module.state_dict(), "epochs": module.fit_epochs_,
                   "seconds": module.fit_seconds_, "val_curve": module.val_curve_}
        atomic_write(path, lambda fh: torch.save(payload, fh))
    return module.cpu().eval()


@torch.no_grad()
def backbone_forecasts(net, values: torch.Tensor, origins, seq_len: int, horizon: int,
                       batch: int = 512) -> torch.Tensor:
    """The backbone's point forecasts [N, H, C] of the windows of ``origins`` (the first ``H``
    steps of the network's forecast: a backbone trained for a longer horizon is read at a
    shorter one)."""
    net.eval()
    outs = []
    origins = np.asarray(origins)
    for a in range(0, len(origins), batch):
        b = origin_batch(values, origins[a:a + batch], seq_len, horizon)
        out = net(b[PAST], b[PAST_MASK], time_index=b[TIME_INDEX])
        outs.append(net.point_forecast(out)[:, :horizon])
    return torch.cat(outs)
