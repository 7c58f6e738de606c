"""One command from a tracked sweep to figures and plain findings.

::

    python -m nnlab.report --experiment lr_vs_epochs [--out DIR] [--metric val_loss]
                           [--tracking-uri URI] [--target 0.1]

writes ``DIR/index.html`` (default ``reports/<experiment>/``) with the figures as PNG files beside
it, the tables as CSV, and ``findings.json`` (every number the findings state). A sweep whose
experiment config sets ``report.enabled: true`` calls :func:`build_report` at its end.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nnlab import report_studies as rs
from nnlab import report_tables as rt
from nnlab.analysis import load_histories, load_runs, resolve_tracking_uri
from nnlab.tracking.schema import OK_OUTCOMES, Artifact

if TYPE_CHECKING:  # matplotlib is imported only when figures are drawn
    from matplotlib.figure import Figure

__all__ = ["build_report", "main"]

INLINE_TABLES = ("per_lr", "best_lr_per_budget", "per_lr_batch")  # the rest: CSV links only
FIGURES = (
    ("learning_curves", "Learning curves by learning rate"),
    ("heatmap", "Final loss: learning rate × epoch budget"),
    ("speed_quality", "Speed vs quality"),
    ("best_lr", "Best learning rate per epoch budget"),
    ("batch_size", "Batch-size effect"),
    ("outcomes", "Diverged and failed runs"),
    ("decision_boundaries", "Decision boundaries of representative runs"),
)

CAPTIONS = {
    "learning_curves": "Median {m} per epoch over seeds (band: min–max over seeds) for the "
    "longest epoch budget of each (lr, batch size), one panel per batch size. Crosses mark the "
    "last logged epoch of diverged or failed runs; runs that never learned are counted in a note "
    "on their panel instead of drawn; the dashed line is the target.",
    "heatmap": "Median final {m} over seeds of each trial setting (its own run with that "
    "epoch budget); the best lr of each budget is boxed. Grey cells: most seeds diverged, failed "
    "or never learned; '✕' counts such runs in the other cells.",
    "speed_quality": "Each point is one (lr, batch size): epochs its runs needed to reach the "
    "target (median over seeds) against the best {m} they reached. Hollow points never reached "
    "the target within the budget.",
    "best_lr": "The lr with the lowest median final {m} for each epoch budget, from the trials "
    "run with that budget, one line per batch size.",
    "batch_size": "Final {m} against learning rate at the largest epoch budget, one line per "
    "batch size (median, band over seeds). Crosses at the top: runs that diverged, failed or "
    "never learned.",
    "outcomes": "How many runs of each (lr, batch size) completed, stopped early, diverged, "
    "failed or were killed, over all epoch budgets and seeds; 'no learning': completed runs whose "
    "training loss never fell below its first epoch.",
    "decision_boundaries": "Predicted probability over the input plane of a few runs at the "
    "largest budget (the dataset is regenerated from each run's data params). Black line: p = 0.5.",
}


def _say(progress: Callable[[str], None] | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


def _print(msg: str) -> None:
    print(f"[report] {msg}", flush=True)


def _representative_runs(runs: pd.DataFrame, metric: str, k: int = 4) -> pd.DataFrame:
    """A few runs worth looking at: at the largest budget, the middle batch size and lowest seed,
    the smallest lr, the best lr, the largest usable lr, and a diverged one if any."""
    top = runs[runs["epochs"] == runs["epochs"].max()]
    bss = sorted(top["batch_size"].unique())
    top = top[top["batch_size"] == bss[len(bss) // 2]]
    top = top[top["seed"] == top["seed"].min()]
    ok = top[top["outcome"].isin(OK_OUTCOMES) & np.isfinite(top[f"final_{metric}"])]
    picks = []
    if len(ok):
        picks += [ok["lr"].idxmin(), ok[f"final_{metric}"].idxmin(), ok["lr"].idxmax()]
        rest = ok.drop(index=picks, errors="ignore")
        if len(rest):  # one more usable lr between the others
            picks.append(rest.index[len(rest) // 2])
    bad = top[top["outcome"] == "diverged"]
    if len(bad):
        picks.append(bad.index[0])
    order = list(dict.fromkeys(picks))
    return top.loc[order].sort_values("lr").head(k + 1)


def _dataset_params(run: pd.Series) -> tuple[str, dict]:
    """The run's ``data.*`` params, typed, restricted to what ``load_dataset`` accepts."""
    import yaml

    from nnlab.data import dataset_params

    name = str(run["data.name"])
    params = {}
    for key in dataset_params(name):
        value = run.get(f"data.{key}")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue  # not logged: the loader's default applies
        if isinstance(value, str):  # MLflow params are strings: "0.2", "True", "None", "[1, 2]"
            value = None if value == "None" else yaml.safe_load(value)
        elif hasattr(value, "item"):  # numpy scalar from the typed frame
            value = value.item()
        params[key] = value
    return name, params


