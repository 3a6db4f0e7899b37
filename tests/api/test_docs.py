"""The documentation cites what exists: every repository path in README.md and docs/*.md (in
backquotes, code blocks, links or prose), every ``titans_ts.`` name, and the module map of
docs/architecture.md, which names every module of the package."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# the repository's top-level folders a citation starts with
ROOTS = ("titans_ts/", "kernels/", "datasets/", "benchmarks/", "recipes/", "tests/", "docs/", ".ci/")
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\s]+)\)")
PROSE_PATH = re.compile(r"(?<![\w/.-])((?:titans_ts|kernels|datasets|benchmarks|recipes|tests|docs|\.ci)/"
                        r"[\w./*<>{},-]*\.(?:py|md|yaml|jsonl|json|png|csv))(?![\w/])")
DOTTED = re.compile(r"(?<![\w./])(titans_ts(?:\.\w+)+)")


def _words(code: str) -> list[str]:
    """The repository paths among the words of a code span or block."""
    out = []
    for word in re.split(r"[\s=|]+", code):
        word = word.strip("\"'(),;:")
        word = re.sub(r"::.*$|:\d+$", "", word)  # a test id, a line number
        if word.startswith(ROOTS):
            out.append(word)
    return out


def _globs(path: str) -> list[str]:
    """``path`` as glob patterns: ``<L>`` placeholders and ``...`` match anything, ``{a,b}``
    stands for each alternative."""
    todo, out = [re.sub(r"<[^>]*>|\.\.\.", "*", path)], []
    while todo:
        p = todo.pop()
        m = re.search(r"\{([^{}]*)\}", p)
        if m is None:
            out.append(p)
        else:
            todo += [p[:m.start()] + alt + p[m.end():] for alt in m.group(1).split(",")]
    return out


def _cited(doc: Path, repo: Path = REPO) -> set[str]:
    """The repository paths ``doc`` cites, relative to the repository root ``repo``."""
    text = doc.read_text()
    found = set()
    for block in FENCED.findall(text):
        found.update(_words(block))
    rest = FENCED.sub(" ", text)
    for span in INLINE.findall(rest):
        found.update(_words(span))
    rest = INLINE.sub(" ", rest)
    for _, target in LINK.findall(rest):  # relative to the document's folder
        target = target.split("#")[0]
        if target and not re.match(r"[a-z]+:", target):
            found.add((doc.parent / target).resolve().relative_to(repo).as_posix())
    found.update(PROSE_PATH.findall(LINK.sub(" ", rest)))
    return found


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for part in parts[i:]:
            if not hasattr(obj, part):
                return False
            obj = getattr(obj, part)
        return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_cited_paths_exist(doc):
    cited = _cited(doc)
    missing = sorted(p for p in cited if not all(any(REPO.glob(g)) for g in _globs(p)))
    assert not missing, f"{doc.relative_to(REPO)} cites paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_cited_names_resolve(doc):
    names = set(DOTTED.findall(doc.read_text()))
    missing = sorted(n for n in names if not _resolves(n))
    assert not missing, f"{doc.relative_to(REPO)} names what the package does not have: {missing}"


def test_the_path_finder_finds_paths(tmp_path):
    """The finder itself: each way of citing is found, placeholders become globs."""
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "x.md"
    doc.write_text("Run `python benchmarks/a.py recipes/ltsf/E_<L>_96.yaml` and see [it](b.md#top),\n"
                   "docs/c.md, `tests/d.py::test_e`, `titans_ts/f.py:12`, https://x.org/docs/g.md.\n"
                   "```bash\n.ci/run --x=kernels/h.py\n```\n")
    assert _cited(doc, tmp_path.resolve()) == {"benchmarks/a.py", "recipes/ltsf/E_<L>_96.yaml", "docs/b.md",
                                               "docs/c.md", "tests/d.py", "titans_ts/f.py", ".ci/run",
                                               "kernels/h.py"}
    assert sorted(_globs("r/{a,b}_<L>/...")) == ["r/a_*/*", "r/b_*/*"]
    assert _resolves("titans_ts.training.fit_module") and not _resolves("titans_ts.training.no_such_name")


def _module_map() -> list[str]:
    """The paths of docs/architecture.md's module map (its first code block: a tree indented by
    two spaces a level, descriptions from column 27)."""
    block = FENCED.search((REPO / "docs" / "architecture.md").read_text()).group(1)
    paths, stack = [], []
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip() or indent >= 27:  # a description's continuation
            continue
        name = line.split()[0]
        level = indent // 2
        stack[level:] = [name]
        paths.append("".join(stack))
    return paths


def test_module_map_matches_the_layout():
    paths = _module_map()
    missing = [p for p in paths if not (REPO / p).exists()]
    assert not missing, f"docs/architecture.md's module map names what does not exist: {missing}"
    modules = {p.relative_to(REPO).as_posix()
               for root in ("titans_ts", "kernels", "datasets") for p in (REPO / root).rglob("*.py")
               if p.name != "__init__.py" and "__pycache__" not in p.parts}
    modules |= {p.relative_to(REPO).as_posix() + "/" for root in ("titans_ts", "kernels", "datasets")
                for p in (REPO / root).rglob("*") if p.is_dir() and p.name != "__pycache__"}
    unlisted = sorted(modules - set(paths))
    assert not unlisted, f"docs/architecture.md's module map leaves out {unlisted}"
