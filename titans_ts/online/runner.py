"""Online forecasting on the no-leak protocol (``titans_ts.datasets.online``), in four modes compared
on one trained model:

* ``frozen``: parameters fixed, the stream memory never written (every window reads the learned
  initial memory ``M_0``); the backbone's own memory runs per window, as always;
* ``carried``: parameters fixed; each channel's stream memory is carried along the stream and
  written, at origin ``t``, with the realised error of the window of origin ``t - H`` (the newest
  one whose target has fully arrived), then read for window ``t``;
* ``online_gd``: the usual baseline: at origin ``t``, one optimiser step on every parameter with
  the loss of window ``t - H`` (batch 1), then the forecast of window ``t``; memory never written;
* ``carried+online_gd``: both.

The stream runs through the validation origins (not scored) and on through the test origins
(scored): MSE / MAE over every test origin, step and channel, on scaled data.

Training is in two stages: the backbone (:class:`titans_ts.TitansNet`) on the training windows,
early-stopped on the validation windows; then the stream memory, with the backbone frozen, by
truncated back-propagation through streams of consecutive training windows in time order (the
memory state carried from one segment to the next, gradients through the last segment), early-
stopped on the carried MSE of the validation stream. It is thus trained for the regime it is
tested in.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from ..datasets.online import OnlineData
from ..model.stream_memory import StreamMemory
from .backbone import backbone_forecasts, train_backbone
from .config import MODES, OnlineConfig
from .modes import evaluate_modes, metrics, online_gd, stream_parts
from .streams import StreamInputs, carried_forecast, scan_stream, squared_error, stream_tokens, train_stream_memory

__all__ = ["choose_stream_memory", "run_online"]


def choose_stream_memory(stream: StreamInputs, data: OnlineData, cfg: OnlineConfig, seed: int = 0, log=None,
                         values: torch.Tensor | None = None, fc_train: torch.Tensor | None = None):
    """The stream memory, its pace chosen on the validation stream's carried MSE among
    ``cfg.paces`` (the gates' logits; the maps drawn once from ``seed``); the read-out gain is
    chosen along the stream itself (:func:`~titans_ts.online.streams.carried_forecast`). With
    ``cfg.memory_epochs`` the chosen memory is also trained on the training stream and kept only
    if that wins too (which needs ``values`` [T, C] and the backbone's forecasts ``fc_train`` of
    the training origins). ``stream``: the validation + test stream (only its validation part is
    read). Returns the memory and a summary dict."""
    L, H = cfg.seq_len, cfg.horizon
    tr_first, tr_last = L, data.borders["train"][1] - H
    val_in = stream.prefix(data.borders["val"][1] - H)
    torch.manual_seed(seed)
    base = StreamMemory(L, H, **cfg.memory)
    read, write = stream_tokens(val_in, 0, len(val_in) - H, H)
    val_backbone = float(squared_error(read["forecast"], read)[0] / read["tmask"].sum().clamp_min(1))
    scores = {}
    for pace in cfg.paces:
        mem = copy.deepcopy(base)
        with torch.no_grad():
            mem.gates.bias.view(3, -1).copy_(torch.tensor(pace, dtype=torch.float32)[:, None])
            pred, gain = carried_forecast(mem, read, scan_stream(mem, read, write, None, False)[0], H)
        se, cnt = squared_error(pred, read)
        scores[tuple(pace)] = (float(se / cnt.clamp_min(1.0)), mem, float(gain[..., 0].mean()))
    pace = min(scores, key=lambda k: scores[k][0])
    best_val, mem, gain_mean = scores[pace]
    if log:
        log(f"  validation: backbone {val_backbone:.4f}; carried " + ", ".join(
            f"{p}: {v:.4f} (mean gain {g:.2f})" for p, (v, _, g) in sorted(scores.items(), key=lambda kv: kv[1][0])))
    trained = False
    if cfg.memory_epochs > 0:
        if values is None or fc_train is None:
            raise ValueError("outer training of the stream memory (memory_epochs > 0) needs values and fc_train")
        train_in = StreamInputs.build(mem, values, tr_first, tr_last, fc_train, L, H)
        tuned = copy.deepcopy(mem)
        h = train_stream_memory(tuned, train_in, val_in, H, cfg, seed=seed, log=log)
        if h["best_val"] < best_val - 1e-9:
            mem, best_val, trained = tuned, h["best_val"], True
    return mem.eval(), {"val": best_val, "val_backbone": val_backbone, "pace": list(pace),
                        "val_gain_mean": gain_mean, "trained": trained}


def run_online(dataset: str, horizon: int, seq_len: int, seed: int = 0, modes=MODES,
               root=None, cfg: OnlineConfig | None = None, online_lrs=(1e-5, 1e-4), log=None) -> list[dict]:
    """Train one model on ``dataset``'s online split and run every mode of ``modes`` over its
    validation + test stream. Returns one record per mode (dataset, horizon, seq_len, mode,
    seed, mse, mae, ms_per_step, and the run's settings and costs).

    ``online_lrs``: the learning rates of the ``online_gd`` modes, the one with the lowest
    ``online_gd`` MSE on the validation stream is used (chosen once, for both modes)."""
    import platform

    from ..datasets.online import online_data
    from ..recipes import machine_description

    cfg = copy.deepcopy(cfg) if cfg is not None else OnlineConfig()
    cfg.validate()
    cfg.seq_len, cfg.horizon = seq_len, horizon
    L, H = seq_len, horizon
    data = online_data(dataset, root=root)
    values = torch.from_numpy(data.values)
    t0 = time.perf_counter()
    module = train_backbone(data, cfg, seed=seed)
    backbone_s = time.perf_counter() - t0
    tr_first, tr_last = L, data.borders["train"][1] - H
    so = data.stream_origins(L, H)
    first, last = int(so[0]) - H, int(so[-1])
    fc_train = (backbone_forecasts(module.net, values, np.arange(tr_first, tr_last + 1), L, H)
                if cfg.memory_epochs > 0 else None)
    tf = time.perf_counter()
    fc_stream = backbone_forecasts(module.net, values, np.arange(first, last + 1), L, H)
    backbone_ms = 1e3 * (time.perf_counter() - tf) / (last - first + 1)  # per window, batched
    t1 = time.perf_counter()
    # the per-window inputs depend on the memory's settings only, not on its weights
    stream = StreamInputs.build(StreamMemory(L, H, **cfg.memory), values, first, last, fc_stream, L, H)
    mem, hist = choose_stream_memory(stream, data, cfg, seed=seed, log=log, values=values, fc_train=fc_train)
    val_in = stream.prefix(data.borders["val"][1] - H)
    memory_s = time.perf_counter() - t1
    lr = online_lrs[0] if online_lrs else cfg.online_lr
    chosen = {}
    if len(online_lrs) > 1 and {"online_gd", "carried+online_gd"} & set(modes):
        for c in online_lrs:
            r = online_gd(module, mem, values, val_in, H, L, first + H, c, carried=False)
            chosen[c] = r["mse"]
            if log:
                log(f"  online_gd lr {c:g}: validation MSE {r['mse']:.4f}")
        lr = min(chosen, key=chosen.get)
    res = evaluate_modes(module, mem, data, cfg, modes=modes, online_lr=lr, stream=stream, values=values)
    n = len(stream)
    a = stream.index(int(data.origins("test", L, H)[0])) - H
    read = {k: v[:, a:] for k, v in stream.slice(H, n).items()}
    common = {
        "dataset": data.name, "horizon": H, "seq_len": L, "seed": seed,
        "test_origins": int(read["target"].shape[1]), "val_memory_mse": hist["val"],
        "val_backbone_mse": hist["val_backbone"], "memory_pace": hist["pace"],
        "val_gain_mean": hist["val_gain_mean"],
        "memory_trained": hist["trained"],
        "backbone_mse": metrics(read["forecast"], read)["mse"],
        "backbone_seconds": round(backbone_s, 1), "memory_seconds": round(memory_s, 1),
        "backbone_epochs": int(getattr(module, "fit_epochs_", -1)) + 1,
        "online_lr": lr, "online_lr_val": chosen,
        "params": sum(p.numel() for p in module.parameters()),
        "memory_params": sum(p.numel() for p in mem.parameters()),
        "training": {"max_epochs": cfg.max_epochs, "limit_train_batches": cfg.limit_train_batches,
                     "batch_size": cfg.batch_size, "lr": cfg.lr, "patience": cfg.patience},
        "network": cfg.network, "memory": cfg.memory, "machine": machine_description(),
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
    }
    out = []
    for mode, r in res.items():
        # the batched modes' cost per step includes the backbone's forecast of the window
        ms = r["ms_per_step"] + (backbone_ms if mode in ("frozen", "carried") else 0.0)
        out.append({**common, "mode": mode, "mse": r["mse"], "mae": r["mae"],
                    "ms_per_step": round(ms, 4), "parts": stream_parts(r["pred"], read),
                    **{k: r[k] for k in ("gain_mean", "level_gain_mean") if k in r}})
    return out
