"""The sweep: set-up once in the launching process, one line per trial, a summary at the end.

:class:`SweepCallback` (Hydra's callback API) runs in the launching process. Before any job
starts it validates every value of every axis, opens the store, creates the experiment and the
sweep's parent run once (processes opening a new sqlite store at once race on its tables, and
racing ``set_experiment`` calls can file runs under "Default"), and writes a
:class:`SweepContext` to ``<sweep dir>/.nnlab/sweep.json``: every trial reads it and starts its
run with explicit experiment and parent ids. At the end it prints the summary, closes the parent
run and exits 1 if a trial failed or MLflow missed part of a run.

An interrupted sweep re-run with the same command reopens its parent (:func:`reopen_parent`),
skips its FINISHED trials and resumes the interrupted ones.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from nnlab.build import check_model_fits, load_data
from nnlab.checkpoint import atomic_write_text
from nnlab.config import ConfigError, full_error, to_plain, validate
from nnlab.provenance import source_tags
from nnlab.tracking import launchers, search
from nnlab.tracking.parent import end_parent, reopen_parent, start_parent, unfinished_trials
from nnlab.tracking.registry import register_sweep_best
from nnlab.tracking.schema import OUTCOMES, SWEEP_FILE, Tag
from nnlab.tracking.store import (
    client,
    finished_trials,
    one_line,
    prepare_store,
    resolve_uri,
    runs_url,
    sqlite_path,
    ui_command,
)

_SWEEP: dict[str, Any] = {}  # the launching process's sweep state (for the summary and abort)


@dataclass
class SweepContext:
    """What the launching process tells every trial of a sweep (``<sweep dir>/.nnlab/sweep.json``)."""

    sweep_id: str
    backend: str
    uri: str | None
    experiment_id: str | None
    parent_run_id: str | None
    n_trials: int | None
    varying: list[str]
    parallel: bool
    results_dir: str
    skip: dict[str, dict] = field(default_factory=dict)
    git: dict[str, str] = field(default_factory=dict)
    sweep_hash: str = ""
    sweep_dir: str = ""
    launch_dir: str = ""  # relative paths of every trial (checkpoints) start here
    remote: bool = False  # trials are submitit jobs (nnlab.tracking.launchers)
    search: dict = field(default_factory=dict)  # a search's study (nnlab.tracking.search), or {}
    writer: bool = False  # the launcher uploads the trials (nnlab.tracking.writer), not they

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(asdict(self), indent=1), sync=False)

    @classmethod
    def load(cls, path: Path) -> SweepContext:
        """Read once per process and file version (loky workers run many trials of a sweep)."""
        stat = path.stat()
        return _load_context(cls, str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _load_context(cls: type, path: str, _mtime_ns: int, _size: int) -> SweepContext:
    return cls(**json.loads(Path(path).read_text()))


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def record_trial(record: dict, ctx: SweepContext | None) -> dict:
    """In a sweep: save a finished trial's record for the summary and print its line (submitit
    jobs print it to their log; the launching process prints it too, ``launchers.TrialLines``)."""
    if ctx is None:
        return record
    path = Path(ctx.results_dir) / f"job{record['job']:05d}.json"
    atomic_write_text(path, json.dumps(record, default=float), sync=False)  # read by the summary
    print(trial_line(record, ctx), flush=True)
    return record


def trial_line(record: dict, ctx: SweepContext) -> str:
    """``[3/12] completed     lr=0.1 batch_size=16  loss=... val_loss=... 1.23s``."""
    total = f"/{ctx.n_trials}" if ctx.n_trials else ""
    detail = (
        f"(FINISHED run {record['run_id'][:8]})"
        if record["outcome"] == "skipped"
        else f"loss={fmt(record['loss'])} val_loss={fmt(record['val_loss'])} "
        f"{record['seconds']:.2f}s"
    )
    if record.get("error"):
        detail += f"  {record['error']}"
    if record.get("tracking_error"):
        detail += f"  not in MLflow: {record['tracking_error']}"
    return f"[{record['job'] + 1}{total}] {record['outcome']:<13} {record['name']}  {detail}"


# --- set-up: validate every axis value, then the store, experiment and parent run --------------


def grid_jobs(config: Any) -> tuple[list[list[str]], list[str]] | None:
    """The job overrides of an nnlab grid sweep, in job order, and the keys that vary.

    None for other sweepers (their trials are not known in advance).
    """
    from hydra.core.global_hydra import GlobalHydra

    from nnlab.sweep.grid import expand, is_grid_sweeper

    if not is_grid_sweeper(config.hydra.sweeper):
        return None
    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    return expand(GlobalHydra.instance().config_loader(), arguments)


def compose_trial(config: Any, overrides: list[str], shapes: dict[str, tuple[int, int]]) -> dict:
    """The resolved, validated job config of one trial (what its job will see).

    Each distinct data config is loaded once (``shapes`` caches its features and classes), so a
    bad data value, or a model too big for memory, also fails before any run.
    """
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict, read_write

    job = GlobalHydra.instance().config_loader().load_sweep_config(config, list(overrides))
    with read_write(job), open_dict(job):
        del job["hydra"]
    plain = validate(job)
    key = json.dumps(plain["data"], sort_keys=True, default=str)
    if key not in shapes:
        data = load_data(plain["data"], plain["model"].get("loss", "auto"))
        shapes[key] = (data.n_features, data.n_classes)
    check_model_fits(plain["model"], *shapes[key], plain["optimizer"])
    return plain


def validate_values(config: Any, jobs: list[list[str]]) -> list[dict]:
    """Validate every value of every sweep axis before anything is tracked; exit 2 on a bad one.

    Validation rules are per key, so composing the first trial and, for each axis, the first
    trial with that axis set to each of its other values covers the whole sweep with
    1 + sum(values - 1) compositions instead of one per trial. Returns the composed probe
    configs, the first trial's first.
    """
    if not jobs:
        return []
    first = jobs[0]
    probes = [list(first)]
    for i, setting in enumerate(first):
        for other in dict.fromkeys(job[i] for job in jobs):
            if other != setting:
                probes.append([*first[:i], other, *first[i + 1 :]])
    shapes: dict[str, tuple[int, int]] = {}
    plains = []
    for overrides in probes:
        try:
            plains.append(compose_trial(config, overrides, shapes))
        except ConfigError as exc:
            fail_config(f"trial `{' '.join(overrides)}`: {exc}")
    fixed = {(p["experiment_name"], json.dumps(p["tracking"], sort_keys=True)) for p in plains}
    if len(fixed) > 1:
        fail_config(
            "experiment_name and tracking.* must be the same for every trial of a sweep "
            "(run one sweep per experiment)"
        )
    return plains


def fail_config(message: str) -> None:
    """Print one line and exit 2 (before any MLflow run exists)."""
    if full_error():
        raise ConfigError(message)
    print(f"nnlab: invalid config: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _task_config(config: Any) -> Any:
    from omegaconf import OmegaConf, open_dict, read_write

    job = OmegaConf.create(OmegaConf.to_container(config, resolve=False))
    with read_write(job), open_dict(job):
        del job["hydra"]
    return job


def sweep_signature(experiment: str, jobs: list[list[str]], config: Any) -> str:
    """Hash of what the sweep runs (its trials' overrides), to recognise the same sweep again."""
    what = jobs or [list(config.hydra.overrides.task)]
    blob = json.dumps({"experiment": experiment, "jobs": what}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def open_sweep(config: Any) -> SweepContext:
    """Validate the sweep, open its store, experiment and parent run; write ``sweep.json``."""
    base = Path(config.hydra.runtime.cwd)
    sweep_dir = (base / str(config.hydra.sweep.dir)).resolve()
    t0 = time.perf_counter()
    jobs, varying = grid_jobs(config) or ([], [])
    plan = search.search_plan(config)  # a search: trials asked from an Optuna study as it goes
    if plan is not None:
        jobs, varying = plan.space.probe_jobs(), [d.key for d in plan.space.dims.values()]
    probes = validate_values(config, jobs)
    base_cfg = probes[0] if probes else to_plain(_task_config(config))
    tracking = base_cfg["tracking"]
    name = base_cfg["experiment_name"]
    sweep_id = uuid.uuid4().hex[:12]
    ctx = SweepContext(
        sweep_id=sweep_id,
        backend=tracking["backend"],
        uri=None,
        experiment_id=None,
        parent_run_id=None,
        n_trials=plan.n_trials if plan else len(jobs) or None,
        varying=varying,
        parallel=launchers.is_parallel(config.hydra.launcher),
        results_dir=str(sweep_dir / ".nnlab" / sweep_id),
        sweep_hash=sweep_signature(name, [plan.signature()] if plan else jobs, config),
        sweep_dir=str(sweep_dir),
        launch_dir=str(base),
        remote=launchers.is_remote(config.hydra.launcher),
    )
    if plan is not None:
        ctx.search = plan.context(base, name, ctx.sweep_hash, base_cfg)
    shared = remote_setup(config, ctx, base_cfg) if ctx.remote else []
    header = f"{ctx.n_trials or '?'} trials"
    if tracking["backend"] == "mlflow":
        header += open_tracking(ctx, config, base_cfg)
    Path(ctx.results_dir).mkdir(parents=True, exist_ok=True)
    ctx.save(sweep_dir / SWEEP_FILE)
    if ctx.writer:
        _SWEEP["writer"].start()
    _SWEEP.update(ctx=ctx, config=base_cfg, started=time.perf_counter(), shared=shared)
    print(
        f"nnlab sweep {ctx.sweep_id}: {header}\n  outputs: {sweep_dir}  "
        f"(set-up {time.perf_counter() - t0:.1f}s)",
        *shared,
        sep="\n",
        flush=True,
    )
    if ctx.skip:
        print(
            f"  {len(ctx.skip)} configs already have a FINISHED run in this experiment: "
            "trials with one of them are skipped (tracking.rerun=true runs them again)",
            flush=True,
        )
    if ctx.remote:  # the jobs print to their logs: their lines are printed here
        lost = launchers.LostJobs(sweep_dir) if launchers.is_slurm(config.hydra.launcher) else None
        _SWEEP["lines"] = launchers.TrialLines(
            ctx.results_dir, lambda r: trial_line(r, ctx), also=lost.poll if lost else None
        )
        _SWEEP["lines"].start()
    return ctx


def open_tracking(ctx: SweepContext, config: Any, plain: dict) -> str:
    """The store, experiment and parent run of the sweep; what the header says of them.

    A parallel sweep (joblib) is uploaded by one writer thread of this process
    (:mod:`nnlab.tracking.writer`): its workers never import MLflow. On a sqlite store, what
    the sweep must know before its first trial is read without MLflow
    (:func:`nnlab.tracking.writer.quick_setup`) and the writer opens the store meanwhile.
    """
    from nnlab.tracking.writer import SweepWriter, quick_setup

    tracking, name, base = plain["tracking"], plain["experiment_name"], Path(ctx.launch_dir)
    ctx.uri = resolve_uri(tracking["uri"], base)
    ctx.git = source_tags()
    ctx.writer = ctx.parallel and not ctx.remote and not ctx.search
    task = " ".join(config.hydra.overrides.task)
    try:
        quick = quick_setup(ctx, plain, task) if ctx.writer else None
        if quick is not None:  # the writer opens the store while the first trials train
            _SWEEP["writer"], header = quick
            return header
        ctx.experiment_id = prepare_store(ctx.uri, name, tracking["artifacts"], base)
        if launchers.is_slurm(config.hydra.launcher):
            check_artifacts_shared(ctx.uri, ctx.experiment_id, name)
    except ConfigError as exc:
        fail_config(str(exc))
    if not tracking["rerun"] and not ctx.search:  # each trial looks its hash up here
        ctx.skip = finished_trials(ctx.uri, ctx.experiment_id)
    reused = reopen_parent(ctx)
    if reused is None:
        ctx.parent_run_id = start_parent(ctx, task, name)
    if ctx.search:
        search.tag_parent(ctx.uri, ctx.parent_run_id, ctx.search, None)
    if ctx.writer:
        _SWEEP["writer"] = SweepWriter(ctx, reopen=unfinished_trials(ctx) if reused else None)
    resumed = " (resumed: same sweep as an interrupted one)" if reused else ""
    return (
        f", experiment {name!r} (id {ctx.experiment_id}), parent run {ctx.parent_run_id}{resumed}"
    )


def remote_setup(config: Any, ctx: SweepContext, plain: dict) -> list[str]:
    """Trials as submitit jobs: pin the sweep dir, quiet sacct; the lines naming what the
    jobs' nodes must share (for the header and the summary)."""
    sweep_dir = Path(ctx.sweep_dir)
    launchers.pin_sweep_dir(config, sweep_dir)
    if not launchers.is_slurm(config.hydra.launcher):
        return []
    try:
        launchers.check_slurm()
    except ConfigError as exc:
        fail_config(str(exc))
    launchers.quiet_submitit()
    lines = [f"  shared with the nodes: sweep dir {sweep_dir}"]
    ck = plain["trainer"]["checkpoint"]
    if ck["enabled"]:
        checkpoints = (Path(ctx.launch_dir) / ck["dir"]).resolve()
        lines.append(f"  shared with the nodes: checkpoints {checkpoints}")
    path = sqlite_path(resolve_uri(plain["tracking"]["uri"] or "", Path(ctx.launch_dir)))
    if plain["tracking"]["backend"] == "mlflow" and path is not None:
        print(
            f"nnlab: tracking=sqlite on SLURM: every job writes {path}, which must be on storage "
            "all nodes share (sqlite on a network file system can lose writes); "
            "tracking=server is the way (docs/cluster.md)",
            file=sys.stderr,
            flush=True,
        )
    return lines


def check_artifacts_shared(uri: str, experiment_id: str, name: str) -> None:
    """Refuse a tracking server whose experiment keeps artifacts at a plain path: each SLURM job
    would write there on its own node. ConfigError naming the fix."""
    if not uri.startswith(("http://", "https://")):
        return
    location = client(uri).get_experiment(experiment_id).artifact_location
    if location.startswith(("file:", "/")):
        raise ConfigError(
            f"experiment {name!r} on {uri} stores artifacts at {location}, a path each SLURM job "
            "would write on its own node; run the server with --serve-artifacts and "
            "--artifacts-destination (docs/cluster.md) and use a new experiment_name"
        )


# --- the end: summary, parent run closed, optional report ---------------------------------------


def best_record(records: list[dict]) -> dict | None:
    """The trial with the lowest val_loss (else loss) among usable, non-diverged ones."""
    good = [
        r
        for r in records
        if r["outcome"] in ("completed", "early_stopped", "skipped")
        and (r.get("prior_outcome") or "completed") != "diverged"
    ]
    for metric in ("val_loss", "loss"):
        scored = [r for r in good if r.get(metric) is not None and math.isfinite(r[metric])]
        if scored:
            return min(scored, key=lambda r: r[metric])
    return None


def _missing(ctx: SweepContext, records: list[dict]) -> int:
    """Trials of the sweep that never reported (a job died before writing its record)."""
    return (ctx.n_trials or len(records)) - len(records)


def _untracked(records: list[dict]) -> int:
    """Trials whose run MLflow did not get whole (their job dirs hold it: nnlab.recover)."""
    return sum(bool(r.get("tracking_error")) for r in records)


def summary_lines(
    ctx: SweepContext, records: list[dict], elapsed: float
) -> tuple[list[str], dict, dict | None]:
    """The summary's lines, the count per outcome and the best record."""
    counts = {o: sum(r["outcome"] == o for r in records) for o in OUTCOMES}
    missing, untracked = _missing(ctx, records), _untracked(records)
    best = best_record(records)
    lines = [f"nnlab sweep {ctx.sweep_id}: {len(records)} trials in {elapsed:.1f}s"]
    lines += [f"  {o:<14}{n:>4}" for o, n in counts.items() if n]
    if counts["skipped"]:
        lines[-1] += "  (a FINISHED run exists; tracking.rerun=true runs them again)"
    if missing:
        lines.append(f"  {'no result':<14}{missing:>4}  (a job died before reporting)")
    if untracked:
        lines.append(
            f"  {'not in MLflow':<14}{untracked:>4}  (nothing lost: re-import the job dirs' "
            f"history with python -m nnlab.recover {ctx.sweep_dir})"
        )
    if best:
        metric = "val_loss" if best.get("val_loss") is not None else "loss"
        run = f"  run {best['run_id']}" if best.get("run_id") else ""
        lines.append(f"  best by {metric}: {best['name']}  {metric}={fmt(best[metric])}{run}")
    return lines, counts, best


def _writer_done(writer: Any, ctx: SweepContext, records: list[dict]) -> None:
    """Let the writer upload the last trials; give the records their run ids (and errors)."""
    writer.close()
    results = writer.results()
    for r in records:
        run_id, error = results.get(r["job"], (None, None))
        r["run_id"] = run_id or r.get("run_id")
        if error is not None and r["outcome"] != "skipped":
            r["tracking_error"] = error
            r["job_dir"] = str(writer.jobs[f"{r['job']:05d}"].run_file.parent)
        path = Path(ctx.results_dir) / f"job{r['job']:05d}.json"
        atomic_write_text(path, json.dumps(r, default=float), sync=False)
    stats = json.dumps(writer.stats(), indent=1)
    atomic_write_text(Path(ctx.results_dir) / "writer.json", stats, sync=False)


def close_sweep() -> None:
    """Print the summary, close the parent run, build the report if asked; exit 1 on a loss.

    A sweep with killed trials (``scancel``) is not complete: its parent ends KILLED, so the
    same command reopens it and resumes those trials from their checkpoints.
    """
    ctx: SweepContext = _SWEEP["ctx"]
    if _SWEEP.get("lines") is not None:
        _SWEEP.pop("lines").stop()
    records = [json.loads(p.read_text()) for p in sorted(Path(ctx.results_dir).glob("job*.json"))]
    if _SWEEP.get("writer") is not None:
        _writer_done(_SWEEP.pop("writer"), ctx, records)
    elapsed = time.perf_counter() - _SWEEP["started"]
    study = search.study_summary(ctx.results_dir) if ctx.search else None
    if study is not None:  # this launch ran `launched` of the study's trials
        ctx = dataclasses.replace(ctx, n_trials=study["launched"])
    lines, counts, best = summary_lines(ctx, records, elapsed)
    if study is not None:
        lines = search.summary_lines(lines, study)
        best = {"run_id": (study.get("best") or {}).get("run_id")}
    missing, untracked = _missing(ctx, records), _untracked(records)
    lines += _SWEEP.get("shared", [])
    if counts["killed"]:
        lines.append("  killed trials resume from their checkpoints: run the same command")
    if ctx.parent_run_id:
        lines.append(f"  parent run: {ctx.parent_run_id}")
        lines.append(f"  browse: {ui_command(ctx.uri)}")
        lines.append(f"  runs table: {runs_url(ctx.uri, ctx.experiment_id)}")
        if not counts["killed"]:  # an interrupted sweep registers once it is complete
            lines += register_sweep_best(ctx.uri, _SWEEP["config"], ctx.sweep_id, best, study)
        status = "KILLED" if counts["killed"] else "FINISHED"
        try:
            if study is not None:
                search.tag_parent(ctx.uri, ctx.parent_run_id, ctx.search, study)
            end_parent(ctx, counts, best, "\n".join(lines), status)
        except Exception as exc:
            lines.append(f"  could not close the parent run in MLflow: {one_line(exc)}")
            untracked += 1
    print("\n".join(lines), flush=True)
    if not untracked:
        _maybe_report(_SWEEP["config"], ctx)
    if counts["failed"] or counts["killed"] or missing or untracked:
        raise SystemExit(1)


def abort_sweep() -> None:
    """After Ctrl-C / SIGTERM in the launching process: mark the parent and running trials KILLED.

    Submitit jobs outlive their launcher: their trials go on and end their own runs, so only
    the parent is marked (the same command, once they end, reopens it).
    """
    ctx: SweepContext | None = _SWEEP.get("ctx")
    if _SWEEP.get("lines") is not None:
        _SWEEP.pop("lines").stop()
    killed = 0
    if _SWEEP.get("writer") is not None:  # what the trials left: uploaded, the running KILLED
        writer = _SWEEP.pop("writer")
        writer.close(interrupted=True)
        killed = writer.killed
    if ctx is None or not ctx.parent_run_id:
        return
    from mlflow.entities import RunTag

    c = client(ctx.uri)
    if ctx.remote:
        c.set_terminated(ctx.parent_run_id, "KILLED")
        ids = launchers.slurm_job_ids(Path(ctx.sweep_dir))
        stop = f" (scancel {' '.join(ids)} stops them)" if ids else ""
        print(
            f"nnlab: sweep {ctx.sweep_id} interrupted; parent run {ctx.parent_run_id} marked "
            f"KILLED. Its trials' jobs go on and end their own runs{stop}; once they have "
            "ended, run the same command to finish the sweep under the same parent.",
            file=sys.stderr,
            flush=True,
        )
        return
    running = c.search_runs(
        [ctx.experiment_id],
        f"tags.`{Tag.PARENT}` = '{ctx.parent_run_id}' and attributes.status = 'RUNNING'",
    )
    for run in running:
        c.log_batch(run.info.run_id, tags=[RunTag(Tag.OUTCOME, "killed")])
        c.set_terminated(run.info.run_id, "KILLED")
    c.set_terminated(ctx.parent_run_id, "KILLED")
    print(
        f"nnlab: sweep {ctx.sweep_id} interrupted; parent run {ctx.parent_run_id} and "
        f"{len(running) + killed} running trials marked KILLED. Run the same command to resume.",
        file=sys.stderr,
        flush=True,
    )


def _maybe_report(plain: dict, ctx: SweepContext) -> None:
    """``report.enabled``: build the experiment's report with ``nnlab.report``."""
    rep = plain.get("report") or {}
    if not rep.get("enabled"):
        return
    if ctx.backend != "mlflow":
        print(
            "nnlab: report.enabled needs MLflow tracking; skipped (tracking=none)", file=sys.stderr
        )
        return
    from nnlab.report import build_report

    path = build_report(
        plain["experiment_name"],
        rep["out"],
        metric=rep.get("metric", "val_loss"),
        tracking_uri=ctx.uri,
    )
    print(f"  report: {path}", flush=True)


class SweepCallback(Callback):
    """Hydra callback: tracking set-up once per sweep (:func:`open_sweep`), summary at its end
    (:func:`close_sweep`)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        open_sweep(config)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        close_sweep()
