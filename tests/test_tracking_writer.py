"""The sweep writer (nnlab.tracking.writer): a parallel sweep's trials reach MLflow through one
thread of the launching process, and the runs it files read back as a serial sweep's do.

Real parts: the CLI in subprocesses (joblib workers), real sqlite stores, an import hook in the
processes' own ``sitecustomize`` to see which of them import MLflow.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import pytest
from helpers import (
    TINY,
    cli,
    client,
    env,
    rerun_resumes_parent,
    running,
    runs,
    steps,
    wait_for_epoch,
    wait_for_logged,
    wait_until,
)

from nnlab.tracking.writer import insert_new_run

PARALLEL = ("hydra/launcher=parallel",)

# a sitecustomize for the sweep's processes: each process that imports mlflow leaves a file
# named after its pid (loky workers are started by the launcher with the same environment)
IMPORT_SPY = """
import os, sys
class _Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "mlflow":
            open(os.path.join({out!r}, str(os.getpid())), "w").close()
        return None
sys.meta_path.insert(0, _Spy())
"""


def _metrics_and_params():
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    metrics = [Metric("loss", 1.0 / s, now + s, s) for s in range(1, 6)]
    metrics += [Metric("val_loss", v, now, s) for s, v in enumerate([0.5, math.nan, 0.2], 1)]
    metrics += [Metric("grad", v, now, s) for s, v in enumerate([math.inf, -math.inf, 3.0], 1)]
    metrics += [Metric("tie", 1.0, now, 7), Metric("tie", 2.0, now + 5, 7)]  # same step twice
    params = [Param(f"p{i}", str(i) * (i + 1)) for i in range(30)]
    return metrics, params


def test_bulk_insert_reads_back_like_log_batch(tracking_store) -> None:
    """A new run written by ``insert_new_run`` is, through MlflowClient, the run ``log_batch``
    would have written: params, every metric point, the latest values (NaN, +-inf, a tied
    step), tags, and search filters on metrics."""
    from mlflow.entities import RunTag

    _, uri, exp_id = tracking_store
    c = client(uri)
    store = c._tracking_client.store
    metrics, params = _metrics_and_params()
    tags = {"nnlab.outcome": "completed", "nnlab.stopped_epoch": "4"}
    by_api = c.create_run(exp_id, run_name="api").info.run_id
    c.log_batch(
        by_api, metrics=metrics, params=params, tags=[RunTag(k, v) for k, v in tags.items()]
    )
    c.set_terminated(by_api, "FINISHED")
    by_bulk = c.create_run(exp_id, run_name="bulk").info.run_id
    insert_new_run(store, by_bulk, params, metrics, tags, "FINISHED")

    a, b = c.get_run(by_api).data, c.get_run(by_bulk).data
    assert b.params == a.params and len(b.params) == 30
    assert {k: v for k, v in b.tags.items() if k != "mlflow.runName"} == {
        k: v for k, v in a.tags.items() if k != "mlflow.runName"
    }
    assert b.metrics.keys() == a.metrics.keys() == {"loss", "val_loss", "grad", "tie"}
    for key, value in a.metrics.items():  # the latest value of each key, NaN included
        assert str(b.metrics[key]) == str(value), key
    for key in a.metrics:
        history = [
            sorted((m.step, m.timestamp, str(m.value)) for m in c.get_metric_history(run, key))
            for run in (by_api, by_bulk)
        ]
        assert history[0] == history[1], key
    api, bulk = c.get_run(by_api).info, c.get_run(by_bulk).info
    assert (
        (bulk.status, bulk.lifecycle_stage)
        == (api.status, api.lifecycle_stage)
        == (
            "FINISHED",
            "active",
        )
    )
    assert bulk.start_time <= bulk.end_time <= int(time.time() * 1000)
    for query in ("metrics.loss < 0.25", "metrics.tie = 2.0", "metrics.grad > 2.5",
                  "attributes.status = 'FINISHED' and attributes.end_time > 0"):  # fmt: skip
        found = {r.info.run_id for r in c.search_runs([exp_id], query)} & {by_api, by_bulk}
        assert found == {by_api, by_bulk}, query


def _content(where: Path, experiment: str) -> dict[str, dict]:
    """What a sweep filed, per trial name: what must not depend on the launcher."""
    c = client(where)
    out = {}
    for run in runs(where, experiment, "trial"):
        rid = run.info.run_id
        model = json.loads(Path(c.download_artifacts(rid, "model/MLmodel")).read_text())
        out[run.info.run_name] = {
            "status": run.info.status,
            "tags": sorted(run.data.tags),
            "outcome": run.data.tags["nnlab.outcome"],
            "params": {k: v for k, v in run.data.params.items() if "launcher" not in k},
            "steps": {k: steps(where, rid, k) for k in run.data.metrics},
            "artifacts": sorted(a.path for a in c.list_artifacts(rid)),
            "inputs": sorted(
                (i.dataset.name, i.dataset.digest, i.tags[0].value)
                for i in run.inputs.dataset_inputs
            ),
            "model_names_its_run": model["run_id"] == rid,
            "parent_is_the_sweep": run.data.tags["mlflow.parentRunId"]
            == runs(where, experiment, "sweep")[0].info.run_id,
        }
    return out


def test_parallel_sweep_files_runs_as_a_serial_one_and_only_the_launcher_imports_mlflow(
    tmp_path: Path,
) -> None:
    spy = tmp_path / "spy"
    spy.mkdir()
    (spy / "sitecustomize.py").write_text(IMPORT_SPY.format(out=str(spy)))
    args = ("-m", "lr=0.1,0.01", "epochs=3", "experiment_name=same", *TINY)
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    serial.mkdir(), parallel.mkdir()  # no mlflow.db: the writer opens a new store itself
    one = cli(serial, *args)
    assert one.returncode == 0, one.stderr
    path = os.pathsep.join(filter(None, [str(spy), os.environ.get("PYTHONPATH")]))
    two = cli(parallel, *args, *PARALLEL, environ=env(PYTHONPATH=path))
    assert two.returncode == 0, two.stderr
    assert "in a new store" in two.stdout

    want, got = _content(serial, "same"), _content(parallel, "same")
    assert set(got) == {"lr=0.1", "lr=0.01"}
    assert got == want
    for trial in got.values():
        assert trial["outcome"] == "completed" and trial["status"] == "FINISHED"
        assert trial["model_names_its_run"] and trial["parent_is_the_sweep"]
        assert trial["steps"]["loss"] == [1, 2, 3]
    (parent,) = runs(parallel, "same", "sweep")
    launcher = int(parent.data.tags["nnlab.launcher"].split(":")[1])  # host:pid:start
    importers = {int(p.name) for p in spy.iterdir() if p.name.isdigit()}
    assert importers == {launcher}  # the workers never imported mlflow
    (record,) = [
        json.loads(p.read_text()) for p in parallel.glob("multirun/*/*/.nnlab/*/writer.json")
    ]
    assert record["trials"] == 2 and record["errors"] == 0 and len(record["per_trial_s"]) == 2

    again = cli(parallel, *args, *PARALLEL)  # the store read without MLflow: both skipped
    assert again.returncode == 0, again.stderr
    assert "in sqlite:///" in again.stdout and "skipped          2" in again.stdout
    assert len(runs(parallel, "same", "trial")) == 2
    (again_parent,) = runs(parallel, "same", "sweep")  # the finished parent, checked again
    assert again_parent.info.run_id == parent.info.run_id
    assert again_parent.info.status == "FINISHED" and "nnlab.rechecked" in again_parent.data.tags


def test_live_curves_reach_the_store_while_a_parallel_trial_trains(launch_dir: Path) -> None:
    args = ("-m", "lr=0.1", "epochs=30", "debug.epoch_delay=0.5", "experiment_name=live",
            *PARALLEL, *TINY)  # fmt: skip
    with running(launch_dir, *args) as proc:

        def live_run():
            try:
                trials = runs(launch_dir, "live", "trial")
            except Exception:  # the experiment is not there yet
                return None
            if trials and trials[0].info.status == "RUNNING":
                logged = steps(launch_dir, trials[0].info.run_id, "loss")
                return logged if len(logged) >= 3 else None
            return None

        logged = wait_until(live_run, proc, "a RUNNING trial with 3 epochs in MLflow", 120, 0.2)
        assert logged == list(range(1, len(logged) + 1)) and len(logged) < 30  # mid-training
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    (trial,) = runs(launch_dir, "live", "trial")
    assert trial.info.status == "FINISHED"
    assert steps(launch_dir, trial.info.run_id, "loss") == list(range(1, 31))


def kill_orphans(cwd: Path) -> None:
    """Stop the processes left working in ``cwd`` (a killed launcher's loky workers)."""
    import os

    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")) == cwd:
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:  # gone, or not ours to inspect
            pass


SLOW_SWEEP = ("-m", "lr=0.1,0.01", "epochs=40", "debug.epoch_delay=0.3", "experiment_name=par",
              "trainer.checkpoint.interval=0", *PARALLEL, *TINY)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "kill -9"])
