"""mkdocs hooks of the documentation site (mkdocs.yml; not part of the package or of the site).

* The API reference reads the package as the wheel lays it out: ``kernels/`` and ``datasets/`` are
  ``titans_ts.kernels`` and ``titans_ts.datasets``, which the editable install maps with an import
  hook that mkdocstrings' static loader (griffe) cannot see. As ``.ci/mypy`` does, the build reads
  a tree of links laid out as the wheel is, made in a temporary folder and removed at the end.
* A site page takes a section of docs/user-guide.md, which stays one page that its authors edit
  as one file: between ``<!-- user-guide: TEXT -->`` and ``<!-- /user-guide -->`` (a pointer to
  the user guide, which is what the repository's own view of the page shows), the site puts the
  body of the guide's one ``## `` section whose heading contains TEXT, its sub-headings one
  level up.
* The docstrings cite names in Sphinx's way (``:class:`TitansNet` ``), which the Google-style
  parser leaves as text: the role before a cited name is left out of the rendered page.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

USER_GUIDE = "user-guide.md"
INCLUDE = re.compile(r"<!-- user-guide: (.+?) -->.*?<!-- /user-guide -->", re.S)
SECTION = re.compile(r"^## .*$", re.M)
ROLE = re.compile(r":(?:py:)?(?:class|mod|func|meth|attr|data|exc|obj|const):(?=<code)")

_tree: str | None = None

try:
    from mkdocs.plugins import event_priority
except ImportError:  # the tests read this file without mkdocs
    def event_priority(priority):
        return lambda f: f


def wheel_layout(repo: Path, into: Path) -> Path:
    """Links laid out as the wheel installs the package: ``into/titans_ts`` holds the entries of
    ``titans_ts/`` and ``kernels`` / ``datasets`` from the top of the repository."""
    pkg = into / "titans_ts"
    pkg.mkdir()
    for entry in (repo / "titans_ts").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for name in ("kernels", "datasets"):
        (pkg / name).symlink_to(repo / name)
    return into


def user_guide_section(guide: str, text: str) -> str:
    """The body (without its heading) of the one ``## `` section of ``guide`` whose heading
    contains ``text``; an error names the headings when there is not exactly one."""
    heads = list(SECTION.finditer(guide))
    hits = [i for i, m in enumerate(heads) if text in m.group(0)]
    if len(hits) != 1:
        listed = "; ".join(m.group(0)[3:] for m in heads)
        raise _error(f"docs/{USER_GUIDE}: {len(hits)} sections have {text!r} in their heading "
                          f"(one is needed); its sections: {listed}")
    start = heads[hits[0]].end()
    end = heads[hits[0] + 1].start() if hits[0] + 1 < len(heads) else len(guide)
    return _promote(guide[start:end].strip()) + "\n"


def _promote(text: str) -> str:
    """Headings one level up (``### `` -> ``## ``), outside fenced blocks: the page's title
    stands for the section's own heading, so its sub-sections become the page's sections."""
    out, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{3,6} ", line):
            line = line[1:]
        out.append(line)
    return "\n".join(out)


def _error(message: str) -> Exception:
    """mkdocs' error for a failed build (a message, no traceback); a ValueError where mkdocs is
    not installed (the tests read this file without it)."""
    try:
        from mkdocs.exceptions import PluginError
    except ImportError:
        return ValueError(message)
    return PluginError(message)


@event_priority(100)  # before mkdocstrings, which starts its handlers in its own on_config
def on_config(config):
    global _tree
    repo = Path(config.config_file_path).resolve().parent
    _tree = tempfile.mkdtemp(prefix="titans-ts-docs-")
    python = config.plugins["mkdocstrings"].config["handlers"].setdefault("python", {})
    python["paths"] = [str(wheel_layout(repo, Path(_tree)))]
    return config


def on_page_markdown(markdown, page, config, files):
    if not INCLUDE.search(markdown):
        return markdown
    guide = (Path(config.docs_dir) / USER_GUIDE).read_text()
    return INCLUDE.sub(lambda m: user_guide_section(guide, m.group(1)), markdown)


def on_page_content(html, page, config, files):
    return ROLE.sub("", html)


def on_shutdown():
    if _tree is not None:
        shutil.rmtree(_tree, ignore_errors=True)
