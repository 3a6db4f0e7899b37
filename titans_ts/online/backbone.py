"""The online runs' backbone: windows of given origins, training on the online split, forecasts."""

from __future__ import annotations

import numpy as np
import torch

from ..datasets.online import OnlineData
from ..datasets.windows import FUTURE, FUTURE_MASK, PAST, PAST_MASK, TIME_INDEX, SeriesWindows, window_loader
from .config import ONLINE_TRAINING, OnlineConfig

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

    values: list[float]  # (the callback __new__ returns has them)

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

    t = cfg.training
    settings = {"network": cfg.network, "lr": t.lr, "batch_size": t.batch_size, "max_epochs": t.max_epochs,
                "patience": t.patience, "limit_train_batches": t.limit_train_batches, "rows": data.values.shape,
                "borders": data.borders}
    # settings the first records were made with are left out of the digest while they keep their defaults
    extra = {k: v for k, v in t.to_dict().items() if k not in settings and v != getattr(ONLINE_TRAINING, k)}
    if extra:
        settings["training"] = extra
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{data.name}_L{cfg.seq_len}_H{cfg.horizon}_s{seed}_{digest}.pt"


def train_backbone(data: OnlineData, cfg: OnlineConfig, seed: int = 0, verbose: bool = False, cache=None):
    """The backbone trained on the training windows (``cfg.horizon`` steps), early-stopped on the
    validation windows (offline MSE), best weights restored. Returns the Lightning module (eval
    mode, CPU) with ``fit_epochs_`` (epochs run), ``fit_seconds_`` and ``val_curve_`` (the
    validation loss of each epoch).

    ``cache``: a folder where trained backbones are kept (by :func:`backbone_key`, with a content
    digest): a backbone already there is loaded (``weights_only``, digest checked) instead of
    trained again."""
    import os
    import time

    import lightning.pytorch as pl

    from ..atomic import atomic_write
    from ..integrity import load_checkpoint, stamp_checkpoint
    from ..model.config import TitansConfig
    from ..model.lightning_module import TitansLightningModule
    from ..training import fit_module

    L, H = cfg.seq_len, cfg.horizon
    training = cfg.training
    path = None if cache is None else os.path.join(os.fspath(cache), backbone_key(data, cfg, seed))
    pl.seed_everything(seed, verbose=False)
    module = TitansLightningModule.from_configs(
        TitansConfig.from_dict(cfg.network, seq_len=L, horizon=H, n_channels=data.n_channels), training)
    if path is not None and os.path.exists(path):
        saved = load_checkpoint(path)  # weights_only, its content digest checked
        module.load_state_dict(saved["state_dict"])
        module.fit_epochs_, module.fit_seconds_ = int(saved["epochs"]), float(saved["seconds"])
        module.val_curve_ = [float(v) for v in saved["val_curve"]]
        return module.cpu().eval()

    def loader(split, shuffle):
        ends = [(0, int(t)) for t in data.origins(split, L, H)]
        ds = SeriesWindows([data.values], L, H, ends, first_index=[0])
        return window_loader(ds, training.batch_size if shuffle else 512, shuffle, seed=seed)

    curve = _ValCurve()
    t0 = time.perf_counter()
    fitted = fit_module(module, loader("train", True), loader("val", False), training, verbose=verbose,
                        callbacks=[curve], accelerator="cpu", devices=1)
    module.fit_epochs_ = fitted.epochs  # epochs run
    module.fit_seconds_ = time.perf_counter() - t0
    module.val_curve_ = list(curve.values)
    if path is not None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        payload = {"state_dict": module.state_dict(), "epochs": module.fit_epochs_,
                   "seconds": module.fit_seconds_, "val_curve": module.val_curve_}
        stamp_checkpoint(payload)
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
