"""titans-ts: time-series forecasting with Titans neural long-term memory.

Behrouz, Zhong, Mirrokni, "Titans: Learning to Memorize at Test Time" (arXiv 2501.00663).

    >>> import torch
    >>> from titans_ts import TitansNet, MAC, MAG, MAL, LMM
    >>> net = TitansNet(seq_len=96, horizon=24, variant="mag", window=8)
    >>> net(torch.randn(2, 96, 7)).shape
    torch.Size([2, 24, 7])

``TitansNet`` is the forecasting network (built from a ``TitansConfig``); ``LMM``, ``MAC``,
``MAG`` and ``MAL`` are the paper's blocks over token sequences; ``NeuralMemory`` is the memory
layer and ``memory_scan`` its functional op. ``TitansForecaster`` (frames), ``TitansEstimator``
(GluonTS) and ``titans-ts fit`` (recipes) train it.

Heavy pieces (Lightning, GluonTS) are imported on first use, so ``import titans_ts`` stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "TitansConfig": ("titans_ts.model.config", "TitansConfig"),
    "MemoryConfig": ("titans_ts.model.config", "MemoryConfig"),
    "TrainingConfig": ("titans_ts.model.config", "TrainingConfig"),
    "SettingsError": ("titans_ts.model.config", "SettingsError"),
    "TitansNet": ("titans_ts.model.network", "TitansNet"),
    "LMM": ("titans_ts.model.blocks", "LMM"),
    "MAC": ("titans_ts.model.blocks", "MAC"),
    "MAG": ("titans_ts.model.blocks", "MAG"),
    "MAL": ("titans_ts.model.blocks", "MAL"),
    "memory_scan": ("titans_ts.kernels.memory_scan", "memory_scan"),
    "NeuralMemory": ("titans_ts.model.memory", "NeuralMemory"),
    "MemoryState": ("titans_ts.model.memory", "MemoryState"),
    "metrics": ("titans_ts.metrics", None),
    "baselines": ("titans_ts.baselines", None),
    "datasets": ("titans_ts.datasets", None),
    "TitansForecaster": ("titans_ts.forecaster", "TitansForecaster"),
    "TitansEstimator": ("titans_ts.gluonts", "TitansEstimator"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        value = mod if attr is None else getattr(mod, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'titans_ts' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["__version__", *_LAZY]
