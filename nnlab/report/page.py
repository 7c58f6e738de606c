"""The page writer: the only code that writes the report's HTML.

It receives the sections (``nnlab.report.content``: text, tables and figures as data) and writes
``index.html``. Every string is escaped here, once: text, table cells and headers, titles,
captions, anchors and file names. Nothing else in ``nnlab.report`` produces markup, so a tag, a
param, a run name or an experiment name read from the store reaches the page as text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from nnlab.report.content import (
    Block,
    Bullets,
    Code,
    Heading,
    InlineTable,
    Link,
    Paragraph,
    Section,
    Strong,
    Text,
)

__all__ = ["Page", "write_page", "render"]

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;"
    "color:#222;line-height:1.45}img{max-width:100%;border:1px solid #ddd}"
    ".verdict{background:#eef5fb;border-left:4px solid #0072b2;padding:.6em 1em}"
    ".tbl{border-collapse:collapse;font-size:.88em}.tbl td,.tbl th{padding:2px 9px;"
    "text-align:right;border-bottom:1px solid #e4e4e4}figcaption{color:#555;font-size:.9em}"
)


@dataclass
class Page:
    """The whole page: a title, an introduction, the sections in order, a footer line."""

    title: str
    heading: Text
    intro: list[Block] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    footer: str = ""


def _e(text: object) -> str:
    """Text escaped for an element's content or a single- or double-quoted attribute."""
    return escape(str(text), quote=True)


def _text(text: Text) -> str:
    if isinstance(text, str):
        return _e(text)
    parts = []
    for span in text:
        if isinstance(span, Code):
            parts.append(f"<code>{_e(span.text)}</code>")
        elif isinstance(span, Strong):
            parts.append(f"<b>{_e(span.text)}</b>")
        elif isinstance(span, Link):
            parts.append(f"<a href='{_e(span.href)}'>{_e(span.text)}</a>")
        else:
            parts.append(_e(span))
    return "".join(parts)


def _id(key: str) -> str:
    return f" id='{_e(key)}'" if key else ""


def _cell(value: object) -> str:
    """A table cell as text: floats with 4 significant digits, +inf as "not reached"."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float | np.floating):
        if value == math.inf:
            return "not reached"
        return "" if math.isnan(value) else f"{value:.4g}"
    return _e(value)


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    rows = [
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False, name=None)
    ]
    return (
        f"<table class='tbl'><thead><tr>{head}</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _block(block: Block) -> str:
    if isinstance(block, Paragraph):
        cls = " class='verdict'" if block.verdict else ""
        return f"<p{_id(block.id)}{cls}>{_text(block.text)}</p>"
    if isinstance(block, Bullets):
        items = "".join(f"<li>{_text(t)}</li>" for t in block.items)
        return f"<ul{_id(block.id)}>{items}</ul>"
    if isinstance(block, Heading):
        return f"<h3{_id(block.id)}>{_text(block.text)}</h3>"
    if isinstance(block, InlineTable):
        return _table(block.frame)
    raise TypeError(f"not a report block: {type(block).__name__}")


def _section(s: Section, number: int, drawn: dict[str, str], skipped: dict[str, str]) -> list:
    """The HTML lines of one section; figures numbered from ``number``."""
    parts = [f"<h2{_id(s.key)}>{_e(s.title)}</h2>", *map(_block, s.blocks)]
    for i, fig in enumerate(s.figures, number):
        parts.append(f"<h3{_id(fig.key)}>{i}. {_e(fig.title)}</h3>")
        if fig.key in drawn:
            parts.append(
                f"<figure><img src='{_e(drawn[fig.key])}' alt='{_e(fig.title)}'>"
                f"<figcaption>{_e(fig.caption)}</figcaption></figure>"
            )
        else:
            why = skipped.get(fig.key) or fig.reason or "no data"
            parts.append(f"<p><i>Not drawn: {_e(why)}.</i></p>")
    plain = [t for t in s.tables if t.shown is None]
    if plain:
        links = ", ".join(f"<a href='{_e(t.name)}.csv'>{_e(t.name)}.csv</a>" for t in plain)
        parts.append(f"<p class='tables'>Tables (CSV): {links}.</p>")
    for t in s.tables:
        if t.shown is not None:
            parts.append(f"<h4><a href='{_e(t.name)}.csv'>{_e(t.name)}.csv</a></h4>")
            parts.append(_table(t.shown))
    parts += map(_block, s.after)
    return parts


def render(page: Page, drawn: dict[str, str], skipped: dict[str, str]) -> str:
    """The page as one HTML document.

    Parameters
    ----------
    page : Page
    drawn : dict of str to str
        Figure key -> file name of its PNG beside the page.
    skipped : dict of str to str
        Figure key -> why it was not drawn.
    """
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{_e(page.title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{_text(page.heading)}</h1>",
        *map(_block, page.intro),
    ]
    number = 1
    for s in page.sections:
        parts += _section(s, number, drawn, skipped)
        number += len(s.figures)
    if page.footer:
        parts.append(f"<p style='color:#777'>{_e(page.footer)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_page(out: Path, page: Page, drawn: dict[str, str], skipped: dict[str, str]) -> Path:
    """Write :func:`render`'s page as ``out/index.html`` and return its path."""
    index = out / "index.html"
    index.write_text(render(page, drawn, skipped), encoding="utf-8")
    return index


def figure_keys(sections: Iterable[Section]) -> list[str]:
    """Every figure key of ``sections``, in page order."""
    return [f.key for s in sections for f in s.figures]
