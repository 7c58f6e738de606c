"""From a tracked experiment to ``index.html``: load once, ask each section, draw, write.

:data:`SECTIONS` lists the section functions in page order. Each takes the
:class:`~nnlab.report.context.Context` and returns a :class:`~nnlab.report.content.Section`
(or None when it has nothing to say about this experiment); a new section is one module with a
``section(ctx)`` function and one line here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from nnlab.analysis import resolve_tracking_uri
from nnlab.report import critical_batch, flagship, lr_find_vs_grid, search, studies
from nnlab.report.content import Code, NotDrawn, Paragraph, Section
from nnlab.report.context import Context, load_context, say
from nnlab.report.intervals import METHOD, too_few
from nnlab.report.page import Page, write_page
from nnlab.report.tables import fmt_lr

__all__ = ["SECTIONS", "build_report"]

SECTIONS: tuple[Callable[[Context], Section | None], ...] = (
    search.section,  # a search's own figures (its trials are left out of the others)
    critical_batch.section,  # a batch-size study: steps to target, B_crit vs B_simple, lr rules
    lr_find_vs_grid.section,  # LR range tests in the experiment: their suggestions vs the grid
    studies.section,  # when the set-up varies: each set-up judged on its own
    flagship.section,  # the grid's findings (pooled over set-ups when they vary)
)
MAX_LISTED = 12  # an axis with more values is stated as its range (a search's lrs)


def _print(msg: str) -> None:
    print(f"[report] {msg}", flush=True)


def _check_request(metric: str, target: float | None) -> None:
    """Refuse a higher-is-better metric or a target that is not a positive loss."""
    if "accuracy" in metric:
        raise ValueError(
            f"metric {metric!r} is higher-is-better; the report ranks by a loss: use val_loss or loss"
        )
    if target is not None and not target > 0:
        raise ValueError(f"target must be a loss value > 0; got {target!r}")


def _axis(runs: pd.DataFrame, name: str) -> str:
    values = sorted(runs[name].dropna().unique())
    shown = [fmt_lr(v) if name == "lr" else str(v) for v in values]
    if len(shown) > MAX_LISTED:
        return f"{name}: {len(shown)} values from {shown[0]} to {shown[-1]}"
    return f"{name}: {', '.join(shown)}"


def _page(ctx: Context, sections: list[Section], seconds: float) -> Page:
    runs = ctx.runs
    axes = "; ".join(_axis(runs, p) for p in ("lr", "batch_size", "epochs", "seed"))
    data = ""
    if "data.name" in runs:
        data = " on " + ", ".join(sorted(map(str, runs["data.name"].dropna().unique())))
    seeds = ctx.runs["seed"].nunique()
    intro = Paragraph(
        [
            f"{len(runs)} runs{data}. Swept {axes}. Metric: ",
            Code(ctx.metric),
            f". Seeds: {seeds}. Every median over seeds comes with its 95% interval [lo, hi] "
            f"({METHOD}); a comparison is stated only where its interval excludes no "
            "difference, and a “best lr” is the best by the median over seeds, with the lrs "
            "its interval does not separate from it.",
        ]
    )
    grid = ctx.grid_runs  # a search's trials are single runs: no intervals to caution about
    caution = too_few(grid["seed"].nunique()) if len(grid) else ""
    cautions = [Paragraph(f"Caution: {caution}.", id="seed-caution", verdict=True)]
    cautions = cautions if caution else []
    return Page(
        title=f"nnlab report: {ctx.experiment}",
        heading=["Learning rate, batch size and epochs: ", Code(ctx.experiment)],
        intro=[intro, *cautions],
        sections=sections,
        footer=f"Built by nnlab.report in {seconds:.1f} s.",
    )


def _write_tables(out: Path, sections: list[Section]) -> None:
    """Each section's tables as ``<name>.csv`` and their findings as ``findings.json``."""
    findings = {}
    for s in sections:
        for t in s.tables:
            t.frame.to_csv(out / f"{t.name}.csv", index=False)
        findings |= s.findings
    (out / "findings.json").write_text(json.dumps(findings, indent=2), encoding="utf-8")


def _draw_figures(
    out: Path, sections: list[Section], progress: Callable[[str], None] | None
) -> tuple[dict[str, str], dict[str, str]]:
    """Save each drawable figure as ``<key>.png`` in ``out``.

    Returns
    -------
    (drawn, skipped)
        ``{key: png file name}`` and ``{key: reason it was not drawn}``.
    """
    from nnlab.figures import plt

    specs = [f for s in sections for f in s.figures]
    drawn, skipped = {}, {}
    for i, spec in enumerate(specs, 1):
        say(progress, f"figure {i}/{len(specs)}: {spec.key} …")
        (out / f"{spec.key}.png").unlink(missing_ok=True)  # never leave a stale figure behind
        try:
            if spec.draw is None:
                raise NotDrawn(spec.reason or "no data")
            fig = spec.draw()
        except NotDrawn as exc:
            skipped[spec.key] = str(exc)
        except Exception as exc:  # one odd figure must not sink the whole report
            skipped[spec.key] = f"drawing failed: {type(exc).__name__}: {exc}"
        else:
            fig.savefig(out / f"{spec.key}.png", dpi=110, bbox_inches="tight")
            plt.close(fig)
            drawn[spec.key] = f"{spec.key}.png"
            continue
        say(progress, f"  skipped: {skipped[spec.key]}")
    return drawn, skipped


def build_report(
    experiment: str,
    out: str | Path,
    metric: str = "val_loss",
    tracking_uri: str | None = None,
    *,
    target: float | None = None,
    progress: Callable[[str], None] | None = _print,
) -> Path:
    """Write the report of ``experiment`` into ``out`` and return the path of ``index.html``.

    Parameters
    ----------
    experiment : str
        MLflow experiment name.
    out : str or Path
        Output directory (created).
    metric : str
        Metric the findings and figures use (``val_loss`` or ``loss``; any per-epoch metric
        where lower is better).
    tracking_uri : str, optional
        Store to read (default ``MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``).
    target : float, optional
        Absolute target for "epochs to reach the target"; default 1.25 x the best result.
    progress : callable, optional
        Receives one progress line per step; ``None`` for silence.

    Raises
    ------
    ValueError
        Unknown or empty experiment (lists the existing ones), or ``metric`` never logged.
    """
    _check_request(metric, target)
    uri = resolve_tracking_uri(tracking_uri)
    ctx = load_context(experiment, uri, metric, target, progress)
    say(progress, "computing tables …")
    sections = [s for make in SECTIONS if (s := make(ctx)) is not None]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)  # only now: a bad request leaves nothing behind
    _write_tables(out, sections)
    drawn, skipped = _draw_figures(out, sections, progress)
    seconds = time.perf_counter() - ctx.started
    index = write_page(out, _page(ctx, sections, seconds), drawn, skipped)
    say(progress, f"done in {time.perf_counter() - ctx.started:.1f} s: {index.resolve()}")
    return index
