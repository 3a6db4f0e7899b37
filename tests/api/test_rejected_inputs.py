"""Every case of docs/rejected-inputs.md raises, with the message the doc shows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs"


def _module():
    spec = importlib.util.spec_from_file_location("make_rejected_inputs", DOC / "make_rejected_inputs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_rejected_input_raises_and_the_doc_is_current(monkeypatch):
    monkeypatch.delenv("TITANS_TS_DATA", raising=False)
    rows = _module().collect()  # raises if any case is accepted
    doc = (DOC / "rejected-inputs.md").read_text()
    for what, kind, msg in rows:
        assert f"| {what} | `{kind}` |" in doc, f"docs/rejected-inputs.md is stale for {what!r}: rerun the script"
        # messages naming temporary paths may differ; the first 40 characters must match
        assert msg[:40].replace("|", "\\|") in doc, f"message changed for {what!r}: rerun docs/make_rejected_inputs.py"
