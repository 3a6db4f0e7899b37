"""Each series' test-time memory for the forecaster (``test_time_memory=True``).

The memory is the online benchmark's carried mode (:class:`titans_ts.model.stream_memory.StreamMemory`): one
stream memory per series and target channel, written, in time order, with the realised error of
every window of the series' history whose target has fully arrived, and read by the next
forecast. The store keeps per series the memory state after the last written window, the errors
of the last ``horizon`` written windows (what the next write and read see as the newest known
error), the next window to write, and the channel scales that floor a window's spread. ``update``
writes the windows the new rows complete; no trained parameter changes.

As in the online benchmark's carried mode, each forecast applies the memory's correction with the
read-out gain chosen along the series' own stream (the memory's
:class:`~titans_ts.model.stream_memory.GainSelector`): the store keeps per channel the discounted
squared error each gain would have made on the windows completed so far, and the corrections read
for the windows not completed yet.

The memory of a series seen in training starts at the end of its training rows (its validation
tail, ``h`` windows before): the windows training fitted are not test-time evidence, in the same
way the online benchmark's stream starts after the training rows. Series first seen by
``predict(df=...)`` are new to the model: their memory runs over their whole history.

A series' anchor (its first written window and its channel scales) is fixed at its first write
and saved with the model, so a model saved after ``update`` and loaded again rebuilds exactly the
memory it had (the anchor does not move with the history's length).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from ..datasets.windows import PAST, PAST_MASK, TIME_INDEX, SeriesWindows, collate_windows
from ..model.stream_memory import StreamMemory, StreamState

__all__ = ["SeriesMemory", "SeriesStream", "BATCH", "CHUNK", "first_origin"]

BATCH = 256  # windows per forward pass
CHUNK = 4096  # windows written per scan (bounds the memory a long history needs)


def first_origin(length: int, seq_len: int, horizon: int) -> int:
    """The first window of a series of ``length`` steps the memory may write (as training starts;
    ``fit`` starts it later, where the training rows end: ``SeriesMemory(start=...)``)."""
    return max(1, min(seq_len, length - horizon))


@dataclass
class SeriesStream:
    """One series' carried memory.

    Attributes:
        start: the earliest window its anchor may start at.
        anchor: ``(first origin, [C] channel scales)``, fixed at the first write (None before).
        state: the stream memory's state after the last written window (None: none written).
        errors: [C, k <= H, H] normalised errors of the last written windows, oldest first.
        next_write: origin of the next window to write (None before the first write).
        gain_errors: [G, C] discounted squared error of each gain pair (GainSelector).
        pending: origin -> (forecast [C, H], corrections [C, K, H]) of the windows read and not yet
            complete (data units).
        written: windows written so far.
    """

    start: int = 0
    anchor: tuple | None = None
    state: StreamState | None = None
    errors: torch.Tensor | None = None
    next_write: int | None = None
    gain_errors: torch.Tensor | None = None
    pending: dict = field(default_factory=dict)
    written: int = 0

    @property
    def scales(self) -> torch.Tensor | None:
        return None if self.anchor is None else self.anchor[1]

    def snapshot(self) -> SeriesStream:
        """A copy that later writes to this record do not change (its tensors are never written in
        place; the pending reads are copied)."""
        return copy.copy(self) if not self.pending else \
            SeriesStream(**{**self.__dict__, "pending": dict(self.pending)})


class SeriesMemory:
    """Carried stream-memory states of ``n`` series (see the module docstring): a list of
    :class:`SeriesStream` records."""

    def __init__(self, n: int, anchors: list | None = None, start: list[int] | None = None) -> None:
        """``anchors``: per series ``(first origin, [C] scales)`` or None (fixed at first write);
        ``start``: per series the earliest window an anchor may start at (None: any)."""
        if anchors is not None and len(anchors) != n:
            raise ValueError(f"{len(anchors)} memory anchors for {n} series")
        if start is not None and len(start) != n:
            raise ValueError(f"{len(start)} memory starts for {n} series")
        self.series = [SeriesStream(start=0 if start is None else int(start[i]),
                                    anchor=None if anchors is None else anchors[i]) for i in range(n)]

    @classmethod
    def of(cls, records: list[SeriesStream]) -> SeriesMemory:
        """A store over the given records (snapshots: the originals are left as they are)."""
        store = cls(0)
        store.series = [r.snapshot() for r in records]
        return store

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, i: int) -> SeriesStream:
        return self.series[i]

    @property
    def anchors(self) -> list:
        return [r.anchor for r in self.series]

    @torch.no_grad()
    def write(self, net, mem: StreamMemory, values: list[np.ndarray], masks: list[np.ndarray], firsts,
              seq_len: int, horizon: int, n_targets: int, which) -> None:
        """Write every complete, not yet written window of the series ``which`` (oldest first)."""
        H, C = horizon, n_targets
        for i in which:
            rec = self.series[i]
            T = values[i].shape[0]
            if rec.next_write is None:
                if rec.anchor is None:
                    v = values[i][:, :C]
                    m = masks[i][:, :C]
                    sd = np.array([np.nanstd(v[m[:, c], c]) if m[:, c].any() else 1.0 for c in range(C)])
                    rec.anchor = (max(first_origin(T, seq_len, H), rec.start),
                                  torch.tensor(np.where(sd > 0, sd, 1.0), dtype=torch.float32))
                rec.next_write = rec.anchor[0]
                rec.gain_errors = mem.selector.initial(C)
            a = rec.next_write
            n = T - H - a + 1  # windows to write: origins a .. T - H
            for j0 in range(0, max(n, 0), CHUNK):
                m = min(n, j0 + CHUNK) - j0
                # the windows written (origins a + j0 ...) and those read after each write (H later)
                origins = np.arange(a + j0, a + j0 + m + H)
                inputs = _inputs(net, mem, values[i], masks[i], None if firsts is None else firsts[i],
                                 rec.scales, origins, seq_len, H, C)
                _scan(rec, mem, inputs, m, H, a + j0)
            if n > 0:
                rec.next_write = T - H + 1
                rec.written += n

    def gain(self, i: int, mem: StreamMemory) -> torch.Tensor:
        """Per channel the read-out gains (main, level memory[, fallback]) series ``i``'s next
        forecast uses [C, K] (before any window of it was read: the first candidate, no correction with the
        default gains)."""
        rec = self.series[i]
        if rec.gain_errors is None:
            return mem.candidates[0].expand(rec.errors.shape[0] if rec.errors is not None else 1,
                                            mem.selector.components)
        return mem.selector.best(rec.gain_errors)

    @torch.no_grad()
    def correction(self, i: int, mem: StreamMemory, past: torch.Tensor, mask: torch.Tensor,
                   forecast: torch.Tensor) -> torch.Tensor:
        """The correction [H, C] (data units) of the forecast [H, C] of series ``i`` made from
        the context ``past`` / ``mask`` [L, C] (its last window), with the series' gain."""
        rec = self.series[i]
        assert rec.scales is not None  # fixed at the series' first write, before any correction
        n = mem.normalise(past[None], mask[None], forecast[None], scale=rec.scales)
        written = rec.errors
        prev = None if written is None or written.shape[1] == 0 else written[:, -1]
        feats = mem.features(n["ctx"][0], n["yhat"][0], prev)
        corr = mem.with_fallback(mem.read(feats, rec.state), n["ctx"][0], n["yhat"][0])  # [C, K, H]
        gain = self.gain(i, mem).to(corr.dtype)  # [C, K]
        return mem.selector.apply(torch.zeros_like(corr[:, 0]), n["std"][0], corr, gain).T


