"""Bad input is refused clearly, through the real CLI; nothing is unpickled or instantiated.

Every case of the table runs ``python -m nnlab.run`` in its own temp launch dir (in parallel
threads: each case is a fresh Python process, ~1 s) and must end with a non-zero exit, exactly one
line on stderr naming the problem, no traceback, and no MLflow run left RUNNING.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import QUIET, ROOT, cli, compose, env, timed_cli


def write(name: str, text: str):
    return lambda d: (d / name).write_text(text)


def corrupt_checkpoint(d: Path) -> None:
    """Garbage where this config's checkpoint lives (the path comes from its config hash)."""
    from nnlab.checkpoint import checkpoint_path
    from nnlab.config import validate
    from nnlab.tracking import config_hash

    plain = validate(compose("epochs=2"))
    path = checkpoint_path(d, ".nnlab/checkpoints", "nnlab", config_hash(plain))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 this is not a checkpoint")


def foreign_checkpoint(d: Path) -> None:
    """A valid checkpoint, but of another network, where this config's checkpoint lives."""
    from nnlab.checkpoint import Checkpointer, checkpoint_path
    from nnlab.config import validate
    from nnlab.tracking import config_hash
    from nnlab.train import train

    plain = validate(compose("epochs=3"))
    other = compose("epochs=1", "model.hidden=[4]", QUIET)
    digest = config_hash(plain)
    states = []
    train(other, on_checkpoint=states.append)
    ckpt = Checkpointer(checkpoint_path(d, ".nnlab/checkpoints", "nnlab", digest))
    ckpt.save(states[0], {"config_hash": digest})


THREE = "a,b,label\n" + "".join(f"{i},{i % 5},{i % 3}\n" for i in range(30))
CSV = ["data=csv", "data.target=label"]
OVERFLOW = "a,b,label\n" + "".join(f"{i},{1e300 if i == 3 else i},{i % 2}\n" for i in range(10))
YES_NO = "a,label\n" + "".join(f"{i},{'yes' if i % 2 else 'no'}\n" for i in range(8))

