"""The package's layering: the sub-packages import each other without a cycle, and the forecaster
does not reach into the online benchmark code (the stream memory lives with the model)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "titans_ts"


def subpackage_imports(root: Path = PKG) -> dict[str, set[str]]:
    """For each sub-package of ``root``, the other sub-packages its modules import (absolute or
    relative imports, at any place in a module)."""
    subs = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
    edges: dict[str, set[str]] = defaultdict(set)
    for f in root.rglob("*.py"):
        rel = f.relative_to(root).parts
        if rel[0] not in subs:
            continue
        here = [root.name, *rel[:-1]]
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[:len(here) - node.level + 1]
                    names = [".".join(base + ([node.module] if node.module else []))]
                else:
                    names = [node.module or ""]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == root.name and len(parts) > 1 and parts[1] in subs and parts[1] != rel[0]:
                    edges[rel[0]].add(parts[1])
    return dict(edges)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_no_import_cycle_between_subpackages():
    edges = subpackage_imports()
    assert edges, "no sub-package imports found: the scan is broken"
    assert find_cycle(edges) is None, f"import cycle between sub-packages: {find_cycle(edges)}"


def test_the_forecaster_does_not_import_the_online_package():
    assert "online" not in subpackage_imports().get("forecaster", set())