def _boundary_panels(
    runs: pd.DataFrame, metric: str, tracking_uri: str, stuck_ids: set[str] = frozenset()
) -> tuple[list, str]:
    """Panels for :func:`nnlab.figures.decision_boundaries`, or ([], reason it cannot be drawn).
    ``stuck_ids``: runs flagged as not learning, so their titles say so."""
    if "data.name" not in runs:
        return [], "the runs log no data.name param"
    from mlflow.tracking import MlflowClient

    from nnlab import nn
    from nnlab.data import load_dataset

    # the report prints its own progress; MLflow's per-download bars would interleave with it
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(tracking_uri=tracking_uri)
    panels, problems = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _, run in _representative_runs(runs, metric).iterrows():
            try:
                name, params = _dataset_params(run)
                data = load_dataset(name, **params)
                if data.n_features != 2:
                    return [], f"dataset {name!r} has {data.n_features} features, not 2"
                path = client.download_artifacts(run["run_id"], Artifact.MODEL, tmp)
                model = nn.load_model(path)
            except Exception as exc:  # one bad artifact must not sink the report
                problems.append(f"{run['run_name']}: {type(exc).__name__}: {exc}")
                continue
            final = run[f"final_{metric}"]
            state = (
                run["outcome"]
                if run["outcome"] not in OK_OUTCOMES
                else f"did not learn, {metric} {final:.3f}"
                if run["run_id"] in stuck_ids
                else f"{metric} {final:.3f}"
            )
            panels.append(
                {
                    "title": f"lr={rt.fmt_lr(run['lr'])}, bs={run['batch_size']}, "
                    f"{run['epochs']} ep\n{state}",
                    "model": model,
                    "x": data.x_val,
                    "y": data.y_val,
                }
            )
    if panels:
        return panels, ""
    if problems:
        more = f" (and {len(problems) - 1} more runs)" if len(problems) > 1 else ""
        return [], f"could not load {problems[0]}{more}"
    return [], "no representative run"


def _table_html(frame: pd.DataFrame) -> str:
    shown = frame.copy()
    for col in shown.columns:
        if shown[col].dtype.kind == "f":
            shown[col] = shown[col].map(
                lambda v: "not reached" if v == np.inf else ("" if pd.isna(v) else f"{v:.4g}")
            )
    return shown.to_html(index=False, border=0, classes="tbl", na_rep="")


