"""The search section of a report: what ``python -m nnlab.report`` shows for a search
(``hydra/sweeper=optuna``); None for a grid.

From the store alone (the Optuna journal may be elsewhere): the search's parent run (tagged
``optuna.study``), one row per trial from its child runs (``optuna.trial``, ``optuna.state``),
their learning curves, and Optuna's parameter importances computed on an in-memory copy of the
study rebuilt from those runs. Four figures (``nnlab.figures.search``) and two CSV tables.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from nnlab.analysis import _client, _experiment_id, load_histories
from nnlab.report.content import Code, FigureSpec, Paragraph, Section, TableSpec
from nnlab.report.context import Context
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


def _summary(tags: dict[str, str], table: pd.DataFrame, metric: str) -> Paragraph:
    """The study's settings, counts, epochs, space and best trial, as one paragraph."""
    counts = table["state"].value_counts()
    best = tags.get("optuna.best_value")
    best_text = ""
    if best is not None:
        params = ", ".join(
            f"{k[len('optuna.best.') :]}={v}"
            for k, v in tags.items()
            if k.startswith("optuna.best.")
        )
        best_text = (
            f" Best: trial {tags.get('optuna.best_trial', '?')}, {metric} = {float(best):.4g} "
            f"({params})."
        )
    space = ", ".join(json.loads(tags.get("optuna.space", "{}")).values())
    return Paragraph(
        [
            "Optuna study ",
            Code(tags.get("optuna.study", "")),
            f": {tags.get('optuna.sampler', '?')} sampler, {tags.get('optuna.pruner', '?')} "
            f"pruner, {len(table)} of {tags.get('optuna.n_trials', '?')} trials "
            f"({', '.join(f'{n} {s.lower()}' for s, n in counts.items())}), "
            f"{int(table['epochs'].sum())} epochs trained. Space: {space}.{best_text}",
        ],
        id="search-summary",
    )


def section(ctx: Context) -> Section | None:
    """The search section of ``ctx.experiment``'s latest search; None for a grid."""
    from nnlab.figures import search as fs

    found = search_trials(ctx.experiment, ctx.uri)
    if found is None:
        return None
    tags, trials = found
    metric, direction = tags.get("optuna.objective", "val_loss"), tags.get("optuna.direction")
    hist = load_histories(ctx.experiment, [metric], ctx.uri, runs=_runs_frame(trials))
    table = progress_table(trials, hist, direction or "minimize")
    weights = importances(tags, trials, direction or "minimize")
    makers = {
        "search_progress": lambda: fs.best_so_far(table, metric),
        "search_lr": lambda: fs.objective_vs_lr(trials, hist, metric),
        "search_curves": lambda: fs.trial_curves(trials, hist, metric),
        "search_importance": lambda: fs.importance_bars(weights, metric),
    }
    return Section(
        key="search",
        title="Search",
        blocks=[_summary(tags, table, metric)],
        figures=[
            FigureSpec(key, title, CAPTIONS[key].format(m=metric), makers[key])
            for key, title in FIGURES
        ],
        tables=[
            TableSpec("search_trials", table),
            TableSpec(
                "search_importance",
                pd.DataFrame({"param": list(weights), "importance": list(weights.values())}),
            ),
        ],
    )


def _runs_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """The columns ``load_histories`` joins onto each history value."""
    frame = pd.DataFrame({"run_id": trials["run_id"], "outcome": trials["outcome"]})
    for col in ("lr", "batch_size", "epochs", "seed"):
        frame[col] = trials[col] if col in trials else np.nan
    return frame
