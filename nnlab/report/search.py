"""The search section of a report: what ``python -m nnlab.report`` shows for a search
(``hydra/sweeper=optuna``); None for a grid.

From the store alone (the Optuna journal may be elsewhere): the search's parent run (tagged
``optuna.study``), one row per trial from its child runs (``optuna.trial``, ``optuna.state``),
their learning curves, and Optuna's parameter importances computed on an in-memory copy of the
study rebuilt from those runs. Four figures (``nnlab.figures.search``), two CSV tables and a
short table of the best trials; the search's trials are left out of the grid's sections.

Two conventions, shared with the sweep's own lines:

- Trials are numbered from 1, as the sweep's ``[i/N]`` lines count them: trial ``i`` is the
  Optuna study's trial number ``i - 1``.
- A trial is labelled by its nnlab outcome (``completed``, ``early_stopped``, ``pruned``,
  ``diverged``, ``failed``, ``killed``), not by the Optuna state the study keeps (a diverged
  trial is PRUNED in the study, so that the sampler learns from its last value).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from nnlab.analysis import _client, _experiment_id, load_histories
from nnlab.report.content import (
    Code,
    FigureSpec,
    Heading,
    InlineTable,
    Paragraph,
    Section,
    TableSpec,
)
from nnlab.report.context import Context
from nnlab.tracking.schema import Tag

__all__ = ["FIGURES", "search_trials", "progress_table", "importances", "best_trial", "section"]

FIGURES = (
    ("search_progress", "Search: best trial so far"),
    ("search_lr", "Search: objective against learning rate"),
    ("search_curves", "Search: every trial's learning curve"),
    ("search_importance", "Search: parameter importances"),
)
CAPTIONS = {
    "search_progress": "Best {m} of the completed trials so far, in the order trials ended, "
    "against trials ended (left) and against all epochs trained so far, pruned trials' epochs "
    "included (right).",
    "search_lr": "Each trial's {m} against its learning rate{by}: filled points completed "
    "their epoch budget (or stopped early), hollow ones were pruned and show their value at the "
    "epoch they stopped; crosses at the top: diverged, failed or killed, or no finite value.",
    "search_curves": "{m} per epoch of every trial, coloured by learning rate; trials that "
    "stopped (pruned, diverged, failed) end where they stopped (a dot marks the end).",
    "search_importance": "How much of the variation of {m} among completed trials each "
    "searched parameter explains (Optuna's PED-ANOVA importance, on a copy of the study rebuilt "
    "from the runs).",
}
AXES = ("lr", "batch_size", "epochs", "seed")  # always read, searched or not
N_BEST = 5  # rows of the best-trials table on the page


def _cast(value: str | None) -> Any:
    """An MLflow param string as the number or text it stands for (None: not logged)."""
    if value is None:
        return math.nan
    for kind in (int, float):
        try:
            return kind(value)
        except (TypeError, ValueError):
            pass
    return value


def _parent(client, exp_id: str):
    """The latest search parent run of the experiment, or None."""
    found = client.search_runs(
        [exp_id],
        f"tags.`{Tag.ROLE}` = 'sweep' and tags.`optuna.study` LIKE '%'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return found[0] if found else None


def search_trials(experiment: str, uri: str) -> tuple[dict[str, str], pd.DataFrame] | None:
    """(the search parent's tags, one row per trial) of the latest search of ``experiment``;
    None when the experiment has no search (a grid).

    The trial frame, shape (n_trials, n_cols): ``run_id``, ``trial`` (1-based, as the sweep's
    ``[i/N]`` lines), ``state`` (the Optuna state: COMPLETE, PRUNED, FAIL), ``outcome`` (nnlab's:
    completed, pruned, diverged, ...), ``lr``, ``batch_size``, ``epochs``, ``seed`` and every
    other searched param (cast), ``value`` (the final objective; NaN unless finite), ``end_time``
    (ms); sorted by ``trial``.
    """
    client = _client(uri)
    exp_id = _experiment_id(client, experiment, uri)
    parent = _parent(client, exp_id)
    if parent is None:
        return None
    tags = parent.data.tags
    names = list(dict.fromkeys([*AXES, *json.loads(tags.get("optuna.space", "{}"))]))
    children = client.search_runs(
        [exp_id], f"tags.`{Tag.PARENT}` = '{parent.info.run_id}'", max_results=50000
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
                "trial": int(t[Tag.OPTUNA_TRIAL]) + 1,
                "state": t.get(Tag.OPTUNA_STATE, "RUNNING"),
                "outcome": t.get(Tag.OUTCOME, run.info.status.lower()),
                **{k: _cast(run.data.params.get(k)) for k in names},
                "value": value if math.isfinite(value) else math.nan,
                "end_time": run.info.end_time or run.info.start_time,
            }
        )
    if not rows:
        return None
    return tags, pd.DataFrame(rows).sort_values("trial").reset_index(drop=True)


def searched(tags: dict[str, str]) -> list[str]:
    """The searched params of the study, in the order of its space."""
    return list(json.loads(tags.get("optuna.space", "{}")))


def progress_table(trials: pd.DataFrame, hist: pd.DataFrame, direction: str) -> pd.DataFrame:
    """The trials in the order they ended, with ``trials_ended``, ``epochs_trained`` (that
    trial's: a pruned trial's stop short of its ``epochs``), ``cumulative_epochs`` and
    ``best_so_far`` (of the COMPLETE trials up to it)."""
    epochs = hist.groupby("run_id")["epoch"].max()
    done = trials.sort_values(["end_time", "trial"], kind="stable").reset_index(drop=True)
    done["epochs_trained"] = done["run_id"].map(epochs).fillna(0).astype(int)
    done["trials_ended"] = np.arange(1, len(done) + 1)
    done["cumulative_epochs"] = done["epochs_trained"].cumsum()
    scored = done["value"].where(done["state"] == "COMPLETE")
    best = scored.cummin() if direction == "minimize" else scored.cummax()
    done["best_so_far"] = best.ffill()
    return done


def best_trial(trials: pd.DataFrame, direction: str) -> pd.Series | None:
    """The best single trial: the COMPLETE trial with the best value (None when none)."""
    done = trials[(trials["state"] == "COMPLETE") & trials["value"].notna()]
    if not len(done):
        return None
    pick = done["value"].idxmin() if direction == "minimize" else done["value"].idxmax()
    return done.loc[pick]


def importances(tags: dict[str, str], trials: pd.DataFrame, direction: str) -> dict[str, float]:
    """Optuna's PED-ANOVA importance of each searched param over the COMPLETE trials ({} when
    fewer than two completed, nothing varies, or the stored space cannot be read back)."""
    import optuna

    from nnlab.search.space import parse

    try:
        space = parse(None, list(json.loads(tags.get("optuna.space", "{}")).values()))
    except Exception:  # a space written by another version, or edited: no importances
        return {}
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


def _params_text(row: pd.Series, names: list[str]) -> str:
    return ", ".join(f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                     for k in names)  # fmt: skip


def _summary(tags: dict[str, str], table: pd.DataFrame, metric: str, direction: str) -> list:
    """The study's settings, outcome counts, epochs, space and best trial."""
    counts = table["outcome"].value_counts()
    space = ", ".join(json.loads(tags.get("optuna.space", "{}")).values())
    best = best_trial(table, direction)
    best_text = " No trial completed, so there is no best trial."
    if best is not None:
        best_text = (
            f" Best trial: trial {int(best['trial'])}, {metric} {best['value']:.4g} "
            f"({_params_text(best, searched(tags))}), a single run."
        )
    summary = Paragraph(
        [
            "Optuna study ",
            Code(tags.get("optuna.study", "")),
            f": {tags.get('optuna.sampler', '?')} sampler, {tags.get('optuna.pruner', '?')} "
            f"pruner, {direction or 'minimize'} {metric}; {len(table)} of "
            f"{tags.get('optuna.n_trials', '?')} trials "
            f"({', '.join(f'{n} {o}' for o, n in counts.items())}), "
            f"{int(table['epochs_trained'].sum())} epochs trained. Space: {space}.{best_text} "
            "Trials are numbered from 1, as in the sweep's [i/N] lines.",
        ],
        id="search-summary",
    )
    return [summary, *_best_table(table, tags, metric, direction)]


