"""``TitansNet``: the forecasting network (a plain ``nn.Module``; it knows nothing of training).

    past [B, L, C] (+ observed mask)
      -> RevIN: per window and channel, subtract the mean (or the last observed value) and
         divide by the std of the observed context (optionally a learned affine per channel)
      -> optional learned cycle (``cycle_len`` > 0; CycleNet's residual cycle forecasting): a
         per-channel pattern of period ``cycle_len`` steps, indexed by each step's absolute
         position ``time_index + t``, is subtracted from the normalised context and added back
         to the normalised forecast, so the blocks model what the cycle does not explain
      -> tokeniser:
           "patch"   channel-independent patches (PatchTST-style): each channel becomes its own
                     sequence of ceil((L - patch_len) / stride) + 1 (+1 end-padding) tokens;
           "variate" one token per channel (iTransformer-style): the whole context of a channel,
                     embedded by a linear map; the blocks then run over the channel axis
      -> covariates (optional; docs/architecture.md): the context values of past-only and
         future-known covariates embedded per patch and added to each target channel's context
         tokens; the horizon values of future-known covariates embedded per patch as horizon
         tokens after the context tokens (read-only for the memory: they hold no observation);
         static covariates (a projection of the numeric ones, an embedding per categorical one)
         added to every token. With the variate tokeniser every covariate is its own token before
         the target channels' tokens (iTransformer's exogenous variates)
      -> Titans blocks (LMM / MAC / MAG / MAL), causal along the token axis
      -> head: "point" (one value per step), "quantile" (one per level), "student_t"
         (location, scale, degrees of freedom)
      -> RevIN inverse
    forecast [B, H, C] (point), [B, H, C, Q] (quantiles) or a StudentT distribution.

The observed mask travels with the values: masked context values enter as 0 together with the
mask itself (each patch embeds values and mask), a token with no observed value writes nothing
into the memory, and RevIN statistics use observed values only. Covariates carry masks the same
way (values and mask embedded together). They are not normalised per window (a calendar feature
would lose its meaning): the front-ends give them in fixed units.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import RMSNorm, make_block
from .config import HEADS, REVIN_CENTERS, TOKENIZERS, TitansConfig
from .heads import make_head
from .memory import no_weight_decay

__all__ = ["TitansNet", "EnsembleNet", "RevIN", "HEADS", "TOKENIZERS", "EXOG_KEYS"]

#: the covariate inputs of :meth:`TitansNet.forward` (``exog``), as in a batch
#: (:data:`titans_ts.datasets.windows.EXOG_KEYS`)
EXOG_KEYS = ("hist_exog", "hist_exog_mask", "futr_exog", "futr_exog_mask", "stat_exog",
             "stat_exog_mask", "stat_cat")


def masked_moments(x: torch.Tensor, mask: torch.Tensor | None):
    """Per window and channel, the mean and (biased) variance over the observed steps of
    ``x`` [B, L, C]: ``[B, 1, C]`` each."""
    if mask is None:
        return x.mean(1, keepdim=True), x.var(1, keepdim=True, unbiased=False)
    m = mask.to(x.dtype)
    n = m.sum(1, keepdim=True).clamp_min(1.0)
    mean = (x * m).sum(1, keepdim=True) / n
    return mean, (((x - mean) * m) ** 2).sum(1, keepdim=True) / n


class RevIN(nn.Module):
    """Reversible instance normalisation over the time axis, observed values only.

    ``center``: what is subtracted per window and channel before dividing by the context's std:
    "mean" (RevIN) or "last", the last observed value (PatchTST's ``subtract_last``, NLinear's
    anchor), so the network forecasts the change from the latest level. "last" keeps a forecast
    anchored where the series is after a level break (the context mean still holds the pre-break
    level); the std is the spread about the mean in both cases.
    """

    def __init__(self, n_channels: int | None = None, affine: bool = False, eps: float = 1e-5,
                 center: str = "mean") -> None:
        super().__init__()
        if center not in REVIN_CENTERS:
            raise ValueError(f"RevIN center must be one of {REVIN_CENTERS}, got {center!r}")
        self.eps = eps
        self.center = center
        if affine:
            if not n_channels:
                raise ValueError("RevIN(affine=True) needs n_channels")
            self.weight: nn.Parameter | None = nn.Parameter(torch.ones(n_channels))
            self.bias: nn.Parameter | None = nn.Parameter(torch.zeros(n_channels))
        else:
            self.weight = self.bias = None

    def normalize(self, x: torch.Tensor, mask: torch.Tensor | None):
        """x [B, L, C] -> (normalised x, (center, std)) with statistics [B, 1, C]."""
        mean, var = masked_moments(x, mask)
        std = torch.sqrt(var + self.eps)
        if self.center == "last":
            mean = _last_observed(x, mask)
        out = (x - mean) / std
        if mask is not None:
            out = out * mask.to(x.dtype)
        if self.weight is not None and self.bias is not None:
            out = out * self.weight + self.bias
        return out, (mean, std)

    def denormalize_scale(self, std: torch.Tensor) -> torch.Tensor:
        """The factor mapping a normalised spread back (std / affine weight)."""
        if self.weight is not None:
            return std / (self.weight.abs() + self.eps)
        return std

    def denormalize(self, y: torch.Tensor, stats) -> torch.Tensor:
        """y [B, H, C, ...] back to the input scale."""
        mean, std = stats
        extra = y.dim() - 3
        shape = (mean.shape[0], 1, mean.shape[2]) + (1,) * extra
        if self.weight is not None and self.bias is not None:
            y = (y - self.bias.view(1, 1, -1, *([1] * extra))) / (
                self.weight.view(1, 1, -1, *([1] * extra)) + self.eps)
        return y * std.view(shape) + mean.view(shape)


def _last_observed(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """[B, 1, C]: the latest observed value of each window and channel (0 where none is)."""
    if mask is None:
        return x[:, -1:, :]
    L = x.shape[1]
    steps = torch.arange(L, device=x.device).view(1, L, 1)
    idx = torch.where(mask.bool(), steps, -1).amax(1, keepdim=True)
    last = x.gather(1, idx.clamp_min(0))
    return torch.where(idx >= 0, last, torch.zeros_like(last))


class TitansNet(nn.Module):
    """Titans backbone for multivariate forecasting.

    Built from a :class:`titans_ts.model.config.TitansConfig`, or from its settings (``seq_len`` and
    ``horizon`` may come first, positionally), validated the same way; see that class for every
    setting:

        >>> import torch
        >>> from titans_ts import TitansNet
        >>> net = TitansNet(seq_len=96, horizon=24, variant="mac", segment_len=4,
        ...                 memory={"heads": 2, "depth": 2})
        >>> net(torch.randn(8, 96, 3)).shape          # [B, L, C] context -> [B, H, C] forecast
        torch.Size([8, 24, 3])

    ``cycle_len`` > 0 adds a learned per-channel cycle: :meth:`forward` then needs
    ``time_index`` (the absolute position of each window's first context step, e.g. its row in
    the file), so the model knows where in a day or a year a window sits even when the context is
    shorter than the period.
    """

    def __init__(self, config: TitansConfig | int | None = None, horizon: int | None = None,
                 **settings) -> None:
        super().__init__()
        if not isinstance(config, TitansConfig):  # TitansNet(seq_len, horizon, **settings)
            if config is not None:
                settings["seq_len"] = config
            if horizon is not None:
                settings["horizon"] = horizon
            config = None
        elif horizon is not None or settings:
            raise ValueError("give either a TitansConfig or settings, not both "
                             "(config.replace(...) makes a changed copy)")
        config = TitansConfig.from_dict(config, **settings)
        self.config = config
        c = config
        self.seq_len, self.horizon, self.tokenizer = c.seq_len, c.horizon, c.tokenizer
        self.head = make_head(c.head, c.quantiles)
        self.revin = RevIN(c.n_channels, c.revin_affine, center=c.revin_center) if c.revin else None
        self.cycle_len = c.cycle_len
        self.cycle = (no_weight_decay(nn.Parameter(torch.zeros(c.cycle_len, c.n_channels)))
                      if c.cycle_len and c.n_channels else None)  # (TitansConfig: cycle_len needs n_channels)
        d_model = c.d_model
        if c.tokenizer == "patch":
            assert c.patch_len is not None and c.stride is not None  # TitansConfig resolves both
            self.patch_len, self.stride = c.patch_len, c.stride
            L, P = c.seq_len, c.patch_len
            self.n_tokens: int | None = max(0, (L - P)) // c.stride + 2 if L >= P else 1
            self.embed = nn.Linear(2 * P, d_model)
            self.pos: nn.Parameter | None = no_weight_decay(nn.Parameter(torch.randn(self.n_tokens, d_model) * 0.02))
        else:
            self.n_tokens = None
            self.embed = nn.Linear(2 * c.seq_len, d_model)
            self.pos = None
        self.blocks = nn.ModuleList([
            make_block(c.variant, d_model, memory=c.memory, mlp_expansion=c.mlp_expansion,
                       dropout=c.dropout, attn_heads=c.attn_heads, window=c.window,
                       n_persistent=c.n_persistent, segment_len=c.segment_len)
            for _ in range(c.n_layers)
        ])
        self.norm = RMSNorm(d_model)
        self.drop = nn.Dropout(c.dropout)
        self.k_out = self.head.n_outputs
        if self.n_tokens is not None:  # patches
            self.proj = nn.Linear(self.n_tokens * d_model, c.horizon * self.k_out)
        else:
            self.proj = nn.Linear(d_model, c.horizon * self.k_out)
        # created last: a network without it draws the same initial weights as before it existed
        self.linear = nn.Linear(c.seq_len, c.horizon) if c.linear_skip else None
        # covariates (after everything else, for the same reason)
        self.n_hist, self.n_futr = c.n_hist_exog, c.n_futr_exog
        self.exog_center = c.exog_center
        self.exog_dropout = c.exog_dropout
        self.n_stat, self.cardinalities = c.n_stat_exog, tuple(c.stat_cat_cardinalities)
        self.exog_embed: nn.Linear | None = None
        self.hist_embed: nn.Linear | None = None
        self.futr_embed: nn.Linear | None = None
        self.n_htokens = 0
        if self.n_tokens is not None:  # patches
            n_ctx = self.n_hist + self.n_futr
            if n_ctx:  # the covariates over each context patch, added to the target's token
                self.exog_embed = nn.Linear(2 * self.patch_len * n_ctx, d_model)
            if self.n_futr:  # horizon tokens: the future-known covariates over the horizon
                H, P = c.horizon, self.patch_len
                self.n_htokens = max(0, (H - P)) // self.stride + 2 if H >= P else 1
                self.futr_embed = nn.Linear(2 * P * self.n_futr, d_model)
                self.hpos = no_weight_decay(nn.Parameter(torch.randn(self.n_htokens, d_model) * 0.02))
                self.proj = nn.Linear((self.n_tokens + self.n_htokens) * d_model, c.horizon * self.k_out)
        else:  # one token per covariate, before the targets' tokens
            if self.n_hist:
                self.hist_embed = nn.Linear(2 * c.seq_len, d_model)
            if self.n_futr:
                self.futr_embed = nn.Linear(2 * (c.seq_len + c.horizon), d_model)
        self.stat_embed = nn.Linear(2 * self.n_stat, d_model) if self.n_stat else None
        self.cat_embed = nn.ModuleList(nn.Embedding(k, d_model) for k in self.cardinalities)

    # ------------------------------------------------------------------ tokenisers
    def _patches(self, x: torch.Tensor, m: torch.Tensor):
        """[N, L] values and mask -> [N, n_tokens, 2 * patch_len] and token mask [N, n_tokens]."""
        L = x.shape[1]
        if L < self.patch_len:
            padx = F.pad(x, (self.patch_len - L, 0))
            padm = F.pad(m, (self.patch_len - L, 0))
            return torch.cat([padx, padm], -1).unsqueeze(1), padm.amax(-1, keepdim=True) > 0
        # end padding by repeating the last value (mask included), as PatchTST does
        x = torch.cat([x, x[:, -1:].expand(-1, self.stride)], 1)
        m = torch.cat([m, m[:, -1:].expand(-1, self.stride)], 1)
        px = x.unfold(1, self.patch_len, self.stride)
        pm = m.unfold(1, self.patch_len, self.stride)
        return torch.cat([px, pm], -1), pm.amax(-1) > 0

    def _patch_exog(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Covariates [B, T, K] and mask -> [B, tokens, K * 2 * patch_len] (each covariate's
        patch values and mask, side by side)."""
        B, T, K = x.shape
        tok, _ = self._patches(x.transpose(1, 2).reshape(B * K, T), m.transpose(1, 2).reshape(B * K, T))
        return tok.view(B, K, tok.shape[1], tok.shape[2]).permute(0, 2, 1, 3).reshape(B, tok.shape[1], -1)

    def _exog(self, exog, B: int, L: int) -> dict:
        """The covariates this network reads, checked: values with unobserved entries 0, masks
        as floats, codes as int64."""
        exog = dict(exog or {})
        unknown = sorted(set(exog) - set(EXOG_KEYS))
        if unknown:
            raise ValueError(f"unknown covariate input(s) {unknown}; exog takes {list(EXOG_KEYS)}")
        want = {"hist_exog": (self.n_hist, (B, L, self.n_hist)),
                "futr_exog": (self.n_futr, (B, L + self.horizon, self.n_futr)),
                "stat_exog": (self.n_stat, (B, self.n_stat)),
                "stat_cat": (len(self.cardinalities), (B, len(self.cardinalities)))}
        out = {}
        for key, (k, shape) in want.items():
            x = exog.get(key)
            if not k:
                if x is not None or exog.get(key + "_mask") is not None:
                    raise ValueError(f"this network was built without {key} (its configuration has none); "
                                     f"build it with the covariate counts of the data")
                continue
            if x is None:
                raise ValueError(f"this network reads {k} covariate(s) as {key} {list(shape)}; exog has none")
            if tuple(x.shape) != shape:
                raise ValueError(f"{key} must be {list(shape)}, got {list(x.shape)}")
            if key == "stat_cat":
                if x.is_floating_point() or x.dtype == torch.bool:
                    raise ValueError(f"stat_cat must hold integer category codes, got {x.dtype}")
                x = x.long()
                cards = torch.as_tensor(self.cardinalities, device=x.device)
                bad = (x < 0) | (x >= cards)
                if bool(bad.any()):
                    j = int(bad.nonzero()[0, 1])
                    raise ValueError(f"stat_cat column {j} holds code {int(x[bad][0])}; its codes are "
                                     f"0 .. {self.cardinalities[j] - 1} (cardinality {self.cardinalities[j]})")
                out[key] = x
                continue
            m = exog.get(key + "_mask")
            m = torch.isfinite(x) if m is None else m.bool()
            x = torch.where(m, x, torch.zeros_like(x)).to(torch.float32)
            mf = m.to(torch.float32)
            if self.exog_center == "mean" and key != "stat_exog":  # each covariate's context mean
                c = (x[:, :L] * mf[:, :L]).sum(1, keepdim=True) / mf[:, :L].sum(1, keepdim=True).clamp_min(1.0)
                x = (x - c) * mf
            if self.training and self.exog_dropout > 0 and key != "stat_exog":  # hide whole covariates
                keep = (torch.rand(B, 1, k, device=x.device) >= self.exog_dropout).to(x.dtype)
                x, mf = x * keep, mf * keep
            out[key], out[key + "_mask"] = x, mf
        return out

    def _static(self, ex: dict):
        """[B, d_model]: what the static covariates add to every token (None without any)."""
        s = None
        if self.stat_embed is not None:
            s = self.stat_embed(torch.cat([ex["stat_exog"], ex["stat_exog_mask"]], -1))
        for j, emb in enumerate(self.cat_embed):
            e = emb(ex["stat_cat"][:, j])
            s = e if s is None else s + e
        return s

    def memory_rows(self, batch: int, n_channels: int) -> int:
        """How many memory sequences a batch of ``batch`` windows runs (one per channel with
        patches, one per window with the variate tokeniser): the leading size of the states."""
        return batch * n_channels if self.tokenizer == "patch" else batch

    def cycle_at(self, time_index: torch.Tensor, offset: int, length: int) -> torch.Tensor:
        """The learned cycle at steps ``time_index + offset + [0, length)``: [B, length, C]."""
        if self.cycle is None:
            raise ValueError("this network has no learned cycle (cycle_len=0)")
        steps = torch.arange(offset, offset + length, device=time_index.device)
        return self.cycle[(time_index.long().view(-1, 1) + steps) % self.cycle_len]

    def forward(self, past: torch.Tensor, past_mask: torch.Tensor | None = None,
                states: list | None = None, return_states: bool = False,
                time_index: torch.Tensor | None = None, surprise_clamp: float | None = None,
                exog: dict | None = None):
        """Args:
            past: [B, L, C] context; past_mask: [B, L, C] observed mask (None = all observed).
            exog: the covariates the configuration declares, a mapping with the batch keys
                (:data:`EXOG_KEYS`): ``hist_exog`` [B, L, Kh], ``futr_exog`` [B, L + H, Kf]
                (context then horizon), ``stat_exog`` [B, Ks] (each with an optional ``_mask``
                of the same shape; None: observed where finite) and ``stat_cat`` [B, Kc]
                integer codes. A key the configuration does not declare is an error.
            time_index: [B] integer position of each window's first context step (needed, and
                only used, when the network has a learned cycle, ``cycle_len`` > 0).
            states: one :class:`titans_ts.MemoryState` per block (None entries, or None: the
                learned initial memory) to start the memories from, e.g. what an earlier call
                returned after reading older data (test-time memorisation across windows).
            return_states: also return the blocks' final memory states.
            surprise_clamp: this call's soft clamp on the memories' surprise norm (None: each
                memory's own setting), e.g. for states carried far beyond the training length.

        Returns the forecast: [B, H, C] (point), [B, H, C, Q] (quantile), or a
        ``torch.distributions.StudentT`` with batch shape [B, H, C] (student_t); with
        ``return_states``, the pair ``(forecast, states)``.
        """
        if past.dim() != 3 or past.shape[1] != self.seq_len:
            raise ValueError(f"past must be [B, {self.seq_len}, C], got {list(past.shape)}")
        B, L, C = past.shape
        mask = torch.ones_like(past, dtype=torch.bool) if past_mask is None else past_mask.bool()
        past = torch.where(mask, past, torch.zeros_like(past))
        if self.revin is not None:
            x, stats = self.revin.normalize(past, mask)
        else:
            x, stats = past, None
        mf = mask.to(x.dtype)
        ex = self._exog(exog, B, L)
        if self.cycle is not None:
            time_index = self._check_time_index(time_index, B, C)
            x = (x - self.cycle_at(time_index, 0, L)) * mf
        n_pre = 0  # covariate tokens before the targets' (variate tokeniser)
        if self.tokenizer == "patch":
            tok, tok_mask = self._patches(x.transpose(1, 2).reshape(B * C, L), mf.transpose(1, 2).reshape(B * C, L))
            h = self.embed(tok) + self.pos
            ctx = [ex[k][:, :L] for k in ("hist_exog", "futr_exog") if k in ex]
            if ctx:  # the covariates over each context patch, shared by the window's channels
                assert self.exog_embed is not None  # (built for them)
                cm = [ex[k + "_mask"][:, :L] for k in ("hist_exog", "futr_exog") if k in ex]
                e = self.exog_embed(self._patch_exog(torch.cat(ctx, -1), torch.cat(cm, -1)))
                h = h + e.unsqueeze(1).expand(B, C, *e.shape[1:]).reshape(B * C, *e.shape[1:])
            if self.n_futr:  # horizon tokens, read-only for the memory (no observation in them)
                assert self.futr_embed is not None
                z = self.futr_embed(self._patch_exog(ex["futr_exog"][:, L:], ex["futr_exog_mask"][:, L:])) + self.hpos
                h = torch.cat([h, z.unsqueeze(1).expand(B, C, *z.shape[1:]).reshape(B * C, *z.shape[1:])], 1)
                tok_mask = torch.cat([tok_mask, tok_mask.new_zeros(B * C, self.n_htokens)], 1)
            stat = self._static(ex)
            if stat is not None:
                h = h + stat.unsqueeze(1).expand(B, C, -1).reshape(B * C, 1, -1)
        else:
            tok = torch.cat([x.transpose(1, 2), mf.transpose(1, 2)], -1)  # [B, C, 2L]
            h = self.embed(tok)
            tok_mask = mf.amax(1) > 0  # [B, C]
            pre, pre_mask = [], []
            for key, emb in (("hist_exog", self.hist_embed), ("futr_exog", self.futr_embed)):
                if emb is not None:
                    v, m = ex[key].transpose(1, 2), ex[key + "_mask"].transpose(1, 2)  # [B, K, T]
                    pre.append(emb(torch.cat([v, m], -1)))
                    pre_mask.append(m.amax(-1) > 0)
            if pre:
                n_pre = sum(p.shape[1] for p in pre)
                h = torch.cat(pre + [h], 1)
                tok_mask = torch.cat(pre_mask + [tok_mask], 1)
            stat = self._static(ex)
            if stat is not None:
                h = h + stat.unsqueeze(1)
        h = self.drop(h)
        if states is not None and len(states) != len(self.blocks):
            raise ValueError(f"states must hold one entry per block ({len(self.blocks)}), got {len(states)}")
        finals = []
        for i, block in enumerate(self.blocks):
            h, st = block(h, None if states is None else states[i], tok_mask, return_state=return_states,
                          surprise_clamp=surprise_clamp)
            finals.append(st)
        h = self.norm(h)
        if self.tokenizer == "patch":
            out = self.proj(h.reshape(B * C, -1)).view(B, C, self.horizon, self.k_out)
        else:
            out = self.proj(h[:, n_pre:]).view(B, C, self.horizon, self.k_out)
        out = out.permute(0, 2, 1, 3)  # [B, H, C, k]
        if self.linear is not None:  # the linear path shifts the location (first output)
            lin = self.linear(x.transpose(1, 2)).transpose(1, 2).unsqueeze(-1)  # [B, H, C, 1]
            out = torch.cat([out[..., :1] + lin, out[..., 1:]], -1)
        if self.cycle is not None:
            # the first output is the location (point, lowest quantile, Student-t loc): adding
            # the cycle there shifts every head's whole forecast
            assert time_index is not None  # checked above
            out = torch.cat([out[..., :1] + self.cycle_at(time_index, L, self.horizon).unsqueeze(-1),
                             out[..., 1:]], -1)
        forecast = self.head(out, self.revin, stats)
        return (forecast, finals) if return_states else forecast

    def _check_time_index(self, time_index, B: int, C: int) -> torch.Tensor:
        if time_index is None:
            raise ValueError(f"this network has a learned cycle (cycle_len={self.cycle_len}): "
                             "forward needs time_index, the [B] integer position of each window's "
                             "first context step")
        assert self.cycle is not None  # (only networks with a cycle check a time index)
        time_index = torch.as_tensor(time_index, device=self.cycle.device)
        if time_index.shape != (B,) or time_index.is_floating_point() or time_index.dtype == torch.bool:
            raise ValueError(f"time_index must be an integer tensor of shape [{B}], got "
                             f"{time_index.dtype} {list(time_index.shape)}")
        if C != self.cycle.shape[1]:
            raise ValueError(f"the learned cycle has {self.cycle.shape[1]} channels, past has {C}")
        return time_index

    def point_forecast(self, output) -> torch.Tensor:
        """[B, H, C] point forecast of any head's output (median for quantiles and Student-t)."""
        return self.head.point(output)

    @staticmethod
    def count_parameters(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters() if p.requires_grad)


