"""The ``schedule`` config group through ``train()`` and the CLI: what rate each epoch used.

Every expected rate follows from the schedule's formula and the run's step count alone (never
from a loss trajectory), so these hold on any BLAS build.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import QUIET, TINY, cli, compose, runs

from nnlab.config import ConfigError
from nnlab.train import TrainState, train

N_TRAIN = 160  # data.n_samples=200, 20% validation
BATCH = 32  # 5 steps per epoch


def rates(*overrides: str, epochs: int = 6) -> list[float]:
    cfg = compose(*TINY, QUIET, "lr=0.1", f"batch_size={BATCH}", f"epochs={epochs}", *overrides)
    return train(cfg).history.get("learning_rate", [])


def f32(x: float) -> float:
    return float(np.float32(x))


def test_constant_logs_no_learning_rate_as_keras() -> None:
    assert rates() == []


def test_exponential_decays_by_decay_rate_per_epoch() -> None:
    got = rates("schedule=exponential", "schedule.decay_rate=0.5")
    assert got == pytest.approx([f32(0.1 * 0.5**e) for e in range(6)], rel=1e-6)
    stair = rates("schedule=exponential", "schedule.decay_rate=0.5",
                  "schedule.decay_epochs=2", "schedule.staircase=true")  # fmt: skip
    assert stair == pytest.approx([f32(0.1 * 0.5 ** (e // 2)) for e in range(6)], rel=1e-6)


def test_cosine_decays_over_the_run_after_its_warmup() -> None:
    steps = math.ceil(N_TRAIN / BATCH)
    got = rates("schedule=cosine")
    total = 6 * steps
    expected = [0.1 * (1 + math.cos(math.pi * e * steps / total)) / 2 for e in range(6)]
    assert got == pytest.approx([f32(v) for v in expected], rel=1e-6)
    warm = rates("schedule=cosine", "schedule.warmup_epochs=2")
    assert warm[0] == 0.0 and warm[1] == pytest.approx(f32(0.05), rel=1e-6)
    assert warm[2] == pytest.approx(f32(0.1), rel=1e-6)  # the peak is lr
    assert warm[3] < warm[2] and warm[5] < warm[4]


def test_plateau_halves_the_rate_when_the_monitor_stalls() -> None:
    # min_delta=100: after epoch 1 nothing counts as an improvement, so with patience 1 the
    # rate is cut at the end of every epoch from epoch 2 on (the log shows the epoch's own rate)
    got = rates("schedule=plateau", "schedule.monitor=loss", "schedule.patience=1",
                "schedule.min_delta=100", "schedule.factor=0.5")  # fmt: skip
    assert got == pytest.approx([f32(0.1 * 0.5 ** max(e - 1, 0)) for e in range(6)], rel=1e-6)
    floor = rates("schedule=plateau", "schedule.monitor=loss", "schedule.patience=1",
                  "schedule.min_delta=100", "schedule.factor=0.5", "schedule.min_lr=0.04")  # fmt: skip
    assert min(floor) == pytest.approx(0.04, rel=1e-6)


@pytest.mark.parametrize(
    "schedule",
    [
        ("schedule=cosine", "schedule.warmup_epochs=1"),
        ("schedule=plateau", "schedule.monitor=loss", "schedule.patience=1",
         "schedule.min_delta=100", "schedule.cooldown=2"),
    ],
)  # fmt: skip
def test_resume_mid_schedule_is_bit_identical(schedule: tuple[str, ...]) -> None:
    cfg = compose(*TINY, QUIET, "lr=0.1", f"batch_size={BATCH}", "epochs=6", *schedule)
    whole = train(cfg)
    saved: list[TrainState] = []
    train(cfg, on_checkpoint=lambda s: saved.append(s) if s.epoch == 3 else None)
    state = saved[0]
    state = TrainState(
        state.epoch,
        state.model_state,
        {k: list(v[:3]) for k, v in state.history.items()},
        list(state.batch_losses),
    )
    resumed = train(cfg, resume=state)
    for key in ("loss", "val_loss", "learning_rate"):
        assert resumed.history[key] == whole.history[key], key
    for a, b in zip(resumed.model.get_weights(), whole.model.get_weights(), strict=True):
        assert np.array_equal(a, b)


def test_bad_schedule_values_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"schedule.decay_rate=2: must be a number in \(0, 1\)"):
        train(compose(*TINY, QUIET, "schedule=exponential", "schedule.decay_rate=2"))
    with pytest.raises(ConfigError, match=r"schedule.monitor='lr'"):
        train(compose(*TINY, QUIET, "schedule=plateau", "schedule.monitor=lr"))


def test_the_rate_reaches_mlflow_and_the_config_hash(tmp_path) -> None:
    proc = cli(tmp_path, "-m", "schedule=constant,exponential", "epochs=3", *TINY)
    assert proc.returncode == 0, proc.stderr
    trials = {r.data.params["schedule.name"]: r for r in runs(tmp_path, "nnlab", "trial")}
    assert set(trials) == {"constant", "exponential"}  # two configs, two trials
    assert "learning_rate" not in trials["constant"].data.metrics
    assert trials["exponential"].data.metrics["learning_rate"] == pytest.approx(
        f32(0.01 * 0.9**2), rel=1e-6
    )
