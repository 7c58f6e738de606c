"""MkDocs hook: put a few Markdown files from outside docs/ on the site, links intact.

The repository's Markdown links are written for GitHub, relative to each file's place in the
repository (``docs/report.md`` links ``../benchmarks/README.md``). MkDocs only knows files under
``docs/``, so this hook adds the files in ``MOUNTED`` to the site at their repository path and
rewrites every relative link by resolving it in repository space and re-expressing it from the
page's place on the site. A link to a file that is on neither stays as written, so
``mkdocs build --strict`` still fails on it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

MOUNTED = ("benchmarks/README.md", "nnlab/datasets/README.md")
DOCS = "docs/"

# ](target) or ](target#anchor) or ](target "title"), not URLs, anchors-only or absolute paths
_LINK = re.compile(r"\]\((?!https?:|mailto:|#|/)([^)\s#]+)(#[^)\s]*)?((?:\s+\"[^\"]*\")?)\)")


def on_files(files: Files, config) -> Files:
    """Add the ``MOUNTED`` repository files as site pages at their repository paths."""
    root = Path(config["config_file_path"]).parent
    for path in MOUNTED:
        files.append(File.generated(config, path, abs_src_path=str(root / path)))
    return files


def _repo_path(site_path: str) -> str:
    return site_path if site_path in MOUNTED else DOCS + site_path


def _site_path(repo_path: str) -> str | None:
    if repo_path in MOUNTED:
        return repo_path
    if repo_path.startswith(DOCS):
        return repo_path[len(DOCS) :]
    return None


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    """Rewrite repository-relative links so they resolve on the site too."""
    page_site = page.file.src_uri
    page_repo_dir = posixpath.dirname(_repo_path(page_site))

    def fix(match: re.Match) -> str:
        target, anchor, title = match.group(1), match.group(2) or "", match.group(3)
        repo_target = posixpath.normpath(posixpath.join(page_repo_dir, target))
        site_target = _site_path(repo_target)
        if site_target is None or files.get_file_from_path(site_target) is None:
            return match.group(0)
        rel = posixpath.relpath(site_target, posixpath.dirname(page_site) or ".")
        return f"]({rel}{anchor}{title})"

    return _LINK.sub(fix, markdown)
