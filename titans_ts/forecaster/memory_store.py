"""Each series' test-time memory for the forecaster (``test_time_memory=True``).

The memory is the online benchmark's carried mode (:class:`titans_ts.online.StreamMemory`): one
stream memory per series and target channel, written, in time order, with the realised error of
every window of the series' history whose target has fully arrived, and read by the next
forecast. The store keeps per series the memory state after the last written window, the errors
of the last ``horizon`` written windows (what the next write and read see as the newest known
error), the next window to write, and the channel scales that floor a window's spread. ``update``
writes the windows the new rows complete; no trained parameter changes.

As in the online benchmark's carried mode, each forecast applies the memory's correction with the
read-out gain chosen along the series' own stream (``StreamMemory.gains``): the store keeps per
channel the discounted squared error each gain would have made on the windows completed so far,
and the corrections read for the windows not completed yet.

The memory of a series seen in training starts at the end of its training rows (its validation
tail, ``h`` windows before): the windows training fitted are not test-time evidence, in the same
way the online benchmark's stream starts after the training rows. Series first seen by
``predict(df=...)`` are new to the model: their memory runs over their whole history.

A series' anchor (its first written window and its channel scales) is fixed at its first write
and saved with the model, so a model saved after ``update`` and loaded again rebuilds exactly the
memory it had (the anchor does not move with the history's length).
"""

from __future__ import annotations

import numpy as np
import torch

from ..datasets.windows import PAST, PAST_MASK, TIME_INDEX, SeriesWindows, collate_windows

__all__ = ["SeriesMemory", "BATCH", "CHUNK", "first_origin"]

BATCH = 256  # windows per forward pass
CHUNK = 4096  # windows written per scan (bounds the memory a long history needs)


def first_origin(length: int, seq_len: int, horizon: int) -> int:
    """The first window of a series of ``length`` steps the memory may write (as training starts;
    ``fit`` starts it later, where the training rows end: ``SeriesMemory(start=...)``)."""
    return max(1, min(seq_len, length - horizon))


