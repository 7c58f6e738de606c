"""Where a trial runs and what it reports: :class:`JobPlace`, :class:`TrialRecord` (what the
sweep's summary counts) and the trial's run name."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from nnlab.sweep.context import SweepContext
from nnlab.tracking.schema import SWEEP_FILE


@dataclass
class TrialRecord:
    """What a finished trial reports to the launching process (lines, summary, search)."""

    job: int
    name: str
    config_hash: str
    outcome: str = "failed"
    run_id: str | None = None
    loss: float | None = None
    val_loss: float | None = None
    seconds: float = 0.0
    tracking_s: float = 0.0
    checkpoint_s: float = 0.0
    epochs_run: int = 0
    train_s: float | None = None
    blas_threads: int | None = None
    error: str | None = None
    tracking_error: str | None = None
    job_dir: str | None = None
    prior_outcome: str | None = None
    # wall-clock (unix) times: when training began and the trial ended (a sweep's fixed cost)
    train_started: float | None = None
    ended: float | None = None


@dataclass
class JobPlace:
    """Where a job runs: launch dir, job dir, its overrides, its sweep (None: a single run)."""

    base: Path
    out: Path
    overrides: list[str]
    job: int
    ctx: SweepContext | None

    @classmethod
    def from_hydra(cls) -> JobPlace:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():  # called as a function, outside Hydra
            out = Path.cwd() / "outputs" / f"run-{uuid.uuid4().hex[:8]}"
            return cls(Path.cwd(), out, [], 0, None)
        hc = HydraConfig.get()
        base = Path(hc.runtime.cwd)
        if hc.mode != RunMode.MULTIRUN:
            return cls(base, Path(hc.runtime.output_dir), list(hc.overrides.task), 0, None)
        ctx = SweepContext.load(base / hc.sweep.dir / SWEEP_FILE)
        if ctx.launch_dir:  # a cluster job may run elsewhere: paths start at the launch dir
            base = Path(ctx.launch_dir)
        return cls(base, Path(hc.runtime.output_dir), list(hc.overrides.task), int(hc.job.num), ctx)


def run_name(overrides: list[str], varying: list[str] | None, plain: dict) -> str:
    """``lr=0.01 batch_size=16 epochs=50``: the overrides that vary across the sweep.

    A single run (``varying is None``) is named by the three axes plus its other overrides.
    """
    if varying:
        keys = [o.split("=", 1)[0] for o in overrides]
        return " ".join(o for o, k in zip(overrides, keys, strict=True) if k in varying)
    axes = [f"{k}={plain[k]}" for k in ("lr", "batch_size", "epochs")]
    extra = [
        o
        for o in overrides
        if o.split("=", 1)[0].lstrip("+~") not in ("lr", "batch_size", "epochs")
        and not o.lstrip("+~").startswith(("tracking", "hydra"))
    ]
    return " ".join(axes + extra)
