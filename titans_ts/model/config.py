"""The settings: one validated description of a Titans forecasting network (:class:`TitansConfig`)
and one of its training (:class:`TrainingConfig`).

Every front-end builds its network from a :class:`TitansConfig`: ``TitansNet``, the Lightning
module (and so ``titans-ts fit --config`` recipes, whose ``model:`` keys are these fields), the
``TitansForecaster`` and the GluonTS ``TitansEstimator``. Settings are validated once, here;
an unknown key is an error that names the allowed ones.

    >>> from titans_ts.model.config import TitansConfig
    >>> cfg = TitansConfig.from_dict({"seq_len": 96, "horizon": 24, "variant": "mac",
    ...                               "segment_len": 8, "memory": {"depth": 2, "max_lr": 0.02}})
    >>> cfg.memory.max_lr, cfg.patch_len, cfg.stride
    (0.02, 16, 8)
    >>> TrainingConfig(lr=3e-4).weight_decay
    0.0001
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal, Mapping, Optional, Tuple, Union, overload

__all__ = ["SettingsError", "TitansConfig", "MemoryConfig", "TrainingConfig", "VARIANTS", "TOKENIZERS", "HEADS",
           "REVIN_CENTERS", "EXOG_CENTERS", "ACTIVATIONS", "MEMORY_BACKENDS", "POINT_LOSSES", "OPTIMIZERS",
           "SCHEDULERS", "default_patching", "check_keys"]

# "none": no sequence mixing (the ablation); "attention": attention in the memory's place (its twin)
VARIANTS = ("lmm", "mac", "mag", "mal", "none", "attention")
TOKENIZERS = ("patch", "variate")
HEADS = ("point", "quantile", "student_t")
REVIN_CENTERS = ("mean", "last")
EXOG_CENTERS = ("none", "mean")
ACTIVATIONS = ("silu", "gelu", "relu", "tanh", "identity")
MEMORY_BACKENDS = ("auto", "reference", "chunked", "triton")
POINT_LOSSES = ("mse", "mae", "huber")
OPTIMIZERS = ("adamw", "sgd")
# "cosine": per epoch, to 0 over max_epochs after warmup_epochs of linear warm-up; "cosine_steps":
# per optimiser step, to lr / 20 over the run's steps (the GluonTS estimator's "cosine")
SCHEDULERS = ("cosine", "cosine_steps", "onecycle", "none")


class SettingsError(ValueError):
    """A setting that does not exist (a misspelt or unknown key, at any depth of a configuration).

    Raised at construction by every front-end (``TitansConfig``, ``TrainingConfig``,
    ``TitansForecaster``, ``TitansEstimator``, ``OnlineConfig``, ``StreamMemoryConfig`` and the
    command line), with the unknown key and the allowed ones in its message. A ``ValueError``, so
    code that caught ``ValueError`` before keeps working."""


def check_keys(given: Mapping[str, Any], allowed, what: str) -> None:
    """Raise a :class:`SettingsError` naming the unknown keys of ``given`` and the allowed ones."""
    unknown = sorted(str(k) for k in given if k not in allowed)
    if unknown:
        raise SettingsError(f"unknown {what} setting(s) {unknown}; allowed: {sorted(allowed)}")


@dataclass(frozen=True)
class _Settings:
    """Base of the settings dataclasses (a field-less dataclass itself, so that parsers which
    read dataclasses, the CLI's, still see plain dataclasses): an unknown keyword is a :class:`SettingsError` naming the
    allowed ones (not the ``TypeError`` of a plain dataclass), raised before anything is built."""

    _what = "setting"

    def __new__(cls, *args: Any, **kwargs: Any):
        check_keys(kwargs, [f.name for f in dataclasses.fields(cls)], cls._what)
        return super().__new__(cls)


@overload
def _int(name: str, value: Any, low: int | None = 1, none: Literal[False] = False) -> int: ...
@overload
def _int(name: str, value: Any, low: int | None = 1, none: bool = False) -> int | None: ...
def _int(name: str, value: Any, low: int | None = 1, none: bool = False) -> int | None:
    """An integer setting (NumPy integers become ``int``; bools and floats are refused)."""
    if value is None and none:
        return None
    kinds: dict[int | None, str] = {1: "a positive integer", 0: "a non-negative integer"}
    kind = kinds.get(low, "an integer")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or \
            (low is not None and value < low):
        raise ValueError(f"{name} must be {kind}{' or None' if none else ''}, got {value!r}")
    return int(value)


@overload
def _float(name: str, value: Any, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, none: Literal[False] = False) -> float: ...
@overload
def _float(name: str, value: Any, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, none: bool = False) -> float | None: ...
def _float(name: str, value: Any, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, none: bool = False) -> float | None:
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number{' or None' if none else ''}, got {value!r}")
    value = float(value)
    bad = (value != value  # NaN
           or (low is not None and (value <= low if low_open else value < low))
           or (high is not None and (value >= high if high_open else value > high)))
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        raise ValueError(f"{name} must be {' and '.join(s for s in (lo, hi) if s)}, got {value!r}")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        try:
            import numpy as np

            if isinstance(value, np.bool_):
                return bool(value)
        except ImportError:  # pragma: no cover - numpy is a dependency
            pass
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _choice(name: str, value: Any, allowed: tuple, label: str | None = None) -> str:
    if value not in allowed:
        where = f" (setting {name})" if label else ""
        raise ValueError(f"{label or name} must be one of {allowed}, got {value!r}{where}")
    return value


def default_patching(seq_len: int, patch_len: int | None = None,
                     stride: int | None = None) -> tuple[int, int]:
    """Patch length and stride for a context of ``seq_len`` steps: ``patch_len`` defaults to
    ``min(16, max(2, seq_len // 6))`` (16 at L = 96, PatchTST's), ``stride`` to half the patch.
    A patch longer than the context is one left-padded token."""
    if patch_len is None:
        patch_len = min(16, max(2, seq_len // 6))
    if stride is None:
        stride = max(1, patch_len // 2)
    return patch_len, stride


@dataclass(frozen=True)
class MemoryConfig(_Settings):
    """Settings of the neural long-term memory (:class:`titans_ts.NeuralMemory`).

    Args:
        heads: number of memory heads.
        head_dim: key / value width per head (None: ``d_model // heads``).
        depth: memory MLP depth (1 = matrix memory; the paper finds >= 2 better).
        expansion: hidden width of a deep memory as a multiple of ``head_dim``.
        activation: hidden activation of the memory MLP.
        chunk_size: tokens per chunk (gradients inside a chunk at the chunk-start weights).
        conv_kernel: causal depthwise convolution width on q, k, v (0 or 1: none).
        momentum: learn the momentum gate eta (False: plain gradient descent).
        forgetting: learn the forgetting gate alpha (False: no weight decay of the memory).
        max_lr: cap on the inner learning rate theta.
        residual_memory: ``M(x) = x + MLP(x)``.
        surprise_clamp: soft clamp on each momentary surprise's norm (None: off).
        backend: memory-op backend: "auto", "reference", "chunked" or "triton".
    """

    heads: int = 4
    head_dim: Optional[int] = None
    depth: int = 2
    expansion: float = 2.0
    activation: str = "silu"
    chunk_size: int = 64
    conv_kernel: int = 4
    momentum: bool = True
    forgetting: bool = True
    max_lr: float = 0.1
    residual_memory: bool = False
    surprise_clamp: Optional[float] = None
    backend: str = "auto"

    _what = "memory"

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The setting names, in declaration order."""
        return _FIELDS_MEMORY

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "heads", _int("memory.heads", self.heads))
        s(self, "head_dim", _int("memory.head_dim", self.head_dim, none=True))
        s(self, "depth", _int("memory.depth", self.depth))
        s(self, "expansion", _float("memory.expansion", self.expansion, low=0.0, low_open=True))
        s(self, "activation", _choice("memory.activation", self.activation, ACTIVATIONS))
        s(self, "chunk_size", _int("memory.chunk_size", self.chunk_size))
        s(self, "conv_kernel", _int("memory.conv_kernel", self.conv_kernel, low=0))
        s(self, "momentum", _bool("memory.momentum", self.momentum))
        s(self, "forgetting", _bool("memory.forgetting", self.forgetting))
        s(self, "max_lr", _float("memory.max_lr", self.max_lr, low=0.0, low_open=True))
        s(self, "residual_memory", _bool("memory.residual_memory", self.residual_memory))
        s(self, "surprise_clamp", _float("memory.surprise_clamp", self.surprise_clamp, low=0.0,
                                         low_open=True, none=True))
        s(self, "backend", _choice("memory.backend", self.backend, MEMORY_BACKENDS))

    @classmethod
    def from_dict(cls, d: Union[Mapping[str, Any], "MemoryConfig", None]) -> "MemoryConfig":
        if d is None:
            return cls()
        if isinstance(d, MemoryConfig):
            return d
        if not isinstance(d, Mapping):
            raise ValueError(f"memory must be a mapping of memory settings, got {d!r}")
        check_keys(d, _FIELDS_MEMORY, "memory")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS_MEMORY = tuple(f.name for f in dataclasses.fields(MemoryConfig))


@dataclass(frozen=True)
class TitansConfig(_Settings):
    """Settings of a :class:`titans_ts.TitansNet` (context and horizon, tokeniser, blocks, head).

    Args:
        seq_len: context length L.
        horizon: forecast length H.
        n_channels: number of channels C (needed by ``revin_affine`` and ``cycle_len``).
        tokenizer: "patch" (channel-independent patches) or "variate" (one token per channel).
        patch_len, stride: patching (None: :func:`default_patching`).
        d_model: token width.
        n_layers: number of Titans blocks.
        variant: "lmm" (memory only), "mac", "mag", "mal", "none" (no memory: the ablation) or
            "attention" (causal attention in the memory's place: its attention-only twin).
        memory: :class:`MemoryConfig` (or a mapping of its fields).
        attn_heads: attention heads (MAC / MAG / MAL and the attention twin).
        window: sliding-window length of MAG / MAL / attention-twin attention (None: unlimited).
        n_persistent: learned persistent tokens every attention query sees (MAC / MAG / MAL / attention).
        segment_len: MAC segment length in tokens.
        mlp_expansion: hidden width of each block's feature MLP, as a multiple of ``d_model``.
        dropout: dropout on the embedding and every residual branch.
        head: "point", "quantile" or "student_t".
        quantiles: increasing levels in (0, 1) of the quantile head.
        revin, revin_affine, revin_center: reversible instance normalisation; ``revin_center``
            "mean" or "last" (the last observed value).
        cycle_len: period in steps of a learned per-channel cycle (0: none).
        linear_skip: add a linear map of the normalised context (one per model, shared by the
            channels: NLinear's forecaster) to the blocks' forecast. A linear path extrapolates
            gracefully when the test period drifts from the training one.
        n_hist_exog: past-only covariates (known up to the forecast origin): their context
            values enter the context tokens.
        n_futr_exog: future-known covariates (known over the horizon too: calendar features,
            planned prices): their context values enter the context tokens, their horizon values
            the horizon tokens (docs/architecture.md).
        n_stat_exog: numeric static covariates (one value per series), projected and added to
            every token.
        stat_cat_cardinalities: the number of categories of each categorical static covariate
            (codes 0 .. cardinality - 1), embedded and added to every token.
            The four covariate counts are set by the front-ends from the data (0 / (): none).
        exog_center: "none" (past-only and future-known covariates enter as the data scaled
            them) or "mean" (each window's covariates minus their mean over its context, horizon
            values included: the covariates' changes enter, not their levels, as RevIN does for
            the target; for covariates whose relation to the target drifts in level).
        exog_dropout: in training, each past-only and future-known covariate of a window is
            hidden (its values and mask set to 0, as a missing covariate) with this probability,
            so the network keeps a forecast that does not lean on any one covariate (0: never;
            evaluation always reads every covariate).
    """

    seq_len: int = 96
    horizon: int = 96
    n_channels: Optional[int] = None
    tokenizer: str = "patch"
    patch_len: Optional[int] = None
    stride: Optional[int] = None
    d_model: int = 64
    n_layers: int = 1
    variant: str = "lmm"
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    attn_heads: int = 4
    window: Optional[int] = None
    n_persistent: int = 4
    segment_len: int = 16
    mlp_expansion: float = 2.0
    dropout: float = 0.2  # titans_ts.defaults.ROBUST: what the recipes' selection chose most
    head: str = "point"
    quantiles: Tuple[float, ...] = (0.1, 0.5, 0.9)
    revin: bool = True
    revin_affine: bool = False
    revin_center: str = "mean"
    cycle_len: int = 0
    linear_skip: bool = False
    n_hist_exog: int = 0
    n_futr_exog: int = 0
    n_stat_exog: int = 0
    stat_cat_cardinalities: Tuple[int, ...] = ()
    exog_center: str = "none"
    exog_dropout: float = 0.0

    _what = "model"

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "seq_len", _int("seq_len", self.seq_len))
        s(self, "horizon", _int("horizon", self.horizon))
        s(self, "n_channels", _int("n_channels", self.n_channels, none=True))
        s(self, "tokenizer", _choice("tokenizer", self.tokenizer, TOKENIZERS))
        patch_len = _int("patch_len", self.patch_len, none=True)
        stride = _int("stride", self.stride, none=True)
        patch_len, stride = default_patching(self.seq_len, patch_len, stride)
        s(self, "patch_len", patch_len)
        s(self, "stride", stride)
        s(self, "d_model", _int("d_model", self.d_model))
        s(self, "n_layers", _int("n_layers", self.n_layers))
        s(self, "variant", _choice("variant", self.variant, VARIANTS))
        s(self, "memory", MemoryConfig.from_dict(self.memory))
        s(self, "attn_heads", _int("attn_heads", self.attn_heads))
        s(self, "window", _int("window", self.window, none=True))
        s(self, "n_persistent", _int("n_persistent", self.n_persistent, low=0))
        s(self, "segment_len", _int("segment_len", self.segment_len))
        s(self, "mlp_expansion", _float("mlp_expansion", self.mlp_expansion, low=0.0, low_open=True))
        s(self, "dropout", _float("dropout", self.dropout, low=0.0, high=1.0, high_open=True))
        s(self, "head", _choice("head", self.head, HEADS))
        qs = self.quantiles
        if isinstance(qs, (str, bytes)) or not hasattr(qs, "__iter__"):
            raise ValueError(f"quantiles must be a sequence of levels in (0, 1), got {qs!r}")
        try:
            qs = tuple(_float("quantiles", q, low=0.0, high=1.0, low_open=True, high_open=True)
                       for q in qs)
        except ValueError:
            raise ValueError(f"quantiles must be levels strictly between 0 and 1, in increasing "
                             f"order, got {list(qs)}") from None
        if not qs or any(a >= b for a, b in pairwise(qs)):
            raise ValueError(f"quantiles must be levels strictly between 0 and 1, in increasing "
                             f"order, got {list(qs)}")
        s(self, "quantiles", qs)
        s(self, "revin", _bool("revin", self.revin))
        s(self, "revin_affine", _bool("revin_affine", self.revin_affine))
        s(self, "revin_center", _choice("revin_center", self.revin_center, REVIN_CENTERS,
                                                 label="RevIN center"))
        s(self, "cycle_len", _int("cycle_len", self.cycle_len, low=0))
        s(self, "linear_skip", _bool("linear_skip", self.linear_skip))
        s(self, "exog_center", _choice("exog_center", self.exog_center, EXOG_CENTERS,
                                       label="covariate center"))
        s(self, "exog_dropout", _float("exog_dropout", self.exog_dropout, low=0.0, high=1.0, high_open=True))
        for name in ("n_hist_exog", "n_futr_exog", "n_stat_exog"):
            s(self, name, _int(name, getattr(self, name), low=0))
        cards = self.stat_cat_cardinalities
        if isinstance(cards, (str, bytes)) or not hasattr(cards, "__iter__"):
            raise ValueError(f"stat_cat_cardinalities must be a sequence of positive integers (the "
                             f"number of categories of each categorical static covariate), got {cards!r}")
        s(self, "stat_cat_cardinalities", tuple(_int("stat_cat_cardinalities", c) for c in cards))
        if self.revin_affine and self.revin and not self.n_channels:
            raise ValueError("revin_affine=True needs n_channels (the affine map is per channel)")
        if self.cycle_len and not self.n_channels:
            raise ValueError("cycle_len > 0 needs n_channels (the cycle is learned per channel)")
        head_dim = self.memory.head_dim or self.d_model // self.memory.heads
        if self.variant not in ("none", "attention") and head_dim < 1:
            raise ValueError(f"d_model ({self.d_model}) is smaller than memory.heads "
                             f"({self.memory.heads}): give memory.head_dim or fewer heads")
        if self.variant in ("mac", "mag", "mal", "attention") and self.d_model % self.attn_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by attn_heads "
                             f"({self.attn_heads})")

    # ------------------------------------------------------------------ construction
    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The setting names, in declaration order."""
        return _FIELDS

    @classmethod
    def from_dict(cls, d: Union[Mapping[str, Any], "TitansConfig", None] = None,
                  **overrides: Any) -> "TitansConfig":
        """Build (and validate) from a mapping of settings; unknown keys are errors naming the
        allowed ones. ``memory`` may be a mapping of :class:`MemoryConfig` fields."""
        if isinstance(d, TitansConfig):
            d = d.to_dict()
        d = dict(d or {}, **overrides)
        check_keys(d, _FIELDS, "model")
        return cls(**d)

    def replace(self, **changes: Any) -> "TitansConfig":
        """A copy with ``changes`` applied (validated again; ``memory`` may be a partial mapping
        merged into the current memory settings)."""
        d = self.to_dict()
        if isinstance(changes.get("memory"), Mapping):
            check_keys(changes["memory"], _FIELDS_MEMORY, "memory")
            changes = dict(changes, memory={**d["memory"], **changes["memory"]})
        d.update(changes)
        return TitansConfig.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values only (JSON / YAML / ``weights_only`` checkpoint safe)."""
        d = {f: getattr(self, f) for f in _FIELDS}
        d["memory"] = self.memory.to_dict()
        d["quantiles"] = list(self.quantiles)
        d["stat_cat_cardinalities"] = list(self.stat_cat_cardinalities)
        return d

    @property
    def has_exog(self) -> bool:
        """Whether the network reads covariates of any kind."""
        return bool(self.n_hist_exog or self.n_futr_exog or self.n_stat_exog or self.stat_cat_cardinalities)

    def memory_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`titans_ts.NeuralMemory` (beside ``dim``)."""
        return self.memory.to_dict()


_FIELDS = tuple(f.name for f in dataclasses.fields(TitansConfig))


def _limit_batches(value: Any) -> int | float | None:
    """``limit_train_batches``: None (the caller's default), a positive number of batches, or a
    fraction in (0, 1]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # (NumPy bools are not Real)
        raise ValueError(f"limit_train_batches must be None, a positive integer or a fraction in "
                         f"(0, 1], got {value!r}")
    if isinstance(value, numbers.Integral):
        if value < 1:
            raise ValueError(f"limit_train_batches={value!r} would train on no batch; use None for "
                             f"the default, a positive number of batches, or a fraction in (0, 1] "
                             f"(1.0: every window)")
        return int(value)
    if not 0 < float(value) <= 1:
        raise ValueError(f"limit_train_batches must be None, a positive integer or a fraction in "
                         f"(0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class TrainingConfig(_Settings):
    """Settings of the training of a network: the optimiser, its schedule and the budget. The one
    place their defaults live. ``TitansForecaster`` and ``TitansEstimator`` build one from their
    parameters, the Lightning module (and so recipes) from its ``model:`` keys; they train
    through :func:`titans_ts.training.fit_module` and
    :func:`titans_ts.model.optim.configure_optimizers`.

    Args:
        lr: learning rate (> 0).
        weight_decay: decoupled weight decay (>= 0), on the tensors that want it only
            (:func:`titans_ts.model.memory.wants_weight_decay`: matrices, not vectors nor
            parameters marked :func:`~titans_ts.model.memory.no_weight_decay`).
        optimizer: "adamw" or "sgd" (momentum 0.9).
        scheduler: "cosine" (per epoch, from ``lr`` to 0 over ``max_epochs``, after
            ``warmup_epochs`` epochs of linear warm-up), "cosine_steps" (per optimiser step, from
            ``lr`` to ``lr / 20`` over the run's steps: the GluonTS estimator's "cosine"),
            "onecycle" (per step, 30 % warm-up) or "none".
        warmup_epochs: linear warm-up epochs of the "cosine" schedule.
        loss: the point head's loss, "mse", "mae" or "huber" (a quantile head trains on the
            pinball loss, a Student-t head on its negative log-likelihood).
        batch_size: training windows per batch.
        max_epochs: epochs at most (None: the front-end's data-aware budget; for
            :func:`~titans_ts.training.fit_module`, the trainer's own limit, e.g. its ``max_steps``).
        patience: early stopping after this many epochs without a better validation loss (None:
            the front-end's data-aware patience; for :func:`~titans_ts.training.fit_module`, no
            early stopping).
        gradient_clip_val: clip the gradients' norm to this (None or 0: no clipping).
        limit_train_batches: batches per epoch at most, or a fraction in (0, 1] of them (None:
            the front-end's default; every batch for :func:`~titans_ts.training.fit_module`).

    The Lightning module (and so a recipe's ``model:`` keys) takes the optimiser's settings
    (``lr``, ``weight_decay``, ``optimizer``, ``scheduler``, ``warmup_epochs``, ``loss``); a
    recipe sets the batch size under ``data:`` and the budget, clipping and early stopping under
    ``trainer:``.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    warmup_epochs: int = 0
    loss: str = "mse"
    batch_size: int = 64
    max_epochs: Optional[int] = None
    patience: Optional[int] = None
    gradient_clip_val: Optional[float] = 1.0
    limit_train_batches: Union[int, float, None] = None

    _what = "training"

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "lr", _float("lr", self.lr, low=0.0, low_open=True))
        s(self, "weight_decay", _float("weight_decay", self.weight_decay, low=0.0))
        s(self, "optimizer", _choice("optimizer", self.optimizer, OPTIMIZERS))
        s(self, "scheduler", _choice("scheduler", self.scheduler, SCHEDULERS))
        s(self, "warmup_epochs", _int("warmup_epochs", self.warmup_epochs, low=0))
        s(self, "loss", _choice("loss", self.loss, POINT_LOSSES))
        s(self, "batch_size", _int("batch_size", self.batch_size))
        s(self, "max_epochs", _int("max_epochs", self.max_epochs, none=True))
        s(self, "patience", _int("patience", self.patience, low=0, none=True))
        s(self, "gradient_clip_val", _float("gradient_clip_val", self.gradient_clip_val, low=0.0,
                                            none=True))
        s(self, "limit_train_batches", _limit_batches(self.limit_train_batches))

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The setting names, in declaration order."""
        return _FIELDS_TRAINING

    @classmethod
    def from_dict(cls, d: Union[Mapping[str, Any], "TrainingConfig", None] = None,
                  **overrides: Any) -> "TrainingConfig":
        """Build (and validate) from a mapping of settings; unknown keys are a
        :class:`SettingsError` naming the allowed ones."""
        if isinstance(d, TrainingConfig):
            d = d.to_dict()
        d = dict(d or {}, **overrides)
        check_keys(d, _FIELDS_TRAINING, "training")
        return cls(**d)

    def replace(self, **changes: Any) -> "TrainingConfig":
        """A copy with ``changes`` applied (validated again)."""
        return TrainingConfig.from_dict(self.to_dict(), **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values only."""
        return {f: getattr(self, f) for f in _FIELDS_TRAINING}


_FIELDS_TRAINING = tuple(f.name for f in dataclasses.fields(TrainingConfig))
