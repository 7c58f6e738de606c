"""The documentation site opened from the file system, in a real headless Chromium.

The site is built as ``.ci/run`` builds it (``mkdocs build --strict``, the ``docs`` extra) into a
temporary directory, then its pages are opened as ``file://`` URLs, as a user who opens
``site/index.html`` does. Checked: every page loads; every link between pages names a page file
(a directory URL shows a listing there); on every API page the docstrings' examples are code
(inside ``<pre>``), with no reST ``::`` and no ``>>>`` line turned into a nested quote; search's
index ships as a script (material's offline plugin). Screenshots of the API pages are kept in
``.nnlab/test-artifacts/docs/`` (``NNLAB_DOCS_SCREENSHOTS`` to put them elsewhere).

Needs ``pip install -e ".[docs,ui-test]"`` and ``apt-get install chromium`` (``.ci/run`` has all).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from helpers import ROOT

pytestmark = pytest.mark.slow

SHOTS = Path(os.environ.get("NNLAB_DOCS_SCREENSHOTS", ROOT / ".nnlab" / "test-artifacts" / "docs"))
# each API page and code its examples must show (as code, inside <pre>)
API_PAGES = {
    "api/nn.html": ["from nnlab import nn", "ExponentialDecay(0.1, decay_steps=100"],
    "api/data.html": ['load_dataset("moons"'],
    "api/analysis.html": ['load_runs("lr_vs_epochs")', 'load_histories("lr_vs_epochs")'],
}
# text of the page outside code: the lines a reader sees as prose
PROSE_LINES = """() => {
  const walker = document.createTreeWalker(document.querySelector('article') || document.body,
                                           NodeFilter.SHOW_TEXT);
  const lines = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest('pre, code, script, style')) continue;
    lines.push(...node.textContent.split('\\n').map(s => s.trim()).filter(Boolean));
  }
  return lines;
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The built site (``mkdocs build --strict``, as .ci/run builds it)."""
    pytest.importorskip("mkdocs", reason='needs pip install -e ".[docs]"')
    out = tmp_path_factory.mktemp("docs") / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if p.name != "404.html")


@pytest.mark.parametrize("name", sorted(API_PAGES))
def test_api_page_shows_its_examples_as_code(page, site, name: str) -> None:
    page.goto((site / name).as_uri())
    assert page.title().endswith("nnlab"), page.title()
    prose = page.evaluate(PROSE_LINES)
    assert len(prose) > 20, prose  # the docstrings are there
    assert not [line for line in prose if line.endswith("::")], "a reST '::' shown as text"
    assert not [line for line in prose if line.startswith((">>>", "..."))], "a doctest as prose"
    assert page.locator("article blockquote").count() == 0  # '>>>' read as nested quotes
    code = "\n".join(page.locator("article pre").all_inner_texts())
    for example in API_PAGES[name]:
        assert example in code, example
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("article pre").first.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / f"{name.replace('/', '_').replace('.html', '')}.png"))


def test_every_page_loads_and_links_name_page_files(page, site) -> None:
    """Each page from file://; each of its links into the site names an existing file (not a
    directory), its anchor aside."""
    found = pages(site)
    assert len(found) >= 15 and site / "api" / "nn.html" in found
    bad = []
    for path in found:
        page.goto(path.as_uri())
        assert page.locator("article h1").count() == 1, path
        for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
            url = urlsplit(href)
            if url.scheme != "file":
                continue
            target = Path(unquote(url.path))
            if not target.is_file():
                bad.append(f"{path.relative_to(site)} -> {href}")
    assert not bad, bad


def test_opening_index_and_following_the_navigation(page, site) -> None:
    page.goto((site / "index.html").as_uri())
    page.get_by_role("link", name="nnlab.analysis").first.click()
    page.wait_for_url("**/api/analysis.html")
    assert page.locator("article h1").inner_text().startswith("API: nnlab.analysis")
    assert "Index of" not in page.content()


def test_search_index_ships_as_a_script(site) -> None:
    """Browsers refuse to fetch files from file://: the offline plugin inlines the index."""
    script = (site / "search" / "search_index.js").read_text()
    assert script.startswith("var __index = {") and '"location":"api/analysis.html' in script
