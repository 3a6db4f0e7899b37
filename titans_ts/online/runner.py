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
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..datasets.online import OnlineData
from ..datasets.windows import FUTURE, FUTURE_MASK, PAST, PAST_MASK, TIME_INDEX, SeriesWindows, window_loader
from .stream_memory import StreamMemory

__all__ = ["MODES", "OnlineConfig", "train_backbone", "backbone_forecasts", "StreamInputs",
           "train_stream_memory", "evaluate_modes", "origin_batch", "run_online"]

MODES = ("frozen", "carried", "online_gd", "carried+online_gd")


@dataclass
class OnlineConfig:
    """Settings of one online run: the backbone and its training; the stream memory, the paces
    its gates are chosen from on the validation stream, and its optional outer training."""

    seq_len: int = 96
    horizon: int = 24
    # the last observed value as RevIN's centre: after a level break the forecast starts where
    # the series is (the drifting test periods of this protocol need it)
    network: dict = field(default_factory=lambda: dict(
        patch_len=16, stride=8, d_model=64, n_layers=1, dropout=0.2, revin_center="last",
        memory=dict(heads=4, depth=2, expansion=2.0, chunk_size=16, max_lr=0.02)))
    lr: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 6
    patience: int = 3
    limit_train_batches: int | None = None
    memory: dict = field(default_factory=lambda: dict(dim=64, heads=4, depth=1, max_lr=0.5, chunk_size=1,
                                                      soft_norm=True, learn_gates=False))
    # (forgetting, momentum, inner learning-rate) gate logits, and read-out gains, tried on the
    # validation stream (gain 0 -- no correction -- wins when no memory beats the backbone there)
    paces: tuple = ((-8.0, -4.0, -4.0), (-8.0, -4.0, -5.0), (-10.0, -4.0, -4.0))
    gains: tuple = (0.25, 0.5, 1.0)
    memory_lr: float = 3e-3
    memory_epochs: int = 0   # outer training of the chosen memory (0: none); kept if it wins
    memory_patience: int = 5
    segment: int = 64
    streams: int = 64
    online_lr: float = 1e-5


# --------------------------------------------------------------------------------- windows


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


def train_backbone(data: OnlineData, cfg: OnlineConfig, seed: int = 0, verbose: bool = False):
    """The backbone trained on the training windows, early-stopped on the validation windows
    (offline MSE), best checkpoint restored. Returns the Lightning module (eval mode, CPU)."""
    import shutil
    import tempfile

    import lightning.pytorch as pl

    from ..lightning_module import TitansLightningModule
    from ..training import make_trainer, quiet_lightning

    L, H = cfg.seq_len, cfg.horizon
    pl.seed_everything(seed, verbose=False)
    module = TitansLightningModule(L, H, n_channels=data.n_channels, lr=cfg.lr, **cfg.network)

    def loader(split, shuffle):
        ends = [(0, int(t)) for t in data.origins(split, L, H)]
        ds = SeriesWindows([data.values], L, H, ends, first_index=[0])
        return window_loader(ds, cfg.batch_size if shuffle else 512, shuffle, seed=seed)

    root = tempfile.mkdtemp(prefix="titans-online-")
    try:
        trainer = make_trainer(max_epochs=cfg.max_epochs, patience=cfg.patience, root_dir=root,
                               verbose=verbose, accelerator="cpu", devices=1, gradient_clip_val=1.0,
                               limit_train_batches=cfg.limit_train_batches or 1.0,
                               num_sanity_val_steps=0)
        with quiet_lightning(verbose):
            trainer.fit(module, loader("train", True), loader("val", False))
        best = trainer.checkpoint_callback.best_model_path
        if best:
            module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
        module.fit_epochs_ = int(trainer.current_epoch)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return module.cpu().eval()


@torch.no_grad()
def backbone_forecasts(net, values: torch.Tensor, origins, seq_len: int, horizon: int,
                       batch: int = 512) -> torch.Tensor:
    """The backbone's point forecasts [N, H, C] of the windows of ``origins``."""
    net.eval()
    outs = []
    origins = np.asarray(origins)
    for a in range(0, len(origins), batch):
        b = origin_batch(values, origins[a:a + batch], seq_len, horizon)
        out = net(b[PAST], b[PAST_MASK], time_index=b[TIME_INDEX])
        outs.append(net.point_forecast(out))
    return torch.cat(outs)