def _best_table(table: pd.DataFrame, tags: dict[str, str], metric: str, direction: str) -> list:
    """The few best completed trials, as a small table (empty when none completed)."""
    done = table[(table["state"] == "COMPLETE") & table["value"].notna()]
    if not len(done):
        return []
    top = done.sort_values("value", ascending=direction != "maximize").head(N_BEST)
    cols = ["trial", *searched(tags), "epochs_trained", "outcome", "value"]
    shown = top[[c for c in dict.fromkeys(cols) if c in top]].rename(columns={"value": metric})
    return [Heading(f"The {len(shown)} best trials", id="search-best"), InlineTable(shown)]


def _figures(tags: dict, trials: pd.DataFrame, table: pd.DataFrame, hist: pd.DataFrame,
             weights: dict, metric: str) -> list[FigureSpec]:  # fmt: skip
    from nnlab.figures import search as fs

    by_bs = "batch_size" in searched(tags)
    makers = {
        "search_progress": lambda: fs.best_so_far(table, metric),
        "search_lr": lambda: fs.objective_vs_lr(trials, hist, metric, by_batch_size=by_bs),
        "search_curves": lambda: fs.trial_curves(trials, hist, metric),
        "search_importance": lambda: fs.importance_bars(weights, metric),
    }
    by = ", coloured by batch size" if by_bs else ""
    return [
        FigureSpec(key, title, CAPTIONS[key].format(m=metric, by=by), makers[key])
        for key, title in FIGURES
    ]


def section(ctx: Context) -> Section | None:
    """The search section of ``ctx.experiment``'s latest search; None for a grid."""
    found = search_trials(ctx.experiment, ctx.uri)
    if found is None:
        return None
    tags, trials = found
    metric = tags.get("optuna.objective", "val_loss")
    direction = tags.get("optuna.direction") or "minimize"
    hist = load_histories(ctx.experiment, [metric], ctx.uri, runs=_runs_frame(trials))
    table = progress_table(trials, hist, direction)
    weights = importances(tags, trials, direction)
    best = best_trial(trials, direction)
    return Section(
        key="search",
        title="Search",
        blocks=_summary(tags, table, metric, direction),
        figures=_figures(tags, trials, table, hist, weights, metric),
        tables=[
            TableSpec("search_trials", table),
            TableSpec(
                "search_importance",
                pd.DataFrame({"param": list(weights), "importance": list(weights.values())}),
            ),
        ],
        findings={
            "search": {
                "objective": metric,
                "direction": direction,
                "trials": len(trials),
                "outcomes": {str(k): int(v) for k, v in trials["outcome"].value_counts().items()},
                "best_trial": None if best is None else int(best["trial"]),
                "best_value": None if best is None else float(best["value"]),
            }
        },
    )


def _runs_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """The columns ``load_histories`` joins onto each history value."""
    frame = pd.DataFrame({"run_id": trials["run_id"], "outcome": trials["outcome"]})
    for col in AXES:
        frame[col] = trials[col]
    return frame
