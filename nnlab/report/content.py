"""What a report section gives the page writer: text, tables and figures as data, never HTML.

A section (``nnlab.report.flagship``, ``search``, ``studies``, ...) returns one :class:`Section`:
its blocks of text in page order, the figures it wants drawn (a call that returns a matplotlib
Figure), the tables it saves as CSV, and the numbers it adds to ``findings.json``. Only
``nnlab.report.page`` turns these into HTML, and it escapes every string, so a run name, a tag or
a param read from the store can never become markup.

Text is a plain ``str`` or a sequence of spans: ``str``, :class:`Code`, :class:`Strong` and
:class:`Link` (a file beside ``index.html``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # matplotlib is imported only when figures are drawn
    from matplotlib.figure import Figure

__all__ = [
    "Code",
    "Strong",
    "Link",
    "Text",
    "Paragraph",
    "Bullets",
    "Heading",
    "InlineTable",
    "Block",
    "NotDrawn",
    "FigureSpec",
    "TableSpec",
    "Section",
]


@dataclass(frozen=True)
class Code:
    """Text shown as code (an experiment name, a param)."""

    text: str


@dataclass(frozen=True)
class Strong:
    """Text shown in bold."""

    text: str


@dataclass(frozen=True)
class Link:
    """A link to a file written beside ``index.html`` (``href`` is a file name)."""

    href: str
    text: str


Span = str | Code | Strong | Link
Text = str | Sequence[Span]


@dataclass
class Paragraph:
    """One paragraph. ``id``: its anchor; ``verdict``: shown as the highlighted verdict box."""

    text: Text
    id: str = ""
    verdict: bool = False


@dataclass
class Bullets:
    """A bulleted list, one item per entry; ``id``: its anchor."""

    items: list[Text]
    id: str = ""


@dataclass
class Heading:
    """A sub-heading inside a section."""

    text: Text
    id: str = ""


@dataclass
class InlineTable:
    """A table shown on the page, shape (n_rows, n_cols); floats shown with 4 significant
    digits, +inf as "not reached"."""

    frame: pd.DataFrame


Block = Paragraph | Bullets | Heading | InlineTable


class NotDrawn(Exception):
    """Raised by a figure's ``draw`` when the data cannot give that figure; the message says
    why and is shown on the page in its place."""


@dataclass
class FigureSpec:
    """One figure of a section.

    Attributes
    ----------
    key : str
        File stem (``<key>.png``) and anchor.
    title, caption : str
    draw : callable or None
        Returns the matplotlib Figure (or raises :class:`NotDrawn`); None when it cannot be
        drawn (``reason`` says why).
    reason : str
        Why the figure is not drawn (with ``draw`` None).
    """

    key: str
    title: str
    caption: str
    draw: Callable[[], Figure] | None = None
    reason: str = ""


@dataclass
class TableSpec:
    """One table saved as ``<name>.csv`` beside the page; ``shown``: a display version drawn on
    the page under its link (None: the link only)."""

    name: str
    frame: pd.DataFrame
    shown: pd.DataFrame | None = None


@dataclass
class Section:
    """One section of the report page.

    Attributes
    ----------
    key : str
        Anchor of the section heading.
    title : str
    blocks : list of Block
        Text and inline tables, in page order, before the figures.
    figures : list of FigureSpec
        Drawn after the blocks, numbered across the page.
    tables : list of TableSpec
        Saved as CSV and listed (with links) after the figures.
    after : list of Block
        Blocks shown after the tables (e.g. the list of runs that diverged).
    findings : dict
        Merged into ``findings.json`` (JSON-ready values).
    """

    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    figures: list[FigureSpec] = field(default_factory=list)
    tables: list[TableSpec] = field(default_factory=list)
    after: list[Block] = field(default_factory=list)
    findings: dict[str, Any] = field(default_factory=dict)
