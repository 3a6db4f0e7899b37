"""No lost trial: heartbeats, stale trials retried, and the slots that keep a study's count exact.

A worker records a heartbeat for its running trial every ``heartbeat_interval`` seconds (a
thread beside the trial). A RUNNING trial whose heartbeat is older than ``grace_period`` belongs
to a worker that died (killed, preempted, out of memory): any other worker marks it FAIL and
enqueues a retry, a WAITING copy with the same parameters (optuna's
``RetryHeartbeatStaleTrialCallback``, up to ``max_retry`` times), which the next free worker runs.

RDB storages (sqlite, postgresql, mysql) do this with optuna's own heartbeat. optuna's journal
storage has no heartbeat in this version of optuna, so :class:`HeartbeatJournalStorage` adds
the same mechanism to it: the heartbeat is a system attribute of the trial (its trial id and a
wall-clock time; workers on several machines need clocks that agree within the grace period).

Slots (see :func:`titans_ts.tuning.optimize`): a study of ``n_trials`` has ``n_trials`` slots,
taken by its first ``n_trials`` fresh (non-retry) trials in trial-number order. A retry takes
the slot of the trial it retries, so a killed trial and its retry count once; a trial whose
objective failed frees its slot for a new configuration. The study ends with exactly one
COMPLETE or PRUNED trial per slot.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from typing import Callable

import optuna
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalStorage
from optuna.trial import FrozenTrial, TrialState

__all__ = ["HeartbeatJournalStorage", "retry_callback", "fail_stale_trials", "heartbeat_thread",
           "heartbeat_enabled", "origin", "freed", "slot_ranks", "TRACKED"]

#: system attribute a worker sets on the trial it runs (its own trial id): the trial has a
#: heartbeat, so other workers wait for it (it finishes or goes stale and is retried)
TRACKED = "titans_ts:tracked"
_BEAT = "titans_ts:heartbeat"


@contextlib.contextmanager
def quiet_experimental():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def retry_callback(max_retry: int | None):
    """optuna's retry of a stale trial (a WAITING copy with its parameters)."""
    with quiet_experimental():
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """optuna's journal storage with the heartbeat of its RDB storage (see the module docs)."""

    def __init__(self, backend, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 heartbeat_stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None):
        super().__init__(backend)
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval must be a positive integer, got {heartbeat_interval!r}")
        if grace_period is not None and grace_period <= 0:
            raise ValueError(f"grace_period must be a positive integer, got {grace_period!r}")
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, _BEAT, [int(trial_id), time.time()])

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        assert self.heartbeat_interval is not None
        grace = self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval
        now = time.time()
        stale = []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = t.system_attrs.get(_BEAT)
            # a retry carries its original's attributes: only the trial's own heartbeat counts
            if isinstance(beat, list) and len(beat) == 2 and beat[0] == t._trial_id and now - beat[1] > grace:
                stale.append(t._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return self.heartbeat_stale_trial_callback


def heartbeat_enabled(storage: BaseStorage) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


def heartbeat_thread(trial_id: int, storage: BaseStorage):
    """A context manager recording the trial's heartbeat while it runs (a no-op without one)."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    return get_heartbeat_thread(trial_id, storage)


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark trials whose worker died FAIL and enqueue their retries."""
    with quiet_experimental():
        optuna.storages.fail_stale_trials(study)


def origin(trial: FrozenTrial) -> int:
    """The number of the fresh trial whose slot ``trial`` holds (itself, unless a retry)."""
    return int(trial.system_attrs.get("failed_trial", trial.number))


def freed(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the fresh trials whose slot is free again: the newest trial of their chain (the
    trial and its retries) failed in the objective (an exception or a non-finite value, recorded
    in its ``error`` user attribute). A trial failed because its worker died is not one of them:
    its retry holds the slot (after ``max_retry`` deaths the slot ends FAIL, so a configuration
    that kills its worker every time does not go on forever)."""
    newest: dict[int, FrozenTrial] = {}
    for t in trials:
        o = origin(t)
        if o not in newest or t.number > newest[o].number:
            newest[o] = t
    return {o for o, t in newest.items() if t.state == TrialState.FAIL and "error" in t.user_attrs}


def slot_ranks(trials: list[FrozenTrial]) -> dict[int, int]:
    """{fresh trial number: its slot (1, 2, ...)}: fresh trials ranked by number, those whose slot
    was freed (:func:`freed`) left out."""
    free = freed(trials)
    fresh = sorted(t.number for t in trials if "failed_trial" not in t.system_attrs and t.number not in free)
    return {num: k + 1 for k, num in enumerate(fresh)}
