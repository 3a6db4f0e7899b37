"""Tuning a :class:`titans_ts.TitansForecaster` on a frame (``TitansForecaster.tune``)."""

from __future__ import annotations

import os
from typing import Any

import optuna

from ..recipes import set_dotted
from .space import load_space, suggest
from .study import GRACE_PERIOD, optimize

__all__ = ["tune_forecaster"]


def tune_forecaster(est, df: Any, space: dict | str | os.PathLike, n_trials: int = 20,
                    storage: str | None = None, study_name: str | None = None, refit: bool = True,
                    seed: int = 0, grace_period: int | None = GRACE_PERIOD,
                    static_df: Any = None) -> optuna.Study:
    """Search hyper-parameters of ``est`` with optuna (TPE sampler, median pruning on the
    validation loss) and set the best ones on it (refitting on ``df`` if ``refit``).

    ``space`` maps parameter names of the estimator (``"lr"``, ``"d_model"``, or dotted
    ``"memory.depth"``) to specs ``{type: float|int|categorical, low, high, log, choices}`` (or
    is a YAML file of that). ``storage`` is any optuna storage URL (in memory if None); several
    processes may share one (``grace_period``: seconds without a heartbeat after which a
    running trial's worker counts as dead and its trial is retried). Covariates are parameters
    like any other (``"time_features": {type: categorical, choices: [null, auto]}``, or lists of
    columns such as ``"hist_exog_list": {type: categorical, choices: [[], [price]]}``);
    ``static_df`` goes to every fit. Returns the study."""
    space = load_space(space)
    base = est.get_params()
    unknown = sorted({key.split(".")[0] for key in space} - set(base))
    if unknown:  # fail before the study starts, not once per trial
        raise ValueError(f"unknown TitansForecaster parameter(s) {unknown} in the search space; "
                         f"parameters are {sorted(base)}")

    def params_of(values: dict) -> dict:
        return set_dotted(base, values, known=base, what="TitansForecaster parameter")

    def objective(trial):
        model = type(est)(**params_of(suggest(trial, space)))
        model.fit(df, static_df=static_df, trial=trial)
        if model.best_val_loss_ is None:
            raise ValueError("tuning needs a validation split: val_size must not be 0")
        return model.best_val_loss_

    study = optimize(objective, n_trials=n_trials, storage=storage, study_name=study_name, seed=seed,
                     grace_period=grace_period)
    est.set_params(**params_of(suggest(optuna.trial.FixedTrial(study.best_params), space)))
    if refit:
        est.fit(df, static_df=static_df)
    est.best_params_ = dict(study.best_params)  # after the refit, which starts from parameters
    return study
