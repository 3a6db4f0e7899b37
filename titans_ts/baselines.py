"""Reference baselines: the floor every model must beat, on exactly the same windows.

* ``repeat_last``: every future step equals the last observed value of the context.
* ``seasonal_naive``: the future repeats the last full season of the context,
  ``f[h] = x[L - m + (h mod m)]``.

Both work on batched windows ``[B, L, C]`` and return ``[B, H, C]``; missing context values (mask
False) are skipped by carrying the latest observed value at that position, never invented.
"""

from __future__ import annotations

import numpy as np
import torch

from .metrics import mae, mse

__all__ = ["repeat_last", "seasonal_naive", "evaluate_baseline"]


def _last_observed(past: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return past[:, -1:, :]
    # index of the latest observed step per (batch, channel); channels with none observed -> NaN
    L = past.shape[1]
    steps = torch.arange(L, device=past.device).view(1, L, 1).expand_as(past)
    idx = torch.where(mask, steps, torch.full_like(steps, -1)).amax(dim=1, keepdim=True)
    out = past.gather(1, idx.clamp_min(0))
    return torch.where(idx >= 0, out, torch.full_like(out, float("nan")))


def repeat_last(past: torch.Tensor, horizon: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, L, C] context -> [B, H, C] forecast of the last observed value."""
    return _last_observed(past, mask).expand(-1, horizon, -1).clone()


def seasonal_naive(past: torch.Tensor, horizon: int, season: int,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, L, C] context -> [B, H, C]: repeat the context's last ``season`` steps."""
    L = past.shape[1]
    if not 1 <= season <= L:
        raise ValueError(f"season must be between 1 and the context length {L}, got {season}")
    if mask is not None and not bool(mask.all()):
        # fall back, position by position, to the same phase one season earlier, then to repeat_last
        filled = past.clone()
        obs = mask.clone()
        for t in range(season, L):
            take = ~obs[:, t] & obs[:, t - season]
            filled[:, t] = torch.where(take, filled[:, t - season], filled[:, t])
            obs[:, t] = obs[:, t] | take
        last = _last_observed(past, mask)
        past = torch.where(obs, filled, last.expand_as(filled))
    h = torch.arange(horizon, device=past.device)
    return past[:, L - season + (h % season), :]


def evaluate_baseline(dataset, kind: str = "seasonal_naive", season: int | None = None,
                      batch_size: int = 1024) -> dict[str, float]:
    """MSE / MAE of a baseline over every window of a ``WindowDataset`` (no window dropped)."""
    from torch.utils.data import DataLoader

    if kind not in ("repeat_last", "seasonal_naive"):
        raise ValueError(f"kind must be 'repeat_last' or 'seasonal_naive', got {kind!r}")
    if kind == "seasonal_naive" and season is None:
        raise ValueError("seasonal_naive needs season=")
    preds, truth, masks = [], [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False):
        if kind == "repeat_last":
            fc = repeat_last(batch["past"], dataset.horizon, batch["past_mask"])
        else:
            assert season is not None  # checked above
            fc = seasonal_naive(batch["past"], dataset.horizon, season, batch["past_mask"])
        preds.append(fc.numpy())
        truth.append(batch["future"].numpy())
        masks.append(batch["future_mask"].numpy())
    y, f, m = (np.concatenate(a) for a in (truth, preds, masks))
    return {"mse": mse(y, f, m), "mae": mae(y, f, m), "windows": int(y.shape[0])}