class SeriesMemory:
    """Carried stream-memory states of ``n`` series (see the module docstring)."""

    def __init__(self, n: int, anchors: list | None = None, start: list[int] | None = None) -> None:
        """``anchors``: per series ``(first origin, [C] scales)`` or None (fixed at first write);
        ``start``: per series the earliest window an anchor may start at (None: any)."""
        if anchors is not None and len(anchors) != n:
            raise ValueError(f"{len(anchors)} memory anchors for {n} series")
        if start is not None and len(start) != n:
            raise ValueError(f"{len(start)} memory starts for {n} series")
        self.start = list(start) if start is not None else [0] * n
        self.anchors: list = list(anchors) if anchors is not None else [None] * n
        self.states: list = [None] * n          # StreamMemory states (C rows)
        self.errors: list = [None] * n          # [C, k <= H, H] normalised errors, oldest first
        self.next_write: list = [None] * n      # origin of the next window to write
        self.scales: list = [None] * n          # [C] channel scales (spread floors)
        self.gain_errors: list = [None] * n     # [G, C] discounted squared error of each gain pair
        self.pending: list = [{} for _ in range(n)]  # origin -> (forecast [C, H], corrections [C, 2, H]), read
        self.written: list[int] = [0] * n       # windows written so far

    def __len__(self) -> int:
        return len(self.states)

    @torch.no_grad()
    def write(self, net, mem, values: list[np.ndarray], masks: list[np.ndarray], firsts, seq_len: int,
              horizon: int, n_targets: int, which) -> None:
        """Write every complete, not yet written window of the series ``which`` (oldest first)."""
        H, C = horizon, n_targets
        for i in which:
            T = values[i].shape[0]
            if self.next_write[i] is None:
                if self.anchors[i] is None:
                    v = values[i][:, :C]
                    m = masks[i][:, :C]
                    sd = np.array([np.nanstd(v[m[:, c], c]) if m[:, c].any() else 1.0 for c in range(C)])
                    self.anchors[i] = (max(first_origin(T, seq_len, H), self.start[i]),
                                       torch.tensor(np.where(sd > 0, sd, 1.0), dtype=torch.float32))
                self.next_write[i], self.scales[i] = self.anchors[i]
                self.gain_errors[i] = torch.zeros(len(mem.candidates), C)
            a = self.next_write[i]
            n = T - H - a + 1  # windows to write: origins a .. T - H
            for j0 in range(0, max(n, 0), CHUNK):
                m = min(n, j0 + CHUNK) - j0
                # the windows written (origins a + j0 ...) and those read after each write (H later)
                origins = np.arange(a + j0, a + j0 + m + H)
                inputs = self._inputs(net, mem, values[i], masks[i], None if firsts is None else firsts[i],
                                      i, origins, seq_len, H, C)
                self._scan(i, mem, inputs, m, H, a + j0)
            if n > 0:
                self.next_write[i] = T - H + 1
                self.written[i] += n

    def _inputs(self, net, mem, values, masks, first, i: int, origins, seq_len: int, H: int, C: int) -> dict:
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
                              scale=self.scales[i])
            n.update(forecast=f.transpose(1, 2), target=target.transpose(1, 2), tmask=tmask.transpose(1, 2))
            parts.append(n)
        return {k: torch.cat([p[k] for p in parts]).transpose(0, 1) for k in parts[0]}  # [C, n, ...]

    def _scan(self, i: int, mem, x: dict, m: int, H: int, first: int) -> None:
        """Write the first ``m`` windows of ``x`` (origins ``first ...``) after the series' state;
        each write is followed by the read of the window ``H`` later (kept until it completes)."""
        w = {k: v[:, :m] for k, v in x.items()}
        r = {k: v[:, H:H + m] for k, v in x.items()}
        resid = w["resid"]
        known = self.errors[i] if self.errors[i] is not None else resid.new_zeros(resid.shape[0], 0, H)
        # the newest error known when each written window was forecast: the window H positions earlier
        allerr = torch.cat([known, resid], 1)
        k = known.shape[1]
        idx = torch.arange(m) + k - H
        prev = torch.where((idx >= 0)[None, :, None], allerr[:, idx.clamp_min(0)], torch.zeros_like(resid))
        wf = mem.features(w["ctx"], w["yhat"], prev)
        rf = mem.features(r["ctx"], r["yhat"], resid)
        corr, self.states[i] = mem.scan(rf, wf, resid, w["observed"], self.states[i])
        corr = r["std"][..., None, None] * corr  # data units of the store [C, m, 2, H]
        pending = self.pending[i]
        for j in range(m):
            pending[first + H + j] = (r["forecast"][:, j], corr[:, j])
        # the windows completed now, in time order: each gain's error on those that were read
        lam = 0.5 ** (1.0 / mem.gain_half_life)
        gains = mem.candidates[:, None, :, None]  # [G, 1, 2, 1]
        acc = self.gain_errors[i]
        for j in range(m):
            got = pending.pop(first + j, None)
            if got is not None:
                f, c = got
                mask = w["tmask"][:, j].to(f.dtype)
                acc = lam * acc + (((f + (gains * c).sum(-2) - w["target"][:, j]) * mask) ** 2).sum(-1)
        self.gain_errors[i] = acc
        self.errors[i] = allerr[:, -H:]

    def gain(self, i: int, mem) -> torch.Tensor:
        """Per channel the read-out gain pair (main, level memory) series ``i``'s next forecast
        uses [C, 2] (before any window of it was read: the first candidate, no correction with the
        default gains)."""
        if self.gain_errors[i] is None:
            return mem.candidates[0].expand(self.errors[i].shape[0] if self.errors[i] is not None else 1, 2)
        return mem.candidates[self.gain_errors[i].argmin(0)]

    @torch.no_grad()
    def correction(self, i: int, mem, past: torch.Tensor, mask: torch.Tensor, forecast: torch.Tensor):
        """The correction [H, C] (data units) of the forecast [H, C] of series ``i`` made from
        the context ``past`` / ``mask`` [L, C] (its last window), with the series' gain."""
        n = mem.normalise(past[None], mask[None], forecast[None], scale=self.scales[i])
        written = self.errors[i]
        prev = None if written is None or written.shape[1] == 0 else written[:, -1]
        feats = mem.features(n["ctx"][0], n["yhat"][0], prev)
        corr = mem.read(feats, self.states[i])  # [C, 2, H]
        gain = self.gain(i, mem).to(corr.dtype)  # [C, 2]
        return (mem.corrected_forecast(torch.zeros_like(corr[:, 0]), n["std"][0], corr, gain)).T
