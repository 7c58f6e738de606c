"""``trainer.noise_scale=true`` end to end: the per-epoch ``noise_scale`` reaches history.csv and
MLflow through the normal paths (a single run's sink, a parallel sweep's writer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import QUIET, TINY, cli, client, history_rows, runs, steps


@pytest.mark.slow
@pytest.mark.parametrize("sweep", [False, True], ids=["single", "parallel-sweep"])
def test_noise_scale_is_a_per_epoch_metric_in_mlflow(launch_dir: Path, sweep: bool) -> None:
    args = [*TINY, QUIET, "trainer.noise_scale=true", "epochs=3", "experiment_name=ns"]
    if sweep:
        args = ["-m", *args, "hydra/launcher=parallel", "lr=0.1,0.01"]
    proc = cli(launch_dir, *args)
    assert proc.returncode == 0, proc.stderr
    trials = runs(launch_dir, "ns", "trial")
    assert len(trials) == (2 if sweep else 1)
    for run in trials:
        assert steps(launch_dir, run.info.run_id, "noise_scale") == [1, 2, 3]
        values = client(launch_dir).get_metric_history(run.info.run_id, "noise_scale")
        assert all(m.value > 0 for m in values)
        assert run.data.params["trainer.noise_scale"] == "True"
    root = "multirun" if sweep else "outputs"
    jobs = sorted(launch_dir.glob(f"{root}/**/artifacts/history.csv"))
    assert len(jobs) == len(trials)
    for path in jobs:
        rows = history_rows(path)
        assert [float(r["noise_scale"]) > 0 for r in rows] == [True] * 3
