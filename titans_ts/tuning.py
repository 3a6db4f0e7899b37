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
    or many. ``n_trials`` is the study's total: a worker stops once the study holds ``n_trials``
    trials that are finished (complete, pruned or failed) or running, so the workers together run
    exactly ``n_trials`` trials, numbered ``0 .. n_trials - 1``. Re-running a finished command
    does nothing but report; raising ``n_trials`` resumes the study. Each trial's sampler seed is
    a function of ``seed`` and the trial number, so workers never draw the same random start
    points. A failed trial counts (its error is logged and kept in its ``error`` user attribute);
    a worker killed outright leaves its trial RUNNING, and that trial counts too.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io
import logging
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import optuna
import yaml
from optuna.trial import TrialState

__all__ = [
    "SpaceError", "load_space", "suggest", "apply_params", "open_storage", "describe_storage",
    "make_sampler", "PerTrialSeedSampler", "default_pruner", "optimize", "pruning_callback",
    "tune_recipe", "best_recipe", "write_best_recipe", "default_study_name", "COUNTED_STATES",
    "tune_paths", "run_tune_command",
]

_log = logging.getLogger(__name__)

#: trial states that count towards a study's ``n_trials``
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)

# ------------------------------------------------------------------------------ search space


class SpaceError(ValueError):
    """An invalid search-space specification (the message names the key and what is accepted)."""


_KEY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_FIELDS = {"float": ("type", "low", "high", "log", "step"),
           "int": ("type", "low", "high", "log", "step"),
           "categorical": ("type", "choices")}
_EXAMPLE = ("{type: float, low: 1.0e-4, high: 1.0e-2, log: true}, {type: int, low: 1, high: 3} "
            "or {type: categorical, choices: [32, 64]}")


def _number(where: str, field: str, value: Any, integer: bool) -> float | int:
    if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if integer:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpaceError(f"{where}: int {field} must be an integer, got {value!r}")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpaceError(f"{where}: float {field} must be a finite number, got {value!r}")
    return float(value)


def _check_spec(key: Any, spec: Any, source: str) -> dict:
    where = f"search space key {key!r}{source}"
    if not isinstance(key, str) or not _KEY.match(key):
        raise SpaceError(f"{where}: keys are dotted recipe paths such as model.lr or "
                         f"model.memory.depth")
    if not isinstance(spec, Mapping):
        raise SpaceError(f"{where}: expected a mapping such as {_EXAMPLE}, got {spec!r}")
    kind = spec.get("type")
    if kind not in _FIELDS:
        raise SpaceError(f"{where}: type must be one of float, int, categorical, got {kind!r}")
    unknown = sorted(set(spec) - set(_FIELDS[kind]), key=str)
    if unknown:
        raise SpaceError(f"{where}: unknown field(s) {unknown} for type {kind}; accepted: "
                         f"{', '.join(_FIELDS[kind])}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}: categorical needs a non-empty list of choices, got {choices!r}")
        bad = [c for c in choices if c is not None and not isinstance(c, (bool, int, float, str))]
        if bad:
            raise SpaceError(f"{where}: categorical choices must be null, bool, int, float or str, "
                             f"got {bad!r}")
        if len({(type(c), c) for c in choices}) != len(choices):
            raise SpaceError(f"{where}: categorical choices repeat a value: {choices!r}")
        return {"type": "categorical", "choices": list(choices)}
    missing = [f for f in ("low", "high") if f not in spec]
    if missing:
        raise SpaceError(f"{where}: {kind} needs low and high (missing {', '.join(missing)})")
    integer = kind == "int"
    low = _number(where, "low", spec["low"], integer)
    high = _number(where, "high", spec["high"], integer)
    if low > high:
        raise SpaceError(f"{where}: low must be <= high, got low={low}, high={high}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: log must be true or false, got {log!r}")
    step = spec.get("step")
    if step is not None:
        step = _number(where, "step", step, integer)
        if step <= 0:
            raise SpaceError(f"{where}: step must be positive, got {step}")
    if log and step is not None and not (integer and step == 1):
        raise SpaceError(f"{where}: log and step cannot be combined")
    if log and low <= 0:
        raise SpaceError(f"{where}: log needs low > 0, got low={low}")
    if integer and step is None:
        step = 1
    return {"type": kind, "low": low, "high": high, "log": log, "step": step}


