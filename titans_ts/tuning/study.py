"""Studies: storages, the per-trial-seeded sampler, pruning, and the exact multi-worker loop."""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Literal

import optuna
from optuna.trial import TrialState

from .heartbeat import (
    TRACKED,
    HeartbeatJournalStorage,
    fail_stale_trials,
    freed,
    heartbeat_enabled,
    heartbeat_thread,
    origin,
    quiet_experimental,
    retry_callback,
    slot_ranks,
)

__all__ = ["COUNTED_STATES", "HEARTBEAT_INTERVAL", "GRACE_PERIOD", "MAX_RETRY", "open_storage", "describe_storage",
           "PerTrialSeedSampler", "make_sampler", "default_pruner", "optimize", "pruning_callback", "optuna_quiet"]

_log = logging.getLogger("titans_ts.tuning")

#: trial states that can hold one of a study's ``n_trials`` slots: a finished trial (COMPLETE or
#: PRUNED) for good; a RUNNING one while its worker lives; a FAIL one only when its worker died
#: (its retry runs in the slot) -- a trial whose objective failed frees its slot
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
#: heartbeat of file and database studies (seconds): a running trial records one this often
HEARTBEAT_INTERVAL = 10
#: grace period (seconds): a running trial without a heartbeat for this long belongs to a dead
#: worker (killed, preempted, out of memory) and is failed and retried by another worker; three
#: missed heartbeats. Longer for workers whose clocks disagree or whose storage is slow to write
#: (``optimize(grace_period=...)``, ``titans-ts tune --heartbeat-grace``)
GRACE_PERIOD = 30
#: retries of a trial whose worker died (then its slot ends FAIL)
MAX_RETRY = 3


def open_storage(url: str | os.PathLike | optuna.storages.BaseStorage | None = None, *,
                 heartbeat_interval: int | None = None, grace_period: int | None = None,
                 max_retry: int | None = None) -> optuna.storages.BaseStorage:
    """An optuna storage from a URL (see the module docstring); ``None``: in memory.

    ``heartbeat_interval`` (seconds) turns on heartbeats for file and database storages: a
    trial whose heartbeat is older than ``grace_period`` (default twice the interval) is
    failed by any worker and retried (up to ``max_retry`` times; :mod:`.heartbeat`). A URL that
    cannot be opened (unknown scheme, missing database driver, a folder where a file belongs,
    a database that refuses the connection) is a one-line error naming the URL."""
    if url is None:
        return optuna.storages.InMemoryStorage()
    if isinstance(url, optuna.storages.BaseStorage):
        return url
    url = os.fspath(url)
    beat = {} if heartbeat_interval is None else dict(
        heartbeat_interval=int(heartbeat_interval), grace_period=None if grace_period is None else int(grace_period),
        heartbeat_stale_trial_callback=retry_callback(max_retry))
    if url.startswith("journal:"):
        if not url.startswith("journal://") or not url[len("journal://"):]:
            raise ValueError(f"journal storage URL {url!r}: expected journal:///abs/path/file.log "
                             f"or journal://relative/file.log")
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len("journal://"):])
        if path.is_dir():
            raise ValueError(f"storage {url}: {path} is a folder; name a file in it, e.g. "
                             f"journal://{path / 'study.log'}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return HeartbeatJournalStorage(JournalFileBackend(str(path)), **beat)
        except OSError as err:
            raise OSError(err.errno, f"storage {url}: cannot open {path}: {err.strerror or err}") from None
    if "://" not in url:
        raise ValueError(f"storage {url!r} is not a URL: use sqlite:///{url} (a file), "
                         f"journal://{url} (a journal file) or an RDB URL such as postgresql://...")
    import sqlalchemy

    shown = describe_storage(url)
    try:
        parsed = sqlalchemy.engine.make_url(url)
        dialect = parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:  # (an ArgumentError: first)
        raise ValueError(f"storage {shown}: unknown scheme {url.split('://', 1)[0]!r}; use sqlite:///FILE.db, "
                         f"postgresql://..., mysql://... or journal:///FILE.log") from None
    except sqlalchemy.exc.ArgumentError as err:
        raise ValueError(f"storage {shown} is not a valid database URL: {err}") from None
    try:
        dialect.import_dbapi()
    except ImportError as err:
        module = getattr(err, "name", None) or str(err)
        raise ImportError(f"storage {shown}: the Python driver for {parsed.get_backend_name()} is not "
                          f"installed (no module {module!r}); install it (pip install {module}) or use "
                          f"sqlite:/// or journal://") from None
    engine_kwargs: dict = {}
    if url.startswith("sqlite:"):
        # several processes write one file: wait for the lock rather than fail after 5 s
        engine_kwargs = {"connect_args": {"timeout": 120}}
        database = parsed.database
        if database and database != ":memory:":
            if Path(database).is_dir():
                raise ValueError(f"storage {url}: {database} is a folder; name a database file in it, "
                                 f"e.g. sqlite:///{Path(database) / 'study.db'}")
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(6):
        try:
            with quiet_experimental():
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **beat)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as err:
            # workers starting together on a new database race to create its schema (tables,
            # version rows): the loser retries and finds it made
            if attempt == 5:
                reason = str(getattr(err, "orig", None) or err).splitlines()[0]
                raise ValueError(f"cannot open storage {shown}: {reason}") from None
            time.sleep(0.2 * (attempt + 1) + 0.2 * random.random())
    raise AssertionError("unreachable")


