"""Sweeps on a real SLURM cluster through Hydra's submitit launcher, tracked on a real MLflow server.

The cluster is ``scripts/local-slurm.sh``'s one node on loopback (2 CPUs, no accounting) and the
server ``scripts/mlflow-server.sh`` on a free 127.0.0.1 port with its store in a temp dir; both
are started here if they are not running, and stopped again by whoever started them. Every test
is slow and skips, saying why, only where the SLURM/munge packages or the ``cluster`` extra are
not installed (``scripts/local-slurm.sh install``, ``pip install -e ".[cluster]"``).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLURM = ROOT / "scripts" / "local-slurm.sh"
SERVER = ROOT / "scripts" / "mlflow-server.sh"
TINY = ["data.n_samples=200", "model.hidden=[8]"]
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_time")

pytestmark = pytest.mark.slow


def _missing_extra() -> str | None:
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        return 'the submitit launcher is not installed: pip install -e ".[cluster]"'
    return None


def _missing_slurm() -> str | None:
    tools = [
        t for t in ("slurmctld", "slurmd", "sbatch", "scancel", "munged") if not shutil.which(t)
    ]
    if tools:
        return (
            f"SLURM/munge are not installed ({', '.join(tools)} missing): "
            "scripts/local-slurm.sh install"
        )
    return _missing_extra()


@pytest.fixture(scope="module")
def slurm() -> dict[str, str]:
    """The local cluster's environment (``SLURM_CONF``); started here unless it already runs."""
    reason = _missing_slurm()
    if reason:
        pytest.skip(reason)
    started = subprocess.run([SLURM, "status"], capture_output=True).returncode != 0
    if started:
        subprocess.run([SLURM, "start"], check=True, capture_output=True, timeout=120)
    conf = subprocess.run([SLURM, "env"], check=True, capture_output=True, text=True).stdout
    env = {"SLURM_CONF": conf.strip().split("=", 1)[1]}
    yield env
    if started:
        subprocess.run([SLURM, "stop"], capture_output=True, timeout=120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """A fresh MLflow server (its own store and artifacts) on a free loopback port."""
    reason = _missing_extra()
    if reason:
        pytest.skip(reason)
    env = {
        **os.environ,
        "NNLAB_SERVICES": str(tmp_path_factory.mktemp("services")),
        "MLFLOW_PORT": str(_free_port()),
        "PYTHON": sys.executable,
    }
    subprocess.run([SERVER, "start"], check=True, capture_output=True, env=env, timeout=120)
    yield f"http://127.0.0.1:{env['MLFLOW_PORT']}"
    subprocess.run([SERVER, "stop"], capture_output=True, env=env, timeout=60)


def _env(slurm: dict[str, str]) -> dict[str, str]:
    keep = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HYDRA_", "NNLAB_"))
    }
    return {**keep, **slurm}


def start(cwd: Path, slurm: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nnlab.run", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(slurm),
    )


def run(cwd: Path, slurm: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nnlab.run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(slurm),
    )


def squeue(slurm: dict[str, str], name: str) -> list[str]:
    """``<job>_<task>`` ids of ``name``'s jobs still in the queue (pending, running, completing)."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "-n", name, "-o", "%i"],
        capture_output=True,
        text=True,
        env=_env(slurm),
        check=True,
    ).stdout
    return out.split()


def wait_until_gone(slurm: dict[str, str], name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while squeue(slurm, name):
        assert time.monotonic() < deadline, f"{name}'s jobs still queued: {squeue(slurm, name)}"
        time.sleep(0.5)


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def runs(uri: str, experiment: str, role: str) -> list:
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    return list(c.search_runs([exp.experiment_id], f"tags.`nnlab.role` = '{role}'"))


def steps(uri: str, run_id: str, metric: str) -> list[int]:
    return sorted(m.step for m in client(uri).get_metric_history(run_id, metric))


def history(uri: str, run_id: str, dst: Path) -> list[dict]:
    """The run's history.csv artifact, fetched from the server, without the timing column."""
    path = client(uri).download_artifacts(run_id, "history.csv", str(dst))
    with open(path) as fh:
        return [{k: v for k, v in r.items() if k != "epoch_time"} for r in csv.DictReader(fh)]


def trial_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("[")]


def common(uri: str, experiment: str) -> list[str]:
    return [
        "-m",
        "hydra/launcher=slurm",
        "tracking=server",
        f"tracking.uri={uri}",
        f"experiment_name={experiment}",
        f"hydra.launcher.name={experiment}",  # the SLURM job name: squeue finds this test's jobs
        *TINY,
    ]


