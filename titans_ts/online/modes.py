"""The online modes over the validation + test stream, scored on the test origins.

* ``frozen`` / ``carried``: the trained backbone's forecasts, the stream memory never written /
  carried along the stream (batched over the whole stream: no parameter changes);
* ``online_gd``: before each forecast, one Adam step on the backbone's parameters with the loss of
  the window completed there (batch 1), then the forecast with the stepped backbone;
* ``carried+online_gd``: the same stepped backbone, its forecasts corrected by the carried memory
  (written with the errors of the forecasts it actually issued);
* ``repeat_last``: every step of the horizon is the newest known value;
* ``seasonal_naive``: each step is the value one season earlier (the dataset's season).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from ..datasets.online import OnlineData
from ..datasets.windows import FUTURE, FUTURE_MASK, PAST, PAST_MASK, TIME_INDEX
from ..model.stream_memory import StreamMemory
from .backbone import backbone_forecasts, origin_batch
from .config import MODES, NAIVE_MODES, check_modes
from .streams import StreamInputs, carried_forecast, corrected, scan_stream, stream_tokens

__all__ = ["evaluate_modes", "online_gd_forecasts", "naive_forecasts", "naive_modes", "metrics", "stream_parts"]


def metrics(pred: torch.Tensor, read: dict) -> dict:
    m = read["tmask"].double()
    err = (pred.double() - read["target"].double()) * m
    n = float(m.sum().clamp_min(1.0))
    return {"mse": float((err ** 2).sum()) / n, "mae": float(err.abs().sum()) / n}


@torch.no_grad()
def _memory_modes(mem: StreamMemory, stream: StreamInputs, horizon: int, scored: int, modes) -> dict:
    """``frozen`` and / or ``carried`` over the whole stream at once (no parameter changes)."""
    out = {}
    read, write = stream_tokens(stream, 0, len(stream) - horizon, horizon)
    a = stream.index(scored) - horizon
    sel = {k: v[:, a:] for k, v in read.items()}
    steps = read["ctx"].shape[1]
    for mode in ("frozen", "carried"):
        if mode not in modes:
            continue
        t0 = time.perf_counter()
        extra = {}
        if mode == "frozen":  # no error is carried: the initial memory read with no known error
            feats = mem.features(read["ctx"], read["yhat"])
            pred = corrected(read, mem.read(feats.reshape(-1, feats.shape[-1])).view(*feats.shape[:2], 2, horizon))
        else:
            pred, gain = carried_forecast(mem, read, scan_stream(mem, read, write, None, False)[0], horizon)
            extra["gain_mean"] = float(gain[:, a:, 0].mean())
            extra["level_gain_mean"] = float(gain[:, a:, 1].mean())
            if gain.shape[-1] > 2:
                extra["fallback_gain_mean"] = float(gain[:, a:, 2].mean())
        ms = 1e3 * (time.perf_counter() - t0) / steps
        out[mode] = dict(metrics(pred[:, a:], sel), ms_per_step=ms, pred=pred[:, a:], **extra)
    return out


def online_gd_forecasts(net, values: torch.Tensor, first: int, last: int, seq_len: int, horizon: int,
                        lr: float, seed: int = 0) -> tuple[torch.Tensor, float]:
    """The forecasts [n, H, C] of origins ``first .. last`` by a backbone stepped along the stream:
    at origin ``t >= first + H``, one Adam step (batch 1, dropout on) with the loss of the window of
    origin ``t - H`` (whose target has just fully arrived), then the forecast of window ``t``
    (eval mode). A backbone trained for a longer horizon is read, and stepped, on its first ``H``
    steps. The first ``H`` origins are forecast by the backbone as given. Works on a copy
    of ``net``; the steps' dropout draws are a function of ``seed`` alone. Returns the forecasts
    and the milliseconds per step."""
    H = horizon
    net = copy.deepcopy(net)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr) if lr > 0 else None
    n = last - first + 1
    head = backbone_forecasts(net, values, np.arange(first, min(first + H, last + 1)), seq_len, H)
    out = [head]
    t0 = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for t in range(first + H, last + 1):
            if opt is not None:
                b = origin_batch(values, [t - H], seq_len, H)
                net.train()
                f = net.point_forecast(net(b[PAST], b[PAST_MASK], time_index=b[TIME_INDEX]))[:, :H]
                m = b[FUTURE_MASK].to(f.dtype)
                loss = (((f - b[FUTURE]) * m) ** 2).sum() / m.sum().clamp_min(1.0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                cur = origin_batch(values, [t], seq_len, H)
                out.append(net.point_forecast(net(cur[PAST], cur[PAST_MASK], time_index=cur[TIME_INDEX]))[:, :H])
    steps = max(1, n - H)
    return torch.cat(out)[:n], 1e3 * (time.perf_counter() - t0) / steps


def naive_forecasts(values: torch.Tensor, origins, horizon: int, mode: str, season: int | None = None) -> torch.Tensor:
    """Forecasts [n, H, C] of the windows of ``origins`` from the rows before each origin:
    ``repeat_last`` (the newest row at every step) or ``seasonal_naive`` (step ``h`` is the row
    ``season * ceil((h + 1) / season)`` before its target row)."""
    origins = torch.as_tensor(np.asarray(origins), dtype=torch.long)
    h = torch.arange(horizon)
    if mode == "repeat_last":
        rows = origins[:, None] - 1 + 0 * h
    elif mode == "seasonal_naive":
        if season is None or season < 1:
            raise ValueError(f"seasonal_naive needs a season >= 1, got {season!r}")
        rows = origins[:, None] + h - season * ((h + season) // season)
    else:
        raise ValueError(f"unknown naive mode {mode!r}; naive modes: repeat_last, seasonal_naive")
    if len(origins) and int(rows.min()) < 0:
        raise ValueError(f"{mode}: origin {int(origins.min())} has too few rows before it (season {season})")
    return values[rows]


def evaluate_modes(module, mem: StreamMemory, data: OnlineData, seq_len: int, horizon: int, modes=MODES,
                   online_lr: float = 1e-5, stream: StreamInputs | None = None, season: int | None = None,
                   seed: int = 0) -> dict:
    """Every mode of ``modes`` over the validation + test stream, scored on the test origins.
    Returns {mode: {"mse", "mae", "ms_per_step", "pred" [C, n_test, H]}}. ``stream``: the
    backbone's stream inputs (built here when None); ``season``: the seasonal naive's period
    (the dataset's by default)."""
    modes = check_modes(modes)
    L, H = seq_len, horizon
    values = torch.from_numpy(data.values)
    so = data.stream_origins(L, H)
    first, last = int(so[0]) - H, int(so[-1])
    scored = int(data.origins("test", L, H)[0])
    out = naive_modes(data, L, H, [m for m in modes if m in NAIVE_MODES], season)
    if {"frozen", "carried"} & set(modes):
        if stream is None:
            fc = backbone_forecasts(module.net, values, np.arange(first, last + 1), L, H)
            stream = StreamInputs.build(mem, values, first, last, fc, L, H)
        out.update(_memory_modes(mem, stream, H, scored, modes))
    if {"online_gd", "carried+online_gd"} & set(modes):
        fc, ms = online_gd_forecasts(module.net, values, first, last, L, H, online_lr, seed=seed)
        gd = StreamInputs.build(mem, values, first, last, fc, L, H)
        a = gd.index(scored)
        read = gd.slice(a, len(gd))
        if "online_gd" in modes:
            pred = read["forecast"]
            out["online_gd"] = dict(metrics(pred, read), ms_per_step=ms, pred=pred)
        if "carried+online_gd" in modes:
            r = _memory_modes(mem, gd, H, scored, ("carried",))["carried"]
            out["carried+online_gd"] = {**r, "ms_per_step": ms + r["ms_per_step"]}
    return {m: out[m] for m in modes}


def naive_modes(data: OnlineData, seq_len: int, horizon: int, modes, season: int | None = None) -> dict:
    """The naive modes of ``modes`` (``repeat_last``, ``seasonal_naive``) scored on the test origins
    of the stream (the same origins as the other modes): {mode: {"mse", "mae", "ms_per_step",
    "pred" [C, n_test, H]}}; ``season``: the seasonal naive's period (the dataset's by default)."""
    L, H = seq_len, horizon
    values = torch.from_numpy(data.values)
    origins = np.arange(int(data.origins("test", L, H)[0]), int(data.stream_origins(L, H)[-1]) + 1)
    b = origin_batch(values, origins, L, H)
    read = {"target": b[FUTURE].permute(2, 0, 1), "tmask": b[FUTURE_MASK].permute(2, 0, 1)}  # [C, n, H]
    out = {}
    for mode in modes:
        t0 = time.perf_counter()
        s = (season if season is not None else data.season) if mode == "seasonal_naive" else None
        pred = naive_forecasts(values, origins, H, mode, s).permute(2, 0, 1)  # [C, n, H]
        ms = 1e3 * (time.perf_counter() - t0) / max(1, len(origins))
        out[mode] = dict(metrics(pred, read), ms_per_step=ms, pred=pred)
    return out


def stream_parts(pred: torch.Tensor, read: dict, parts: int = 20) -> list[float]:
    """Test MSE in ``parts`` contiguous stretches of the stream (time order)."""
    m = read["tmask"].double()
    se = (((pred.double() - read["target"].double()) * m) ** 2).sum((0, 2))
    cnt = m.sum((0, 2))
    n = se.shape[0]
    cuts = [i * n // parts for i in range(parts + 1)]
    return [float(se[a:b].sum() / cnt[a:b].sum().clamp_min(1)) for a, b in zip(cuts, cuts[1:], strict=False)]
