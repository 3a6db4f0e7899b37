"""Online forecasting on the no-leak protocol (``titans_ts.datasets.online``), every mode of
:mod:`.modes` compared on one trained model and on the same stream.

The stream runs through the validation origins (not scored) and on through the test origins
(scored): MSE / MAE over every test origin, step and channel, on scaled data.

The backbone (:class:`titans_ts.TitansNet`) is trained on the training windows, early-stopped on
the validation windows. The stream memory has no trained parameters: its pace (the gates'
logits) is chosen among ``OnlineConfig.paces`` on the validation stream's carried MSE, and its
read-out gains along the stream itself (:class:`~titans_ts.model.stream_memory.GainSelector`).
"""

from __future__ import annotations

import copy
import platform
import time

import numpy as np
import torch

from ..datasets.online import OnlineData
from ..datasets.windows import FUTURE, FUTURE_MASK
from ..model.stream_memory import StreamMemory
from .backbone import backbone_forecasts, origin_batch, train_backbone
from .config import MODES, NAIVE_MODES, SEQUENTIAL_MODES, OnlineConfig, check_modes
from .modes import evaluate_modes, metrics, naive_modes, online_gd_forecasts, stream_parts
from .streams import StreamInputs, carried_forecast, scan_stream, squared_error, stream_tokens

__all__ = ["choose_stream_memory", "choose_online_lr", "check_stream_fits", "run_online"]


def choose_stream_memory(stream: StreamInputs, data: OnlineData, cfg: OnlineConfig, seed: int = 0, log=None):
    """The stream memory, its pace chosen on the validation stream's carried MSE among
    ``cfg.paces`` (the maps drawn once from ``seed``). ``stream``: the validation + test stream
    (only its validation part is read). Returns the memory and a summary dict."""
    H = cfg.horizon
    val_in = stream.prefix(data.borders["val"][1] - H)
    torch.manual_seed(seed)
    base = StreamMemory(cfg.seq_len, H, cfg.memory)
    read, write = stream_tokens(val_in, 0, len(val_in) - H, H)
    val_backbone = float(squared_error(read["forecast"], read)[0] / read["tmask"].sum().clamp_min(1))
    scores = {}
    for pace in cfg.paces:
        mem = copy.deepcopy(base)
        mem.set_pace(pace)
        with torch.no_grad():
            pred, gain = carried_forecast(mem, read, scan_stream(mem, read, write, None, False)[0], H)
        se, cnt = squared_error(pred, read)
        scores[tuple(pace)] = (float(se / cnt.clamp_min(1.0)), mem, float(gain[..., 0].mean()))
    pace = min(scores, key=lambda k: scores[k][0])
    best_val, mem, gain_mean = scores[pace]
    if log:
        log(f"  validation: backbone {val_backbone:.4f}; carried " + ", ".join(
            f"{p}: {v:.4f} (mean gain {g:.2f})" for p, (v, _, g) in sorted(scores.items(), key=lambda kv: kv[1][0])))
    return mem.eval(), {"val": best_val, "val_backbone": val_backbone, "pace": list(pace), "val_gain_mean": gain_mean}


def choose_online_lr(net, values: torch.Tensor, data: OnlineData, seq_len: int, horizon: int, lrs,
                     seed: int = 0, log=None) -> tuple[float, dict]:
    """The ``online_gd`` learning rate among ``lrs`` with the least MSE of the stepped backbone
    over the validation stream (origins whose whole target lies in the validation rows).
    Returns the rate and {rate: validation MSE}."""
    L, H = seq_len, horizon
    first = int(data.stream_origins(L, H)[0]) - H
    last = data.borders["val"][1] - H
    scores = {}
    for lr in lrs:
        fc, _ = online_gd_forecasts(net, values, first, last, L, H, lr, seed=seed)
        b = origin_batch(values, np.arange(first + H, last + 1), L, H)
        read = {"target": b[FUTURE], "tmask": b[FUTURE_MASK]}
        scores[lr] = metrics(fc[H:], read)["mse"]
        if log:
            log(f"  online_gd lr {lr:g}: validation MSE {scores[lr]:.4f}")
    return min(scores, key=scores.__getitem__), scores


