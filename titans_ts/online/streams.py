"""A stream of consecutive windows as the stream memory sees it (:class:`StreamInputs`), the token
layout of writes and reads, and the carried forecasts of a stream."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..datasets.windows import FUTURE, FUTURE_MASK, PAST, PAST_MASK
from ..model.stream_memory import GainSelector, StreamMemory, StreamState
from .backbone import origin_batch

__all__ = ["StreamInputs", "stream_tokens", "scan_stream", "corrected", "carried_forecast", "squared_error"]


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


def scan_stream(mem: StreamMemory, read: dict, write: dict, state: StreamState | None = None,
                return_state: bool = True):
    """Corrections [N, T, 2, H] (main and level memory) of the read windows after writing the
    write windows token by token."""
    rf = mem.features(read["ctx"], read["yhat"], read["prev"])
    wf = mem.features(write["ctx"], write["yhat"], write["prev"])
    return mem.scan(rf, wf, write["resid"], write["observed"], state, return_state)


def corrected(read: dict, corr: torch.Tensor) -> torch.Tensor:
    """The forecasts with both corrections ``corr`` [..., 2, H] applied in full."""
    return GainSelector.apply(read["forecast"], read["std"], corr, torch.ones(2, dtype=corr.dtype))


def carried_forecast(mem: StreamMemory, read: dict, corr: torch.Tensor, horizon: int):
    """The carried forecasts of the read windows, the corrections ``corr`` [C, T, 2, H] (and the
    fallback onto the newest value, when the memory's selector has it) scaled by the gains chosen
    along the stream (:meth:`GainSelector.choose`: the read of token ``j`` is known ``horizon``
    tokens later). Returns the forecasts [C, T, H] and the gains used [C, T, K]."""
    sel = mem.selector
    corr = mem.with_fallback(corr, read["ctx"], read["yhat"])
    se = sel.errors(read["forecast"], read["std"], corr, read["target"], read["tmask"])
    choice, _ = sel.choose(se, horizon)
    gain = sel.candidates.to(corr.dtype)[choice]
    return sel.apply(read["forecast"], read["std"], corr, gain), gain


def squared_error(pred, read):
    m = read["tmask"].to(pred.dtype)
    return (((pred - read["target"]) * m) ** 2).sum(), m.sum()
