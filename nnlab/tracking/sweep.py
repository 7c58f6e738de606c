"""The MLflow side of a sweep: its store, experiment and parent run, what it skips, its writer.

:class:`SweepTracking` is opened once by the launching process (:mod:`nnlab.sweep.session`)
before any trial starts, and closed with the summary:

- **What the store holds.** On a sqlite store the experiment, its FINISHED trials (skipped) and
  the latest parent of the same sweep are read with ``sqlite3``, in one query each
  (:mod:`nnlab.tracking.store_index`), so no trial waits for ``import mlflow`` (2-3 s) and the
  store's opening; any other store is asked through MLflow.
- **The parent run.** The same command reopens its sweep's parent when it was interrupted
  (KILLED, or RUNNING with its launcher gone) or, unless ``tracking.rerun=true``, when it
  FINISHED (it is then tagged ``nnlab.rechecked``): one parent per sweep, however often it is
  run. Runs of the experiment whose launcher is gone and that nobody continues are ended KILLED.
- **The writer.** One :class:`~nnlab.tracking.writer.RunWriter` thread opens the store, creates
  or takes over the parent, and files every trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnlab.tracking.parent import (
    end_abandoned,
    end_parent,
    reusable,
    start_parent,
    take_over,
    unfinished_trials,
)
from nnlab.tracking.registry import register_sweep_best
from nnlab.tracking.schema import SWEEP_FILE, Tag
from nnlab.tracking.store import (
    check_store,
    client,
    file_id,
    finished_trials,
    is_new_sqlite,
    one_line,
    prepare_store,
    probe_location,
    resolve_uri,
    runs_url,
    sqlite_path,
    store_lost,
    ui_command,
)
from nnlab.tracking.writer import OnDone, RunWriter


def skip_source(prior: dict) -> str:
    """Where a skipped trial's FINISHED run is: ``parent 1a2b3c4d`` or ``a single run``."""
    return f"parent {prior['parent'][:8]}" if prior.get("parent") else "a single run"