# id -> (arguments, set-up of the launch dir or None, text the one stderr line must contain)
CASES: dict[str, tuple[list[str], object, str]] = {
    "lr=0": (["lr=0"], None, "lr=0: must be a number > 0"),
    "lr=-1": (["lr=-1"], None, "lr=-1: must be a number > 0"),
    "lr=abc": (["lr=abc"], None, "lr='abc': must be a number > 0"),
    "batch_size=0": (["batch_size=0"], None, "batch_size=0: must be an integer >= 1"),
    "epochs=-1": (["epochs=-1"], None, "epochs=-1: must be an integer >= 1"),
    "seed=-1": (["seed=-1"], None, "seed=-1: must be an integer >= 0"),
    "optimizer group": (["optimizer=nope"], None, "Could not find 'optimizer/nope'"),
    "optimizer name": (["optimizer.name=nope"], None, "optimizer.name='nope': must be one of"),
    "activation": (["model.activation=nope"], None, "model.activation='nope': must be one of"),
    "dataset group": (["data=nope"], None, "Could not find 'data/nope'"),
    "dataset name": (["data.name=nope"], None, "data.name='nope': must be one of"),
    "empty hidden list": (["model.hidden=[]"], None, "model.hidden=[]: must be a non-empty"),
    "zero-width layer": (["model.hidden=[0]"], None, "model.hidden=[0]: must be a non-empty"),
    "unknown key": (["foo=1"], None, "Could not override 'foo'"),
    # added with +: Hydra takes any key, nnlab's schema does not (issue 25, defect 8)
    "+learning_rate": (["+learning_rate=0.1"], None, "learning_rate=0.1: not a key nnlab knows"),
    "+early_stoping": (
        ["+trainer.early_stoping.enabled=true"],
        None,
        "did you mean trainer.early_stopping.enabled?",
    ),
    "+model.hiden": (["+model.hiden=[4]"], None, "did you mean model.hidden?"),
    "+schedule.decay": (["+schedule.decay=0.5"], None, "did you mean schedule.decay_rate"),
    "+foo": (["+foo=1"], None, "foo=1: not a key nnlab knows"),
    "csv path missing": (["data=csv", "data.target=label"], None, "data.path is required"),
    "csv not found": ([*CSV, "data.path=missing.csv"], None, "missing.csv: file not found"),
    "csv empty": ([*CSV, "data.path=e.csv"], write("e.csv", ""), "e.csv: file is empty"),
    "csv non-numeric": (
        [*CSV, "data.path=t.csv"],
        write("t.csv", "a,b,label\n1,x,0\n2,3,1\n"),
        "'x' is not a number",
    ),
    "csv NaN": (
        [*CSV, "data.path=n.csv"],
        write("n.csv", "a,b,label\n1,nan,0\n2,3,1\n"),
        "'nan' is not a finite number",
    ),
    "csv 1e300": (  # issue 25, defect 10: was zeroed by standardisation
        [*CSV, "data.path=o.csv"],
        write("o.csv", OVERFLOW),
        "o.csv: line 5, column 'b' (#1): '1e+300' overflows float32",
    ),
    "csv 1e300 sweep unstandardized": (  # every trial failed instead of being refused up front
        ["-m", "lr=0.1,0.01", "data.standardize=false", "epochs=1", *CSV, "data.path=o.csv"],
        write("o.csv", OVERFLOW),
        "o.csv: line 5, column 'b' (#1): '1e+300' overflows float32",
    ),
    "csv text target": (  # issue 26: the hint named dropping the column
        [*CSV, "data.path=y.csv"],
        write("y.csv", YES_NO),
        "map its 2 text labels to 0..1 in the file first, e.g. with pandas: "
        "df['label'] = df['label'].map({'no': 0, 'yes': 1})",
    ),
    "non-binary target for BCE": (
        [*CSV, "data.path=k.csv", "model.loss=binary_crossentropy"],
        write("k.csv", THREE),
        "has 3 classes (0, 1, 2) but the loss needs binary 0/1 labels",
    ),
    "fractional target": (
        [*CSV, "data.path=f.csv"],
        write("f.csv", "a,label\n1,0\n2,0.5\n3,1\n"),
        "'0.5' is not a class label",
    ),
    "val_fraction=0": (["data.val_fraction=0"], None, "val_fraction must be a number strictly"),
    "val_fraction=1.5": (["data.val_fraction=1.5"], None, "val_fraction must be a number strictly"),
    "unreachable server": (
        ["tracking=server", "tracking.uri=http://127.0.0.1:9"],
        None,
        "no MLflow server answers at 127.0.0.1:9",
    ),
    "sqlite dir missing": (
        ["tracking.uri=sqlite:///nodir/mlflow.db"],
        None,
        "cannot be a sqlite file",
    ),
    "unwritable artifacts": (
        ["tracking.artifacts=blocker/mlruns"],
        write("blocker", "a file where a directory must go"),
        "tracking.artifacts='blocker/mlruns': cannot write to",
    ),
    "unwritable checkpoints": (
        ["trainer.checkpoint.dir=blocker/ckpt", "tracking=none"],
        write("blocker", "a file where a directory must go"),
        "trainer.checkpoint.dir='blocker/ckpt': cannot write checkpoints there",
    ),
    "corrupted checkpoint": (
        ["epochs=2"],
        corrupt_checkpoint,
        "is unreadable",
    ),
    "checkpoint of another model": (
        ["epochs=3", "tracking=none"],
        foreign_checkpoint,
        "does not fit this config's model",
    ),
    "_target_ injection": (
        ["+model._target_=os.system"],
        None,
        "model._target_='os.system': nnlab never instantiates",
    ),
    "bad sweep value": (["-m", "lr=0.1,0", "epochs=2"], None, "trial `lr=0 epochs=2`: lr=0:"),
}


def _prepare(case: str, root: Path) -> Path:
    cwd = root / re.sub(r"\W+", "_", case)
    cwd.mkdir()
    setup = CASES[case][1]
    if setup is not None:
        setup(cwd)
    return cwd