def test_sweep_of_12_trials_through_slurm_tracked_on_the_server(tmp_path, slurm, server) -> None:
    proc = start(
        tmp_path, slurm, *common(server, "c12"),
        "lr=0.1,0.03,0.01", "batch_size=16,64", "seed=0,1", "epochs=3",
    )  # fmt: skip
    arrived = {}  # line -> when it arrived: the trial lines come while the jobs run
    for line in proc.stdout:
        arrived[line.rstrip("\n")] = time.monotonic()
    stdout = "\n".join(arrived)
    out = stdout + proc.stderr.read()
    assert proc.wait(timeout=60) == 0, out
    lines = trial_lines(stdout)
    assert len(lines) == 12 and all(" completed " in line for line in lines), out
    assert sorted(int(line[1 : line.index("/")]) for line in lines) == list(range(1, 13))
    assert "12 trials in" in stdout and "completed       12" in stdout
    (summary,) = [x for x in arrived if x.startswith("nnlab sweep") and "12 trials in" in x]
    assert arrived[summary] - min(arrived[line] for line in lines) > 2.0  # not all at the end
    assert "sacct" not in out and "Bypassing" not in out and "View run" not in out
    # the relative default sweep dir was made absolute from the launch directory and printed
    (sweep_dir,) = [p for p in (tmp_path / "multirun").glob("*/*") if p.name[0].isdigit()]
    assert "SLURM: 12 trials in " in stdout  # chunks of trials, one Python process per task
    assert f"outputs: {sweep_dir}" in stdout
    assert f"shared with the nodes: checkpoints {tmp_path / '.nnlab/checkpoints'}" in stdout
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()

    (parent,) = runs(server, "c12", "sweep")
    trials = runs(server, "c12", "trial")
    assert parent.info.status == "FINISHED" and len(trials) == 12
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}
    assert {t.info.status for t in trials} == {"FINISHED"}
    for t in trials:  # every artifact went through the server's proxied artifact store
        assert t.info.artifact_uri.startswith("mlflow-artifacts:"), t.info.artifact_uri
        names = {a.path for a in client(server).list_artifacts(t.info.run_id)}
        assert {"config.yaml", "overrides.yaml", "history.csv", "model.npz"} <= names, names
        assert steps(server, t.info.run_id, "val_loss") == [1, 2, 3]
    summary = client(server).download_artifacts(parent.info.run_id, "summary.txt", str(tmp_path))
    assert "completed       12" in Path(summary).read_text()
    jobs = [json.loads(p.read_text()) for p in sweep_dir.glob("*/run.json")]
    assert len(jobs) == 12 and {j["blas_threads"] for j in jobs} == {1}