class EnsembleNet(nn.Module):
    """``size`` :class:`TitansNet` members built from one configuration (each with its own random
    initialisation and dropout draws), trained side by side on their own losses
    (:class:`titans_ts.model.lightning_module.TitansLightningModule` with ``ensemble=size``); the forecast
    is the members' mean, per step and channel (per quantile level for the quantile head: the
    mean of monotone quantiles is monotone). A deep ensemble: ``size`` times the compute and
    parameters of one network for a lower error (docs/benchmarks/time_to_accuracy.md).

    It reads windows only: no memory state is carried across windows (``states`` /
    ``return_states`` are refused), and the Student-t head is refused (a mean of Student-t
    parameters is not a mixture).
    """

    def __init__(self, config: TitansConfig, size: int) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise ValueError(f"an ensemble needs an integer size >= 2, got {size!r} (1: a single TitansNet)")
        if config.head not in ("point", "quantile"):
            raise ValueError(f"an ensemble averages point or quantile forecasts; head={config.head!r} is not "
                             f"supported (use head='point' or 'quantile', or ensemble=1)")
        self.config = config
        self.seq_len, self.horizon = config.seq_len, config.horizon
        self.members = nn.ModuleList(TitansNet(config) for _ in range(size))

    @property
    def head(self):
        return self.members[0].head

    def member_forecasts(self, past: torch.Tensor, past_mask: torch.Tensor | None = None,
                         time_index: torch.Tensor | None = None, surprise_clamp: float | None = None,
                         exog: dict | None = None) -> list:
        """Each member's forecast (what :meth:`TitansNet.forward` returns) of the same windows."""
        return [m(past, past_mask, time_index=time_index, surprise_clamp=surprise_clamp, exog=exog)
                for m in self.members]

    def forward(self, past: torch.Tensor, past_mask: torch.Tensor | None = None,
                states: list | None = None, return_states: bool = False,
                time_index: torch.Tensor | None = None, surprise_clamp: float | None = None,
                exog: dict | None = None):
        if states is not None or return_states:
            raise ValueError("an ensemble forecasts each window from the members' learned initial "
                             "memories; it carries no memory state across windows (states / "
                             "return_states need a single TitansNet, ensemble=1)")
        return torch.stack(self.member_forecasts(past, past_mask, time_index, surprise_clamp, exog), 0).mean(0)

    def point_forecast(self, output) -> torch.Tensor:
        return self.head.point(output)
