"""Online forecasting with test-time memory: the no-leak protocol, its modes, the runner.

The stream memory itself is a model part (:class:`titans_ts.model.stream_memory.StreamMemory`);
this package runs it, the online gradient step and the naive forecasts along a dataset's stream
(``titans-ts benchmark online``, :func:`run_online`)."""

from ..model.stream_memory import StreamMemory, StreamMemoryConfig
from .backbone import backbone_forecasts, origin_batch, train_backbone
from .config import MODES, OnlineConfig
from .modes import evaluate_modes
from .runner import choose_stream_memory, run_online
from .streams import StreamInputs

__all__ = ["MODES", "OnlineConfig", "StreamMemory", "StreamMemoryConfig", "StreamInputs", "backbone_forecasts",
           "choose_stream_memory", "evaluate_modes", "origin_batch", "run_online", "train_backbone"]
