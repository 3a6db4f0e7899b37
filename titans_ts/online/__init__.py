"""Online forecasting with test-time memory: the no-leak protocol, the stream memory, the runner."""

from .runner import MODES, OnlineConfig, evaluate_modes, run_online, train_backbone, train_stream_memory
from .stream_memory import StreamMemory

__all__ = ["MODES", "OnlineConfig", "StreamMemory", "evaluate_modes", "train_backbone",
           "train_stream_memory", "run_online"]
