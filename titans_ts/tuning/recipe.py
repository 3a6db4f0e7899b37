"""Tuning a recipe (``titans-ts tune``): each trial trains the recipe with the trial's values set,
with median pruning on the validation loss; the best configuration is written as a recipe."""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
import yaml
from optuna.trial import TrialState

from ..atomic import atomic_write
from ..recipes import build_in_dir, load_recipe, set_dotted
from .space import load_space, suggest
from .study import COUNTED_STATES, GRACE_PERIOD, describe_storage, optimize, optuna_quiet, pruning_callback

__all__ = ["tune_recipe", "best_recipe", "write_best_recipe", "default_study_name", "tune_paths",
           "run_tune_command"]

_log = logging.getLogger("titans_ts.tuning")


def _stem(x: Any) -> str | None:
    return Path(x).stem if isinstance(x, (str, os.PathLike)) else None


def default_study_name(config: Any, space: Any = None) -> str:
    """``<recipe stem>-<space stem>``, e.g. ``ETTh1_96_96-etth1_lmm`` (``recipe`` for a dict)."""
    return "-".join(s for s in (_stem(config) or "recipe", _stem(space)) if s)


def _fit_trial(cfg: dict, trial: optuna.Trial, verbose: bool, monitor: str = "val_loss") -> float:
    """Train one recipe dict in a temporary folder with pruning; the best ``monitor`` value."""
    from ..training import fit_module

    run_dir = tempfile.mkdtemp(prefix="titans-tune-")
    try:
        try:
            cli = build_in_dir(cfg, run_dir)
        except ValueError as err:
            raise ValueError(str(err).replace("rejected the recipe", "rejected the trial's recipe")) from None
        trainer = cli.trainer
        trainer.callbacks.append(pruning_callback(trial, monitor))
        t0 = time.perf_counter()
        fit_module(cli.model, cli.datamodule, trainer=trainer, verbose=verbose)
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
    return set_dotted(load_recipe(config, sets), study.best_trial.params)


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
    return atomic_write(output, lambda fh: fh.write(text), binary=False)


def tune_recipe(config: str | os.PathLike | Mapping, space: str | os.PathLike | Mapping,
                n_trials: int, storage: str | os.PathLike | optuna.storages.BaseStorage | None = None,
                study_name: str | None = None, sets: Sequence[str] = (),
                output: str | os.PathLike | None = None, seed: int | None = 0,
                verbose: bool = False, *, pruner: optuna.pruners.BasePruner | None = None,
                timeout: float | None = None, grace_period: int | None = GRACE_PERIOD) -> optuna.Study:
    """Tune a recipe: each trial applies ``sets`` then the trial's suggestions to the recipe,
    trains it in a temporary folder (quiet unless ``verbose``) with median pruning on
    ``val_loss``, and scores the best validation loss. Returns the study.

    ``storage`` None keeps the study in memory; ``study_name`` defaults to
    :func:`default_study_name`. With ``output``, the best configuration is written there as a
    recipe (:func:`write_best_recipe`); nothing is written otherwise. The recipe's own seed is
    kept for every trial (trials differ in their parameters only); ``seed`` seeds the sampler.
    ``grace_period``: seconds without a heartbeat after which a running trial's worker counts as
    dead and its trial is retried (:func:`titans_ts.tuning.optimize`).
    """
    base = load_recipe(config, sets)
    if study_name is None and storage is not None:
        study_name = default_study_name(config, space)
    space = load_space(space)
    set_dotted(base, {k: None for k in space})  # fail now on a key that cannot be set

    def objective(trial: optuna.Trial) -> float:
        return _fit_trial(set_dotted(base, suggest(trial, space)), trial, verbose)

    with optuna_quiet(verbose):
        study = optimize(objective, n_trials=n_trials, storage=storage, study_name=study_name,
                         seed=seed, pruner=pruner, timeout=timeout, grace_period=grace_period)
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
                            verbose=args.verbose, timeout=args.timeout,
                            grace_period=getattr(args, "heartbeat_grace", None) or GRACE_PERIOD)
    finally:
        _log.removeHandler(handler)
        _log.setLevel(saved[0])
        _log.propagate = saved[1]
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    retried = {t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs}
    print("trials: " + ", ".join(f"{states.count(s)} {s.name.lower()}" for s in COUNTED_STATES)
          + (f" ({len(retried)} of the failed ones retried after their worker died)" if retried else ""))
    if TrialState.COMPLETE not in states:
        print("no trial completed: no recipe written")
        return 1
    best = study.best_trial
    print(f"best: trial {best.number}, val_loss {best.value:.6g}")
    for key, value in best.params.items():
        print(f"  {key}: {value!r}")
    print(f"best recipe: {output}  (titans-ts fit --config {output})")
    return 0