def describe_storage(url: str | os.PathLike | None) -> str:
    """The storage URL for messages (an RDB password masked); "in memory" for ``None``."""
    if url is None:
        return "in memory"
    url = os.fspath(url)
    if "://" in url and not url.startswith("journal:"):
        try:
            import sqlalchemy

            return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
        except Exception:  # not parseable: say nothing more than the scheme
            return url.split("://", 1)[0] + "://..."
    return url


def _trial_seed(seed: int, number: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0])


def _tpe(seed: int | None) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():  # constant_liar is experimental in optuna 4
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


class PerTrialSeedSampler(optuna.samplers.BaseSampler):
    """Delegates to ``factory(seed_k)``, built afresh for trial ``k`` with a seed that depends on
    ``seed`` and ``k`` only: two workers on one study never replay the same random draws, and
    one worker's trial ``k`` is reproducible given the trials finished before it."""

    def __init__(self, seed: int | None = 0,
                 factory: Callable[[int | None], optuna.samplers.BaseSampler] = _tpe) -> None:
        self._seed, self._factory = seed, factory
        self._inner: dict[int, optuna.samplers.BaseSampler] = {}

    def _for(self, trial) -> optuna.samplers.BaseSampler:
        sampler = self._inner.get(trial.number)
        if sampler is None:
            seed = None if self._seed is None else _trial_seed(self._seed, trial.number)
            sampler = self._inner[trial.number] = self._factory(seed)
        return sampler

    def before_trial(self, study, trial) -> None:
        self._for(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._for(trial).after_trial(study, trial, state, values)
        self._inner.pop(trial.number, None)

    def reseed_rng(self) -> None:
        self._seed = None


def make_sampler(seed: int | None = 0) -> optuna.samplers.BaseSampler:
    """The default sampler: TPE (constant liar, so running trials are not re-proposed), seeded
    per trial from ``seed`` (see :class:`PerTrialSeedSampler`)."""
    return PerTrialSeedSampler(seed)


def default_pruner() -> optuna.pruners.BasePruner:
    """Median pruning after 5 trials, never on a trial's first report."""
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def _n_counted(study: optuna.Study) -> int:
    """Slots taken: fresh (non-retry) trials that are COMPLETE, PRUNED, RUNNING, or FAIL because
    their worker died (their retry holds the slot). A retry is counted through the trial it
    retries; a trial whose objective failed frees its slot (:func:`.heartbeat.freed`)."""
    trials = study.get_trials(deepcopy=False)
    free = freed(trials)
    return sum(1 for t in trials if t.state in COUNTED_STATES and "failed_trial" not in t.system_attrs
               and t.number not in free)


def _n_objective_failures(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if "error" in t.user_attrs)


def _admitted(trial, ranks: dict[int, int], n_trials: int) -> bool:
    rank = ranks.get(origin(trial))
    return rank is not None and rank <= n_trials


def _work_left(study: optuna.Study, n_trials: int) -> tuple[bool, bool]:
    """(a trial of the first n_trials slots waits to be run, one runs with a heartbeat)."""
    trials = study.get_trials(deepcopy=False)
    ranks = slot_ranks(trials)
    waiting = any(t.state == TrialState.WAITING and _admitted(t, ranks, n_trials) for t in trials)
    tracked = any(t.state == TrialState.RUNNING and t.system_attrs.get(TRACKED) == t._trial_id
                  and _admitted(t, ranks, n_trials) for t in trials)
    return waiting, tracked


def _release(study: optuna.Study, trial: optuna.Trial) -> None:
    study._storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)
    inner = getattr(study.sampler, "_inner", None)
    if isinstance(inner, dict):
        inner.pop(trial.number, None)


