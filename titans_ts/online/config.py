"""Settings of an online run and the names of its modes."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MODES", "OnlineConfig"]

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
    # the CPU budget: at most this many batches per epoch (24 x 128 windows covers ETTh2's whole
    # training split; ETTm1 and weather see a fresh random quarter to a third of theirs each epoch)
    limit_train_batches: int | None = 24
    # the stream memory (StreamMemory) and the level memory beside it (its settings written out so a
    # record names them)
    memory: dict = field(default_factory=lambda: dict(dim=64, heads=4, depth=1, max_lr=0.5, chunk_size=1,
                                                      soft_norm=True, learn_gates=False, level=True,
                                                      level_window=24, level_lr=5e-4, level_half_life=693.0))
    # (forgetting, momentum, inner learning-rate) gate logits tried on the validation stream (the
    # read-out gain is chosen along the stream: StreamMemory.gains)
    paces: tuple = ((-8.0, -4.0, -4.0), (-8.0, -4.0, -5.0), (-10.0, -4.0, -4.0))
    memory_lr: float = 3e-3
    memory_epochs: int = 0   # outer training of the chosen memory (0: none); kept if it wins
    memory_patience: int = 5
    segment: int = 64
    streams: int = 64
    online_lr: float = 1e-5

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse settings that would train nothing (also after attributes were set directly)."""
        from titans_ts.forecaster.validation import _limit_batches

        # 0 would train on no batch (and used to mean "every batch")
        self.limit_train_batches = _limit_batches(self.limit_train_batches)
        for name in ("seq_len", "horizon", "batch_size", "max_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
