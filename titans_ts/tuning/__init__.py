"""Hyper-parameter sweeps with optuna: search spaces, storages, exact multi-worker studies.

    titans-ts tune --config recipes/ltsf/ETTh1_96_96.yaml --space recipes/sweeps/etth1_lmm.yaml \\
        --n-trials 40 --storage sqlite:///sweeps/etth1.db --study-name etth1-lmm --output best.yaml

Search space
    A YAML mapping from dotted recipe keys to specs; the key is also the optuna parameter name::

        model.lr:           {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
        model.dropout:      {type: float, low: 0.0, high: 0.3, step: 0.05}
        model.memory.depth: {type: int, low: 1, high: 3}
        model.d_model:      {type: categorical, choices: [32, 64, 128]}

    ``float`` / ``int`` take ``low``, ``high`` (inclusive), ``log`` (default false) and ``step``
    (not together with ``log``); ``categorical`` takes ``choices`` (null, bool, int, float or str).

Storage (``open_storage``)
    ``None`` keeps the study in memory (one process, nothing written). Any optuna RDB URL
    (``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``postgresql://user@host/db``,
    ``mysql://...``) or ``journal://FILE`` (an append-only optuna journal file:
    ``journal:///abs/path/study.log``, ``journal://relative/study.log``), which is the easy choice
    for workers on several machines sharing a file system. Parent folders of file storages are
    created. Nothing is written anywhere that was not named.

Several workers
    Start the same command (same storage and study name) as many times as wanted, on one machine
    or many. ``n_trials`` is the study's total of COMPLETE and PRUNED trials, which the workers
    together reach exactly (a running trial holds its place while it runs, so no worker starts
    one too many; without failures the trials are numbered ``0 .. n_trials - 1``). A trial whose
    objective failed (its error is logged and kept in its ``error`` user attribute) frees its
    place for a new configuration; the workers stop once as many trials have failed as
    ``n_trials``. Re-running a finished command does nothing but report; raising ``n_trials``
    resumes the study. Each trial's sampler seed is a function of ``seed`` and the trial number,
    so workers never draw the same random start points.

No lost trial
    File and database studies record a heartbeat of every running trial (every 10 s,
    ``HEARTBEAT_INTERVAL``). A worker killed outright (SIGKILL, preemption, out of memory) stops
    its heartbeat: after the grace period (30 s, ``GRACE_PERIOD``; ``optimize(grace_period=...)``,
    ``tune_recipe(grace_period=...)``, ``TitansForecaster.tune(grace_period=...)``,
    ``titans-ts tune --heartbeat-grace SECONDS``) another worker marks the trial FAIL and enqueues a retry with the same
    parameters (up to 3 times), which takes the dead trial's place in the count. A worker whose
    study is fully assigned stays until the other workers' trials finish, to retry any whose
    worker dies, so restarting a killed worker (or not) still ends with exactly ``n_trials``.
    See :mod:`titans_ts.tuning.heartbeat`.
"""

from .forecaster import tune_forecaster
from .recipe import (
    best_recipe,
    default_study_name,
    run_tune_command,
    tune_paths,
    tune_recipe,
    write_best_recipe,
)
from .space import SpaceError, load_space, suggest
from .study import (
    COUNTED_STATES,
    GRACE_PERIOD,
    HEARTBEAT_INTERVAL,
    MAX_RETRY,
    PerTrialSeedSampler,
    default_pruner,
    describe_storage,
    make_sampler,
    open_storage,
    optimize,
    pruning_callback,
)

__all__ = [
    "SpaceError", "load_space", "suggest", "open_storage", "describe_storage",
    "make_sampler", "PerTrialSeedSampler", "default_pruner", "optimize", "pruning_callback",
    "tune_recipe", "best_recipe", "write_best_recipe", "default_study_name", "COUNTED_STATES",
    "HEARTBEAT_INTERVAL", "GRACE_PERIOD", "MAX_RETRY",
    "tune_paths", "run_tune_command", "tune_forecaster",
]