def _claim(study: optuna.Study, n_trials: int) -> optuna.Trial | None:
    """A trial of one of the first ``n_trials`` slots to run, or None. ``ask`` takes waiting
    trials first, oldest first: one outside the slots (handed back earlier) is held while the
    next is asked for, and every held one is handed back, untouched, at the end."""
    held = []
    try:
        while True:
            with warnings.catch_warnings():  # optuna warns that heartbeats expect Study.optimize
                warnings.filterwarnings("ignore", message=".*Heartbeat of storage.*")
                trial = study.ask()
            trials = study.get_trials(deepcopy=False)
            frozen = next(t for t in trials if t._trial_id == trial._trial_id)
            ranks = slot_ranks(trials)
            if _admitted(frozen, ranks, n_trials):
                return trial
            held.append(trial)
            if not any(t.state == TrialState.WAITING and _admitted(t, ranks, n_trials) for t in trials):
                return None
    finally:
        for t in held:
            _release(study, t)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _run_trial(study: optuna.Study, trial: optuna.Trial, objective: Callable,
               catch: tuple[type[BaseException], ...]) -> None:
    value, state, exc_info = None, None, None
    err: BaseException | None = None
    storage = study._storage
    try:
        if heartbeat_enabled(storage):
            storage.set_trial_system_attr(trial._trial_id, TRACKED, trial._trial_id)
        with heartbeat_thread(trial._trial_id, storage):
            value = objective(trial)
    except optuna.TrialPruned as e:
        state, err = TrialState.PRUNED, e
    except BaseException as e:  # noqa: BLE001 -- recorded as FAIL, re-raised unless caught
        state, err, exc_info = TrialState.FAIL, e, sys.exc_info()
        with contextlib.suppress(Exception):
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
    if state is None and not _finite(value):  # tell() fails it
        with contextlib.suppress(Exception):
            trial.set_user_attr("error", f"the objective returned {value!r}"[:2000])
    with warnings.catch_warnings():  # a non-finite value is reported below, not warned twice
        warnings.simplefilter("ignore")
        try:
            frozen = study.tell(trial, None if state else value, state=state)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            # its heartbeat stopped long enough for another worker to declare it dead and retry it
            # (optuna raises either error for a trial that is no longer running)
            if not storage.get_trial(trial._trial_id).state.is_finished():
                raise
            _log.warning("trial %d was declared dead (no heartbeat within the grace period) and "
                         "retried elsewhere; this result is dropped", trial.number)
            gc.collect()
            return
    if frozen.state == TrialState.COMPLETE:
        _log.info("trial %d: value %.6g, %s", frozen.number, frozen.value, frozen.params)
    elif frozen.state == TrialState.PRUNED:
        _log.info("trial %d pruned (%s), %s", frozen.number, err, frozen.params)
    elif err is not None:
        _log.warning("trial %d failed with parameters %s: %s: %s", frozen.number, frozen.params,
                     type(err).__name__, err, exc_info=exc_info)
    else:
        _log.warning("trial %d failed: the objective returned %r, not a finite number",
                     frozen.number, value)
    gc.collect()
    if err is not None and state == TrialState.FAIL and not isinstance(err, catch):
        raise err