def test_interrupted_parallel_sweep_resumes_into_the_same_runs(make_launch_dir, how: str) -> None:
    cwd = make_launch_dir("interrupted")
    with running(cwd, *SLOW_SWEEP) as proc:
        wait_for_epoch(cwd, "par", 3, proc)

        def both_live() -> bool:  # the writer opens the store while the trials start
            try:
                trials = runs(cwd, "par", "trial")
            except Exception:  # no experiment yet
                return False
            return len(trials) == 2 and all(steps(cwd, t.info.run_id, "loss") for t in trials)

        wait_until(both_live, proc, "both trials' runs with steps in MLflow", 120, 0.2)
        proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
        if how == "ctrl-c":
            _, err = proc.communicate(timeout=120)
        else:  # its orphaned loky workers keep the pipes open: do not wait for them
            proc.wait(timeout=60)
            err = ""
    before = {r.info.run_name: r for r in runs(cwd, "par", "trial")}
    (parent,) = runs(cwd, "par", "sweep")
    if how == "ctrl-c":
        assert proc.returncode == 130, err
        assert "2 running trials marked KILLED" in err
        assert parent.info.status == "KILLED"
        assert {r.info.status for r in before.values()} == {"KILLED"}
        for run in before.values():
            logged = steps(cwd, run.info.run_id, "loss")
            assert logged == list(range(1, len(logged) + 1)) and len(logged) < 40
        assert len(list((cwd / ".nnlab/checkpoints/par").glob("*.npz"))) == 2
    else:
        assert proc.returncode == -signal.SIGKILL
        time.sleep(5)  # the orphaned workers end their trials (and release their checkpoints)
        kill_orphans(cwd)  # loky's idle workers would linger for 5 minutes

    rerun_resumes_parent(cwd, SLOW_SWEEP, "par", parent)
    after = {r.info.run_name: r for r in runs(cwd, "par", "trial")}
    assert set(after) == {"lr=0.1", "lr=0.01"}
    for name, run in after.items():
        assert run.info.status == "FINISHED" and run.data.tags["nnlab.outcome"] == "completed"
        if name in before:  # the interrupted run was continued, not doubled
            assert run.info.run_id == before[name].info.run_id
        for metric in ("loss", "val_loss", "epoch_time"):
            assert steps(cwd, run.info.run_id, metric) == list(range(1, 41)), (name, metric)
    assert not list((cwd / ".nnlab/checkpoints/par").glob("*.npz"))  # uploaded: deleted


