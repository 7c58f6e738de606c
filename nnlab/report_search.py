"""The search section of a report: what ``python -m nnlab.report`` adds for a search
(``hydra/sweeper=optuna``); a grid's report is left as it is.

From the store alone (the Optuna journal may be elsewhere): the search's parent run (tagged
``optuna.study``), one row per trial from its child runs (``optuna.trial``, ``optuna.state``),
their learning curves, and Optuna's parameter importances computed on an in-memory copy of the
study rebuilt from those runs. Four figures (``nnlab.figures.search``), two CSV tables and an
HTML section inserted into the report's ``index.html`` above its findings.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nnlab.analysis import _client, _experiment_id, load_histories
from nnlab.tracking.schema import Tag

FIGURES = (
    ("search_progress", "Search: best so far"),
    ("search_lr", "Search: objective against learning rate"),
    ("search_curves", "Search: every trial's learning curve"),
    ("search_importance", "Search: parameter importances"),
)
CAPTIONS = {
    "search_progress": "Best {m} of the completed trials so far, in the order trials ended, "
    "against trials ended (left) and against all epochs trained so far, pruned trials' epochs "
    "included (right).",
    "search_lr": "Each trial's {m} against its learning rate, coloured by batch size: filled "
    "points completed their epoch budget, hollow ones were pruned (or diverged) and show the "
    "value at the epoch they stopped; crosses at the top: no finite value.",
    "search_curves": "{m} per epoch of every trial, coloured by learning rate; pruned and "
    "diverged trials end where they stopped (a dot marks the end).",
    "search_importance": "How much of the variation of {m} among completed trials each "
    "searched parameter explains (Optuna's PED-ANOVA importance, on a copy of the study rebuilt "
    "from the runs).",
}


def _cast(value: str) -> Any:
    """An MLflow param string as the number or text it stands for."""
    for kind in (int, float):
        try:
            return kind(value)
        except (TypeError, ValueError):
            pass
    return value


def search_trials(experiment: str, uri: str) -> tuple[dict[str, str], pd.DataFrame] | None:
    """(the search parent's tags, one row per trial) of the latest search of ``experiment``;
    None when the experiment has no search (a grid).

    The trial frame: ``run_id``, ``number``, ``state`` (COMPLETE, PRUNED, FAIL), ``outcome``,
    one column per searched param (cast), ``value`` (the final objective; NaN unless finite),
    ``end_time`` (ms), sorted by ``number``.
    """
    client = _client(uri)
    exp_id = _experiment_id(client, experiment, uri)
    parents = client.search_runs(
        [exp_id],
        f"tags.`{Tag.ROLE}` = 'sweep' and tags.`optuna.study` LIKE '%'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if not parents:
        return None
    tags = parents[0].data.tags
    space = json.loads(tags.get("optuna.space", "{}"))
    children = client.search_runs(
        [exp_id], f"tags.`{Tag.PARENT}` = '{parents[0].info.run_id}'", max_results=50000
    )
    objective = tags.get("optuna.objective", "val_loss")
    rows = []
    for run in children:
        t = run.data.tags
        if Tag.OPTUNA_TRIAL not in t:
            continue
        value = run.data.metrics.get(objective, math.nan)
        rows.append(
            {
                "run_id": run.info.run_id,
                "number": int(t[Tag.OPTUNA_TRIAL]),
                "state": t.get(Tag.OPTUNA_STATE, "RUNNING"),
                "outcome": t.get(Tag.OUTCOME, run.info.status.lower()),
                **{k: _cast(run.data.params.get(k, "")) for k in space},
                "value": value if math.isfinite(value) else math.nan,
                "end_time": run.info.end_time or run.info.start_time,
            }
        )
    if not rows:
        return None
    return tags, pd.DataFrame(rows).sort_values("number").reset_index(drop=True)


def progress_table(trials: pd.DataFrame, hist: pd.DataFrame, direction: str) -> pd.DataFrame:
    """The trials in the order they ended: ``trials_ended``, ``epochs`` (that trial's),
    ``cumulative_epochs`` and ``best_so_far`` (of the COMPLETE trials up to it)."""
    epochs = hist.groupby("run_id")["epoch"].max()
    done = trials.sort_values(["end_time", "number"], kind="stable").reset_index(drop=True)
    done["epochs"] = done["run_id"].map(epochs).fillna(0).astype(int)
    done["trials_ended"] = np.arange(1, len(done) + 1)
    done["cumulative_epochs"] = done["epochs"].cumsum()
    scored = done["value"].where(done["state"] == "COMPLETE")
    best = scored.cummin() if direction == "minimize" else scored.cummax()
    done["best_so_far"] = best.ffill()
    return done


def importances(tags: dict[str, str], trials: pd.DataFrame, direction: str) -> dict[str, float]:
    """Optuna's PED-ANOVA importance of each searched param over the COMPLETE trials ({} when
    fewer than two completed or nothing varies)."""
    import optuna

    from nnlab.search.space import parse

    space = parse(None, list(json.loads(tags.get("optuna.space", "{}")).values()))
    complete = trials[trials["state"] == "COMPLETE"]
    if len(complete) < 2 or not space.dims:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction)
    dists = {n: d.distribution() for n, d in space.dims.items()}
    for _, row in complete.iterrows():
        params = {}
        for name, dim in space.dims.items():
            value = row[name]
            if dim.kind == "categorical":  # back to the choice Optuna held (text compared)
                text = str(value).replace(" ", "")
                value = dim.choices[[t.replace(" ", "") for t in dim.texts].index(text)]
            params[name] = value
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                  value=float(row["value"])))  # fmt: skip
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    try:
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError):  # e.g. every completed trial has the same params
        return {}
    return {k: float(v) for k, v in found.items()}


def _section_html(tags: dict[str, str], progress: pd.DataFrame, drawn: dict, skipped: dict,
                  metric: str) -> str:  # fmt: skip
    e = html.escape
    counts = progress["state"].value_counts()
    best = tags.get("optuna.best_value")
    best_text = ""
    if best is not None:
        params = ", ".join(
            f"{k[len('optuna.best.') :]}={v}"
            for k, v in tags.items()
            if k.startswith("optuna.best.")
        )
        best_text = f" Best: trial {e(tags.get('optuna.best_trial', '?'))}, {e(metric)} = " \
            f"{float(best):.4g} ({e(params)})."  # fmt: skip
    parts = [
        "<h2 id='search'>Search</h2>",
        f"<p id='search-summary'>Optuna study <code>{e(tags.get('optuna.study', ''))}</code>: "
        f"{e(tags.get('optuna.sampler', '?'))} sampler, {e(tags.get('optuna.pruner', '?'))} "
        f"pruner, {len(progress)} of {e(tags.get('optuna.n_trials', '?'))} trials "
        f"({', '.join(f'{n} {s.lower()}' for s, n in counts.items())}), "
        f"{int(progress['epochs'].sum())} epochs trained. Space: "
        f"{e(', '.join(json.loads(tags.get('optuna.space', '{}')).values()))}.{best_text} "
        "Tables: <a href='search_trials.csv'>search_trials.csv</a>, "
        "<a href='search_importance.csv'>search_importance.csv</a>.</p>",
    ]
    for key, title in FIGURES:
        parts.append(f"<h3 id='{key}'>{e(title)}</h3>")
        if key in drawn:
            parts.append(
                f"<figure><img src='{drawn[key]}' alt='{e(title)}'>"
                f"<figcaption>{e(CAPTIONS[key].format(m=metric))}</figcaption></figure>"
            )
        else:
            parts.append(f"<p><i>Not drawn: {e(skipped.get(key, 'no data'))}.</i></p>")
    return "\n".join(parts)


def add_search_section(
    index: Path, experiment: str, uri: str, progress: Callable[[str], None] | None = None
) -> bool:
    """If ``experiment`` holds a search, draw its figures and tables next to ``index`` and
    insert its section into the page (above the findings); return whether it did."""
    from nnlab.figures import plt
    from nnlab.figures import search as fs

    found = search_trials(experiment, uri)
    if found is None:
        return False
    tags, trials = found
    metric, direction = tags.get("optuna.objective", "val_loss"), tags.get("optuna.direction")
    hist = load_histories(experiment, [metric], uri, runs=_runs_frame(trials))
    table = progress_table(trials, hist, direction or "minimize")
    weights = importances(tags, trials, direction or "minimize")
    out = index.parent
    table.to_csv(out / "search_trials.csv", index=False)
    pd.DataFrame({"param": list(weights), "importance": list(weights.values())}).to_csv(
        out / "search_importance.csv", index=False
    )
    makers = {
        "search_progress": lambda: fs.best_so_far(table, metric),
        "search_lr": lambda: fs.objective_vs_lr(trials, hist, metric),
        "search_curves": lambda: fs.trial_curves(trials, hist, metric),
        "search_importance": lambda: fs.importance_bars(weights, metric),
    }
    drawn, skipped = {}, {}
    for key, make in makers.items():
        if progress:
            progress(f"figure {key} …")
        (out / f"{key}.png").unlink(missing_ok=True)
        try:
            fig = make()
        except Exception as exc:  # one odd figure must not sink the report
            skipped[key] = f"drawing failed: {type(exc).__name__}: {exc}"
            continue
        fig.savefig(out / f"{key}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        drawn[key] = f"{key}.png"
    page = index.read_text(encoding="utf-8")
    section = _section_html(tags, table, drawn, skipped, metric)
    marker = "<h2>Findings"  # also "<h2>Findings pooled over all set-ups</h2>"
    page = (
        page.replace(marker, section + "\n" + marker, 1)
        if marker in page
        else page.replace("</body>", section + "\n</body>", 1)
    )
    index.write_text(page, encoding="utf-8")
    return True


def _runs_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """The columns ``load_histories`` joins onto each history value."""
    frame = pd.DataFrame({"run_id": trials["run_id"], "outcome": trials["outcome"]})
    for col in ("lr", "batch_size", "epochs", "seed"):
        frame[col] = trials[col] if col in trials else np.nan
    return frame
