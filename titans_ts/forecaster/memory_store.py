"""Each series' test-time memory for the forecaster (``test_time_memory=True``).

The memory is the online benchmark's carried mode (:class:`titans_ts.online.StreamMemory`): one
stream memory per series and target channel, written, in time order, with the realised error of
every window of the series' history whose target has fully arrived, and read by the next
forecast. The store keeps per series the memory state after the last written window, the errors
of the last ``horizon`` written windows (what the next write and read see as the newest known
error), the next window to write, and the channel scales that floor a window's spread. ``update``
writes the windows the new rows complete; no trained parameter changes.

A series' anchor (its first written window and its channel scales) is fixed at its first write
and saved with the model, so a model saved after ``update`` and loaded again rebuilds exactly the
memory it had (the anchor does not move with the history's length).
"""

from __future__ import annotations

import numpy as np
import torch

from ..datasets.windows import PAST, PAST_MASK, TIME_INDEX, SeriesWindows, collate_windows

__all__ = ["SeriesMemory", "BATCH", "first_origin"]

BATCH = 256  # windows per forward pass


def first_origin(length: int, seq_len: int, horizon: int) -> int:
    """The first window of a series of ``length`` steps the memory writes (as training starts)."""
    return max(1, min(seq_len, length - horizon))


class SeriesMemory:
    """Carried stream-memory states of ``n`` series (see the module docstring)."""

    def __init__(self, n: int, anchors: list | None = None) -> None:
        """``anchors``: per series ``(first origin, [C] scales)`` or None (fixed at first write)."""
        if anchors is not None and len(anchors) != n:
            raise ValueError(f"{len(anchors)} memory anchors for {n} series")
        self.anchors: list = list(anchors) if anchors is not None else [None] * n
        self.states: list = [None] * n          # (weights, momentum) of [C, heads, d, d]
        self.errors: list = [None] * n          # [C, k <= H, H] normalised errors, oldest first
        self.next_write: list = [None] * n      # origin of the next window to write
        self.scales: list = [None] * n          # [C] channel scales (spread floors)
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
                    self.anchors[i] = (first_origin(T, seq_len, H),
                                       torch.tensor(np.where(sd > 0, sd, 1.0), dtype=torch.float32))
                self.next_write[i], self.scales[i] = self.anchors[i]
            origins = list(range(self.next_write[i], T - H + 1))
            if not origins:
                continue
            ds = SeriesWindows([values[i]], seq_len, H, [(0, o) for o in origins], masks=[masks[i]],
                               n_targets=C, first_index=None if firsts is None else [firsts[i]])
            for a in range(0, len(origins), BATCH):
                batch = collate_windows([ds[k] for k in range(a, min(a + BATCH, len(origins)))])
                out = net(batch[PAST], batch[PAST_MASK], time_index=batch.get(TIME_INDEX))
                f = net.point_forecast(out)[..., :C]
                n = mem.normalise(batch[PAST][..., :C], batch[PAST_MASK][..., :C], f,
                                  batch["future"][..., :C], batch["future_mask"][..., :C],
                                  scale=self.scales[i])
                self._scan(i, mem, n, H)
            self.next_write[i] = T - H + 1
            self.written[i] += len(origins)

    def _scan(self, i: int, mem, n: dict, H: int) -> None:
        """Write windows (``n``: their normalised inputs [B, C, ...]) after the series' state."""
        ctx, yhat = n["ctx"].transpose(0, 1), n["yhat"].transpose(0, 1)      # [C, B, ...]
        resid, observed = n["resid"].transpose(0, 1), n["observed"].transpose(0, 1)
        B = ctx.shape[1]
        known = self.errors[i] if self.errors[i] is not None else resid.new_zeros(resid.shape[0], 0, H)
        # the newest error known when each window was forecast: the window H positions earlier
        allerr = torch.cat([known, resid], 1)
        k = known.shape[1]
        idx = torch.arange(B) + k - H
        prev = torch.where((idx >= 0)[None, :, None], allerr[:, idx.clamp_min(0)], torch.zeros_like(resid))
        feats = mem.features(ctx, yhat, prev)
        _, self.states[i] = mem.scan(feats, feats, resid, observed, self.states[i])
        self.errors[i] = allerr[:, -H:]

    @torch.no_grad()
    def correction(self, i: int, mem, past: torch.Tensor, mask: torch.Tensor, forecast: torch.Tensor):
        """The correction [H, C] (data units) of the forecast [H, C] of series ``i`` made from
        the context ``past`` / ``mask`` [L, C] (its last window)."""
        n = mem.normalise(past[None], mask[None], forecast[None], scale=self.scales[i])
        written = self.errors[i]
        prev = None if written is None or written.shape[1] == 0 else written[:, -1]
        feats = mem.features(n["ctx"][0], n["yhat"][0], prev)
        corr = mem.read(feats, self.states[i])  # [C, H]
        return (n["std"][0][:, None] * corr).T