def check_stream_fits(data: OnlineData, seq_len: int, horizon: int) -> None:
    """Refuse a look-back / horizon that leaves a split of ``data`` without a window."""
    counts = {s: len(data.origins(s, seq_len, horizon)) for s in ("train", "val", "test")}
    empty = [s for s, n in counts.items() if n < 1]
    if empty:
        rows = {s: b - a for s, (a, b) in data.borders.items()}
        raise ValueError(
            f"{data.name}: seq_len={seq_len} and horizon={horizon} leave no window in the {' and '.join(empty)} "
            f"split(s) of the online protocol (rows per split {rows}; windows {counts}); a window needs "
            f"seq_len rows before its origin and horizon rows inside the split: use a shorter look-back "
            f"or horizon")


def run_online(dataset: str, horizons, seq_len: int, seed: int = 0, modes=MODES, root=None,
               cfg: OnlineConfig | None = None, online_lrs=(1e-5, 1e-4), log=None, backbone_cache=None,
               backbone_horizon: int | None = None) -> list[dict]:
    """Train one backbone on ``dataset``'s online split and run every mode of ``modes`` over its
    validation + test stream at each of ``horizons`` (one or several). Returns one record per
    horizon and mode (dataset, horizon, seq_len, mode, seed, mse, mae, ms_per_step, and the run's
    settings and costs).

    The backbone is trained once, for ``backbone_horizon`` (default: the longest of
    ``horizons``), and read at the shorter ones (its first ``H`` steps); ``backbone_cache``: a
    folder where trained backbones are kept and found again
    (:func:`~titans_ts.online.backbone.train_backbone`). ``online_lrs``: the learning rates
    of the ``online_gd`` modes; the one with the lowest ``online_gd`` MSE on the validation
    stream is used (chosen per horizon, once for both modes)."""
    from ..datasets.online import online_data

    modes = check_modes(modes)
    horizons = (horizons,) if isinstance(horizons, int) else tuple(horizons)
    if not horizons or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in horizons):
        raise ValueError(f"horizons must be positive integers, got {list(horizons)}")
    horizons = tuple(sorted(set(horizons)))
    cfg = copy.deepcopy(cfg) if cfg is not None else OnlineConfig()
    if backbone_horizon is not None and (isinstance(backbone_horizon, bool) or not isinstance(backbone_horizon, int)
                                         or backbone_horizon < max(horizons)):
        raise ValueError(f"backbone_horizon must be an integer >= the longest horizon {max(horizons)}, "
                         f"got {backbone_horizon!r}")
    cfg.seq_len, cfg.horizon = seq_len, backbone_horizon or max(horizons)
    cfg.validate()
    data = online_data(dataset, root=root)
    check_stream_fits(data, seq_len, cfg.horizon)
    if set(modes) <= set(NAIVE_MODES):  # the naive forecasts need no model
        return [r for H in horizons for r in _run_naive(data, cfg, H, seed, modes)]
    t0 = time.perf_counter()
    module = train_backbone(data, cfg, seed=seed, cache=backbone_cache)
    loaded = time.perf_counter() - t0
    if log:
        log(f"  backbone (H = {cfg.horizon}): {module.fit_epochs_} epochs, {module.fit_seconds_:.0f} s "
            f"(validation curve {module.val_curve_})")
    shared = _shared_forecasts(module, data, cfg, horizons)  # every horizon's stream reads it
    out = []
    for H in horizons:
        out += _run_horizon(module, data, cfg, H, seed, modes, online_lrs, log, shared)
    for r in out:
        r["backbone_load_seconds"] = round(loaded, 1)
    return out


