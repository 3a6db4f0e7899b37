"""The wheel's layout: kernels/ and datasets/ ship as titans_ts.kernels / titans_ts.datasets only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["kernels", "datasets"])
def test_generic_top_level_names_are_not_installed(name, tmp_path):
    # run from an unrelated folder so the repository itself is not on sys.path
    code = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({name!r}) is None else 1)"
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, f"`import {name}` resolves after installing titans-ts"


@pytest.mark.slow
def test_subpackages_import_under_titans_ts(tmp_path):
    code = ("import titans_ts.kernels, titans_ts.datasets, titans_ts.metrics;"
            "print(titans_ts.datasets.ltsf_splits.__module__)")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "titans_ts.datasets.ltsf"


def test_package_list_is_complete():
    """Every folder with an __init__.py under the mapped roots is listed in pyproject."""
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = cfg["package-dir"]
    found = set()
    for pkg, folder in mapping.items():
        base = REPO / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            found.add(".".join([pkg, *rel.parts]) if rel.parts else pkg)
    assert found == listed, f"pyproject packages differ: missing {found - listed}, extra {listed - found}"


def test_import_is_light(tmp_path):
    code = "import sys, titans_ts; print(sorted(m for m in ('lightning', 'gluonts', 'optuna') if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_public_api_and_its_docstring_examples_run():
    """`from titans_ts import TitansNet, MAC, MAG, MAL, LMM` works, and the short examples in the
    docstrings of the package, the configuration, the heads, the blocks and the network run."""
    import doctest
    import importlib

    import titans_ts
    from titans_ts import LMM, MAC, MAG, MAL, TitansNet  # noqa: F401

    assert {"TitansNet", "MAC", "MAG", "MAL", "LMM", "TitansConfig"} <= set(titans_ts.__all__)
    for name in ("titans_ts", "titans_ts.model.config", "titans_ts.model.heads", "titans_ts.model.blocks",
                 "titans_ts.model.network"):
        res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
        assert res.failed == 0, f"{name}: {res.failed} failing docstring example(s)"
        assert res.attempted > 0, f"{name} has no runnable example"