def _write_html(
    out: Path,
    experiment: str,
    metric: str,
    findings: rt.Findings,
    per_bs: list[str],
    figures: dict[str, str],
    skipped: dict[str, str],
    tables: dict[str, pd.DataFrame],
    runs: pd.DataFrame,
    seconds: float,
    figure_list: tuple[tuple[str, str], ...] = FIGURES,
    study_parts: list[str] = (),
) -> Path:
    e = html.escape
    axes = ", ".join(
        f"{p}: {', '.join(rt.fmt_lr(v) if p == 'lr' else str(v) for v in sorted(runs[p].dropna().unique()))}"
        for p in ("lr", "batch_size", "epochs", "seed")
    )
    data = ""
    if "data.name" in runs:
        data = ", ".join(sorted(map(str, runs["data.name"].dropna().unique())))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>nnlab report: {e(experiment)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;"
        "padding:0 1em;color:#222;line-height:1.45}img{max-width:100%;border:1px solid #ddd}"
        ".verdict{background:#eef5fb;border-left:4px solid #0072b2;padding:.6em 1em}"
        ".tbl{border-collapse:collapse;font-size:.88em}.tbl td,.tbl th{padding:2px 9px;"
        "text-align:right;border-bottom:1px solid #e4e4e4}figcaption{color:#555;font-size:.9em}"
        "</style></head><body>",
        f"<h1>Learning rate, batch size and epochs: <code>{e(experiment)}</code></h1>",
        f"<p>{len(runs)} runs{' on ' + e(data) if data else ''}. Swept {e(axes)}. "
        f"Metric: <code>{e(metric)}</code>.</p>",
        *study_parts,  # a study's per-set-up findings come before the pooled ones
        "<h2>Findings</h2>" if not study_parts else "<h2>Findings pooled over all set-ups</h2>",
        f"<p class='verdict' id='verdict'><b>The notes' claim</b> (“a large learning rate trains "
        f"faster but less accurately; a small one, about 0.001, is more accurate but needs more "
        f"epochs”): {e(findings.verdict)}</p>",
        "<ul id='findings'>",
        *[f"<li>{e(s)}</li>" for s in findings.sentences],
        "</ul><p>Per batch size:</p><ul id='per-batch'>",
        *[f"<li>{e(s)}</li>" for s in per_bs],
        "</ul>",
    ]
    for i, (key, title) in enumerate(figure_list, 1):
        parts.append(f"<h2 id='{key}'>{i}. {e(title)}</h2>")
        if key in figures:
            caption = (CAPTIONS | rs.CAPTIONS)[key].format(m=metric)
            parts.append(
                f"<figure><img src='{figures[key]}' alt='{e(title)}'>"
                f"<figcaption>{e(caption)}</figcaption></figure>"
            )
        else:
            parts.append(f"<p><i>Not drawn: {e(skipped.get(key, 'no data'))}.</i></p>")
    parts.append("<h2>Tables</h2>")
    for name, frame in tables.items():
        parts.append(f"<h3><a href='{name}.csv'>{name}.csv</a></h3>")
        if name in INLINE_TABLES:
            parts.append(_table_html(frame))
    bad = runs[~runs["outcome"].isin(OK_OUTCOMES)]
    if len(bad):
        parts.append("<h3>Runs that diverged, failed or were killed</h3>")
        cols = ["run_name", "outcome", "stopped_epoch", "lr", "batch_size", "epochs", "seed"]
        parts.append(_table_html(bad[cols]))
    parts.append(f"<p style='color:#777'>Built by nnlab.report in {seconds:.1f} s.</p>")
    parts.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index


@dataclass
class ReportData:
    """Everything one report states, computed from the runs and histories of one experiment.

    Attributes
    ----------
    runs : DataFrame
        ``load_runs`` frame (runs with lr, batch size and epochs), one row per run.
    hist : DataFrame
        ``load_histories`` long frame of ``metric`` (and ``loss``).
    metric : str
    target : float
        The target used (given, or ``TARGET_FACTOR`` x the best reached).
    stuck : Series of bool
        ``not_learning`` flags, indexed like ``runs``.
    tables : dict of str to DataFrame
        The CSV tables, by file stem, in the order the page lists them.
    findings : Findings
    per_bs : list of str
        One line per batch size.
    """

    runs: pd.DataFrame
    hist: pd.DataFrame
    metric: str
    target: float
    stuck: pd.Series
    tables: dict[str, pd.DataFrame]
    findings: rt.Findings
    per_bs: list[str]
    study: rs.Study | None = None  # when the runs vary the dataset, optimizer or schedule

    @property
    def figure_list(self) -> tuple[tuple[str, str], ...]:
        """The figures of the page: a study's own (pooled ones would mix set-ups) and the
        outcomes, else :data:`FIGURES`."""
        if self.study is None:
            return FIGURES
        return (*self.study.figures, next(f for f in FIGURES if f[0] == "outcomes"))