# --------------------------------------------------------------------------------- stream inputs


@dataclass
class StreamInputs:
    """The normalised per-window inputs of consecutive origins ``first .. first + n - 1``, with
    the target where known: tensors [C, n, ...] (one stream per channel)."""

    first: int
    ctx: torch.Tensor
    yhat: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    resid: torch.Tensor
    observed: torch.Tensor
    forecast: torch.Tensor   # [C, n, H] backbone forecast, data units
    target: torch.Tensor     # [C, n, H] (0 where unknown)
    tmask: torch.Tensor      # [C, n, H] bool

    @staticmethod
    def build(mem: StreamMemory, values: torch.Tensor, first: int, last: int, forecasts: torch.Tensor,
              seq_len: int, horizon: int) -> "StreamInputs":
        """Origins ``first .. last`` (inclusive); ``forecasts`` [n, H, C] of those origins."""
        origins = np.arange(first, last + 1)
        parts = []
        for a in range(0, len(origins), 2048):
            o = origins[a:a + 2048]
            b = origin_batch(values, o, seq_len, horizon)
            f = forecasts[a:a + 2048]
            if FUTURE not in b:  # targets beyond the data: none known
                b[FUTURE] = torch.zeros_like(f)
                b[FUTURE_MASK] = torch.zeros_like(f, dtype=torch.bool)
            n = mem.normalise(b[PAST], b[PAST_MASK], f, b[FUTURE], b[FUTURE_MASK])
            n.update(forecast=f.transpose(1, 2), target=b[FUTURE].transpose(1, 2),
                     tmask=b[FUTURE_MASK].transpose(1, 2))
            parts.append(n)
        cat = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        # [n, C, ...] -> [C, n, ...]
        return StreamInputs(first=first, **{k: v.transpose(0, 1).contiguous() for k, v in cat.items()})

    def __len__(self) -> int:
        return self.ctx.shape[1]

    def index(self, origin: int) -> int:
        return origin - self.first

    def slice(self, a: int, b: int) -> dict:
        """Positions ``[a, b)`` of every field (a dict of views)."""
        return {k: getattr(self, k)[:, a:b] for k in ("ctx", "yhat", "mean", "std", "resid", "observed",
                                                        "forecast", "target", "tmask")}


def _tokens(inputs: StreamInputs, a: int, b: int, horizon: int) -> tuple[dict, dict]:
    """Tokens ``a .. b - 1`` of a stream: token ``j`` writes the window at position ``j`` (its
    error known ``horizon`` steps later), then reads for the window at position ``j + horizon``.
    Each token also gets ``prev``, the newest error known when its window was forecast (the
    window ``horizon`` positions earlier; zeros before the stream's first)."""
    write = inputs.slice(a, b)
    read = inputs.slice(a + horizon, b + horizon)
    read["prev"] = write["resid"]
    lo, hi = a - horizon, b - horizon
    prev = inputs.resid[:, max(lo, 0):max(hi, 0)]
    if prev.shape[1] < b - a:  # positions before the stream's first: no error known
        prev = torch.cat([prev.new_zeros(prev.shape[0], b - a - prev.shape[1], prev.shape[2]), prev], 1)
    write["prev"] = prev
    return read, write


def _scan_stream(mem: StreamMemory, read: dict, write: dict, state=None, return_state=True):
    """Corrections [N, T, H] of the read windows after writing the write windows token by token."""
    rf = mem.features(read["ctx"], read["yhat"], read["prev"])
    wf = mem.features(write["ctx"], write["yhat"], write["prev"])
    return mem.scan(rf, wf, write["resid"], write["observed"], state, return_state)


def _predict(read: dict, corr: torch.Tensor) -> torch.Tensor:
    return read["forecast"] + read["std"][..., None] * corr


def _sq_err(pred, read):
    m = read["tmask"].to(pred.dtype)
    return (((pred - read["target"]) * m) ** 2).sum(), m.sum()


# --------------------------------------------------------------------------------- training