def optimize(objective: Callable[[optuna.Trial], float], *, n_trials: int,
             storage: str | os.PathLike | optuna.storages.BaseStorage | None = None,
             study_name: str | None = None, direction: Literal["minimize", "maximize"] = "minimize",
             seed: int | None = 0,
             pruner: optuna.pruners.BasePruner | None = None,
             sampler: optuna.samplers.BaseSampler | None = None, timeout: float | None = None,
             catch: tuple[type[BaseException], ...] = (Exception,),
             heartbeat_interval: int | None = HEARTBEAT_INTERVAL, grace_period: int | None = GRACE_PERIOD,
             max_retry: int | None = MAX_RETRY) -> optuna.Study:
    """Create or resume (``load_if_exists``) the study and run trials of ``objective`` until the
    study holds ``n_trials`` COMPLETE or PRUNED trials (the total over every worker sharing the
    storage, not a per-call count; trials still RUNNING on other workers are waited for), or
    ``timeout`` seconds have passed.

    Defaults: :func:`make_sampler` (TPE seeded per trial from ``seed``) and
    :func:`default_pruner`. An exception in ``catch`` (or a non-finite value) fails its trial
    (logged with its traceback, kept in the trial's ``error`` user attribute): it does not count,
    a new configuration takes its slot, and the loop goes on -- until as many trials have failed
    as ``n_trials``, when the worker stops with a warning (a broken objective does not run
    forever). Other exceptions fail the trial and propagate.

    This is ``optuna.study.MaxTrialsCallback(n_trials, states=COUNTED_STATES)`` made exact: that
    callback checks the count after a trial and the next trial is created later, so two workers
    checking at once both start one more. Here the study has ``n_trials`` slots, taken by its
    first ``n_trials`` fresh trials in trial-number order (the number is the storage's atomic
    ticket): a trial created past them is handed back as WAITING, untouched, and the worker
    stops; a later run with a larger ``n_trials`` takes it up first.

    No lost trial: file and database storages get heartbeats (``heartbeat_interval`` seconds,
    default :data:`HEARTBEAT_INTERVAL`; None turns them off). A trial whose worker died (no
    heartbeat for ``grace_period`` seconds, default :data:`GRACE_PERIOD`; None: twice the
    interval) is failed by another worker and retried with the same parameters (up
    to ``max_retry`` times); the retry takes the dead trial's slot, so after a kill and a
    restart the study still ends with exactly ``n_trials`` finished slots, the killed
    configuration among them. A worker whose slots are all taken stays while trials with a
    heartbeat still run, to retry any whose worker dies (see :mod:`.heartbeat`).
    """
    if int(n_trials) < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    n_trials = int(n_trials)
    if heartbeat_interval is not None and grace_period is not None and grace_period <= heartbeat_interval:
        raise ValueError(f"grace_period ({grace_period} s) must be longer than the heartbeat interval "
                         f"({heartbeat_interval} s): a live worker's trial would be declared dead between "
                         f"two heartbeats")
    study = optuna.create_study(storage=open_storage(storage, heartbeat_interval=heartbeat_interval,
                                                     grace_period=grace_period, max_retry=max_retry),
                                study_name=study_name, direction=direction, load_if_exists=True,
                                sampler=sampler if sampler is not None else make_sampler(seed),
                                pruner=pruner if pruner is not None else default_pruner())
    beating = heartbeat_enabled(study._storage)
    poll = min(float(heartbeat_interval or 1), 5.0)
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    while deadline is None or time.monotonic() < deadline:
        if beating:
            fail_stale_trials(study)  # trials of dead workers: FAIL, and a WAITING retry each
        failures = _n_objective_failures(study)
        if failures >= n_trials:
            _log.warning("stopping: %d trials of the study failed in the objective (as many as n_trials=%d); "
                         "see their errors above (or each trial's 'error' user attribute)", failures, n_trials)
            break
        if _n_counted(study) >= n_trials:
            waiting, tracked = _work_left(study, n_trials)
            if not waiting:
                if beating and tracked:  # stay while a running trial may still need a retry
                    time.sleep(poll)
                    continue
                break
        trial = _claim(study, n_trials)
        if trial is None:  # another worker took the last place since the count
            break
        _run_trial(study, trial, objective, catch)
    return study


def pruning_callback(trial: optuna.Trial, monitor: str = "val_loss"):
    """A Lightning callback reporting ``monitor`` to ``trial`` after each validation and raising
    ``optuna.TrialPruned`` when the study's pruner says so."""
    from optuna_integration import PyTorchLightningPruningCallback

    return PyTorchLightningPruningCallback(trial, monitor=monitor)


@contextlib.contextmanager
def optuna_quiet(verbose: bool):
    saved = optuna.logging.get_verbosity()
    if not verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            if not verbose:
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(saved)
