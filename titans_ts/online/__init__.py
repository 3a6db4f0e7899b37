"""Online forecasting with test-time memory: the no-leak protocol, the stream memory, the runner."""

from ..model.stream_memory import StreamMemory
from .backbone import backbone_forecasts, origin_batch, train_backbone
from .config import MODES, OnlineConfig
from .modes import evaluate_modes
from .runner import choose_stream_memory, run_online
from .streams import StreamInputs, train_stream_memory

__all__ = ["MODES", "OnlineConfig", "StreamMemory", "StreamInputs", "backbone_forecasts", "choose_stream_memory",
           "evaluate_modes", "origin_batch", "run_online", "train_backbone", "train_stream_memory"]
