"""Each series' memory carried across windows (test-time memorisation) for the forecaster.

The store holds, per series, one :class:`titans_ts.MemoryState` per block (None until the series
has written anything) and how many of its steps have been written. Writing reads blocks of
``seq_len`` steps, oldest first, aligned to the series' start, up to the start of the current
context; several series write in one batched forward pass (their states batched with
:meth:`MemoryState.cat` and split back with :meth:`MemoryState.split`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..datasets.windows import PAST, PAST_MASK, TIME_INDEX, SeriesWindows, collate_windows
from ..memory import MemoryState

__all__ = ["SeriesMemory", "BATCH"]

BATCH = 256  # series per forward pass


class SeriesMemory:
    """Carried memory states of ``n`` series (see the module docstring)."""

    def __init__(self, n: int) -> None:
        self.states: list[list | None] = [None] * n
        self.written: list[int] = [0] * n

    def __len__(self) -> int:
        return len(self.states)

    def extend(self, n: int) -> None:
        self.states += [None] * n
        self.written += [0] * n

    def batched(self, net, idx: list[int], n_inputs: int) -> list | None:
        """The states of the series ``idx`` as one list of per-block batched states (the learned
        initial memory for series that have none yet); None if none of them has a state."""
        if all(self.states[i] is None for i in idx):
            return None
        rows = net.memory_rows(1, n_inputs)
        per = [self.states[i] if self.states[i] is not None else initial_states(net, rows)
               for i in idx]
        return [None if per[0][b] is None else MemoryState.cat([p[b] for p in per])
                for b in range(len(per[0]))]

    @torch.no_grad()
    def write(self, net, values: list[np.ndarray], masks: list[np.ndarray],
              firsts: list[int] | None, seq_len: int, which, surprise_clamp: float | None) -> None:
        """Write every complete, not yet written block of ``seq_len`` steps that ends at or before
        the start of each series' current context (its last ``seq_len`` steps) into its memory,
        oldest first."""
        which = list(which)
        n_inputs = values[0].shape[1]
        while True:
            todo = [i for i in which if self.written[i] + seq_len <= values[i].shape[0] - seq_len]
            if not todo:
                return
            for start in range(0, len(todo), BATCH):
                part = todo[start:start + BATCH]
                windows = SeriesWindows([values[i] for i in part], seq_len, 0,
                                        [(k, self.written[i] + seq_len) for k, i in enumerate(part)],
                                        masks=[masks[i] for i in part],
                                        first_index=None if firsts is None else [firsts[i] for i in part])
                batch = collate_windows([windows[k] for k in range(len(part))])
                _, finals = net(batch[PAST], batch[PAST_MASK], states=self.batched(net, part, n_inputs),
                                return_states=True, time_index=batch.get(TIME_INDEX),
                                surprise_clamp=surprise_clamp)
                split = [[None] * len(finals) for _ in part]
                for b, st in enumerate(finals):
                    if st is not None:
                        for k, s in enumerate(st.split(len(part))):
                            split[k][b] = s
                for k, i in enumerate(part):
                    self.states[i] = split[k]
                    self.written[i] += seq_len


def initial_states(net, rows: int) -> list:
    """One learned-initial-memory state per block of ``net`` for ``rows`` sequences (None for a
    block without memory), in their own storage."""
    return [blk.memory.initial_state(rows).contiguous() if hasattr(blk, "memory") else None
            for blk in net.blocks]
