"""Tracking cost: what MLflow tracking adds to the flagship sweep, on sqlite and on a server.

1. Sweep pairs: ``python -m nnlab.run -m +experiment=lr_vs_epochs report.enabled=false``
   exactly as a user runs it (its own joblib launcher preset), with ``tracking=none`` and with
   the default sqlite store, as interleaved pairs (none, sqlite, none, sqlite, ...), each in a
   fresh temp directory (so the sqlite store is created, as on a first run). Before each pair
   the machine's load is probed (1-min load average, and free cores as the scaling section
   measures them), because other work on the 2 cores slows a sweep more than tracking does.
   Per pair: the tracked / untracked wall-time ratio; over pairs: its median.
   ``--quick`` sweeps one seed and one batch size (28 trials instead of 252).
2. Fixed cost of a sweep: (first trial's ``train_started`` - the moment the benchmark started
   the process) + (the moment the process exited - the last trial's ``ended``): start-up,
   imports, store set-up before training, and whatever the launcher does after it.
3. Per-trial tracking cost: in a parallel sweep one writer thread of the launching process
   uploads every trial and writes ``writer.json`` (store time per trial); without it, the
   trials' own ``tracking_s`` (their time in MLflow calls) is used.
4. A local MLflow server (``--workers 1``, job execution off): one flagship sweep with
   ``tracking=server``, its per-trial cost, raw ``MlflowClient`` calls against it (create_run,
   log_batch of 100 metrics: median of 20 each) and its memory (RSS summed over its processes).
   The same raw calls and memory for a server as ``mlflow server`` starts by default (4
   workers) are the comparison. Every server is stopped (its process group) whatever happens.
5. Single run (``python -m nnlab.run`` without ``-m``: the trial talks to MLflow itself): the
   real ``nnlab.tracking.run_trial`` with the cached ``MlflowClient``'s methods wrapped by
   timers, charged to create (create_run), params, metrics, artifacts, end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from benchmarks.common import REPO, Skipped, module_available, run_worker, summarize, worker_env

EXPERIMENT = "lr_vs_epochs"
QUICK_OVERRIDES = ["seed=0", "batch_size=256"]
PHASES = ("create", "params", "metrics", "artifacts", "end")
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job-runner processes
RAW_CALLS = 20  # timed create_run and log_batch calls against a server
BATCH = 100  # metrics per timed log_batch


def _check() -> None:
    for mod in ("nnlab.tracking", "nnlab.run", "nnlab.nn"):
        if not module_available(mod):
            raise Skipped(f"{mod} not available yet")
    if not (REPO / "conf" / "experiment" / f"{EXPERIMENT}.yaml").exists():
        raise Skipped(f"conf/experiment/{EXPERIMENT}.yaml not available yet")


# ----------------------------------------------------------------------------------- sweeps


def run_sweep(
    overrides: list[str],
    workdir: Path,
    timeout: float = 1800,
    experiment: str | None = EXPERIMENT,
    env_extra: dict[str, str] | None = None,
) -> dict:
    """One ``python -m nnlab.run -m`` in ``workdir``: wall time and the trials' own records."""
    env = worker_env()
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS"):
        env.pop(k, None)  # a sweep as the user runs it: nnlab sets one BLAS thread per trial
    env.update(env_extra or {})
    exp = [f"+experiment={experiment}"] if experiment else []
    cmd = [sys.executable, "-m", "nnlab.run", "-m", *exp, *overrides]
    started_at, t0 = time.time(), time.perf_counter()
    p = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    wall, exited_at = time.perf_counter() - t0, time.time()
    if p.returncode:
        out = "\n".join(p.stdout.strip().splitlines()[-12:])
        raise RuntimeError(
            f"{' '.join(cmd[2:])} failed ({p.returncode}) in {workdir}:\n{out}\n{p.stderr[-1500:]}"
        )
    return {
        "command": " ".join(["python", *cmd[1:]]),
        "wall_s": wall,
        **sweep_facts(workdir, started_at, exited_at),
        "last_lines": p.stdout.strip().splitlines()[-4:],
        # nnlab prints the launching process's set-up time and the sweep's own duration
        "setup_s": _seconds(r"set-up ([0-9.]+)s", p.stdout),
        "sweep_s": _seconds(r"trials in ([0-9.]+)s", p.stdout),
    }


