"""Every fenced Python block of README.md and docs/ (every folder) runs, so that a changed API
breaks this test rather than a reader's copy of the example.

Each block runs on its own (a fresh namespace, as a reader pastes it) in a temporary working
folder, so nothing it writes lands in the repository. A block is marked by an HTML comment on the
line just above its fence (invisible in the rendered page):

    <!-- example: slow -->              runs only in the full suite (pytest -m "not slow" leaves it)
    <!-- example: data -->              reads the benchmark files: TITANS_TS_DATA is set to them
    <!-- example: slow data -->         both
    <!-- example: skip: REASON -->      not run, and the test reports why (a reason is required);
                                        a reason that names a test (tests/x.py::test_y, which
                                        runs the block in its own way) fails when it is gone

A block that is deliberately not Python (shell commands, a recurrence) has another fence
(```bash, ``` alone) and is not collected.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.S | re.M)
MARK = re.compile(r"<!--\s*example:\s*(?P<spec>.*?)\s*-->\s*$")
FLAGS = ("slow", "data")
TEST_ID = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


class Example:
    """One Python block: where it is, its source and its marks."""

    def __init__(self, doc: Path, line: int, source: str, flags: set[str], skip: str | None) -> None:
        self.doc, self.line, self.source, self.flags, self.skip = doc, line, source, flags, skip

    @property
    def id(self) -> str:
        doc = self.doc.relative_to(REPO) if self.doc.is_relative_to(REPO) else self.doc
        return f"{doc.as_posix()}:{self.line}"


def parse_mark(spec: str, where: str) -> tuple[set[str], str | None]:
    """The flags and the skip reason of an ``<!-- example: ... -->`` comment."""
    if spec.startswith("skip"):
        reason = spec[4:].lstrip(" :").strip()
        if not spec[4:].lstrip().startswith(":") or not reason:
            raise ValueError(f"{where}: a skipped example needs its reason: <!-- example: skip: WHY -->")
        return set(), reason
    flags = set(spec.split())
    unknown = flags - set(FLAGS)
    if unknown or not flags:
        raise ValueError(f"{where}: unknown example mark {spec!r}; marks are {', '.join(FLAGS)} "
                         f"(together or alone) or 'skip: REASON'")
    return flags, None


def collect(doc: Path) -> list[Example]:
    """The fenced ``python`` blocks of ``doc`` with their marks, in order."""
    text = doc.read_text()
    out = []
    for m in FENCE.finditer(text):
        if m.group("info").strip().split(" ")[0].lower() not in ("python", "py"):
            continue
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARK.search(before)
        flags, skip = parse_mark(mark.group("spec"), f"{doc.name}:{line}") if mark else (set(), None)
        out.append(Example(doc, line, textwrap.dedent(m.group("body")), flags, skip))
    return out


def missing_tests(reason: str, repo: Path = REPO) -> list[str]:
    """The tests (``tests/x.py::test_y``) a skip reason names that do not exist."""
    gone = []
    for path, name in TEST_ID.findall(reason):
        file = repo / path
        if not file.is_file() or not re.search(rf"^def {name}\(", file.read_text(), re.M):
            gone.append(f"{path}::{name}")
    return gone


def _params():
    params = []
    for doc in DOCS:
        for ex in collect(doc):
            marks = [pytest.mark.slow] if "slow" in ex.flags else []
            params.append(pytest.param(ex, id=ex.id, marks=marks))
    return params


@pytest.mark.parametrize("example", _params())
def test_example_runs(example, request, tmp_path, monkeypatch):
    if example.skip:
        gone = missing_tests(example.skip)
        assert not gone, f"{example.id} is skipped as run by {gone}, which do not exist"
        pytest.skip(f"not run here: {example.skip}")
    if "data" in example.flags:
        monkeypatch.setenv("TITANS_TS_DATA", str(request.getfixturevalue("data_root")))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    import matplotlib.pyplot as plt

    try:
        exec(compile(example.source, example.id, "exec"), {"__name__": "__main__"})
    finally:
        plt.close("all")


def test_the_readme_example_is_collected_and_fast():
    """The README's minimal example (a frame, fit, predict with an interval, plot, update) is
    among the blocks, and in the fast lane."""
    blocks = collect(REPO / "README.md")
    minimal = [b for b in blocks if "TitansForecaster(" in b.source and ".update(" in b.source]
    assert len(minimal) == 1, f"README.md has {len(minimal)} minimal examples (fit ... update): one expected"
    ex = minimal[0]
    assert not ex.flags and ex.skip is None
    for call in ("fit(", "predict(levels=", ".plot(", ".update("):
        assert call in ex.source, f"the README's minimal example lacks {call}"


def test_the_collector(tmp_path):
    """Fences, indentation and marks are read as documented; a bad mark is an error that says
    what is accepted."""
    doc = tmp_path / "x.md"
    doc.write_text(textwrap.dedent("""\
        ```python
        a = 1
        ```
        <!-- example: slow data -->
        ```python
        b = 2
        ```
        - an item:

          <!-- example: skip: needs a GPU -->
          ```python
          c = 3
          ```
        ```bash
        echo not python
        ```
        ```
        plain = "not collected"
        ```
        """))
    got = [(e.line, e.source, e.flags, e.skip) for e in collect(doc)]
    assert got == [(1, "a = 1\n", set(), None), (5, "b = 2\n", {"slow", "data"}, None),
                   (11, "c = 3\n", set(), "needs a GPU")]
    assert missing_tests("run by tests/api/test_doc_examples.py::test_the_collector") == []
    assert missing_tests("run by tests/api/test_doc_examples.py::test_gone and tests/api/nofile.py::test_x") == \
        ["tests/api/test_doc_examples.py::test_gone", "tests/api/nofile.py::test_x"]
    with pytest.raises(ValueError, match="a skipped example needs its reason"):
        parse_mark("skip", "x.md:1")
    with pytest.raises(ValueError, match=r"unknown example mark 'fast'; marks are slow, data"):
        parse_mark("fast", "x.md:1")
