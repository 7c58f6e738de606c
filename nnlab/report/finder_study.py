"""The LR finder against the grid (``+experiment=lr_find_vs_grid``): pure pandas and NumPy.

The grid trained every (dataset, optimizer, batch size) at each lr of a log-spaced grid with
several seeds; the LR range test (``nnlab.lr_find``) ran once per (dataset, optimizer, batch
size, seed) and suggested an lr by each rule (valley, minimum/10, steep). At each epoch budget
(a run's ``metric`` at that epoch; no lr schedule, so epoch e of a longer run is the e-epoch
result):

- the grid's **best lr** is the one with the lowest median over seeds (diverged, failed or
  stopped runs count as +inf);
- a rule's **suggestion** is the median over seeds of its suggested lr (in log space);
- their **distance** is ``|log10(suggestion) - log10(best lr)|`` in grid steps (the grid's
  mean log spacing: half a decade for a 1, 3, 10, ... grid);
- the **verdict**: *within one step* when the whole 95% bootstrap interval of the distance is
  at most 1 step, *more than one step off* when the whole interval lies above 1, else
  *unresolved*. Each resample draws the seeds once for both the grid and the finder runs
  (``nnlab.report.intervals``). A best lr at the edge of the grid may really lie beyond it:
  then the distance is only known to be at least what it reads when the suggestion sits on the
  grid's side, so *within one step* is never claimed there, and neither verdict when the
  suggestion lies beyond that edge (column ``best_at_grid_edge``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from nnlab.lr_range import SUGGESTIONS
from nnlab.report.intervals import by_seed, interval, resampled_medians, seed_draws
from nnlab.tracking.schema import OK_OUTCOMES

__all__ = ["RULES", "SETUP", "budgets", "at_budgets", "suggestions", "compare", "summary"]

RULES = tuple(SUGGESTIONS)  # valley, minimum, steep
PARAM = "suggested_lr_{}"  # the finder runs' params (nnlab.lr_find.PARAM_PREFIX + rule)
SETUP = ["dataset", "optimizer", "batch_size"]
VERDICTS = ("within one step", "more than one step off", "unresolved", "no comparison")


def budgets(max_epochs: int) -> list[int]:
    """The epoch budgets read from runs of ``max_epochs``: an eighth, three eighths, all."""
    return sorted({max(1, max_epochs // 8), max(1, 3 * max_epochs // 8), max_epochs})


def _setup(runs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dataset": runs["data.name"].astype(str).to_numpy(),
            "optimizer": runs["optimizer.name"].astype(str).to_numpy(),
            "batch_size": runs["batch_size"].astype(int).to_numpy(),
        },
        index=runs.index,
    )


def at_budgets(
    runs: pd.DataFrame, hist: pd.DataFrame, metric: str, epochs: list[int]
) -> pd.DataFrame:
    """One row per (grid run, budget): set-up, lr, seed, ``budget`` and ``value`` (``metric``
    at that epoch; +inf when the run is not usable or stopped before it)."""
    h = hist[hist["metric"] == metric].set_index(["run_id", "epoch"])["value"]
    base = pd.concat([_setup(runs), runs[["run_id", "lr", "seed", "outcome"]]], axis=1)
    frames = []
    for e in epochs:
        values = h.reindex(list(zip(base["run_id"], [e] * len(base), strict=True))).to_numpy()
        ok = base["outcome"].isin(OK_OUTCOMES).to_numpy() & np.isfinite(values)
        frames.append(base.assign(budget=e, value=np.where(ok, values, np.inf)))
    return pd.concat(frames, ignore_index=True).drop(columns="outcome")


def suggestions(finders: pd.DataFrame) -> pd.DataFrame:
    """One row per (finder run, rule): set-up, seed, ``rule`` and ``log_lr`` (log10 of the
    suggestion; NaN when the rule had no point to read)."""
    base = pd.concat([_setup(finders), finders[["seed"]]], axis=1)
    frames = []
    for rule in RULES:
        col = PARAM.format(rule)
        lr = pd.to_numeric(finders[col], errors="coerce") if col in finders else np.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            frames.append(base.assign(rule=rule, log_lr=np.log10(np.asarray(lr, float))))
    return pd.concat(frames, ignore_index=True)


def _grid_step(lrs: np.ndarray) -> float:
    """The grid's mean spacing in log10 (a 1, 3, 10 grid alternates 0.477 and 0.523: 0.5)."""
    logs = np.log10(np.sort(lrs))
    return float((logs[-1] - logs[0]) / (len(logs) - 1)) if len(logs) > 1 else math.nan


def _verdict(lo: float, hi: float) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "no comparison"
    return VERDICTS[0] if hi <= 1 + 1e-9 else VERDICTS[1] if lo > 1 + 1e-9 else VERDICTS[2]