def sweep_facts(workdir: Path, started_at: float, exited_at: float) -> dict:
    """What a finished sweep's records in ``workdir`` say: trial times, the fixed cost (the
    launch before the first trial trained + after the last trial ended; ``None`` when the
    records carry no ``train_started``/``ended``) and the per-trial tracking cost, from the
    sweep writer's ``writer.json`` when there is one, else from the trials' ``tracking_s``.

    ``started_at``, ``exited_at``: unix times the process was started and had exited.
    """
    results = [d for d in workdir.glob("multirun/**/.nnlab/*") if d.is_dir()]
    records = [json.loads(f.read_text()) for d in results for f in sorted(d.glob("job*.json"))]
    writer_files = [d / "writer.json" for d in results if (d / "writer.json").exists()]
    writer = json.loads(writer_files[0].read_text()) if writer_files else None
    tracking = [r.get("tracking_s") or 0.0 for r in records]
    starts = [r["train_started"] for r in records if r.get("train_started")]
    ends = [r["ended"] for r in records if r.get("ended")]
    fixed = None
    if starts and ends:
        fixed = {"before_s": min(starts) - started_at, "after_s": exited_at - max(ends)}
        fixed["total_s"] = fixed["before_s"] + fixed["after_s"]
    if writer is not None:
        per = {"source": "sweep writer", "values": writer.get("per_trial_s") or []}
    else:
        per = {"source": "in the trials", "values": tracking}
    per["median_s"] = statistics.median(per["values"]) if per["values"] else None
    return {
        "n_trials": len(records),
        "trial_seconds_sum": sum(r.get("seconds", 0.0) for r in records),
        "tracking_s_sum": sum(tracking),
        # train_s includes checkpoint_s (per-epoch checkpoints), when the records carry them
        "train_s_sum": sum(r.get("train_s") or 0.0 for r in records),
        "checkpoint_s_sum": sum(r.get("checkpoint_s") or 0.0 for r in records),
        "tracking_s_median": statistics.median(tracking) if tracking else None,
        "fixed_cost": fixed,
        "per_trial": per,
        "writer": writer and {k: v for k, v in writer.items() if k != "per_trial_s"},
    }


