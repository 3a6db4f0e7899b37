"""``titans-ts fit | validate | test | predict --config recipes/...``: Lightning's CLI on the
Titans module and the benchmark data module (``data.seq_len`` / ``data.horizon`` / the channel
count are linked into the model)."""

from __future__ import annotations

import os
import sys
from typing import Sequence

from lightning.pytorch.cli import LightningCLI

from .data_module import LTSFDataModule
from .lightning_module import TitansLightningModule
from .training import quiet_lightning

__all__ = ["TitansCLI", "run_lightning_cli", "build_from_recipe"]


class TitansCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.seq_len", "model.seq_len")
        parser.link_arguments("data.horizon", "model.horizon")
        parser.link_arguments("data.n_channels", "model.n_channels", apply_on="instantiate")


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
                         parser_kwargs={"prog": "titans-ts"})
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