def _check_request(metric: str, target: float | None) -> None:
    """Refuse a higher-is-better metric or a target that is not a positive loss."""
    if "accuracy" in metric:
        raise ValueError(
            f"metric {metric!r} is higher-is-better; the report ranks by a loss: use val_loss or loss"
        )
    if target is not None and not target > 0:
        raise ValueError(f"target must be a loss value > 0; got {target!r}")


def _load(
    experiment: str, metric: str, uri: str, progress: Callable[[str], None] | None, t0: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The experiment's runs that have lr, batch size and epochs, and their ``metric`` (and
    ``loss``) histories; ValueError if ``metric`` was never logged."""
    _say(progress, f"loading runs of {experiment!r} from {uri} …")
    runs = load_runs(experiment, uri)
    if f"final_{metric}" not in runs:
        logged = sorted(c[6:] for c in runs if c.startswith("final_"))
        raise ValueError(
            f"metric {metric!r} was never logged in {experiment!r}; logged: {', '.join(logged)}"
        )
    runs = runs[runs["lr"].notna() & runs["batch_size"].notna() & runs["epochs"].notna()]
    metrics = [metric] if metric == "loss" else [metric, "loss"]
    _say(progress, f"loading histories of {len(runs)} runs ({', '.join(metrics)}) …")
    hist = load_histories(experiment, metrics, uri, runs=runs)
    _say(
        progress,
        f"loaded {len(hist)} values in {time.perf_counter() - t0:.1f} s; computing tables …",
    )
    return runs, hist


def _compute(
    runs: pd.DataFrame, hist: pd.DataFrame, metric: str, target: float | None
) -> ReportData:
    """Every table and finding of the report (pure: ``nnlab.report_tables`` on the frames)."""
    curves, target = rt.per_run_curves(runs, hist, metric, target)
    lr_table = rt.per_lr(curves)
    stuck = rt.not_learning(runs, hist, metric)
    budget = rt.final_by_budget(runs, metric, stuck)
    best = rt.best_lr_per_budget(budget)
    consistency = rt.budget_consistency(runs, hist, metric)
    findings = rt.compute_findings(runs, curves, lr_table, target, metric, best, stuck, consistency)
    tables = {
        "per_lr": lr_table,
        "per_lr_batch": rt.per_lr_batch(curves),
        "final_by_budget": budget,
        "best_lr_per_budget": best,
        "outcomes": rt.outcome_counts(runs, stuck),
        "curves": curves,
        "runs": runs,
    }
    per_bs = rt.per_batch_lines(curves, metric)
    study = rs.study(runs, hist, metric, stuck)
    if study is not None:
        tables = {**study.tables, **tables}
    return ReportData(runs, hist, metric, target, stuck, tables, findings, per_bs, study)


def _write_tables(out: Path, data: ReportData) -> None:
    """Each table as ``<name>.csv`` and the findings as ``findings.json`` in ``out``."""
    for name, frame in data.tables.items():
        frame.to_csv(out / f"{name}.csv", index=False)
    extra = data.study.findings if data.study is not None else {}
    (out / "findings.json").write_text(
        json.dumps(asdict(data.findings) | extra, indent=2), encoding="utf-8"
    )


def _figure_makers(data: ReportData) -> dict[str, Callable[[], Figure]]:
    """Figure key -> a call drawing it from the tables (all but the decision boundaries)."""
    from nnlab import figures as fg

    runs, hist, metric, stuck, t = data.runs, data.hist, data.metric, data.stuck, data.tables
    budget = t["final_by_budget"]
    usable_lrs = budget.loc[np.isfinite(budget["median_final"]), "lr"].unique()
    study = {
        "claim": lambda: fg.claim_grid(t["claim_per_lr"], t["claim"], metric),
        "schedules": lambda: fg.schedule_budgets(
            t["schedule_by_budget"], t["schedule_vs_constant"], metric
        ),
    }
    return study | {
        "learning_curves": lambda: fg.learning_curves(runs, hist, metric, data.target, stuck),
        "heatmap": lambda: fg.budget_heatmap(budget, metric),
        "speed_quality": lambda: fg.speed_quality(t["per_lr_batch"], metric, data.target),
        "best_lr": lambda: fg.best_lr(t["best_lr_per_budget"], usable_lrs),
        "batch_size": lambda: fg.batch_size_effect(runs, metric, stuck),
        "outcomes": lambda: fg.outcomes(t["outcomes"]),
    }


def _draw_one(key: str, data: ReportData, uri: str, makers: dict) -> tuple[Figure | None, str]:
    """(figure, "") or (None, why it is not drawn); a drawing error becomes the reason."""
    if key != "outcomes" and not rt.usable(data.runs).any():
        return None, "no run completed (all diverged, failed or were killed)"
    draw = makers.get(key)
    if key == "decision_boundaries":
        from nnlab import figures as fg

        stuck_ids = set(data.runs.loc[data.stuck.to_numpy(), "run_id"])
        panels, reason = _boundary_panels(data.runs, data.metric, uri, stuck_ids)
        if reason:
            return None, reason
        draw = partial(fg.decision_boundaries, panels)
    try:
        return draw(), ""
    except Exception as exc:  # one odd figure must not sink the whole report
        return None, f"drawing failed: {type(exc).__name__}: {exc}"


def _draw_figures(
    out: Path, data: ReportData, uri: str, progress: Callable[[str], None] | None
) -> tuple[dict[str, str], dict[str, str]]:
    """Save each figure of ``FIGURES`` as ``<key>.png`` in ``out``.

    Returns
    -------
    (drawn, skipped)
        ``{key: png file name}`` and ``{key: reason it was not drawn}``.
    """
    from nnlab.figures import plt

    makers = _figure_makers(data)
    drawn, skipped = {}, {}
    for i, (key, _title) in enumerate(data.figure_list, 1):
        _say(progress, f"figure {i}/{len(data.figure_list)}: {key} …")
        (out / f"{key}.png").unlink(missing_ok=True)  # never leave a stale figure behind
        fig, reason = _draw_one(key, data, uri, makers)
        if reason:
            skipped[key] = reason
            _say(progress, f"  skipped: {reason}")
            continue
        fig.savefig(out / f"{key}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        drawn[key] = f"{key}.png"
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
    t0 = time.perf_counter()
    uri = resolve_tracking_uri(tracking_uri)
    out = Path(out)
    runs, hist = _load(experiment, metric, uri, progress, t0)
    data = _compute(runs, hist, metric, target)
    out.mkdir(parents=True, exist_ok=True)  # only now: a bad request leaves nothing behind
    _write_tables(out, data)
    drawn, skipped = _draw_figures(out, data, uri, progress)
    index = _write_html(
        out,
        experiment,
        metric,
        data.findings,
        data.per_bs,
        drawn,
        skipped,
        data.tables,
        runs,
        time.perf_counter() - t0,
        data.figure_list,
        rs.study_html(data.study, metric, _table_html) if data.study is not None else [],
    )
    from nnlab.report_search import add_search_section  # a search's section (grids: nothing)

    add_search_section(index, experiment, uri, progress)
    _say(progress, f"done in {time.perf_counter() - t0:.1f} s: {index.resolve()}")
    return index


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m nnlab.report",
        description="Figures and findings of a tracked nnlab sweep (HTML + PNG + CSV).",
    )
    ap.add_argument("--experiment", required=True, help="MLflow experiment name")
    ap.add_argument("--out", default=None, help="output directory (default reports/<experiment>)")
    ap.add_argument("--metric", default="val_loss", help="per-epoch metric, lower is better")
    ap.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
    )
    ap.add_argument(
        "--target",
        type=float,
        default=None,
        help="absolute target for 'epochs to target' (default 1.25 x best reached)",
    )
    args = ap.parse_args(argv)
    out = args.out or Path("reports") / args.experiment
    try:
        build_report(args.experiment, out, args.metric, args.tracking_uri, target=args.target)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