def _inputs(net, mem, values, masks, first, scales, origins, seq_len: int, H: int, C: int) -> dict:
    """The memory's inputs [C, n, ...] of the windows of ``origins`` (with the backbone's
    forecast ``forecast`` and, where the target has arrived, ``target`` / ``tmask``)."""
    T = values.shape[0]
    ds = SeriesWindows([values], seq_len, 0, [(0, int(o)) for o in origins], masks=[masks],
                       n_targets=C, first_index=None if first is None else [first])
    parts = []
    for b0 in range(0, len(origins), BATCH):
        batch = collate_windows([ds[k] for k in range(b0, min(b0 + BATCH, len(origins)))])
        out = net(batch[PAST], batch[PAST_MASK], time_index=batch.get(TIME_INDEX))
        f = net.point_forecast(out)[..., :C]
        target = torch.zeros_like(f)
        tmask = torch.zeros_like(f, dtype=torch.bool)
        for k, o in enumerate(origins[b0:b0 + BATCH]):
            if o + H <= T:
                tmask[k] = torch.from_numpy(masks[o:o + H, :C])
                target[k] = torch.from_numpy(np.where(masks[o:o + H, :C], values[o:o + H, :C], 0.0))
        n = mem.normalise(batch[PAST][..., :C], batch[PAST_MASK][..., :C], f, target, tmask,
                          scale=scales)
        n.update(forecast=f.transpose(1, 2), target=target.transpose(1, 2), tmask=tmask.transpose(1, 2))
        parts.append(n)
    return {k: torch.cat([p[k] for p in parts]).transpose(0, 1) for k in parts[0]}  # [C, n, ...]


def _scan(rec: SeriesStream, mem: StreamMemory, x: dict, m: int, H: int, first: int) -> None:
    """Write the first ``m`` windows of ``x`` (origins ``first ...``) after the series' state;
    each write is followed by the read of the window ``H`` later (kept until it completes)."""
    w = {k: v[:, :m] for k, v in x.items()}
    r = {k: v[:, H:H + m] for k, v in x.items()}
    resid = w["resid"]
    known = rec.errors if rec.errors is not None else resid.new_zeros(resid.shape[0], 0, H)
    # the newest error known when each written window was forecast: the window H positions earlier
    allerr = torch.cat([known, resid], 1)
    k = known.shape[1]
    idx = torch.arange(m) + k - H
    prev = torch.where((idx >= 0)[None, :, None], allerr[:, idx.clamp_min(0)], torch.zeros_like(resid))
    wf = mem.features(w["ctx"], w["yhat"], prev)
    rf = mem.features(r["ctx"], r["yhat"], resid)
    corr, rec.state = mem.scan(rf, wf, resid, w["observed"], rec.state)
    corr = r["std"][..., None, None] * mem.with_fallback(corr, r["ctx"], r["yhat"])  # data units [C, m, K, H]
    for j in range(m):
        rec.pending[first + H + j] = (r["forecast"][:, j], corr[:, j])
    # the windows completed now, in time order: each gain's error on those that were read
    sel, acc = mem.selector, rec.gain_errors
    assert acc is not None  # write() starts every series' errors before its first scan
    for j in range(m):
        got = rec.pending.pop(first + j, None)
        if got is not None:
            f, c = got
            acc = sel.accumulate(acc, sel.errors(f, 1.0, c, w["target"][:, j], w["tmask"][:, j]))
    rec.gain_errors = acc
    rec.errors = allerr[:, -H:]
