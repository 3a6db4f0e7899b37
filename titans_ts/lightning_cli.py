"""``titans-ts fit | validate | test | predict --config recipes/...``: Lightning's CLI on the
Titans module and the benchmark data module (``data.seq_len`` / ``data.horizon`` / the channel
count are linked into the model)."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Any, Sequence

from lightning.pytorch.cli import LightningCLI

from .data_module import LTSFDataModule
from .integrity import load_failure, use_verified_io
from .model.config import MemoryConfig, SettingsError, TitansConfig
from .model.lightning_module import TRAINING_SETTINGS, TitansLightningModule
from .training import quiet_lightning

__all__ = ["TitansCLI", "CLIUsageError", "CLISettingsError", "run_lightning_cli", "build_from_recipe"]

_SPECIAL_CKPT = ("best", "last", "hpc", "registry")
_SUBCOMMANDS = ("fit", "validate", "test", "predict")


class CLIUsageError(ValueError):
    """The command line was rejected (the parser's one-line reason)."""


class CLISettingsError(CLIUsageError, SettingsError):
    """An unknown (or abbreviated) setting on the command line or in a recipe: a
    :class:`titans_ts.model.config.SettingsError`, as every front-end raises for one."""


def _unknown_keys(reason: str) -> list[str]:
    """The dotted keys a parser error says it does not know (none: another error)."""
    keys = []
    if reason.startswith("unrecognized arguments:"):
        keys = [t[2:].split("=", 1)[0] for t in reason.split(":", 1)[1].split() if t.startswith("--")]
    for group, option in re.findall(r"Group '([^']+)' does not accept option '([^']+)'", reason):
        keys.append(f"{group}.{option}")
    return keys


def _allowed(key: str) -> str | None:
    """The settings a recipe's ``model:`` section accepts where an unknown ``key`` sits there."""
    parts = key.split(".")
    if parts[:2] == ["model", "memory"] and len(parts) == 3:
        return f"model.memory: {sorted(MemoryConfig.fields())}"
    if parts[0] == "model" and len(parts) == 2:
        return f"model: {sorted(set(TitansConfig.fields()) | set(TRAINING_SETTINGS))}"
    return None


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """A (nested) configuration as {dotted key: value}."""
    if hasattr(node, "as_dict"):
        node = node.as_dict()
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def _explicit_model_keys(argv: Sequence[str]) -> list[str]:
    """The ``--model.KEY`` settings given on the command line (dotted, without ``model.``)."""
    return [a[len("--model."):].split("=", 1)[0] for a in argv if a.startswith("--model.")]


class TitansCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.seq_len", "model.seq_len")
        parser.link_arguments("data.horizon", "model.horizon")
        parser.link_arguments("data.n_channels", "model.n_channels", apply_on="instantiate")
        # the covariates the data module reads (data.hist_exog, data.futr_exog, data.time_features)
        parser.link_arguments("data.n_hist_exog", "model.n_hist_exog", apply_on="instantiate")
        parser.link_arguments("data.n_futr_exog", "model.n_futr_exog", apply_on="instantiate")
        # an ensemble's members each get their own order of the training windows
        parser.link_arguments("model.ensemble", "data.streams")

    def parse_arguments(self, parser, args) -> None:
        """The parser's errors as one line (:class:`CLIUsageError`), not a page of usage."""
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                super().parse_arguments(parser, args)
        except SystemExit as exit_:
            if not exit_.code:
                sys.stderr.write(err.getvalue())
                raise
            lines = [ln.strip() for ln in err.getvalue().splitlines() if ln.strip()]
            start = max((i for i, ln in enumerate(lines) if ln.startswith("error:")), default=None)
            reason = (" ".join(lines[start:])[len("error:"):].strip() if start is not None
                      else lines[-1] if lines else "invalid arguments")
            sub = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in _SUBCOMMANDS else "fit"
            unknown = _unknown_keys(reason)
            if unknown:  # (abbreviations are refused: an option is spelt out)
                allowed = "; ".join(dict.fromkeys(a for a in map(_allowed, unknown) if a))
                raise CLISettingsError(f"unknown setting(s) {unknown} ({reason}); "
                                       + (f"allowed in {allowed}; " if allowed else "")
                                       + f"titans-ts {sub} --help lists the options") from None
            raise CLIUsageError(f"{reason} (titans-ts {sub} --help lists the options)") from None
        sys.stderr.write(err.getvalue())

    def instantiate_trainer(self, **kwargs):
        """Lightning's trainer, with checkpoints written atomically and read back with their
        content digests checked (:class:`titans_ts.integrity.VerifiedCheckpointIO`)."""
        trainer = super().instantiate_trainer(**kwargs)
        use_verified_io(trainer)
        return trainer

    def _parse_ckpt_path(self) -> None:
        """A checkpoint fixes the network: its settings replace the configuration's. A missing or
        unreadable checkpoint is one clear error; a ``--model.KEY`` given on the command line
        that the checkpoint contradicts is an error (it would be dropped silently); settings of
        the configuration file it replaces are listed on stderr."""
        sub = self.config.get("subcommand")
        ckpt = self.config[sub].get("ckpt_path") if sub else None
        if not ckpt:
            return super()._parse_ckpt_path()
        if str(ckpt) not in _SPECIAL_CKPT and "://" not in str(ckpt):
            path = Path(ckpt)
            if not path.is_file():
                raise FileNotFoundError(2, f"--ckpt_path {ckpt}: no such checkpoint file"
                                        + (" (it is a folder)" if path.is_dir() else ""))
            if not zipfile.is_zipfile(path):
                raise ValueError(f"--ckpt_path {ckpt} is not a readable checkpoint (truncated, corrupt or "
                                 f"not written by torch.save)")
        before = _flat(self.config[sub]["model"])
        try:
            super()._parse_ckpt_path()
        except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, UnicodeDecodeError) as err:
            raise ValueError(f"--ckpt_path {ckpt} is not a readable checkpoint: {load_failure(err)}") from None
        after = _flat(self.config[sub]["model"])
        changed = {k: (before.get(k), v) for k, v in after.items()
                   if before.get(k) is not None and before.get(k) != v}
        explicit = _explicit_model_keys(sys.argv[1:])
        clash = [k for k in changed if any(k == e or k.startswith(e + ".") for e in explicit)]
        if clash:
            listed = ", ".join(f"--model.{k}={changed[k][0]!r} (the checkpoint's: {changed[k][1]!r})"
                               for k in clash)
            raise ValueError(f"--ckpt_path {ckpt} was trained with other model settings than the command "
                             f"line gives: {listed}. A checkpoint fixes the network; drop those "
                             f"arguments, or train a new checkpoint with them")
        if changed:
            listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
            sys.stderr.write(f"titans-ts: note: the model settings of --ckpt_path {ckpt} replace the "
                             f"configuration's: {listed}\n")