@pytest.mark.slow
def test_server_dies_mid_parallel_sweep_and_recover_completes_it(tmp_path: Path) -> None:
    from helpers import free_port, start_mlflow_server, stop_mlflow_server

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    srv = ("--backend-store-uri", "sqlite:///srv.db")
    server = start_mlflow_server(tmp_path, port, *srv)
    args = ("-m", "lr=0.1,0.01,0.001", "epochs=10", "debug.epoch_delay=0.4", "tracking=server",
            f"tracking.uri={uri}", "experiment_name=out", "trainer.checkpoint.interval=0",
            *PARALLEL, *TINY)  # fmt: skip
    try:
        with running(tmp_path, *args) as proc:
            wait_for_logged(tmp_path, "out", proc, "RUNNING", 3, store="srv.db")  # writer live
            stop_mlflow_server(server)
            out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err
        assert "MLflow error on" in err and "Retrying" not in err
        sweep_dir = next(tmp_path.glob("multirun/*/*"))
        assert f"python -m nnlab.recover {sweep_dir}" in out
        jobs = sorted(sweep_dir.glob("*/run.json"))
        assert len(jobs) == 3
        assert all(json.loads(j.read_text())["outcome"] == "completed" for j in jobs)
        assert any(json.loads(j.read_text())["tracked"] is False for j in jobs)

        server = start_mlflow_server(tmp_path, port, *srv)  # back, with what it had before
        rec = cli(tmp_path, str(sweep_dir), module="nnlab.recover")
        assert rec.returncode == 0, rec.stderr
        assert "closed parent run" in rec.stdout
        trials = runs(uri, "out", "trial")
        assert sorted(t.info.run_name for t in trials) == ["lr=0.001", "lr=0.01", "lr=0.1"]
        for t in trials:
            assert t.info.status == "FINISHED" and t.data.tags["nnlab.outcome"] == "completed"
            assert steps(uri, t.info.run_id, "loss") == list(range(1, 11)), t.info.run_name
        (parent,) = runs(uri, "out", "sweep")
        assert parent.info.status == "FINISHED"
    finally:
        stop_mlflow_server(server)