def train_stream_memory(mem: StreamMemory, train: StreamInputs, val: StreamInputs, horizon: int,
                        cfg: OnlineConfig, seed: int = 0, log=None) -> dict:
    """Train the stream memory by truncated back-propagation through time over the training
    stream (split into ``cfg.streams`` parallel streams of consecutive origins, segments of
    ``cfg.segment`` tokens, the memory state carried from segment to segment); early-stop on the
    validation stream's carried MSE. Returns a history dict; ``mem`` holds the best weights."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    H = horizon
    C, n = train.ctx.shape[0], len(train)
    tokens = n - H  # token j reads origin first + H + j and writes origin first + j
    parts = max(1, min(math.ceil(cfg.streams / C), tokens // max(1, cfg.segment)))
    bounds = np.linspace(0, tokens, parts + 1).astype(int)
    opt = torch.optim.AdamW([p for p in mem.parameters() if p.requires_grad], lr=cfg.memory_lr,
                            weight_decay=0.0)
    best = stream_mse(mem, val, H)  # the untrained memory is a candidate too
    best_state, history, bad = copy.deepcopy(mem.state_dict()), [{"epoch": -1, "val": best}], 0
    if log:
        log(f"  memory before training: val {best:.4f}")
    for epoch in range(cfg.memory_epochs):
        mem.train()
        state = None
        seg_len = min(cfg.segment, int(np.diff(bounds).min()))
        offset = int(torch.randint(0, max(1, seg_len), (1,), generator=g))  # vary the cuts
        losses = []
        for s in range(offset, int(np.diff(bounds).min()), seg_len):
            reads, writes = [], []
            for p in range(parts):
                a = bounds[p] + s
                b = min(a + seg_len, bounds[p + 1])
                if b - a < seg_len:
                    break
                r, w = _tokens(train, a, b, H)
                reads.append(r)
                writes.append(w)
            if len(writes) < parts:
                break
            read = {k: torch.cat([r[k] for r in reads]) for k in reads[0]}
            write = {k: torch.cat([w[k] for w in writes]) for k in writes[0]}
            corr, final = _scan_stream(mem, read, write, state)
            se, cnt = _sq_err(_predict(read, corr), read)
            loss = se / cnt.clamp_min(1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(mem.parameters(), 1.0)
            opt.step()
            state = tuple(tuple(t.detach() for t in ts) for ts in final)
            losses.append(float(loss.detach()))
        if not losses:  # no segment fitted this epoch's cut: nothing learnt, nothing to judge
            continue
        val_mse = stream_mse(mem, val, H)
        history.append({"epoch": epoch, "train": float(np.mean(losses)), "val": val_mse})
        if log:
            log(f"  memory epoch {epoch}: train {history[-1]['train']:.4f} val {val_mse:.4f}")
        if val_mse < best - 1e-6:
            best, best_state, bad = val_mse, copy.deepcopy(mem.state_dict()), 0
        else:
            bad += 1
            if bad >= cfg.memory_patience:
                break
    mem.load_state_dict(best_state)
    mem.eval()
    return {"history": history, "best_val": best}


@torch.no_grad()
def stream_mse(mem: StreamMemory, inputs: StreamInputs, horizon: int) -> float:
    """Carried MSE over every read origin of the stream ``inputs`` (memory from ``M_0``)."""
    mem.eval()
    n = len(inputs)
    read, write = _tokens(inputs, 0, n - horizon, horizon)
    corr, _ = _scan_stream(mem, read, write, None, False)
    se, cnt = _sq_err(_predict(read, corr), read)
    return float(se / cnt.clamp_min(1.0))


# --------------------------------------------------------------------------------- evaluation


def _metrics(pred: torch.Tensor, read: dict) -> dict:
    m = read["tmask"].double()
    err = (pred.double() - read["target"].double()) * m
    n = float(m.sum().clamp_min(1.0))
    return {"mse": float((err ** 2).sum()) / n, "mae": float(err.abs().sum()) / n}


@torch.no_grad()
def _static_modes(mem: StreamMemory, stream: StreamInputs, horizon: int, scored: int) -> dict:
    """``frozen`` and ``carried`` over the whole stream at once (batched; no parameter changes)."""
    out = {}
    n = len(stream)
    read, write = _tokens(stream, 0, n - horizon, horizon)
    a = stream.index(scored) - horizon
    sel = {k: v[:, a:] for k, v in read.items()}
    t0 = time.perf_counter()
    feats = mem.features(read["ctx"], read["yhat"])  # frozen: no error is carried
    frozen = _predict(read, mem.read(feats.reshape(-1, mem.dim)).view(*feats.shape[:2], horizon))
    t1 = time.perf_counter()
    corr, _ = _scan_stream(mem, read, write, None, False)
    carried = _predict(read, corr)
    t2 = time.perf_counter()
    steps = read["ctx"].shape[1]
    out["frozen"] = dict(_metrics(frozen[:, a:], sel), ms_per_step=1e3 * (t1 - t0) / steps,
                         pred=frozen[:, a:])
    out["carried"] = dict(_metrics(carried[:, a:], sel), ms_per_step=1e3 * (t2 - t1) / steps,
                          pred=carried[:, a:])
    return out


def _online_gd(module, mem: StreamMemory, values: torch.Tensor, stream: StreamInputs, horizon: int,
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
        corr = mem.read(mem.features(n["ctx"][0], n["yhat"][0], prev_w), state)  # [C, H]
        pred = f[0].T + n["std"][0][:, None] * corr
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
                nw = mem.normalise(b[PAST], b[PAST_MASK], issued.pop(w), b[FUTURE], b[FUTURE_MASK])
                err = nw["resid"][0]
                errors.append(err)
                wf = mem.features(nw["ctx"][0], nw["yhat"][0], prev_w)[:, None]
                rf = mem.features(nc["ctx"][0], nc["yhat"][0], err)[:, None]
                corr_t, state = mem.scan(rf, wf, err[:, None], nw["observed"][0][:, None], state)
                preds.append(fc[0].T + nc["std"][0][:, None] * corr_t[:, 0])
                issued[t] = fc
            else:
                rf = mem.features(nc["ctx"][0], nc["yhat"][0])
                preds.append(fc[0].T + nc["std"][0][:, None] * mem.read(rf))
    elapsed = time.perf_counter() - t0
    pred = torch.stack(preds, 1)  # [C, steps, H]
    a = scored - first
    read = stream.slice(H, H + len(preds))
    sel = {k: v[:, a:] for k, v in read.items()}
    return dict(_metrics(pred[:, a:], sel), ms_per_step=1e3 * elapsed / len(preds), pred=pred[:, a:])


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
        out.update(_static_modes(mem, stream, H, scored))
    lr = cfg.online_lr if online_lr is None else online_lr
    for mode in ("online_gd", "carried+online_gd"):
        if mode in modes:
            out[mode] = _online_gd(module, mem, values, stream, H, L, scored, lr, carried=mode != "online_gd")
    return {m: out[m] for m in modes if m in out}


# --------------------------------------------------------------------------------- one run


def _parts(pred: torch.Tensor, read: dict, parts: int = 20) -> list[float]:
    """Test MSE in ``parts`` contiguous stretches of the stream (time order)."""
    m = read["tmask"].double()
    se = (((pred.double() - read["target"].double()) * m) ** 2).sum((0, 2))
    cnt = m.sum((0, 2))
    n = se.shape[0]
    cuts = [i * n // parts for i in range(parts + 1)]
    return [float(se[a:b].sum() / cnt[a:b].sum().clamp_min(1)) for a, b in zip(cuts, cuts[1:])]


def choose_stream_memory(values: torch.Tensor, data: OnlineData, cfg: OnlineConfig, fc_train: torch.Tensor,
                         fc_stream: torch.Tensor, seed: int = 0, log=None):
    """The stream memory, chosen on the validation stream's carried MSE: each pace of
    ``cfg.paces`` (the gates' logits; the maps drawn once from ``seed``) times each read-out gain
    of ``cfg.gains``; gain 0 (no correction) when none beats the backbone there. With
    ``cfg.memory_epochs`` the chosen memory is also trained on the training stream and kept only
    if that wins too. Returns the memory and a summary dict."""
    L, H = cfg.seq_len, cfg.horizon
    tr_first, tr_last = L, data.borders["train"][1] - H
    first = int(data.stream_origins(L, H)[0]) - H
    va_last = data.borders["val"][1] - H
    torch.manual_seed(seed)
    base = StreamMemory(L, H, **cfg.memory)
    val_in = StreamInputs.build(base, values, first, va_last, fc_stream[: va_last - first + 1], L, H)
    read = _tokens(val_in, 0, len(val_in) - H, H)[0]
    val_backbone = float(_sq_err(read["forecast"], read)[0] / read["tmask"].sum().clamp_min(1))
    scores = {}
    for pace in cfg.paces:
        mem = copy.deepcopy(base)
        with torch.no_grad():
            mem.gates.bias.view(3, -1).copy_(torch.tensor(pace, dtype=torch.float32)[:, None])
            w = _tokens(val_in, 0, len(val_in) - H, H)[1]
            corr, _ = _scan_stream(mem, read, w, None, False)
        for gain in cfg.gains:  # the correction is linear in the read-out: one scan per pace
            se, cnt = _sq_err(read["forecast"] + gain * read["std"][..., None] * corr, read)
            scores[(tuple(pace), gain)] = (float(se / cnt.clamp_min(1.0)), mem)
    (pace, gain) = min(scores, key=lambda k: scores[k][0])
    best_val, mem = scores[(pace, gain)]
    if best_val >= val_backbone:  # no memory beats the backbone on validation: no correction
        gain, best_val = 0.0, val_backbone
    with torch.no_grad():
        mem.out.weight.mul_(gain)
    if log:
        log(f"  validation: backbone {val_backbone:.4f}; stream memory " + ", ".join(
            f"{p} x{g}: {v:.4f}" for (p, g), (v, _) in sorted(scores.items(), key=lambda kv: kv[1][0])[:3])
            + f" ... -> gain {gain}")
    trained = False
    if cfg.memory_epochs > 0 and gain > 0:
        train_in = StreamInputs.build(mem, values, tr_first, tr_last, fc_train, L, H)
        tuned = copy.deepcopy(mem)
        h = train_stream_memory(tuned, train_in, val_in, H, cfg, seed=seed, log=log)
        if h["best_val"] < best_val - 1e-9:
            mem, best_val, trained = tuned, h["best_val"], True
    return mem.eval(), {"val": best_val, "val_backbone": val_backbone, "pace": list(pace), "gain": gain,
                        "trained": trained}


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
    fc_train = backbone_forecasts(module.net, values, np.arange(tr_first, tr_last + 1), L, H)
    tf = time.perf_counter()
    fc_stream = backbone_forecasts(module.net, values, np.arange(first, last + 1), L, H)
    backbone_ms = 1e3 * (time.perf_counter() - tf) / (last - first + 1)  # per window, batched
    t1 = time.perf_counter()
    mem, hist = choose_stream_memory(values, data, cfg, fc_train, fc_stream, seed=seed, log=log)
    stream = StreamInputs.build(mem, values, first, last, fc_stream, L, H)
    va_last = data.borders["val"][1] - H
    val_in = StreamInputs.build(mem, values, first, va_last, fc_stream[: va_last - first + 1], L, H)
    memory_s = time.perf_counter() - t1
    lr = online_lrs[0] if online_lrs else cfg.online_lr
    chosen = {}
    if len(online_lrs) > 1 and {"online_gd", "carried+online_gd"} & set(modes):
        for c in online_lrs:
            r = _online_gd(module, mem, values, val_in, H, L, first + H, c, carried=False)
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
        "val_backbone_mse": hist["val_backbone"], "memory_pace": hist["pace"], "memory_gain": hist["gain"],
        "memory_trained": hist["trained"],
        "backbone_mse": _metrics(read["forecast"], read)["mse"],
        "backbone_seconds": round(backbone_s, 1), "memory_seconds": round(memory_s, 1),
        "backbone_epochs": int(getattr(module, "fit_epochs_", -1)) + 1,
        "online_lr": lr, "online_lr_val": chosen,
        "params": sum(p.numel() for p in module.parameters()),
        "memory_params": sum(p.numel() for p in mem.parameters()),
        "network": cfg.network, "memory": cfg.memory, "machine": machine_description(),
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
    }
    out = []
    for mode, r in res.items():
        # the batched modes' cost per step includes the backbone's forecast of the window
        ms = r["ms_per_step"] + (backbone_ms if mode in ("frozen", "carried") else 0.0)
        out.append({**common, "mode": mode, "mse": r["mse"], "mae": r["mae"],
                    "ms_per_step": round(ms, 4), "parts": _parts(r["pred"], read)})
    return out
