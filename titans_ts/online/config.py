"""Settings of an online run and the names of its modes."""

from __future__ import annotations

import copy
import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..model.config import SettingsError, TitansConfig, TrainingConfig, check_keys
from ..model.stream_memory import StreamMemoryConfig

__all__ = ["MODES", "MEMORY_MODES", "NAIVE_MODES", "SEQUENTIAL_MODES", "ONLINE_TRAINING", "OnlineConfig",
           "check_modes"]

#: the modes of one trained model: the stream memory's, the online gradient step's, both
MEMORY_MODES = ("frozen", "carried", "online_gd", "carried+online_gd")
#: the simple alternatives on the same stream (no model)
NAIVE_MODES = ("repeat_last", "seasonal_naive")
MODES = MEMORY_MODES + NAIVE_MODES
#: the modes that step the backbone's parameters along the stream (one origin at a time)
SEQUENTIAL_MODES = ("online_gd", "carried+online_gd")


def check_modes(modes) -> tuple[str, ...]:
    """``modes`` as a tuple, refusing unknown names and repeats (nothing is silently dropped)."""
    if isinstance(modes, str):
        modes = (modes,)
    modes = tuple(modes)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown online mode(s) {unknown}; modes: {list(MODES)}")
    if not modes or len(set(modes)) != len(modes):
        raise ValueError(f"modes must be a non-empty list of distinct modes from {list(MODES)}, got {list(modes)}")
    return modes


#: the online backbone's training (see OnlineConfig.training)
ONLINE_TRAINING = TrainingConfig(lr=1e-3, batch_size=128, max_epochs=40, patience=5, limit_train_batches=32,
                                 gradient_clip_val=1.0)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"OnlineConfig.{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass
class OnlineConfig:
    """Settings of one online run: the backbone and its training, and the stream memory with the
    paces its gates are chosen from on the validation stream. Validated at construction (and by
    :meth:`validate` after attributes were set directly); unknown keys at any depth are a
    :class:`~titans_ts.model.config.SettingsError`."""

    seq_len: int = 96
    horizon: int = 24
    # the network's settings (TitansConfig fields but the lengths and channels). The last observed
    # value as RevIN's centre: after a level break the forecast starts where the series is (the
    # drifting test periods of this protocol need it)
    network: dict = field(default_factory=lambda: dict(
        patch_len=16, stride=8, d_model=64, n_layers=1, dropout=0.2, revin_center="last",
        memory=dict(heads=4, depth=2, expansion=2.0, chunk_size=16, max_lr=0.02)))
    # training to convergence: epochs of at most ``limit_train_batches`` batches drawn at random
    # from the training windows (a fresh draw each epoch: 32 x 128 covers ETTh2's whole training
    # split at once, ETTm1's and weather's in three or four epochs), until the validation MSE has
    # not improved for ``patience`` epochs (the learning rate follows a cosine over
    # ``max_epochs``); the best epoch's weights are kept (a TrainingConfig; a mapping of its fields
    # is converted, the others taking these defaults)
    training: TrainingConfig = field(default_factory=lambda: ONLINE_TRAINING)
    # the stream memory (a StreamMemoryConfig; a mapping of its fields is converted)
    memory: StreamMemoryConfig = field(default_factory=StreamMemoryConfig)
    # (forgetting, momentum, inner learning-rate) gate logits tried on the validation stream (the
    # read-out gain is chosen along the stream: GainSelector)
    paces: tuple = ((-8.0, -4.0, -4.0), (-8.0, -4.0, -5.0), (-10.0, -4.0, -4.0))
    # the online_gd modes' learning rate when the run is given none to choose from
    online_lr: float = 1e-5

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse settings that would train nothing or that do not exist."""
        for name in ("seq_len", "horizon"):
            setattr(self, name, _positive_int(name, getattr(self, name)))
        if isinstance(self.training, Mapping):
            self.training = ONLINE_TRAINING.replace(**self.training)
        elif not isinstance(self.training, TrainingConfig):
            raise ValueError(f"OnlineConfig.training must be a TrainingConfig or a mapping of its settings, "
                             f"got {self.training!r}")
        for name in ("max_epochs", "patience"):
            _positive_int(f"training.{name}", getattr(self.training, name))
        value = self.online_lr
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
            raise ValueError(f"OnlineConfig.online_lr must be a number >= 0, got {value!r}")
        if not isinstance(self.network, Mapping):
            raise ValueError(f"OnlineConfig.network must be a mapping of TitansConfig settings, got {self.network!r}")
        for key in ("seq_len", "horizon", "n_channels"):
            if key in self.network:
                raise SettingsError(f"OnlineConfig.network must not set {key!r}: the run sets it")
        TitansConfig.from_dict({"seq_len": self.seq_len, "horizon": self.horizon, **self.network})
        self.memory = StreamMemoryConfig.from_dict(self.memory)
        paces = tuple(tuple(float(x) for x in p) for p in self.paces)
        if not paces or any(len(p) != 3 for p in paces):
            raise ValueError(f"OnlineConfig.paces must be a non-empty list of (forgetting, momentum, inner "
                             f"learning rate) gate logits, got {self.paces!r}")
        self.paces = paces

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def with_overrides(self, overrides: Mapping[str, Any]) -> OnlineConfig:
        """A copy with ``overrides`` applied: plain fields replaced, ``network`` and ``memory``
        merged key by key (``{"memory": {"level": False}}`` changes only that setting)."""
        check_keys(overrides, self.fields(), "online")
        new = copy.deepcopy(self)
        for key, value in overrides.items():
            if key == "memory":
                if not isinstance(value, Mapping):
                    raise ValueError(f"OnlineConfig.memory overrides must be a mapping, got {value!r}")
                new.memory = new.memory.replace(**value)
            elif key == "training":
                if not isinstance(value, Mapping):
                    raise ValueError(f"OnlineConfig.training overrides must be a mapping, got {value!r}")
                new.training = new.training.replace(**value)
            elif key == "network":
                if not isinstance(value, Mapping):
                    raise ValueError(f"OnlineConfig.network overrides must be a mapping, got {value!r}")
                merged = {**new.network, **value}
                if isinstance(value.get("memory"), Mapping) and isinstance(new.network.get("memory"), Mapping):
                    merged["memory"] = {**new.network["memory"], **value["memory"]}
                new.network = merged
            else:
                setattr(new, key, value)
        new.validate()
        return new