def load_space(space: str | os.PathLike | Mapping) -> dict[str, dict]:
    """Read (a YAML file) and validate a search space; returns ``{key: normalised spec}``.

    Raises :class:`SpaceError` naming the offending key and what is accepted."""
    source = ""
    if isinstance(space, (str, os.PathLike)):
        path = Path(space)
        if not path.is_file():
            raise FileNotFoundError(f"search space file not found: {path}")
        source = f" in {path}"
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise SpaceError(f"search space {path} is not valid YAML: {err}") from None
    else:
        raw = space
    if not isinstance(raw, Mapping) or not raw:
        raise SpaceError(f"a search space{source} must be a non-empty mapping of dotted recipe keys "
                         f"to specs such as {_EXAMPLE}; got {raw!r}")
    out = {key: _check_spec(key, spec, source) for key, spec in raw.items()}
    for key in out:
        for other in out:
            if other.startswith(key + "."):
                raise SpaceError(f"search space keys {key!r} and {other!r}{source} overlap: one "
                                 f"would overwrite the other")
    return out


def suggest(trial: optuna.trial.BaseTrial, space: str | os.PathLike | Mapping) -> dict[str, Any]:
    """Ask ``trial`` for one value per key of ``space``; returns ``{dotted key: value}``
    (Python ``float`` / ``int`` / the choice itself)."""
    out: dict[str, Any] = {}
    for key, s in load_space(space).items():
        if s["type"] == "float":
            out[key] = trial.suggest_float(key, s["low"], s["high"], log=s["log"], step=s["step"])
        elif s["type"] == "int":
            out[key] = trial.suggest_int(key, s["low"], s["high"], step=s["step"], log=s["log"])
        else:
            out[key] = trial.suggest_categorical(key, s["choices"])
    return out


def apply_params(cfg: Mapping, params: Mapping[str, Any]) -> dict:
    """A copy of the recipe dict ``cfg`` with ``{dotted key: value}`` set (missing mappings are
    created)."""
    cfg = copy.deepcopy(dict(cfg))
    for key, value in params.items():
        parts = key.split(".")
        node = cfg
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ValueError(f"cannot set {key!r}: {'.'.join(parts[:i + 1])} is {child!r}, "
                                 f"not a mapping")
            node = child
        node[parts[-1]] = value
    return cfg


# ------------------------------------------------------------------------------------ storage


def open_storage(url: str | os.PathLike | optuna.storages.BaseStorage | None = None
                 ) -> optuna.storages.BaseStorage:
    """An optuna storage from a URL (see the module docstring); ``None``: in memory."""
    if url is None:
        return optuna.storages.InMemoryStorage()
    if isinstance(url, optuna.storages.BaseStorage):
        return url
    url = os.fspath(url)
    if url.startswith("journal:"):
        if not url.startswith("journal://") or not url[len("journal://"):]:
            raise ValueError(f"journal storage URL {url!r}: expected journal:///abs/path/file.log "
                             f"or journal://relative/file.log")
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal://"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ValueError(f"storage {url!r} is not a URL: use sqlite:///{url} (a file), "
                         f"journal://{url} (a journal file) or an RDB URL such as postgresql://...")
    import sqlalchemy

    engine_kwargs: dict = {}
    if url.startswith("sqlite:"):
        # several processes write one file: wait for the lock rather than fail after 5 s
        engine_kwargs = {"connect_args": {"timeout": 120}}
        database = sqlalchemy.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(6):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError):
            # workers starting together on a new database race to create its schema (tables,
            # version rows): the loser retries and finds it made
            if attempt == 5:
                raise
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


# ---------------------------------------------------------------------------- optimisation


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
    return len(study.get_trials(deepcopy=False, states=COUNTED_STATES))


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _run_trial(study: optuna.Study, trial: optuna.Trial, objective: Callable,
               catch: tuple[type[BaseException], ...]) -> None:
    value, state, err, exc_info = None, None, None, None
    try:
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
        frozen = study.tell(trial, None if state else value, state=state)
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
             study_name: str | None = None, direction: str = "minimize", seed: int | None = 0,
             pruner: optuna.pruners.BasePruner | None = None,
             sampler: optuna.samplers.BaseSampler | None = None, timeout: float | None = None,
             catch: tuple[type[BaseException], ...] = (Exception,)) -> optuna.Study:
    """Create or resume (``load_if_exists``) the study and run trials of ``objective`` until the
    study holds ``n_trials`` finished or running trials (the total over every worker sharing the
    storage, not a per-call count) or ``timeout`` seconds have passed.

    Defaults: :func:`make_sampler` (TPE seeded per trial from ``seed``) and
    :func:`default_pruner`. An exception in ``catch`` fails its trial (logged with its traceback,
    kept in the trial's ``error`` user attribute) and the loop goes on; others fail the trial and
    propagate.

    This is ``optuna.study.MaxTrialsCallback(n_trials, states=COUNTED_STATES)`` made exact: that
    callback checks the count after a trial and the next trial is created later, so two workers
    checking at once both start one more. Here a trial created past ``n_trials - 1`` (the trial
    number is the storage's atomic ticket) is handed back as WAITING, untouched, and the worker
    stops; a later run with a larger ``n_trials`` takes it up first.
    """
    if int(n_trials) < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    n_trials = int(n_trials)
    study = optuna.create_study(storage=open_storage(storage), study_name=study_name,
                                direction=direction, load_if_exists=True,
                                sampler=sampler if sampler is not None else make_sampler(seed),
                                pruner=pruner if pruner is not None else default_pruner())
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    while deadline is None or time.monotonic() < deadline:
        if _n_counted(study) >= n_trials:
            break
        trial = study.ask()
        if trial.number >= n_trials:  # another worker took the last place since the count
            study._storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)
            break
        _run_trial(study, trial, objective, catch)
    return study


