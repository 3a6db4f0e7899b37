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
    lines = (DOC / "rejected-inputs.md").read_text().splitlines()
    header = lines.index("| input | error | message |")
    assert lines[header + 1] == "|---|---|---|"
    table = [line for line in lines[header + 2:] if line.startswith("|")]
    assert len(table) == len(rows), (
        f"docs/rejected-inputs.md has {len(table)} rows, the cases {len(rows)}: rerun docs/make_rejected_inputs.py")
    for (what, kind, msg), line in zip(rows, table, strict=True):
        # the row as docs/make_rejected_inputs.py writes it ("|" escaped in the message); messages
        # naming temporary paths may differ, so the message is compared on its first 40 characters
        escaped = msg[:40].replace("|", "\\|")
        row = f"| {what} | `{kind}` | {escaped}"
        assert line.startswith(row), (
            f"docs/rejected-inputs.md is stale for {what!r}: rerun docs/make_rejected_inputs.py\n"
            f"  doc:  {line[:len(row) + 20]}\n  code: {row}")
        assert line.endswith(" |")
