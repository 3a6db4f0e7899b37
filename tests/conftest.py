"""Shared test setup.

* Triton kernels run through Triton's CPU interpreter unless a CUDA device is present (the same
  tests then run on the GPU unchanged). The variable must be set before triton is imported.
* Benchmark data is read in place from ``$TITANS_TS_DATA`` (CI points it at ../shared/data); when
  it is absent, data tests fail under CI and are skipped elsewhere.
* Property tests (hypothesis) are derandomised: the same examples every run, and no example
  database, so a run's result does not depend on the runs before it; hypothesis's other cache
  goes to a throw-away folder, so nothing is written into the working directory (``.hypothesis/``).
  ``HYPOTHESIS_PROFILE=explore`` draws fresh random examples instead (to look for new failures;
  a failure prints the blob that replays it).
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch  # importing torch does not import triton
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

# one thread: the tests are small (threading overhead dominates) and must not oversubscribe the
# CPU when something else runs beside them
torch.set_num_threads(1)

settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
_HYPOTHESIS_HOME = pytest.StashKey[str]()

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


def pytest_configure(config):
    """hypothesis writes a cache of the constants it reads in the source (when it collects the
    tests) under ``.hypothesis/`` in the working directory: a throw-away folder instead."""
    config.stash[_HYPOTHESIS_HOME] = tempfile.mkdtemp(prefix="titans-ts-hypothesis-")
    set_hypothesis_home_dir(config.stash[_HYPOTHESIS_HOME])


def pytest_collection_finish(session):
    """Everything imported and collected by now (torch, Lightning, GluonTS, the test modules:
    about half a million objects) lives to the end of the run: kept out of the garbage
    collector's full passes, which otherwise scan it all on every ``gc.collect()`` (the tuning
    loop runs one after each trial: 0.3 s each)."""
    gc.collect()
    gc.freeze()


def pytest_unconfigure(config):
    set_hypothesis_home_dir(None)
    shutil.rmtree(config.stash[_HYPOTHESIS_HOME], ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch, tmp_path_factory):
    """Point the user cache at a throw-away folder (no writes to the real cache, and none inside
    the test's own tmp_path, which some tests inspect)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
