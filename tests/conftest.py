"""Shared test setup.

* Triton kernels run through Triton's CPU interpreter unless a CUDA device is present (the same
  tests then run on the GPU unchanged). The variable must be set before triton is imported.
* Benchmark data is read in place from ``$TITANS_TS_DATA`` (CI points it at ../shared/data); when
  it is absent, data tests fail under CI and are skipped elsewhere.
* Hypothesis runs derandomised (the same examples on every run, no example database), so the
  fast lane is deterministic; ``HYPOTHESIS_PROFILE=explore`` draws fresh random examples.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch  # importing torch does not import triton
from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

# one thread: the tests are small (threading overhead dominates) and must not oversubscribe the
# CPU when something else runs beside them
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path | None:
    env = os.environ.get("TITANS_TS_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (cand / "ltsf").is_dir():
            return cand.resolve()
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        msg = "benchmark data not found: set TITANS_TS_DATA to the folder holding ltsf/ and monash/"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch, tmp_path_factory):
    """Point the user cache at a throw-away folder (no writes to the real cache, and none inside
    the test's own tmp_path, which some tests inspect)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
