"""nnlab.tracking.sweep: recognising the same sweep again, its launcher, its summary."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

from helpers import env

from nnlab.tracking import sweep


def _config(*task: str) -> SimpleNamespace:
    """The part of a Hydra config ``sweep_signature`` reads: the command line's overrides."""
    return SimpleNamespace(hydra=SimpleNamespace(overrides=SimpleNamespace(task=list(task))))


def test_sweep_signature_names_the_trials_and_the_experiment() -> None:
    jobs = [["lr=0.1"], ["lr=0.01"]]
    signature = sweep.sweep_signature("e", jobs, _config("lr=0.1,0.01"))
    assert len(signature) == 16 and int(signature, 16) >= 0  # 16 hex digits
    # a grid sweep is its jobs: how the command line spelled them does not matter
    assert (
        sweep.sweep_signature("e", [["lr=0.1"], ["lr=0.01"]], _config("lr=0.01,0.1")) == signature
    )
    assert sweep.sweep_signature("f", jobs, _config("lr=0.1,0.01")) != signature
    assert sweep.sweep_signature("e", jobs[:1], _config("lr=0.1,0.01")) != signature
    # another sweeper (jobs unknown in advance): the command line's overrides are the sweep
    other = sweep.sweep_signature("e", [], _config("lr=0.1"))
    assert other == sweep.sweep_signature("e", [["lr=0.1"]], _config())
    assert other != sweep.sweep_signature("e", [], _config("lr=0.2"))


def test_sweep_signature_is_the_same_in_another_process() -> None:
    # the same command run again (another process, another str hash seed) must find its sweep
    code = (
        "from types import SimpleNamespace as N\n"
        "from nnlab.tracking.sweep import sweep_signature\n"
        "cfg = N(hydra=N(overrides=N(task=['lr=0.1,0.01'])))\n"
        "print(sweep_signature('e', [['lr=0.1'], ['lr=0.01']], cfg))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(PYTHONHASHSEED="1"),
        check=True,
    ).stdout
    assert out.strip() == sweep.sweep_signature("e", [["lr=0.1"], ["lr=0.01"]], _config("x"))


def test_dead_launchers_are_recognised() -> None:
    me = sweep._launcher_tag()
    assert not sweep._launcher_gone(me)  # this process is alive
    host = me.rpartition(":")[0]
    assert sweep._launcher_gone(f"{host}:{2**22 + 12345}")  # above Linux's pid_max: no process
    assert not sweep._launcher_gone("another-host:1")  # cannot tell: assume alive
    assert not sweep._launcher_gone(None)