def _seconds(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def load_probe() -> dict:
    """How busy the machine is right now: 1-min load average and free cores (2.0 = idle)."""
    from benchmarks.sweep_scaling import capacity

    return {"loadavg_1min": os.getloadavg()[0], "free_cores": capacity()}


def replay(sweep_dir: Path, uri: str, experiment: str) -> dict:
    """The sweep writer alone: a finished sweep's job directories uploaded again, into
    ``experiment`` of the store at ``uri``, while nothing else runs (the writer's own cost per
    trial, without the trials competing for the cores). Wall and thread-CPU medians."""
    import shutil

    from nnlab.tracking.parent import start_parent
    from nnlab.tracking.store import prepare_store
    from nnlab.tracking.sweep import SweepContext
    from nnlab.tracking.writer import SweepWriter

    work = sweep_dir.parent / f"{sweep_dir.name}-replay-{experiment}"
    shutil.copytree(sweep_dir, work)
    ctx = SweepContext(**json.loads((work / ".nnlab" / "sweep.json").read_text()))
    ctx.uri, ctx.sweep_dir = uri, str(work)
    ctx.results_dir = str(work / ".nnlab" / Path(ctx.results_dir).name)
    for entry in (Path(ctx.results_dir) / "jobs").iterdir():  # the copies' run.json files
        entry.write_text(entry.read_text().replace(str(sweep_dir), str(work)))
    base = Path(ctx.launch_dir)
    ctx.experiment_id = prepare_store(uri, experiment, "mlruns", base)
    ctx.parent_run_id = start_parent(ctx, "replay", experiment)
    writer = SweepWriter(ctx)
    writer.start()
    writer.close()
    stats = writer.stats()
    return {
        "uri": uri,
        "trials": stats["trials"],
        "median_s": _median(stats["per_trial_s"]),
        "cpu_median_s": _median(stats["per_trial_cpu_s"]),
    }


def sweep_pairs(overrides: list[str], n_pairs: int, tmp: Path) -> list[dict]:
    """``n_pairs`` x (tracking=none, then sqlite), each sweep in a fresh directory, the
    machine's load probed before each pair."""
    pairs: list[dict] = []
    failures: list[str] = []  # a failed sweep is reported and its pair run again (twice at most)
    for attempt in range(n_pairs + 2):
        if len(pairs) == n_pairs:
            break
        pair: dict = {"load": load_probe()}
        try:
            for mode, extra in (("none", ["tracking=none"]), ("sqlite", [])):
                d = tmp / f"pair{attempt}-{mode}"
                d.mkdir()
                pair[mode] = run_sweep(overrides + extra, d)
        except RuntimeError as exc:
            failures.append(str(exc))
            print(f"  FAILED: {exc}", flush=True)
            continue
        pair["ratio"] = pair["sqlite"]["wall_s"] / pair["none"]["wall_s"]
        pairs.append(pair)
        print(f"  {pair_line(len(pairs) - 1, pair)}", flush=True)
    if len(pairs) < n_pairs:
        raise RuntimeError(f"{len(failures)} sweeps failed:\n" + "\n".join(failures))
    if failures:
        pairs[0]["failures_before"] = failures
    return pairs


def pair_line(i: int, pair: dict) -> str:
    load = pair["load"]
    fixed = " / ".join(
        f"{(pair[m]['fixed_cost'] or {}).get('total_s', float('nan')):.1f}"
        for m in ("none", "sqlite")
    )
    return (
        f"pair {i + 1}: free cores {load['free_cores']:.2f}, load {load['loadavg_1min']:.2f}: "
        f"none {pair['none']['wall_s']:.1f} s, sqlite {pair['sqlite']['wall_s']:.1f} s "
        f"-> x{pair['ratio']:.3f}; fixed cost none / sqlite {fixed} s"
    )


# ----------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """``mlflow server`` on a free local port in its own process group, artifacts in a local
    directory the client writes itself; ``workers=None`` starts it as ``mlflow server`` does by default (4 workers,
    job execution as configured). :meth:`stop` ends the whole group."""

    def __init__(self, root: Path, workers: int | None = 1) -> None:
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        cmd = ["mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += [] if workers is None else ["--workers", str(workers)]
        cmd += ["--backend-store-uri", f"sqlite:///{root / 'srv.db'}"]
        # the local recipe (docs/tracking.md): artifacts written by the client into a directory
        # of this machine, not uploaded through the server one request per file
        cmd += ["--no-serve-artifacts", "--default-artifact-root", str((root / "art").resolve())]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update(SERVER_ENV if workers is not None else {})
        self.command = " ".join(cmd)
        self.log = (root / "server.log").open("w")
        self.proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Seconds until ``/health`` answers; the log's tail if the server dies or never does."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                time.sleep(0.5)
        tail = Path(self.log.name).read_text()[-1500:]
        raise RuntimeError(f"{self.command} did not answer on {self.uri}: {tail}")

    def wait_idle(self, timeout: float = 90.0) -> float:
        """Seconds until the server's processes use under 5% of a core over a second: a
        default server answers ``/health`` while its other workers still import MLflow."""
        t0 = time.perf_counter()
        tick = os.sysconf("SC_CLK_TCK")
        while time.perf_counter() - t0 < timeout:
            before = sum(_cpu_ticks(p) for p in process_tree(self.pid))
            time.sleep(1.0)
            if sum(_cpu_ticks(p) for p in process_tree(self.pid)) - before < 0.05 * tick:
                break
        return time.perf_counter() - t0

    def log_lines(self) -> list[str]:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace").splitlines()

    def rss(self) -> dict:
        """Resident memory summed over the server's process tree (shared pages count in
        every process that maps them, as ``ps`` shows them)."""
        pids = process_tree(self.pid)
        total = sum(_vm_rss(p) for p in pids)
        return {"rss_mb": total / 2**20, "processes": len(pids)}

    def stop(self) -> None:
        """SIGTERM to the group, then SIGKILL to whatever of it is left (uvicorn's workers)."""
        try:
            os.killpg(self.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
            time.sleep(0.5)  # the workers leave after their parent
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from ``/proc/<pid>/stat``'s parent ids."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {pid}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in tree and p not in tree}
        tree |= new
        grew = bool(new)
    return sorted(tree)


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _vm_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def raw_calls(uri: str, n: int = RAW_CALLS, batch: int = BATCH) -> dict:
    """In a fresh process: ``n`` timed ``create_run`` and ``n`` ``log_batch`` of ``batch``
    metrics (5 names x steps, as epochs log them) on one reused connection, after one warm-up
    of each."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.create_experiment(f"raw-calls-{time.time_ns()}")
    now = int(time.time() * 1000)

    def metrics(k: int) -> list:
        return [Metric(f"m{j % 5}", float(j), now, k * batch + j) for j in range(batch)]

    run_ids, create, log = [], [], []
    for _ in range(n + 1):
        t0 = time.perf_counter()
        run_ids.append(client.create_run(exp).info.run_id)
        create.append(time.perf_counter() - t0)
    for i, run_id in enumerate(run_ids):
        t0 = time.perf_counter()
        client.log_batch(run_id, metrics=metrics(i))
        log.append(time.perf_counter() - t0)
    return {
        "n": n,
        "batch": batch,
        "create_run_s": summarize(create[1:]),
        "log_batch_s": summarize(log[1:]),
    }


def server_calls(uri: str) -> dict:
    """:func:`raw_calls` in its own process (MLflow is imported there, not here)."""
    cmd = [sys.executable, "-m", "benchmarks.tracking_cost", "raw-calls", uri]
    p = subprocess.run(cmd, cwd=REPO, env=worker_env(), capture_output=True, text=True,
                       timeout=600)  # fmt: skip
    if p.returncode:
        raise RuntimeError(f"raw calls against {uri} failed: {p.stderr[-1500:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def server_section(overrides: list[str], tmp: Path) -> dict:
    """The flagship sweep against a ``--workers 1`` server; raw calls and memory of it and of a
    default (4-worker) server."""
    out: dict = {}
    for name, workers in (("workers1", 1), ("default", None)):
        srv = MlflowServer(tmp / f"server-{name}", workers=workers)
        try:
            r: dict = {"command": srv.command, "ready_s": srv.wait_ready()}
            r["idle_after_s"] = srv.wait_idle()
            if workers == 1:
                extra = ["tracking=server", f"tracking.uri={srv.uri}"]
                for attempt in (1, 2):  # a failed sweep is reported and run again once
                    d = tmp / f"sweep-server{attempt}"
                    d.mkdir()
                    n0 = len(srv.log_lines())
                    try:
                        r["sweep"] = run_sweep(overrides + extra, d)
                        break
                    except RuntimeError as exc:
                        if attempt == 2:
                            raise
                        r["failure_before"] = str(exc)
                        print(f"  FAILED: {exc}", flush=True)
                counts = request_counts(srv.log_lines()[n0:])
                n = max(r["sweep"]["n_trials"], 1)
                r["requests_per_trial"] = {k: v / n for k, v in counts.most_common()}
                r["idle_after_sweep_s"] = srv.wait_idle()
                r["replay"] = replay(next(d.glob("multirun/*/*")), srv.uri, "replay")
            r["calls"] = server_calls(srv.uri)
            r.update(srv.rss())
        finally:
            srv.stop()
        out[name] = r
        print(f"  {server_line(name, r)}", flush=True)
    return out


def request_counts(lines: list[str]) -> Counter:
    """Requests in uvicorn's access log lines, by method and endpoint (artifact paths as one)."""
    out: Counter = Counter()
    for m in re.finditer(r'"(GET|POST|PUT|PATCH|DELETE) (/[^ ?"]*)', "\n".join(lines)):
        path = m.group(2)
        if "/mlflow-artifacts/" in path:
            path = "mlflow-artifacts"
        else:
            path = path.split("/mlflow/", 1)[-1]
        out[f"{m.group(1)} {path}"] += 1
    return out


def server_line(name: str, r: dict) -> str:
    c = r["calls"]
    return (
        f"server {name}: create_run {1000 * c['create_run_s']['median']:.1f} ms, "
        f"log_batch({c['batch']}) {1000 * c['log_batch_s']['median']:.1f} ms "
        f"(median of {c['n']}); RSS {r['rss_mb']:.0f} MB in {r['processes']} processes"
    )


# ------------------------------------------------------------------------------- single run


def phases(spec: dict) -> dict:
    """In a worker process: ``n`` flagship trials through ``run_trial``, MLflow calls timed."""
    from hydra import compose, initialize_config_dir

    from nnlab import tracking

    workdir = Path(spec["workdir"])
    os.chdir(workdir)
    n, epochs = int(spec["runs"]), int(spec["epochs"])
    uri = tracking.resolve_uri("sqlite:///mlflow.db", workdir)
    client = tracking.client(uri)  # the cached instance MlflowSink will use
    spent = dict.fromkeys(PHASES, 0.0)

    def timed(name: str, phase_of) -> None:
        orig = getattr(client, name)

        def call(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return orig(*args, **kwargs)
            finally:
                spent[phase_of(kwargs)] += time.perf_counter() - t0

        setattr(client, name, call)

    def log_batch_phase(kw: dict) -> str:
        return "params" if kw.get("params") else "metrics" if kw.get("metrics") else "end"

    timed("create_run", lambda kw: "create")
    timed("log_batch", log_batch_phase)
    timed("log_artifacts", lambda kw: "artifacts")
    timed("set_terminated", lambda kw: "end")

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            cfgs = [
                compose(
                    "config",
                    overrides=[
                        f"+experiment={EXPERIMENT}",
                        "report.enabled=false",
                        "batch_size=64",
                        f"epochs={epochs}",
                        f"seed={s}",
                        "trainer.verbose=0",
                    ],
                )
                for s in range(n + 1)
            ]
    rows, totals = [], []
    for i, cfg in enumerate(cfgs):
        for k in spent:
            spent[k] = 0.0
        rec = tracking.run_trial(cfg)
        if i == 0:  # warm-up: imports, store creation, first connection
            continue
        rows.append(dict(spent))
        totals.append(rec["tracking_s"])
    return {
        "runs": n,
        "epochs": epochs,
        "journal_mode": _journal_mode(workdir / "mlflow.db"),
        "phase_median_s": {k: statistics.median(r[k] for r in rows) for k in PHASES},
        "total_s": summarize(totals),
    }


def _journal_mode(path: Path) -> str:
    import sqlite3

    with sqlite3.connect(path) as con:
        return str(con.execute("PRAGMA journal_mode").fetchone()[0])


# ---------------------------------------------------------------------------------- section


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def run(quick: bool = False, core: int = 0) -> dict:
    _check()
    overrides = ["report.enabled=false"] + (QUICK_OVERRIDES if quick else [])
    with tempfile.TemporaryDirectory(prefix="nnlab-bench-tracking-") as tmp:
        pairs = sweep_pairs(overrides, 3 if quick else 5, Path(tmp))
        last = next(Path(tmp).glob("pair*-sqlite/multirun/*/*"), None) if pairs else None
        db = Path(tmp) / "replay.db"
        sqlite_replay = replay(last, f"sqlite:///{db}", "replay") if last else None
        server = server_section(overrides, Path(tmp))
        d = Path(tmp) / "single"
        d.mkdir()
        spec = {"kind": "tracking_phases", "workdir": str(d), "runs": 10 if quick else 30,
                "epochs": 40}  # fmt: skip
        single = run_worker(spec, core=core)
    single["total_median_s"] = single["total_s"]["median"]
    srv_sweep = server["workers1"]["sweep"]
    out: dict = {
        "quick": quick,
        "pairs": pairs,
        "ratios": [p["ratio"] for p in pairs],
        "median_ratio": statistics.median(p["ratio"] for p in pairs),
        "fixed_cost_s": {
            m: _median([(p[m]["fixed_cost"] or {}).get("total_s") for p in pairs])
            for m in ("none", "sqlite")
        },
        "per_trial": {
            "sqlite": {
                "source": pairs[0]["sqlite"]["per_trial"]["source"],
                "median_s": _median([v for p in pairs for v in p["sqlite"]["per_trial"]["values"]]),
            },
            "server": {k: srv_sweep["per_trial"][k] for k in ("source", "median_s")},
        },
        "server": server,
        "single_run": single,
        "replay": {"sqlite": sqlite_replay, "server": server["workers1"].get("replay")},
    }
    out["fixed_cost_s"]["server"] = (srv_sweep["fixed_cost"] or {}).get("total_s")
    out["fixed_cost_parts_s"] = {  # medians: launch -> first training, last end -> exit
        m: {
            part: _median([(p[m]["fixed_cost"] or {}).get(part) for p in pairs])
            for part in ("before_s", "after_s")
        }
        for m in ("none", "sqlite")
    }
    out["summary"] = summary_lines(out)
    return out


def summary_lines(out: dict) -> list[str]:
    pairs, fx, pt = out["pairs"], out["fixed_cost_s"], out["per_trial"]
    srv, dflt, single = out["server"]["workers1"], out["server"]["default"], out["single_run"]
    sweep = srv["sweep"]

    def med(mode: str, key: str) -> str:
        v = _median([p[mode][key] for p in pairs])
        return "-" if v is None else f"{v:.1f}"

    def writer_part(w: dict | None) -> str:
        return "" if not w else f"; writer set-up {w['setup_s']:.1f} s, drain {w['drain_s']:.2f} s"

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{1000 * v:.1f} ms"

    def sec(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s"

    def parts(mode: str) -> str:
        b, a = (out["fixed_cost_parts_s"][mode][k] for k in ("before_s", "after_s"))
        return "" if b is None else f" ({b:.2f} before + {a:.2f} after)"

    requests = sorted(srv["requests_per_trial"].items(), key=lambda kv: -kv[1])
    shown = [(k, v) for k, v in requests if v >= 0.1]
    other = sum(v for k, v in requests if v < 0.1)

    return [
        f"flagship sweep ({pairs[0]['sqlite']['n_trials']} trials), {len(pairs)} interleaved "
        "pairs tracking=none / sqlite (free cores: 2 = idle machine):",
        *(f"  {pair_line(i, p)}" for i, p in enumerate(pairs)),
        *(
            f"  FAILED sweep (its pair run again): {f.splitlines()[0]} ... {f.splitlines()[-1]}"
            for f in pairs[0].get("failures_before", [])
        ),
        f"tracked / untracked wall, median of pairs: x{out['median_ratio']:.3f} "
        f"(walls: none {med('none', 'wall_s')} s, sqlite {med('sqlite', 'wall_s')} s, medians)",
        f"fixed cost (launch -> first trial trains + last trial ends -> exit), median: "
        f"none {sec(fx['none'])}{parts('none')}, sqlite {sec(fx['sqlite'])}{parts('sqlite')}, "
        f"server {sec(fx['server'])}; launcher set-up (header line) none {med('none', 'setup_s')} s, "
        f"sqlite {med('sqlite', 'setup_s')} s" + writer_part(pairs[-1]["sqlite"]["writer"]),
        f"per trial ({pt['sqlite']['source']}), sqlite: median {ms(pt['sqlite']['median_s'])} "
        "wall in the sweep (the cores busy with trials)",
        *(
            f"per trial, the writer alone replaying a sweep's {r['trials']} job dirs into an idle "
            f"{kind} store: median {ms(r['median_s'])} wall, {ms(r['cpu_median_s'])} of its CPU"
            for kind, r in out["replay"].items()
            if r
        ),
        f"server ({srv['command'].split(' --backend')[0]}, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="
        f"false): sweep {sweep['n_trials']} trials in {sweep['wall_s']:.1f} s; per trial "
        f"({pt['server']['source']}) median {ms(pt['server']['median_s'])}"
        + writer_part(sweep["writer"]),
        f"  requests per trial: {sum(srv['requests_per_trial'].values()):.1f} = "
        + ", ".join(f"{k} {v:.1f}" for k, v in shown)
        + f", other {other:.2f}",
        f"  raw MlflowClient calls, --workers 1: create_run "
        f"{ms(srv['calls']['create_run_s']['median'])}, log_batch({srv['calls']['batch']}) "
        f"{ms(srv['calls']['log_batch_s']['median'])}; RSS {srv['rss_mb']:.0f} MB "
        f"({srv['processes']} processes)",
        f"  raw MlflowClient calls, default server (4 workers): create_run "
        f"{ms(dflt['calls']['create_run_s']['median'])}, log_batch({dflt['calls']['batch']}) "
        f"{ms(dflt['calls']['log_batch_s']['median'])}; RSS {dflt['rss_mb']:.0f} MB "
        f"({dflt['processes']} processes)",
        f"single run (python -m nnlab.run without -m; run_trial, {single['runs']} runs x "
        f"{single['epochs']} epochs): median {ms(single['total_median_s'])} = "
        + " + ".join(f"{k} {1000 * v:.1f}" for k, v in single["phase_median_s"].items())
        + f" (sqlite journal: {single['journal_mode']})",
    ]


if __name__ == "__main__":  # python -m benchmarks.tracking_cost raw-calls <uri>
    if sys.argv[1:2] != ["raw-calls"] or len(sys.argv) != 3:
        sys.exit("usage: python -m benchmarks.tracking_cost raw-calls <tracking server uri>")
    print(json.dumps(raw_calls(sys.argv[2])))