def pruning_callback(trial: optuna.Trial, monitor: str = "val_loss"):
    """A Lightning callback reporting ``monitor`` to ``trial`` after each validation and raising
    ``optuna.TrialPruned`` when the study's pruner says so."""
    from optuna_integration import PyTorchLightningPruningCallback

    return PyTorchLightningPruningCallback(trial, monitor=monitor)


# ------------------------------------------------------------------------------ recipes


def _stem(x: Any) -> str | None:
    return Path(x).stem if isinstance(x, (str, os.PathLike)) else None


def default_study_name(config: Any, space: Any = None) -> str:
    """``<recipe stem>-<space stem>``, e.g. ``ETTh1_96_96-etth1_lmm`` (``recipe`` for a dict)."""
    return "-".join(s for s in (_stem(config) or "recipe", _stem(space)) if s)


def _load_recipe(config: str | os.PathLike | Mapping, sets: Sequence[str] = ()) -> dict:
    from .benchmark import apply_sets

    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"recipe not found: {path}")
        cfg = yaml.safe_load(path.read_text())
    else:
        cfg = copy.deepcopy(dict(config))
    if not isinstance(cfg, dict):
        raise ValueError(f"recipe {config!r} is not a mapping")
    return apply_sets(cfg, sets)


def _fit_trial(cfg: dict, trial: optuna.Trial, verbose: bool, monitor: str = "val_loss") -> float:
    """Train one recipe dict in a temporary folder with pruning; the best ``monitor`` value."""
    from .lightning_cli import build_from_recipe
    from .training import quiet_lightning

    run_dir = tempfile.mkdtemp(prefix="titans-tune-")
    try:
        cfg = copy.deepcopy(cfg)
        trainer_cfg = cfg.setdefault("trainer", {})
        trainer_cfg["default_root_dir"] = run_dir
        for cb in trainer_cfg.get("callbacks") or []:
            if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("ModelCheckpoint"):
                cb.setdefault("init_args", {})["dirpath"] = os.path.join(run_dir, "checkpoints")
        path = os.path.join(run_dir, "recipe.yaml")
        Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                cli = build_from_recipe(path)
        except SystemExit as e:  # the Lightning CLI rejects the configuration (usage, error)
            lines = err.getvalue().strip().splitlines()
            reason = " ".join(ln for ln in lines if ln.startswith("error:")) or \
                (lines[-1] if lines else f"exit status {e.code}")
            raise ValueError(f"the Lightning CLI rejected the trial's recipe: {reason}") from None
        sys.stderr.write(err.getvalue())
        trainer = cli.trainer
        trainer.callbacks.append(pruning_callback(trial, monitor))
        t0 = time.perf_counter()
        with quiet_lightning(verbose):
            trainer.fit(cli.model, cli.datamodule)
        ckpt = trainer.checkpoint_callback
        score = ckpt.best_model_score if ckpt is not None and ckpt.monitor == monitor else None
        if score is None:
            score = trainer.callback_metrics.get(monitor)
        if score is None:
            raise RuntimeError(f"the recipe logged no {monitor}: a trial needs validation "
                               f"(trainer.limit_val_batches > 0)")
        trial.set_user_attr("epochs", int(trainer.current_epoch))
        trial.set_user_attr("fit_seconds", round(time.perf_counter() - t0, 1))
        return float(score)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def best_recipe(study: optuna.Study, config: str | os.PathLike | Mapping,
                sets: Sequence[str] = ()) -> dict:
    """The recipe dict of the study's best trial: ``config`` + ``sets`` + its parameters."""
    return apply_params(_load_recipe(config, sets), study.best_trial.params)


