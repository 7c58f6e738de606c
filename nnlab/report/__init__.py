"""One command from a tracked sweep to figures and plain findings.

::

    python -m nnlab.report --experiment lr_vs_epochs [--out DIR] [--metric val_loss]
                           [--tracking-uri URI] [--target 0.1]

writes ``DIR/index.html`` (default ``reports/<experiment>/``) with the figures as PNG files beside
it, the tables as CSV, and ``findings.json`` (every number the findings state). A sweep whose
experiment config sets ``report.enabled: true`` calls :func:`build_report` at its end.

The package, one module per concern:

- ``build``       :func:`build_report`: load once, ask each section, draw, write (``SECTIONS``)
- ``cli``         ``python -m nnlab.report``
- ``context``     what every section reads (runs, histories, the store)
- ``content``     what a section returns: text, tables, figures as data (never HTML)
- ``page``        the page writer, the only code that writes HTML (escapes every string)
- ``flagship``    section: the grid's findings and its seven figures
- ``search``      section: a search's trials, outcomes and figures
- ``studies``     section: the claim per set-up, schedules against the constant rate
- ``tables``      the flagship's tables (pure pandas)
- ``findings``    the flagship's verdict and sentences (pure pandas)
- ``claim``       the claim per set-up (pure pandas)
- ``schedules``   schedules against the best constant rate (pure pandas)
- ``boundaries``  decision boundaries of representative runs (models read from MLflow)
"""

from nnlab.report.build import build_report
from nnlab.report.cli import main

__all__ = ["build_report", "main"]