class SweepTracking:
    """A sweep's store, parent run and writer (see the module docstring).

    ``ctx`` (a :class:`~nnlab.sweep.context.SweepContext`) gets ``uri``, ``experiment_id`` and
    ``parent_run_id`` filled in (the ids once the writer has opened the store).
    """

    def __init__(self, ctx: Any, plain: dict, task: str, on_done: OnDone | None = None):
        from nnlab.provenance import source_tags

        self.ctx, self.plain, self.task, self.on_done = ctx, plain, task, on_done
        tracking = plain["tracking"]
        self.name, self.rerun = plain["experiment_name"], bool(tracking["rerun"])
        self.base = Path(ctx.launch_dir)
        ctx.uri = resolve_uri(tracking["uri"], self.base)
        ctx.git, ctx.task = source_tags(), task
        self.finished: dict[str, dict] = {}  # config hash -> its FINISHED run (all, even rerun)
        self.previous: tuple[str, str, dict] | None = None  # latest parent of this sweep
        self.reused = False
        self.writer: RunWriter | None = None
        self.store_id: tuple[int, int] | None = None  # (device, inode) of a sqlite store
        self.missed: dict[int, str] = {}  # job -> why MLflow did not get its run whole

    # --- opening ---------------------------------------------------------------------------

    def open(self) -> str:
        """Read what the store holds, decide the parent, start the writer; the header's words.

        ConfigError (exit 2, nothing written) for a store that cannot be used.
        """
        ctx, tracking = self.ctx, self.plain["tracking"]
        check_store(ctx.uri, tracking["artifacts"], self.base)
        new = is_new_sqlite(ctx.uri)
        if not self._read_index(new):
            ctx.experiment_id = prepare_store(ctx.uri, self.name, tracking["artifacts"], self.base)
            self.finished = finished_trials(ctx.uri, ctx.experiment_id)
            self.previous = self._latest_parent()
        if self.previous is not None:
            run_id, status, tags = self.previous
            self.reused = reusable(status, tags, bool(ctx.search), self.rerun)
            if self.reused:
                ctx.parent_run_id = run_id
                ctx.sweep_id = tags.get(Tag.SWEEP_ID, ctx.sweep_id)
        self.writer = RunWriter(ctx, setup=self._setup, on_done=self.on_done)
        db = sqlite_path(ctx.uri)
        where = ("a new store " if new else "") + (f"sqlite:///{db.name}" if db else ctx.uri)
        if self.reused:
            how = {"FINISHED": "re-checked: same sweep as a finished one"}.get(
                self.previous[1], "resumed: same sweep as an interrupted one"
            )
            where += f", parent run {ctx.parent_run_id} ({how})"
        return f", experiment {self.name!r} in {where}"

    def _read_index(self, new: bool) -> bool:
        """What a sqlite store holds, without MLflow; False when MLflow must be asked."""
        from nnlab.tracking.store_index import StoreIndex, read_index

        db = sqlite_path(self.ctx.uri)
        if db is None:
            return False
        index = StoreIndex() if new else read_index(db, self.name, self.ctx.sweep_hash)
        if index is None:
            return False
        if index.artifact_location:
            probe_location(index.artifact_location, self.name)
        self.ctx.experiment_id = index.experiment_id
        self.finished, self.previous = index.finished, index.parent
        return True

    def _latest_parent(self) -> tuple[str, str, dict] | None:
        query = f"tags.`{Tag.ROLE}` = 'sweep' and tags.`{Tag.SWEEP_HASH}` = '{self.ctx.sweep_hash}'"
        latest = client(self.ctx.uri).search_runs(
            [self.ctx.experiment_id], query, max_results=1, order_by=["attributes.start_time DESC"]
        )
        if not latest:
            return None
        return latest[0].info.run_id, latest[0].info.status, latest[0].data.tags

    def _setup(self) -> dict[str, str]:
        """In the writer's thread, while the first trials train: the store, the experiment,
        the parent run (new, or taken over); the runs nobody owns any more end KILLED.
        Returns config hash -> run id of the reopened parent's unfinished trials."""
        ctx, tracking = self.ctx, self.plain["tracking"]
        ctx.experiment_id = prepare_store(ctx.uri, self.name, tracking["artifacts"], self.base)
        self.store_id = file_id(ctx.uri)
        reopen: dict[str, str] = {}
        if self.reused:
            take_over(ctx, self.previous[2], rechecked=self.previous[1] == "FINISHED")
            reopen = unfinished_trials(ctx)
        else:
            ctx.parent_run_id = start_parent(ctx, self.task, self.name)
        end_abandoned(ctx, keep={ctx.parent_run_id, *reopen.values()})
        ctx.save(Path(ctx.sweep_dir) / SWEEP_FILE)  # for nnlab.recover: the parent to close
        return reopen

    def start(self) -> None:
        self.writer.start()

    # --- the end ---------------------------------------------------------------------------

    def store_problem(self) -> str | None:
        """Why the sqlite file users will open does not hold this sweep (deleted, replaced or
        overwritten mid-sweep), or None (:func:`~nnlab.tracking.store.store_lost`)."""
        if self.store_id is None:
            return None
        return store_lost(self.ctx.uri, self.ctx.parent_run_id, self.store_id)

    def drain(self, interrupted: bool) -> int:
        """Stop the writer once it has filed what the trials left (``interrupted``: trials
        still running end KILLED); how many trials MLflow did not get whole."""
        self.missed = self.writer.close(interrupted=interrupted) if self.writer else {}
        return len(self.missed)

    def best_run(self, best: dict | None) -> None:
        """Give the best trial's record its run id (it ran in a worker that did not know it)."""
        if best is None or best.get("run_id") or not best.get("config_hash"):
            return
        if self.writer.error is None and self.ctx.parent_run_id:
            try:
                best["run_id"] = self.run_of(best["config_hash"])
            except Exception:  # the summary names it without its id
                pass

    def close(
        self,
        counts: dict[str, int],
        best: dict | None,
        summary: list[str],
        interrupted: bool,
        study: dict | None = None,
    ) -> tuple[list[str], int]:
        """Register the best model, end the parent run (after :meth:`drain`).

        Returns the summary's extra lines and the number of problems (the store gone, a
        parent that could not be closed).
        """
        ctx, lines, problems = self.ctx, [], 0
        why = self.writer.error or (self.store_problem() if ctx.parent_run_id else None)
        if why is not None:
            lost = self.writer.filed + self.writer.failed
            lines.append(f"  {'not in MLflow':<14}{lost:>4}  ({why})")
            lines.append(
                f"  nothing is lost: python -m nnlab.recover {ctx.sweep_dir} files every trial "
                "(and the parent) from their job directories"
            )
            return lines, problems + 1
        if not ctx.parent_run_id:
            return lines, problems
        lines.append(f"  parent run: {ctx.parent_run_id}")
        lines.append(f"  browse: {ui_command(ctx.uri)}")
        from nnlab.tracking.runs_view import view_key

        view = view_key(ctx.parent_run_id)  # end_parent saves it: the sweep's trials, best first
        lines.append(f"  runs table: {runs_url(ctx.uri, ctx.experiment_id, view=view)}")
        killed = counts.get("killed", 0) or interrupted
        try:
            if not killed:  # an interrupted sweep registers once it is complete
                lines += register_sweep_best(ctx.uri, self.plain, ctx.sweep_id, best, study)
            if ctx.search:
                from nnlab.tracking.search import tag_parent

                tag_parent(ctx.uri, ctx.parent_run_id, ctx.search, study)
            status = "KILLED" if killed else "FINISHED"
            end_abandoned(ctx, keep=set(), parent_only=True)  # its trials nobody continued
            objective = study.get("objective") if study else None
            end_parent(ctx, counts, best, "\n".join(summary + lines), status, objective)
        except Exception as exc:
            lines.append(f"  could not close the parent run in MLflow: {one_line(exc)}")
            problems += 1
        return lines, problems

    def run_of(self, digest: str) -> str | None:
        """The newest run of config ``digest`` under this sweep's parent."""
        query = f"tags.`{Tag.CONFIG_HASH}` = '{digest}' and tags.`{Tag.PARENT}` = '{self.ctx.parent_run_id}'"
        runs = client(self.ctx.uri).search_runs(
            [self.ctx.experiment_id], query, max_results=1, order_by=["attributes.start_time DESC"]
        )
        return runs[0].info.run_id if runs else None