def write_best_recipe(study: optuna.Study, config: str | os.PathLike | Mapping,
                      output: str | os.PathLike, sets: Sequence[str] = ()) -> Path:
    """Write :func:`best_recipe` as a YAML file ``titans-ts fit --config`` takes, with a header
    naming the study, the best trial and its value; atomically (workers may write at once)."""
    best = study.best_trial
    counts = {s: len(study.get_trials(deepcopy=False, states=(s,)))
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    tuned = ", ".join(f"{k}={v!r}" for k, v in best.params.items())
    header = [
        f"# Best configuration of optuna study {study.study_name!r}: trial {best.number}, "
        f"best validation loss {best.value:.6g}",
        f"# ({counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
        f"{counts[TrialState.FAIL]} failed, {counts[TrialState.RUNNING]} running when written)",
        f"# base recipe: {config if _stem(config) else '(a dict)'}"
        + (f"; --set {' '.join(sets)}" if sets else ""),
        f"# tuned: {tuned}",
        f"# titans-ts fit --config {Path(output).as_posix()}",
    ]
    text = "\n".join(header) + "\n" + yaml.safe_dump(best_recipe(study, config, sets), sort_keys=False)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return output


@contextlib.contextmanager
def _optuna_quiet(verbose: bool):
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


def tune_recipe(config: str | os.PathLike | Mapping, space: str | os.PathLike | Mapping,
                n_trials: int, storage: str | os.PathLike | optuna.storages.BaseStorage | None = None,
                study_name: str | None = None, sets: Sequence[str] = (),
                output: str | os.PathLike | None = None, seed: int | None = 0,
                verbose: bool = False, *, pruner: optuna.pruners.BasePruner | None = None,
                timeout: float | None = None) -> optuna.Study:
    """Tune a recipe: each trial applies ``sets`` then the trial's suggestions to the recipe,
    trains it in a temporary folder (quiet unless ``verbose``) with median pruning on
    ``val_loss``, and scores the best validation loss. Returns the study.

    ``storage`` None keeps the study in memory; ``study_name`` defaults to
    :func:`default_study_name`. With ``output``, the best configuration is written there as a
    recipe (:func:`write_best_recipe`); nothing is written otherwise. The recipe's own seed is
    kept for every trial (trials differ in their parameters only); ``seed`` seeds the sampler.
    """
    base = _load_recipe(config, sets)
    if study_name is None and storage is not None:
        study_name = default_study_name(config, space)
    space = load_space(space)
    apply_params(base, {k: None for k in space})  # fail now on a key that cannot be set

    def objective(trial: optuna.Trial) -> float:
        return _fit_trial(apply_params(base, suggest(trial, space)), trial, verbose)

    with _optuna_quiet(verbose):
        study = optimize(objective, n_trials=n_trials, storage=storage, study_name=study_name,
                         seed=seed, pruner=pruner, timeout=timeout)
    if output is not None:
        if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            write_best_recipe(study, config, output, sets)
        else:
            _log.warning("no trial of study %r completed: no recipe written", study.study_name)
    return study


# ------------------------------------------------------------------------------ command line


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "study"


def tune_paths(args) -> tuple[str, str, str]:
    """(study name, storage URL, best-recipe path) of ``titans-ts tune``, defaults filled in:
    ``<recipe stem>-<space stem>``, ``sqlite:///<study name>.db`` and ``<study name>.best.yaml``
    (both in the current folder)."""
    name = args.study_name or default_study_name(args.config, args.space)
    storage = args.storage or f"sqlite:///{_safe_name(name)}.db"
    output = args.output or f"{_safe_name(name)}.best.yaml"
    return name, storage, output


def run_tune_command(args) -> int:
    """``titans-ts tune``: one worker; progress on stderr, a summary on stdout."""
    name, storage, output = tune_paths(args)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[tune] %(message)s"))
    saved = _log.level, _log.propagate
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    _log.propagate = False
    print(f"study {name!r} in {describe_storage(storage)}: {args.n_trials} trials in all, over "
          f"every worker on this study", flush=True)
    try:
        study = tune_recipe(args.config, args.space, args.n_trials, storage=storage,
                            study_name=name, sets=args.set or [], output=output, seed=args.seed,
                            verbose=args.verbose, timeout=args.timeout)
    finally:
        _log.removeHandler(handler)
        _log.setLevel(saved[0])
        _log.propagate = saved[1]
    states = [t.state for t in study.get_trials(deepcopy=False)]
    print("trials: " + ", ".join(f"{states.count(s)} {s.name.lower()}" for s in COUNTED_STATES))
    if TrialState.COMPLETE not in states:
        print("no trial completed: no recipe written")
        return 1
    best = study.best_trial
    print(f"best: trial {best.number}, val_loss {best.value:.6g}")
    for key, value in best.params.items():
        print(f"  {key}: {value!r}")
    print(f"best recipe: {output}  (titans-ts fit --config {output})")
    return 0