def _run(case: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float, Path]:
    proc, seconds = timed_cli(cwd, *CASES[case][0], timeout=120)
    return proc, seconds, cwd


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    """Every case once: set-ups in turn (Hydra's compose API is not thread-safe), then the
    subprocesses three at a time."""
    root = tmp_path_factory.mktemp("bad")
    dirs = {case: _prepare(case, root) for case in CASES}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {case: pool.submit(_run, case, dirs[case]) for case in CASES}
        return {case: f.result() for case, f in futures.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line(case: str, outcomes) -> None:
    proc, seconds, cwd = outcomes[case]
    expected = CASES[case][2]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nnlab: invalid "), lines[0]
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr
    assert seconds < 20  # no long hang (the unreachable server fails in about a second)
    db = cwd / "mlflow.db"
    if db.exists():  # no run left RUNNING (read with sqlite: no mlflow needed)
        with sqlite3.connect(db) as con:
            assert con.execute("SELECT COUNT(*) FROM runs WHERE status='RUNNING'").fetchone() == (
                0,
            )


def test_corrupted_checkpoint_message_names_file_and_fix(outcomes) -> None:
    line = outcomes["corrupted checkpoint"][0].stderr.strip()
    assert re.search(
        r"checkpoint \S+/\.nnlab/checkpoints/nnlab/[0-9a-f]{16}\.npz is unreadable", line
    )
    assert "delete that file" in line and "trainer.checkpoint.resume=false" in line


def test_full_error_shows_the_traceback(tmp_path: Path) -> None:
    proc = cli(tmp_path, "optimizer=nope", timeout=120, environ=env(HYDRA_FULL_ERROR="1"))
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "Could not find 'optimizer/nope'" in proc.stderr


def test_a_failing_run_is_one_line_too(tmp_path: Path) -> None:
    proc = cli(
        tmp_path, "epochs=3", "debug.fail_at_epoch=2", "tracking=none", "hydra.run.dir=job",
        "data.n_samples=200", timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "nnlab: run failed: FailAtEpoch: debug.fail_at_epoch=2: raising on purpose (the "
        "traceback is in the job's artifacts/traceback.txt; HYDRA_FULL_ERROR=1 prints it)"
    ]
    assert "Traceback" in (tmp_path / "job/artifacts/traceback.txt").read_text()


# --- security basics --------------------------------------------------------------------------

SOURCES = sorted((ROOT / "nnlab").rglob("*.py"))


def test_nothing_is_ever_unpickled() -> None:
    assert SOURCES
    for path in SOURCES:
        text = path.read_text()
        assert not re.search(
            r"^\s*(import|from)\s+(c?pickle|joblib|dill|cloudpickle)\b", text, re.M
        ), path
        assert "allow_pickle=True" not in text, path
        assert "pickle.load" not in text and "torch.load" not in text, path
        for call in re.finditer(r"np\.load\(([^)]*)\)", text):
            assert "allow_pickle=False" in call.group(1), f"{path}: {call.group(0)}"


def test_config_never_names_python_callables() -> None:
    for path in SOURCES:
        text = path.read_text()
        assert "instantiate(" not in text, path  # hydra.utils.instantiate: never on user config
        assert not re.search(r"\b(eval|exec)\(", text), path
    # the only _target_ in conf/ are Hydra's own plugins (launcher, callback), not nnlab values
    targets = [
        (p.relative_to(ROOT / "conf").as_posix(), line.strip())
        for p in (ROOT / "conf").rglob("*.yaml")
        for line in p.read_text().splitlines()
        if "_target_" in line
    ]
    # nnlab's own Hydra callbacks, by name (an experiment may add one under hydra.callbacks)
    callbacks = ("nnlab.tracking.SweepCallback", "nnlab.lr_find_sweep.GridFinders")
    for where, line in targets:
        callback = any(line == f"_target_: {c}" for c in callbacks)
        assert where.startswith("hydra/") or where == "config.yaml" or callback, (where, line)
        assert "hydra_plugins." in line or callback, line


def test_checkpoint_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    import numpy as np

    from nnlab.checkpoint import Checkpointer, CheckpointError

    path = tmp_path / "x.npz"
    np.savez(path, meta=np.array([{"evil": object()}], dtype=object))  # needs pickle to load
    with pytest.raises(CheckpointError, match=r"x\.npz is unreadable.*delete that file"):
        Checkpointer(path).load()