def _edge_verdict(verdict: str, edge: int, steps_off: float) -> str:
    """``verdict`` of a best lr at the grid's low (-1) or high (+1) edge, or inside (0): what
    the interval still supports when the true best may lie beyond that edge."""
    if not edge or verdict == VERDICTS[3]:
        return verdict
    if np.sign(steps_off) == edge or verdict == VERDICTS[0]:  # beyond the edge, or "within"
        return VERDICTS[2]
    return verdict


def _best(values: np.ndarray, lrs: np.ndarray) -> np.ndarray:
    """log10 of the lr with the lowest value along axis 0 (NaN where all are +inf/NaN)."""
    v = np.where(np.isnan(values), np.inf, values)
    i = np.argmin(v, axis=0)
    ok = np.isfinite(np.take_along_axis(v, i[None], axis=0)[0])
    return np.where(ok, np.log10(lrs)[i], np.nan)


def compare(grid: pd.DataFrame, finder: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, optimizer, batch size, budget, rule): the grid's best lr, the
    rule's suggestion, their distance in grid steps, each with its 95% interval, and the verdict.

    Parameters
    ----------
    grid : DataFrame
        :func:`at_budgets` rows.
    finder : DataFrame
        :func:`suggestions` rows.
    """
    rows = []
    finder_by = dict(list(finder.groupby(SETUP)))
    for key, g in grid.groupby(SETUP):
        f = finder_by.get(key)
        if f is None:
            continue
        seeds = np.union1d(g["seed"].unique(), f["seed"].unique())
        draws = seed_draws(len(seeds))
        lrs = np.sort(g["lr"].unique())
        step = _grid_step(lrs)
        rule_keys, rule_v, _ = by_seed(f, ["rule"], "log_lr", seeds)
        sugg_point = np.nanmedian(rule_v.reshape(len(rule_keys), -1), axis=1)
        sugg_r = resampled_medians(rule_v, draws)  # (rules, R)
        for budget, gb in g.groupby("budget"):
            keys, v, _ = by_seed(gb, ["lr"], "value", seeds)
            full = np.full((len(lrs), *v.shape[1:]), np.nan)
            full[np.searchsorted(lrs, keys["lr"].to_numpy())] = v
            point = _best(np.nanmedian(full.reshape(len(lrs), -1), axis=1), lrs)
            best_r = _best(resampled_medians(full, draws), lrs)  # (R,)
            best_lo, best_hi = interval(best_r)
            logs = np.log10(lrs)
            edge = -1 if point == logs[0] else 1 if point == logs[-1] else 0
            for k, rule in enumerate(rule_keys["rule"]):
                dist_r = np.abs(sugg_r[k] - best_r) / step
                dist = abs(sugg_point[k] - point) / step
                lo, hi = interval(dist_r)
                s_lo, s_hi = interval(sugg_r[k])
                rows.append({
                    "dataset": key[0], "optimizer": key[1], "batch_size": int(key[2]),
                    "budget": int(budget), "rule": rule, "seeds": len(seeds),
                    "best_lr": 10**point, "best_lr_lo": 10**best_lo, "best_lr_hi": 10**best_hi,
                    "suggested_lr": 10 ** sugg_point[k], "suggested_lr_lo": 10**s_lo,
                    "suggested_lr_hi": 10**s_hi, "grid_step": step,
                    "steps_off": (sugg_point[k] - point) / step, "distance": dist,
                    "distance_lo": lo, "distance_hi": hi, "best_at_grid_edge": bool(edge),
                    "verdict": _edge_verdict(_verdict(lo, hi), edge, sugg_point[k] - point),
                })  # fmt: skip
    order = {r: i for i, r in enumerate(RULES)}
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    return out.sort_values(
        [*SETUP, "budget", "rule"], key=lambda c: c.map(order) if c.name == "rule" else c
    ).reset_index(drop=True)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per rule (and per rule and optimizer): how many comparisons got each verdict, and the
    median signed distance in steps (negative: the suggestion is smaller than the best lr)."""
    if table.empty:
        return pd.DataFrame()
    rows = []
    for by in (["rule"], ["rule", "optimizer"]):
        for key, g in table.groupby(by, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            row = dict(zip(by, key, strict=True))
            row.setdefault("optimizer", "all")
            row["comparisons"] = len(g)
            for v in VERDICTS:
                row[v] = int((g["verdict"] == v).sum())
            row["median_steps_off"] = float(np.nanmedian(g["steps_off"]))
            rows.append(row)
    return pd.DataFrame(rows)[["rule", "optimizer", "comparisons", *VERDICTS, "median_steps_off"]]