def _cli(args: Sequence[str], run: bool = True) -> TitansCLI:
    # LightningCLI reads sys.argv (it warns when handed an args list while the process has its own
    # command line), so the arguments are put there for the duration of the call
    saved = sys.argv
    sys.argv = ["titans-ts", *args]
    # Lightning's CLI calls jsonargparse APIs that jsonargparse now marks deprecated; those
    # warnings concern Lightning, not the user's recipe (JSONARGPARSE_DEPRECATION_WARNINGS=all
    # shows them again)
    env_saved = os.environ.get("JSONARGPARSE_DEPRECATION_WARNINGS")
    if env_saved is None:
        os.environ["JSONARGPARSE_DEPRECATION_WARNINGS"] = "off"
    try:
        return TitansCLI(TitansLightningModule, LTSFDataModule, run=run,
                         save_config_kwargs={"overwrite": True},
                         trainer_defaults={"enable_progress_bar": False, "enable_model_summary": False,
                                           "logger": False},
                         # no abbreviations: --model.memory.dept is an error, not memory.depth
                         parser_kwargs={"prog": "titans-ts", "allow_abbrev": False,
                                        **{sub: {"allow_abbrev": False} for sub in _SUBCOMMANDS}})
    finally:
        sys.argv = saved
        if env_saved is None:
            os.environ.pop("JSONARGPARSE_DEPRECATION_WARNINGS", None)


def run_lightning_cli(args: Sequence[str]) -> int:
    """Entry point of the four Lightning subcommands (args start with the subcommand).

    Checkpoints are loaded with ``weights_only=True`` unless ``--weights_only`` says otherwise;
    ``--verbose`` turns Lightning's messages back on."""
    args = list(args)
    verbose = "--verbose" in args or any(a.startswith("--trainer.enable_progress_bar=true") for a in args)
    if "--verbose" in args:
        args.remove("--verbose")
    if args and args[0] in ("fit", "validate", "test", "predict") and "--help" not in args \
            and not any(a.startswith("--weights_only") for a in args):
        args.append("--weights_only=true")
    with quiet_lightning(verbose):
        _cli(args)
    return 0


def build_from_recipe(config: str, overrides: Sequence[str] = ()) -> TitansCLI:
    """Instantiate model, data module and trainer of a recipe without running anything
    (``cli.model``, ``cli.datamodule``, ``cli.trainer``)."""
    with quiet_lightning(False):
        return _cli(["--config", str(config), *overrides], run=False)
