"""The documentation site (mkdocs.yml) is complete without building it (CI builds it with
``mkdocs build --strict``, which needs the docs extra): its API reference documents every public
name, its navigation lists every page and only pages that exist, and every user-guide section a
page takes from docs/user-guide.md is there."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

import titans_ts

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
DIRECTIVE = re.compile(r"^::: ([\w.]+)\s*$", re.M)


def _resolve(path: str):
    """The object a mkdocstrings identifier names (a module, or an attribute of one)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise ModuleNotFoundError(path)


def _directives() -> dict[str, str]:
    """Every ``::: identifier`` of the API reference, with the page it is on."""
    return {name: page.relative_to(REPO).as_posix() for page in sorted((DOCS / "api").glob("*.md"))
            for name in DIRECTIVE.findall(page.read_text())}


def _nav_files(nav) -> list[str]:
    out = []
    for item in nav:
        for value in (item.values() if isinstance(item, dict) else [item]):
            out += _nav_files(value) if isinstance(value, list) else [value]
    return out


def _hooks():
    spec = importlib.util.spec_from_file_location("titans_ts_docs_hooks", DOCS / "hooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_directive_resolves():
    bad = {}
    for name, page in _directives().items():
        try:
            _resolve(name)
        except (ModuleNotFoundError, AttributeError) as err:
            bad[name] = f"{page}: {err}"
    assert not bad, f"API reference entries that name nothing: {bad}"


def test_the_api_reference_covers_every_public_name():
    documented = [_resolve(name) for name in _directives()]
    missing = [name for name in titans_ts.__all__
               if not any(obj is getattr(titans_ts, name) for obj in documented)]
    assert not missing, f"titans_ts.__all__ names without an entry in docs/api/*.md: {missing}"


def test_the_navigation_lists_every_page_and_only_pages():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs" and config["strict"] is True
    listed = _nav_files(config["nav"])
    assert len(listed) == len(set(listed)), "a page is listed twice in mkdocs.yml's nav"
    missing = [p for p in listed if not (DOCS / p).is_file()]
    assert not missing, f"mkdocs.yml's nav lists pages that do not exist: {missing}"
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    unlisted = sorted(pages - set(listed))
    assert not unlisted, f"pages of docs/ missing from mkdocs.yml's nav: {unlisted}"
    for page in ("getting-started.md", "forecaster.md", "lightning-cli.md", "tuning.md", "gluonts.md",
                 "test-time-memory.md", "covariates.md", "defaults.md", "benchmarks.md",
                 "benchmarks/online.md", "architecture.md", "titans-math.md", "api/index.md"):
        assert page in listed, f"the site lacks its page {page}"


def test_the_site_is_built_outside_the_sources():
    assert "/site/" in (REPO / ".gitignore").read_text().split()


def test_every_included_user_guide_section_exists():
    hooks = _hooks()
    guide = (DOCS / "user-guide.md").read_text()
    included = []
    for page in sorted(DOCS.rglob("*.md")):
        for m in hooks.INCLUDE.finditer(page.read_text()):
            body = hooks.user_guide_section(guide, m.group(1))
            assert body.strip(), f"{page.name}: the user guide's section {m.group(1)!r} is empty"
            included.append(m.group(1))
    # the four front-ends and the online benchmark come from the guide
    assert len(included) == 5, included


def test_the_section_finder():
    hooks = _hooks()
    guide = ("# Guide\n\n## 1. Alpha one\n\ntext a\n\n## 2. Beta\n\ntext b\n### sub\nmore\n"
             "```bash\n### not a heading\n```\n#### subsub\n")
    assert hooks.user_guide_section(guide, "Beta") == \
        "text b\n## sub\nmore\n```bash\n### not a heading\n```\n### subsub\n"
    assert hooks.user_guide_section(guide, "Alpha") == "text a\n"
    with pytest.raises(type(hooks._error("")), match=r"0 sections have 'Gamma' in their heading \(one is needed\); "
                                         r"its sections: 1. Alpha one; 2. Beta"):
        hooks.user_guide_section(guide, "Gamma")
    page = "<!-- user-guide: Beta -->\npointer\n<!-- /user-guide -->"
    assert hooks.INCLUDE.sub(lambda m: hooks.user_guide_section(guide, m.group(1)), page).startswith("text b")
