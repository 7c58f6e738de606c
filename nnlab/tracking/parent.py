"""The sweep's parent run: created once per sweep, reopened by the same command, ended with
the summary, its numbers (metrics ``best_<objective>``, ``n_<outcome>``) and, once built, the
report (artifacts ``report/``). ``nnlab.launcher`` (host:pid:start) tells a live launcher from a
dead one.
"""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path
from typing import Any

import nnlab
from nnlab.tracking.runs_view import save_sweep_view
from nnlab.tracking.schema import OUTCOMES, Artifact, Tag
from nnlab.tracking.store import client, one_line, say
from nnlab.tracking.upload import log_params


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), None if unknown.

    With the pid, it names one process: a pid the system has given to another process since
    has another start time.
    """
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - one read of a tiny file
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of proc(5): starttime


def launcher_tag() -> str:
    """``host:pid:start`` of this process (the owner of the runs it starts)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start(pid) or ''}"


def launcher_gone(tag: str | None) -> bool:
    """True when ``tag`` (``host:pid:start``, or an older ``host:pid``) names a process of
    this host that no longer runs: its pid is free, or now another process's."""
    host, pid, start = (list((tag or "").split(":")) + ["", "", ""])[:3]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    now = process_start(int(pid))
    return bool(start) and now is not None and now != start


def reusable(status: str, tags: dict[str, str], search: bool, rerun: bool = False) -> bool:
    """Whether the latest parent of the same sweep (its ``status`` and ``tags``) is reopened:
    it ended KILLED (Ctrl-C, SIGTERM), is still RUNNING although its launcher is gone
    (``kill -9``), or FINISHED: the same sweep again re-checks it (a search goes on with its
    study); ``tracking.rerun=true`` trains finished trials again, under a new parent."""
    gone = status == "RUNNING" and launcher_gone(tags.get(Tag.LAUNCHER))
    return status == "KILLED" or gone or (status == "FINISHED" and (search or not rerun))


def reopen_parent(ctx: Any, rerun: bool = False) -> str | None:
    """Reuse the parent run of the same sweep when :func:`reusable`; return its id or None."""
    c = client(ctx.uri)
    query = f"tags.`{Tag.ROLE}` = 'sweep' and tags.`{Tag.SWEEP_HASH}` = '{ctx.sweep_hash}'"
    latest = c.search_runs(
        [ctx.experiment_id], query, max_results=1, order_by=["attributes.start_time DESC"]
    )
    if not latest:
        return None
    run = latest[0]
    if not reusable(run.info.status, run.data.tags, bool(ctx.search), rerun):
        return None
    ctx.parent_run_id = run.info.run_id
    ctx.sweep_id = run.data.tags.get(Tag.SWEEP_ID, ctx.sweep_id)
    take_over(ctx, run.data.tags, rechecked=run.info.status == "FINISHED")
    return ctx.parent_run_id


def take_over(ctx: Any, tags: dict[str, str], rechecked: bool = False) -> None:
    """Mark the reopened parent ``ctx.parent_run_id`` RUNNING under this launcher (``tags``:
    its tags before, for the count of resumes); a FINISHED one is tagged ``nnlab.rechecked``
    with the time it was checked again."""
    from mlflow.entities import RunTag

    c = client(ctx.uri)
    c.update_run(ctx.parent_run_id, "RUNNING")
    resumes = int(tags.get(Tag.RESUMES, "0")) + (not rechecked)
    items = [RunTag(Tag.LAUNCHER, launcher_tag()), RunTag(Tag.RESUMES, str(resumes))]
    if rechecked:
        items.append(RunTag(Tag.RECHECKED, time.strftime("%Y-%m-%d %H:%M:%S")))
    c.log_batch(ctx.parent_run_id, tags=items)


def start_parent(ctx: Any, task: str, experiment_name: str, recovered: bool = False) -> str:
    """Create the sweep's parent run (tags + the sweep's own params); ``task`` is the sweep's
    command-line overrides, joined; ``recovered``: made again by ``nnlab.recover``."""
    c = client(ctx.uri)
    tags = {
        Tag.ROLE: "sweep",
        Tag.SWEEP_ID: ctx.sweep_id,
        Tag.SWEEP_HASH: ctx.sweep_hash,
        Tag.LAUNCHER: launcher_tag(),
        Tag.VERSION: nnlab.__version__,
        **ctx.git,
    }
    if recovered:
        tags[Tag.RECOVERED] = "true"
    run = c.create_run(ctx.experiment_id, run_name=f"sweep {task}"[:250] or "sweep", tags=tags)
    params = {
        "sweep.overrides": task,
        "sweep.n_trials": ctx.n_trials,
        "sweep.parallel": ctx.parallel,
        "experiment_name": experiment_name,
    }
    log_params(c, run.info.run_id, params)
    return run.info.run_id


