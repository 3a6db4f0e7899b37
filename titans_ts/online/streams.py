"""A stream of consecutive windows as the stream memory sees it (:class:`StreamInputs`), the token
layout of writes and reads, and the memory's outer training by truncated back-propagation."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..datasets.windows import FUTURE, FUTURE_MASK, PAST, PAST_MASK
from ..model.stream_memory import StreamMemory, online_gain_choice
from .backbone import origin_batch
from .config import OnlineConfig

__all__ = ["StreamInputs", "stream_tokens", "scan_stream", "corrected", "carried_forecast", "squared_error",
           "stream_mse", "train_stream_memory"]


@dataclass
class StreamInputs:
    """The normalised per-window inputs of consecutive origins ``first .. first + n - 1``, with
    the target where known: tensors [C, n, ...] (one stream per channel)."""

    first: int
    ctx: torch.Tensor
    yhat: torch.Tensor
    std: torch.Tensor
    resid: torch.Tensor
    observed: torch.Tensor
    forecast: torch.Tensor   # [C, n, H] backbone forecast, data units
    target: torch.Tensor     # [C, n, H] (0 where unknown)
    tmask: torch.Tensor      # [C, n, H] bool

    FIELDS = ("ctx", "yhat", "std", "resid", "observed", "forecast", "target", "tmask")

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
            n.pop("mean")
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
        return {k: getattr(self, k)[:, a:b] for k in self.FIELDS}

    def prefix(self, last: int) -> "StreamInputs":
        """The stream's origins ``first .. last`` (views)."""
        n = self.index(last) + 1
        return StreamInputs(first=self.first, **{k: v[:, :n] for k, v in self.slice(0, n).items()})


def stream_tokens(inputs: StreamInputs, a: int, b: int, horizon: int) -> tuple[dict, dict]:
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


def scan_stream(mem: StreamMemory, read: dict, write: dict, state=None, return_state=True):
    """Corrections [N, T, 2, H] (main and level memory) of the read windows after writing the
    write windows token by token."""
    rf = mem.features(read["ctx"], read["yhat"], read["prev"])
    wf = mem.features(write["ctx"], write["yhat"], write["prev"])
    return mem.scan(rf, wf, write["resid"], write["observed"], state, return_state)


def corrected(read: dict, corr: torch.Tensor) -> torch.Tensor:
    """The forecasts with both corrections ``corr`` [..., 2, H] applied in full."""
    return read["forecast"] + read["std"][..., None] * corr.sum(-2)


def carried_forecast(mem: StreamMemory, read: dict, corr: torch.Tensor, horizon: int):
    """The carried forecasts of the read windows, the corrections ``corr`` [C, T, 2, H] scaled by
    the gain pair chosen along the stream among ``mem.candidates`` (:func:`online_gain_choice`:
    the read of token ``j`` is known ``horizon`` tokens later). Returns the forecasts [C, T, H]
    and the gain pairs used [C, T, 2]."""
    m = read["tmask"].to(corr.dtype)
    cands = mem.candidates.to(corr.dtype)
    se = torch.stack([(((mem.corrected_forecast(read["forecast"], read["std"], corr, g) - read["target"]) * m) ** 2)
                      .sum(-1) for g in cands])
    choice, _ = online_gain_choice(se, horizon, mem.gain_half_life)
    gain = cands[choice]
    return mem.corrected_forecast(read["forecast"], read["std"], corr, gain), gain


def squared_error(pred, read):
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
                r, w = stream_tokens(train, a, b, H)
                reads.append(r)
                writes.append(w)
            if len(writes) < parts:
                break
            read = {k: torch.cat([r[k] for r in reads]) for k in reads[0]}
            write = {k: torch.cat([w[k] for w in writes]) for k in writes[0]}
            corr, final = scan_stream(mem, read, write, state)
            se, cnt = squared_error(corrected(read, corr), read)
            loss = se / cnt.clamp_min(1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(mem.parameters(), 1.0)
            opt.step()
            state = _detached(final)
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


def _detached(state):
    """A (nested tuple) stream state cut from the graph."""
    return state.detach() if isinstance(state, torch.Tensor) else tuple(_detached(s) for s in state)


@torch.no_grad()
def stream_mse(mem: StreamMemory, inputs: StreamInputs, horizon: int) -> float:
    """Carried MSE over every read origin of the stream ``inputs`` (memory from ``M_0``)."""
    mem.eval()
    n = len(inputs)
    read, write = stream_tokens(inputs, 0, n - horizon, horizon)
    corr, _ = scan_stream(mem, read, write, None, False)
    se, cnt = squared_error(corrected(read, corr), read)
    return float(se / cnt.clamp_min(1.0))
