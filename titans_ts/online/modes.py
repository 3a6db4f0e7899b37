"""The four online modes over the validation + test stream, scored on the test origins."""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from ..datasets.online import OnlineData
from ..datasets.windows import FUTURE, FUTURE_MASK, PAST, PAST_MASK, TIME_INDEX
from ..model.stream_memory import StreamMemory
from .backbone import backbone_forecasts, origin_batch
from .config import MODES, OnlineConfig
from .streams import StreamInputs, carried_forecast, corrected, scan_stream, stream_tokens

__all__ = ["evaluate_modes", "online_gd", "metrics", "stream_parts"]


def metrics(pred: torch.Tensor, read: dict) -> dict:
    m = read["tmask"].double()
    err = (pred.double() - read["target"].double()) * m
    n = float(m.sum().clamp_min(1.0))
    return {"mse": float((err ** 2).sum()) / n, "mae": float(err.abs().sum()) / n}


@torch.no_grad()
def _static_modes(mem: StreamMemory, stream: StreamInputs, horizon: int, scored: int, modes) -> dict:
    """``frozen`` and / or ``carried`` over the whole stream at once (batched; no parameter changes)."""
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
        ms = 1e3 * (time.perf_counter() - t0) / steps
        out[mode] = dict(metrics(pred[:, a:], sel), ms_per_step=ms, pred=pred[:, a:], **extra)
    return out


def online_gd(module, mem: StreamMemory, values: torch.Tensor, stream: StreamInputs, horizon: int,
               seq_len: int, scored: int, lr: float, carried: bool, seed: int = 0) -> dict:
    with torch.random.fork_rng():  # the updates' dropout draws are a function of ``seed`` alone
        torch.manual_seed(seed)
        return _online_gd_run(module, mem, values, stream, horizon, seq_len, scored, lr, carried)


