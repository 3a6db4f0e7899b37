"""``TitansForecaster``, the sklearn-style estimator on frames, in ten parts: :mod:`.core` (the
class: parameters, fit, predict, update), :mod:`.validation` (checks of its parameters and
arguments), :mod:`.scaling` (each series' units), :mod:`.inference` (forecast arrays from the
network and the carried memory), :mod:`.guard` (the baseline guard), :mod:`.state` (the fitted
history, units and memory; ``update``), :mod:`.memory_store` (each series' carried stream memory),
:mod:`.persistence` (save / load), :mod:`.evaluation` (cross-validation, scores, plots) and
:mod:`.exog` (covariates: names, static tables, future values)."""

from ..datasets.forecast_frames import first_steps
from .core import NETWORK_SETTINGS, TRAINING_PARAMS, TitansForecaster

__all__ = ["TitansForecaster", "NETWORK_SETTINGS", "TRAINING_PARAMS", "first_steps"]