def _reference(tmp_path: Path, slurm, server: str, args: list[str]) -> list[dict]:
    """The history of an uninterrupted run of the same trial, through the same launcher."""
    ref = tmp_path / "reference"
    ref.mkdir()
    proc = run(ref, slurm, *common(server, "reference"), *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (trial,) = runs(server, "reference", "trial")
    return history(server, trial.info.run_id, ref)


def live_run(server: str, experiment: str, job: int, epochs: int, proc: subprocess.Popen) -> str:
    """Wait until the launcher has filed trial ``job``'s run RUNNING with ``epochs`` val_loss
    steps (its task is training it); return the run id."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            for t in runs(server, experiment, "trial"):
                live = t.info.status == "RUNNING" and t.data.tags.get("nnlab.job") == str(job)
                if live and len(steps(server, t.info.run_id, "val_loss")) >= epochs:
                    return t.info.run_id
        except Exception:  # no experiment yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"trial {job} was not filed live")


def test_scancel_marks_the_trial_killed_and_the_same_command_resumes_it(
    tmp_path, slurm, server
) -> None:
    trial = ["lr=0.1", "batch_size=16", "epochs=10", "seed=3"]
    want = _reference(tmp_path, slurm, server, trial)
    cwd = tmp_path / "sweep"
    cwd.mkdir()
    args = [
        *common(server, "cancel"),
        *trial[1:],
        "lr=0.1,0.01",
        "debug.epoch_delay=0.4",
        "trainer.checkpoint.interval=0",  # a checkpoint every epoch: the cancel lands mid-trial
        "hydra.launcher.trials_per_task=1",
    ]
    proc = start(cwd, slurm, *args)
    try:  # job 0 is the trial of the reference (lr=0.1), alone in array task 0
        run_id = live_run(server, "cancel", 0, 2, proc)
        (task,) = [j for j in squeue(slurm, "cancel") if j.endswith("_0")]
        subprocess.run(["scancel", task], check=True, env=_env(slurm))
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out + err
    assert "killed           1" in out and "completed        1" in out, out + err
    assert len(trial_lines(out)) == 2
    killed = client(server).get_run(run_id)
    assert killed.info.status == "KILLED" and killed.data.tags["nnlab.outcome"] == "killed"
    (parent,) = runs(server, "cancel", "sweep")
    assert parent.info.status == "KILLED"  # the sweep is not complete: the same command resumes
    (ckpt,) = (cwd / ".nnlab/checkpoints/cancel").glob("*.npz")

    again = run(cwd, slurm, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "(resumed: same sweep as an interrupted one)" in again.stdout
    outcomes = sorted(line.split()[1] for line in trial_lines(again.stdout))
    assert outcomes == ["completed", "skipped"], again.stdout
    done = client(server).get_run(run_id)  # the same run, resumed from its checkpoint
    assert done.info.status == "FINISHED" and done.data.tags["nnlab.outcome"] == "completed"
    assert int(done.data.tags["nnlab.resumed_from_epoch"]) >= 2
    for metric in METRICS:
        assert steps(server, run_id, metric) == list(range(1, 11)), metric
    assert history(server, run_id, cwd) == want  # every digit, as if never interrupted
    assert not ckpt.exists()
    (parent_after,) = runs(server, "cancel", "sweep")
    assert parent_after.info.run_id == parent.info.run_id
    assert parent_after.info.status == "FINISHED"


def test_launcher_sigterm_leaves_nothing_running_and_resumes_under_the_same_parent(
    tmp_path, slurm, server
) -> None:
    args = [
        *common(server, "term"),
        "lr=0.1,0.03,0.01",
        "epochs=12",
        "debug.epoch_delay=0.5",
        "trainer.checkpoint.interval=0",
    ]
    proc = start(tmp_path, slurm, *args)
    try:
        live_run(server, "term", 0, 1, proc)
        proc.send_signal(signal.SIGTERM)  # what SLURM does to a launcher at its time limit
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "cancelled the sweep's SLURM tasks" in out, out + err
    (parent,) = runs(server, "term", "sweep")
    assert parent.info.status == "KILLED"
    wait_until_gone(slurm, "term")  # cancelled with their launcher: nobody trains unfiled
    trials = runs(server, "term", "trial")
    assert {t.info.status for t in trials} <= {"FINISHED", "KILLED"}
    assert "RUNNING" not in {r.info.status for r in runs(server, "term", "sweep") + trials}

    again = run(tmp_path, slurm, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "(resumed: same sweep as an interrupted one)" in again.stdout
    (parent_after,) = runs(server, "term", "sweep")
    assert parent_after.info.run_id == parent.info.run_id
    assert parent_after.info.status == "FINISHED"
    trials = runs(server, "term", "trial")
    assert len(trials) == 3 and {t.info.status for t in trials} == {"FINISHED"}
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}
    for t in trials:
        assert steps(server, t.info.run_id, "loss") == list(range(1, 13))


def test_submitit_local_prints_the_same_lines_and_tracks_on_the_server(tmp_path, server) -> None:
    args = ["-m", "hydra/launcher=submitit_local", "tracking=server", f"tracking.uri={server}"]
    proc = run(tmp_path, {}, *args, "experiment_name=local", "lr=0.1,0.01", "epochs=2", *TINY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(line.split()[0] for line in trial_lines(proc.stdout)) == ["[1/2]", "[2/2]"]
    assert "completed        2" in proc.stdout
    (parent,) = runs(server, "local", "sweep")
    trials = runs(server, "local", "trial")
    assert {r.info.status for r in [parent, *trials]} == {"FINISHED"} and len(trials) == 2
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}


def test_the_tasks_never_talk_to_mlflow_so_a_plain_path_artifact_root_works(
    tmp_path, slurm
) -> None:
    """The run writer of the launching process files every trial: a server that keeps
    artifacts on a plain path of this machine (no proxy) works, and no task has MLflow's
    address or imports it."""
    import urllib.request

    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'm.db'}",
            "--no-serve-artifacts", "--default-artifact-root", str(tmp_path / "artifacts"),
        ],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.5)
        proc = run(tmp_path, slurm, *common(uri, "plain"), "lr=0.1,0.01", "epochs=2")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        trials = runs(uri, "plain", "trial")
        assert len(trials) == 2 and {t.info.status for t in trials} == {"FINISHED"}
        for t in trials:
            stored = tmp_path / "artifacts" / t.info.experiment_id / t.info.run_id / "artifacts"
            assert (stored / "history.csv").is_file() and (stored / "model" / "MLmodel").is_file()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    logs = "".join(p.read_text() for p in tmp_path.glob("multirun/*/*/.submitit/*/*_log.out"))
    assert logs and "mlflow" not in logs.lower()  # the tasks printed their trials, no MLflow


def test_a_slurm_that_does_not_answer_is_refused_before_anything_is_tracked(
    tmp_path, slurm, server
) -> None:
    conf = Path(slurm["SLURM_CONF"]).read_text()
    bad = tmp_path / "slurm.conf"  # the same cluster, but a controller port nothing listens on
    bad.write_text(re.sub(r"SlurmctldPort=\d+", f"SlurmctldPort={_free_port()}", conf))
    proc = run(tmp_path, {"SLURM_CONF": str(bad)}, *common(server, "nocluster"), "lr=0.1,0.01")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.splitlines()
    assert "SLURM does not answer (sinfo:" in line and "local-slurm.sh" in line, line
    assert client(server).get_experiment_by_name("nocluster") is None  # no experiment, no run
    assert not list(tmp_path.glob("multirun/*/*/.submitit"))


def test_a_job_cancelled_before_it_started_is_named_not_waited_for_silently(
    tmp_path, slurm, server
) -> None:
    """No accounting: submitit cannot tell a job that left the queue without a result from a
    pending one; the launcher names it and the way out (Ctrl-C, the same command)."""
    args = [*common(server, "lost"), "lr=0.1,0.03,0.01", "epochs=10", "debug.epoch_delay=0.5",
            "hydra.launcher.trials_per_task=1"]  # fmt: skip
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nnlab.run", *args],
            cwd=tmp_path, stdout=out, stderr=err, text=True, env=_env(slurm),
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not [j for j in squeue(slurm, "lost") if j.endswith("_2")]:  # 2 CPUs: it waits
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        (task,) = [j for j in squeue(slurm, "lost") if j.endswith("_2")]
        subprocess.run(["scancel", task], check=True, env=_env(slurm))
        while f"SLURM job {task} left the queue" not in (tmp_path / "err").read_text():
            assert time.monotonic() < deadline and proc.poll() is None, (
                tmp_path / "err"
            ).read_text()
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # the way out it names
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (tmp_path / "err").read_text()
    assert "Ctrl-C, then run the same command" in err and "Traceback" not in err, err
    wait_until_gone(slurm, "lost")
    statuses = {
        r.info.status for r in runs(server, "lost", "sweep") + runs(server, "lost", "trial")
    }
    assert "RUNNING" not in statuses


# --- the scripts listen on loopback only (issue 25, defect 15) --------------------------------

SERVICES = ("slurmctld", "slurmd", "slurmstepd", "srun", "munged")


def listeners() -> list[tuple[str, int, dict[int, str]]]:
    """Every listening TCP/UDP socket: (local address, port, {pid: process name})."""
    out = subprocess.run(["ss", "-Hltunp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        address, port = fields[4].rsplit(":", 1)
        procs = {int(p): n for n, p in re.findall(r'\("([^"]+)",pid=(\d+)', line)}
        found.append((address.strip("[]"), int(port), procs))
    return found


def ours(procs: dict[int, str]) -> bool:
    """A socket of the cluster (SLURM, munge) or of an MLflow server."""
    for pid, name in procs.items():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            command = b""
        if name in SERVICES or b"mlflow" in command:
            return True
    return False


def test_the_cluster_and_the_server_listen_on_loopback_only(tmp_path, slurm, server) -> None:
    """Was: slurmctld on 0.0.0.0:6817 and slurmd on 0.0.0.0:6818. Checked while jobs run, so
    the sruns of submitit's jobs (which listen for their tasks' I/O) are looked at too."""
    args = [*common(server, "loopback"), "lr=0.1,0.01", "epochs=6", "debug.epoch_delay=0.5"]
    proc = start(tmp_path, slurm, *args)
    seen: dict[tuple[str, int], set[str]] = {}
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            for address, port, procs in listeners():
                if ours(procs):
                    seen.setdefault((address, port), set()).update(procs.values())
            time.sleep(0.3)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    assert [line.split()[1] for line in trial_lines(out)] == ["completed"] * 2, out
    names = set().union(*seen.values())
    assert {"slurmctld", "slurmd", "srun"} <= names, seen  # the jobs' sruns were seen
    wide = {where: who for where, who in seen.items() if where[0] not in ("127.0.0.1", "::1")}
    assert not wide, f"listening beyond loopback: {wide}"
    conf = Path(slurm["SLURM_CONF"]).read_text()
    ports = {int(p) for p in re.findall(r"^Slurm(?:ctld|d)Port=(\d+)$", conf, re.M)}
    assert len(ports) == 2 and not ports & {6817, 6818}, ports  # picked free, not SLURM's fixed
    assert int(server.rsplit(":", 1)[1]) in {port for _, port in seen}