def _online_gd_run(module, mem: StreamMemory, values: torch.Tensor, stream: StreamInputs, horizon: int,
                   seq_len: int, scored: int, lr: float, carried: bool) -> dict:
    """The sequential modes: at each origin one Adam step (batch 1) on every parameter with the
    loss of the window completed there, then the forecast (with the carried memory if
    ``carried``, which is written with the error of the forecast actually issued for the
    completed window). Works on copies: the given module and memory are left as they are."""
    net = copy.deepcopy(module.net)
    mem = copy.deepcopy(mem)
    params = [p for p in list(net.parameters()) + list(mem.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    H, C = horizon, values.shape[1]
    first = stream.first + H  # the first forecast origin (the one before writes origin first)
    last = stream.first + len(stream) - 1
    state = mem.initial_state(C) if carried else None
    errors: list[torch.Tensor] = []  # the realised error of the window written at each token
    issued: dict[int, torch.Tensor] = {}  # the forecasts issued, until their window completes
    issued_corr: dict[int, torch.Tensor] = {}  # and the corrections read for them [C, 2, H] (data units)
    cands = mem.candidates
    lam = 0.5 ** (1.0 / mem.gain_half_life)
    acc = torch.zeros(len(cands), C)  # discounted squared error of each gain pair (online_gain_choice)
    preds = []
    t0 = time.perf_counter()
    for j, t in enumerate(range(first, last + 1)):
        w = t - H  # the window whose target has just fully arrived
        prev_w = errors[j - H] if carried and j >= H else None  # the error known when w was forecast
        b = origin_batch(values, [w], seq_len, H)
        if carried and w not in issued:  # before the stream's first forecast: what it would have been
            net.eval()
            with torch.no_grad():
                issued[w] = net.point_forecast(net(b[PAST], b[PAST_MASK], time_index=b[TIME_INDEX]))
        net.train()
        mem.train()
        f = net.point_forecast(net(b[PAST], b[PAST_MASK], time_index=b[TIME_INDEX]))  # [1, H, C]
        n = mem.normalise(b[PAST], b[PAST_MASK], f, b[FUTURE], b[FUTURE_MASK])
        corr = mem.read(mem.features(n["ctx"][0], n["yhat"][0], prev_w), state)  # [C, 2, H]
        g = cands[acc.argmin(0)] if carried else torch.ones(C, 2)
        pred = mem.corrected_forecast(f[0].T, n["std"][0], corr, g)
        m = b[FUTURE_MASK][0].T.to(pred.dtype)
        loss = (((pred - b[FUTURE][0].T) * m) ** 2).sum() / m.sum().clamp_min(1.0)
        if lr > 0:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        mem.eval()
        with torch.no_grad():
            cur = origin_batch(values, [t], seq_len, H)
            fc = net.point_forecast(net(cur[PAST], cur[PAST_MASK], time_index=cur[TIME_INDEX]))
            nc = mem.normalise(cur[PAST], cur[PAST_MASK], fc)
            if carried:
                if w in issued_corr:  # the window's error under each gain, now that it is known
                    fw, cw = issued[w][0].T, issued_corr.pop(w)
                    mw = b[FUTURE_MASK][0].T.to(fw.dtype)
                    se = torch.stack([(((fw + (gi[:, None] * cw).sum(1) - b[FUTURE][0].T) * mw) ** 2).sum(-1)
                                      for gi in cands])
                    acc = lam * acc + se
                nw = mem.normalise(b[PAST], b[PAST_MASK], issued.pop(w), b[FUTURE], b[FUTURE_MASK])
                err = nw["resid"][0]
                errors.append(err)
                wf = mem.features(nw["ctx"][0], nw["yhat"][0], prev_w)[:, None]
                rf = mem.features(nc["ctx"][0], nc["yhat"][0], err)[:, None]
                corr_t, state = mem.scan(rf, wf, err[:, None], nw["observed"][0][:, None], state)
                c_t = nc["std"][0][:, None, None] * corr_t[:, 0]  # [C, 2, H]
                preds.append(fc[0].T + (cands[acc.argmin(0)][..., None] * c_t).sum(1))
                issued[t], issued_corr[t] = fc, c_t
            else:
                rf = mem.features(nc["ctx"][0], nc["yhat"][0])
                preds.append(fc[0].T + nc["std"][0][:, None] * mem.read(rf).sum(1))
    elapsed = time.perf_counter() - t0
    pred = torch.stack(preds, 1)  # [C, steps, H]
    a = scored - first
    read = stream.slice(H, H + len(preds))
    sel = {k: v[:, a:] for k, v in read.items()}
    return dict(metrics(pred[:, a:], sel), ms_per_step=1e3 * elapsed / len(preds), pred=pred[:, a:])


def evaluate_modes(module, mem: StreamMemory, data: OnlineData, cfg: OnlineConfig,
                   modes=MODES, online_lr: float | None = None, stream: StreamInputs | None = None,
                   values: torch.Tensor | None = None) -> dict:
    """Every mode over the validation + test stream, scored on the test origins. Returns
    {mode: {"mse", "mae", "ms_per_step", "pred" [C, n_test, H]}} and the scored origins."""
    L, H = cfg.seq_len, cfg.horizon
    values = torch.from_numpy(data.values) if values is None else values
    if stream is None:
        so = data.stream_origins(L, H)
        first = int(so[0]) - H
        origins = np.arange(first, int(so[-1]) + 1)
        stream = StreamInputs.build(mem, values, first, int(so[-1]),
                                    backbone_forecasts(module.net, values, origins, L, H), L, H)
    scored = int(data.origins("test", L, H)[0])
    out = {}
    if {"frozen", "carried"} & set(modes):
        out.update(_static_modes(mem, stream, H, scored, modes))
    lr = cfg.online_lr if online_lr is None else online_lr
    for mode in ("online_gd", "carried+online_gd"):
        if mode in modes:
            out[mode] = online_gd(module, mem, values, stream, H, L, scored, lr, carried=mode != "online_gd")
    return {m: out[m] for m in modes if m in out}


def stream_parts(pred: torch.Tensor, read: dict, parts: int = 20) -> list[float]:
    """Test MSE in ``parts`` contiguous stretches of the stream (time order)."""
    m = read["tmask"].double()
    se = (((pred.double() - read["target"].double()) * m) ** 2).sum((0, 2))
    cnt = m.sum((0, 2))
    n = se.shape[0]
    cuts = [i * n // parts for i in range(parts + 1)]
    return [float(se[a:b].sum() / cnt[a:b].sum().clamp_min(1)) for a, b in zip(cuts, cuts[1:])]