def _run_naive(data: OnlineData, cfg: OnlineConfig, H: int, seed: int, modes) -> list:
    """Records of the naive modes alone (no backbone is trained for them)."""
    L = cfg.seq_len
    res = naive_modes(data, L, H, modes)
    values = torch.from_numpy(data.values)
    origins = np.arange(int(data.origins("test", L, H)[0]), int(data.stream_origins(L, H)[-1]) + 1)
    b = origin_batch(values, origins, L, H)
    read = {"target": b[FUTURE].permute(2, 0, 1), "tmask": b[FUTURE_MASK].permute(2, 0, 1)}
    common = {"dataset": data.name, "horizon": H, "seq_len": L, "seed": seed, "test_origins": len(origins),
              "season": data.season, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    return [{**common, "mode": mode, "mse": r["mse"], "mae": r["mae"], "ms_per_step": round(r["ms_per_step"], 4),
             "parts": stream_parts(r["pred"], read)} for mode, r in res.items()]


def _stream_span(data: OnlineData, L: int, H: int) -> tuple[int, int]:
    """The first and last origin of the horizon-``H`` stream (``H`` origins before the first
    stream origin: their errors are the first the memory is written with)."""
    so = data.stream_origins(L, H)
    return int(so[0]) - H, int(so[-1])


def _shared_forecasts(module, data: OnlineData, cfg: OnlineConfig, horizons) -> tuple[int, torch.Tensor, float]:
    """The backbone's forecasts at its own horizon for every origin any of ``horizons``'
    streams reads, in one batched pass (the network's forecast at a shorter horizon is the first
    ``H`` steps of this one, so each horizon slices it rather than running the network again).
    Returns (first origin, forecasts [N, backbone horizon, C], ms per window)."""
    spans = [_stream_span(data, cfg.seq_len, H) for H in horizons]
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    t0 = time.perf_counter()
    fc = backbone_forecasts(module.net, torch.from_numpy(data.values), np.arange(lo, hi + 1), cfg.seq_len,
                            cfg.horizon)
    return lo, fc, 1e3 * (time.perf_counter() - t0) / (hi - lo + 1)  # per window, batched


def _run_horizon(module, data: OnlineData, cfg: OnlineConfig, H: int, seed: int, modes, online_lrs, log,
                 shared) -> list:
    from ..recipes import machine_description

    L = cfg.seq_len
    values = torch.from_numpy(data.values)
    first, last = _stream_span(data, L, H)
    lo, fc_all, backbone_ms = shared
    fc_stream = fc_all[first - lo:last - lo + 1, :H]
    t1 = time.perf_counter()
    hcfg = copy.deepcopy(cfg)
    hcfg.horizon = H
    # the per-window inputs depend on the memory's settings only, not on its weights
    stream = StreamInputs.build(StreamMemory(L, H, cfg.memory), values, first, last, fc_stream, L, H)
    mem, hist = choose_stream_memory(stream, data, hcfg, seed=seed, log=log)
    memory_s = time.perf_counter() - t1
    chosen: dict[float, float] = {}
    lr = online_lrs[0] if online_lrs else cfg.online_lr
    if len(online_lrs) > 1 and set(SEQUENTIAL_MODES) & set(modes):
        lr, chosen = choose_online_lr(module.net, values, data, L, H, online_lrs, seed=seed, log=log)
    res = evaluate_modes(module, mem, data, L, H, modes=modes, online_lr=lr, stream=stream, seed=seed)
    n = len(stream)
    a = stream.index(int(data.origins("test", L, H)[0])) - H
    read = {k: v[:, a:] for k, v in stream.slice(H, n).items()}
    common = {
        "dataset": data.name, "horizon": H, "seq_len": L, "seed": seed, "backbone_horizon": cfg.horizon,
        "test_origins": int(read["target"].shape[1]), "val_memory_mse": hist["val"],
        "val_backbone_mse": hist["val_backbone"], "memory_pace": hist["pace"],
        "val_gain_mean": hist["val_gain_mean"],
        "backbone_mse": metrics(read["forecast"], read)["mse"],
        "backbone_seconds": round(module.fit_seconds_, 1), "memory_seconds": round(memory_s, 1),
        "backbone_epochs": int(module.fit_epochs_), "backbone_val_curve": module.val_curve_,
        "online_lr": lr, "online_lr_val": chosen,
        "params": sum(p.numel() for p in module.parameters()),
        "memory_params": sum(p.numel() for p in mem.parameters()),
        "training": cfg.training.to_dict(),
        "network": cfg.network, "memory": cfg.memory.to_dict(), "season": data.season,
        "machine": machine_description(), "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
    }
    out = []
    for mode, r in res.items():
        # the batched modes' cost per step includes the backbone's forecast of the window
        ms = r["ms_per_step"] + (backbone_ms if mode in ("frozen", "carried") else 0.0)
        out.append({**common, "mode": mode, "mse": r["mse"], "mae": r["mae"],
                    "ms_per_step": round(ms, 4), "parts": stream_parts(r["pred"], read),
                    **{k: r[k] for k in ("gain_mean", "level_gain_mean", "fallback_gain_mean") if k in r}})
    return out
