"""The one model configuration: validated once, unknown keys named, the same settings reachable
from every front-end with the same defaults."""

from __future__ import annotations

import numpy as np
import pytest

from titans_ts.model.config import MemoryConfig, TitansConfig, default_patching

MAC = dict(variant="mac", attn_heads=2, segment_len=4, n_persistent=3, d_model=16,
           memory={"heads": 2, "depth": 1, "chunk_size": 4}, revin_center="last", tokenizer="patch",
           patch_len=8, stride=4)


def test_defaults_and_round_trip():
    cfg = TitansConfig()
    assert (cfg.patch_len, cfg.stride) == default_patching(96) == (16, 8)
    assert cfg.memory == MemoryConfig()
    again = TitansConfig.from_dict(cfg.to_dict())
    assert again == cfg
    # plain values only (JSON / YAML / weights_only checkpoints)
    assert isinstance(cfg.to_dict()["memory"], dict) and isinstance(cfg.to_dict()["quantiles"], list)


def test_unknown_keys_are_errors_naming_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown model setting\(s\) \['d_modle'\]; allowed: .*d_model"):
        TitansConfig.from_dict({"d_modle": 32})
    with pytest.raises(ValueError, match=r"unknown memory setting\(s\) \['deep'\]; allowed: .*depth"):
        TitansConfig.from_dict({"memory": {"deep": 2}})
    with pytest.raises(ValueError, match="unknown memory setting"):
        TitansConfig().replace(memory={"bogus": 1})


@pytest.mark.parametrize("bad, match", [
    (dict(seq_len=0), "seq_len must be a positive integer"),
    (dict(d_model=True), "d_model must be a positive integer"),
    (dict(dropout=1.0), "dropout must be"),
    (dict(variant="mamba"), "variant must be one of"),
    (dict(quantiles=(0.9, 0.1)), "quantiles must be levels"),
    (dict(cycle_len=24), "needs n_channels"),
    (dict(variant="mag", d_model=30, attn_heads=4), "divisible by attn_heads"),
    (dict(variant="attention", d_model=30, attn_heads=4), "divisible by attn_heads"),
    (dict(memory={"max_lr": 0}), "memory.max_lr must be > 0"),
    (dict(memory={"activation": "softmax"}), "memory.activation must be one of"),
])
def test_bad_values_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        TitansConfig.from_dict(bad)


def test_numpy_scalars_become_python_numbers():
    cfg = TitansConfig.from_dict({"seq_len": np.int64(48), "dropout": np.float32(0.25),
                                  "memory": {"heads": np.int32(2)}})
    assert type(cfg.seq_len) is int and type(cfg.dropout) is float and type(cfg.memory.heads) is int


def test_replace_merges_partial_memory_settings():
    cfg = TitansConfig(memory={"depth": 1, "chunk_size": 8})
    out = cfg.replace(memory={"max_lr": 0.02}, n_layers=2)
    assert (out.memory.depth, out.memory.chunk_size, out.memory.max_lr, out.n_layers) == (1, 8, 0.02, 2)


def test_every_front_end_builds_the_same_network_from_the_same_settings(tmp_path, data_root):
    """MAC settings (and RevIN / tokeniser / memory) given to the forecaster, the GluonTS
    estimator, the Lightning module and a recipe become one and the same configuration."""
    from titans_ts import TitansForecaster
    from titans_ts.gluonts import TitansEstimator
    from titans_ts.model.lightning_module import TitansLightningModule
    from titans_ts.model.network import TitansNet
    from titans_ts.recipes import build_in_dir, packaged_recipe, set_dotted

    want = TitansConfig.from_dict(MAC, seq_len=24, horizon=6, n_channels=1)
    net = {k: getattr(want, k) for k in MAC}
    net["memory"] = MAC["memory"]
    fc = TitansForecaster(h=6, context_length=24, **net)
    assert fc._config(1) == want
    assert fc.get_params()["segment_len"] == 4  # sklearn sees the network settings
    # GluonTS needs a probabilistic head (its default): the rest is the same
    est = TitansEstimator(freq="h", prediction_length=6, context_length=24, **net)
    assert est.config == want.replace(head="student_t", quantiles=est.config.quantiles)
    assert est.segment_len == 4 and est.n_persistent == 3
    module = TitansLightningModule(24, 6, n_channels=1, **net)
    assert module.config == want and isinstance(module.net, TitansNet)
    # a recipe's model keys are the same fields
    cfg = packaged_recipe("ETTh1_96_96")
    cfg = set_dotted(cfg, {f"model.{k}": v for k, v in net.items()})
    cfg = set_dotted(cfg, {"data.seq_len": 24, "data.horizon": 6, "data.root": str(data_root),
                           "model.cycle_len": 0})
    cli = build_in_dir(cfg, tmp_path)
    assert cli.model.config == want.replace(n_channels=7, dropout=cfg["model"]["dropout"])
