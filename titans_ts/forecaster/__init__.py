"""``TitansForecaster``, the sklearn-style estimator on frames, in parts: :mod:`.core` (parameters,
fit, predict, update), :mod:`.evaluation`, :mod:`.persistence` and :mod:`.memory_store`."""

from ..datasets.forecast_frames import first_steps
from .core import NETWORK_SETTINGS, TRAINING_PARAMS, TitansForecaster

__all__ = ["TitansForecaster", "NETWORK_SETTINGS", "TRAINING_PARAMS", "first_steps"]