def end_parent(
    ctx: Any,
    counts: dict[str, int],
    best: dict | None,
    summary: str,
    status: str,
    objective: str | None = None,
) -> None:
    """Close the sweep's parent run: its numbers, summary and runs-table view, then ``status``.

    Parameters
    ----------
    ctx : SweepContext
        ``uri``, ``experiment_id``, ``parent_run_id``, ``sweep_id``.
    counts : dict
        Outcome -> number of trials (:data:`~nnlab.tracking.schema.OUTCOMES`; missing ones
        count 0): tags ``nnlab.n_<outcome>`` and metrics ``n_<outcome>``.
    best : dict or None
        The best trial: ``run_id`` (tag ``nnlab.best_run_id``) and its ``objective`` value
        (metric ``best_<objective>``, left out when not finite).
    summary : str
        The sweep summary, saved as ``summary.txt``.
    status : str
        ``FINISHED`` or ``KILLED``.
    objective : str, optional
        The metric the sweep is judged by (a search's ``hydra.sweeper.objective``); default
        ``val_loss``, or ``loss`` when ``best`` has no ``val_loss`` (no validation split).
        It also sorts the sweep's saved view of the runs table (:mod:`~nnlab.tracking.runs_view`,
        opened by ``runs_url(uri, experiment_id, view=ctx.parent_run_id)``).
    """
    from mlflow.entities import Metric, RunTag

    c = client(ctx.uri)
    if objective is None:
        objective = "loss" if best and best.get("val_loss") is None else "val_loss"
    tags = [RunTag(Tag.count(o), str(n)) for o, n in counts.items()]
    if best and best.get("run_id"):
        tags.append(RunTag(Tag.BEST_RUN_ID, best["run_id"]))
    now = int(time.time() * 1000)
    metrics = [Metric(f"n_{o}", float(counts.get(o, 0)), now, 0) for o in OUTCOMES]
    value = (best or {}).get(objective)
    if isinstance(value, (int, float)) and math.isfinite(value):
        metrics.append(Metric(f"best_{objective}", float(value), now, 0))
    c.log_batch(ctx.parent_run_id, metrics=metrics, tags=tags)
    c.log_text(ctx.parent_run_id, summary + "\n", Artifact.SUMMARY)
    try:
        name = f"nnlab sweep {ctx.sweep_id}: best {objective} first"
        save_sweep_view(ctx.uri, ctx.experiment_id, ctx.parent_run_id, name, objective)
    except Exception as exc:  # the table's view is a convenience: the sweep is complete without it
        say(f"nnlab: could not save the sweep's runs-table view: {one_line(exc)}")
    c.set_terminated(ctx.parent_run_id, status)


def log_report(uri: str, parent_run_id: str, report_dir: str | Path) -> None:
    """Attach a built report (``index.html``, its figures and tables) to the sweep's parent run
    under ``report/``, where MLflow's artifact viewer shows each file.

    The viewer shows an HTML file from a ``blob:`` URL, where the page's relative image links
    lead nowhere: the uploaded ``index.html`` carries its figures inline (:func:`inline_images`);
    the figures are uploaded as files too.
    """
    import tempfile

    report_dir = Path(report_dir)
    c = client(uri)
    c.log_artifacts(parent_run_id, str(report_dir), Artifact.REPORT)
    page = report_dir / "index.html"
    if page.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            inlined = Path(tmp) / "index.html"
            inlined.write_text(inline_images(page.read_text(), report_dir), encoding="utf-8")
            c.log_artifact(parent_run_id, str(inlined), Artifact.REPORT)


IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}


def inline_images(html: str, folder: Path) -> str:
    """``html`` with each ``<img src>`` naming a file of ``folder`` replaced by a data URI."""
    import base64
    import re

    def inline(m: re.Match) -> str:
        path = (folder / m.group(3)).resolve()
        kind = IMAGE_TYPES.get(path.suffix.lower())
        if kind is None or not path.is_file() or not path.is_relative_to(folder.resolve()):
            return m.group(0)  # not one of the report's own figures: left as it is
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f"{m.group(1)}{m.group(2)}data:{kind};base64,{data}{m.group(2)}"

    return re.sub(r"(<img\b[^>]*?\bsrc=)(['\"])([^'\":]+)\2", inline, html)


def unfinished_trials(ctx: Any) -> dict[str, str]:
    """config hash -> run id of the reopened parent's trials that did not finish (the newest of
    each): a parallel sweep's writer continues these runs (``nnlab.tracking.writer``)."""
    c = client(ctx.uri)
    query = f"tags.`{Tag.PARENT}` = '{ctx.parent_run_id}' and attributes.status != 'FINISHED'"
    found: dict[str, str] = {}
    for run in c.search_runs(
        [ctx.experiment_id], query, max_results=5000, order_by=["attributes.start_time DESC"]
    ):
        found.setdefault(run.data.tags.get(Tag.CONFIG_HASH, ""), run.info.run_id)
    found.pop("", None)
    return found


def end_abandoned(ctx: Any, keep: set[str], parent_only: bool = False) -> int:
    """End KILLED the experiment's runs still RUNNING that nobody owns any more: their launcher
    (``nnlab.launcher``), or their parent's, is gone; with ``parent_only``, the trials of this
    sweep's parent that it did not continue. Runs in ``keep``, and the trials of a parent in
    ``keep``, are left alone. Returns how many runs were ended."""
    from mlflow.entities import RunTag

    c = client(ctx.uri)
    query = "attributes.status = 'RUNNING'"
    if parent_only:
        query += f" and tags.`{Tag.PARENT}` = '{ctx.parent_run_id}'"
    running = c.search_runs([ctx.experiment_id], query, max_results=50_000)
    if parent_only:
        dead = {r.info.run_id for r in running} - keep
    else:
        gone = {r.info.run_id for r in running if launcher_gone(r.data.tags.get(Tag.LAUNCHER))}
        dead = {
            r.info.run_id
            for r in running
            if r.info.run_id in gone or r.data.tags.get(Tag.PARENT) in gone
        }
        dead -= keep | {r.info.run_id for r in running if r.data.tags.get(Tag.PARENT) in keep}
    for run_id in dead:
        c.log_batch(run_id, tags=[RunTag(Tag.OUTCOME, "killed")])
        c.set_terminated(run_id, "KILLED")
    return len(dead)
