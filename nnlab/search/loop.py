"""The search loop of ``NnlabOptunaSweeper``: open (or resume) the study, ask, launch, tell.

The study lives in a journal file keyed by the sweep's signature (``nnlab.tracking.search``), so
the same command resumes it: ``n_trials`` is the study's total, counted over trials that were
told an outcome. A trial left RUNNING by a launching process that is gone (Ctrl-C, ``kill -9``)
is failed and its params are asked again first: with the same config it resumes from its
checkpoint into its own MLflow run.

``n_jobs`` trials are in flight at once. On a launcher whose jobs run in other processes
(joblib, submitit) each of ``n_jobs`` threads launches one job at a time and asks for the next
as soon as its trial ends, so a pruned trial frees its worker at once; on Hydra's in-process
basic launcher ``n_jobs`` trials are asked together and run one after the other.

How a trial's outcome is told: ``completed``/``early_stopped`` -> COMPLETE with the objective of
its last epoch; ``pruned``/``diverged`` (or a last value that is not finite) -> PRUNED at its last
finite reported value (FAIL if it has none); ``failed`` -> FAIL, and the search goes on;
``killed`` -> FAIL, not counted, asked again.
"""

from __future__ import annotations

import math
import sys
import threading
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nnlab.config import ConfigError
from nnlab.search.study import (
    EPOCHS_ATTR,
    LAUNCHER_ATTR,
    OUTCOME_ATTR,
    REQUEUED_ATTR,
    RUN_ATTR,
    make_pruner,
    make_sampler,
    storage,
)
from nnlab.tracking.parent import launcher_gone, launcher_tag
from nnlab.tracking.schema import RUN_OUTCOMES, Tag

FINISHED_OK = ("completed", "early_stopped")


def study_state(
    outcome: str, epochs_run: int, reported: dict[int, float]
) -> tuple[TrialState, float | None]:
    """What to tell the study about a trial that ended with ``outcome`` after ``epochs_run``
    epochs, having reported ``reported`` (epoch -> objective, finite values only).

    COMPLETE with the last epoch's objective for ``completed``/``early_stopped``; PRUNED for
    ``pruned``, ``diverged`` and a last epoch without a finite objective (Optuna then keeps the
    last reported value, or makes it FAIL when there is none); FAIL otherwise.
    """
    last = reported.get(epochs_run)
    if outcome in FINISHED_OK and last is not None and math.isfinite(last):
        return TrialState.COMPLETE, last
    if outcome in (*FINISHED_OK, "pruned", "diverged"):
        return TrialState.PRUNED, None
    return TrialState.FAIL, None


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Search:
    """One launch of a search (see the module docstring)."""

    def __init__(self, sweeper: Any, arguments: list[str]) -> None:
        from hydra.errors import HydraException

        from nnlab.search.space import plan
        from nnlab.sweep.session import Session, fail_config

        config = sweeper.config
        loader = sweeper.hydra_context.config_loader
        try:
            self.plan = plan(loader, config.hydra.sweeper, list(arguments))
        except (ConfigError, HydraException) as exc:
            fail_config(str(exc))
        self.session = Session(sweeper)
        self.space = self.plan.space
        self.session.open(
            self.space.probe_jobs(),
            list(self.space.fixed),
            [d.key for d in self.space.dims.values()],
            self.plan.n_trials,
            self.plan.signature(),
            search=self.plan,
        )
        self.ctx = self.session.ctx
        self.spec = self.ctx.search
        self.distributions = {n: d.distribution() for n, d in self.space.dims.items()}
        self.n_jobs = int(sweeper.n_jobs)
        self.threaded = self.n_jobs > 1 and self.session.launch.parallel
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.tag = launcher_tag()
        self.study: optuna.Study | None = None
        self.errors: list[BaseException] = []
        self.todo = self.asked = self.launched = 0

    # --- the study -------------------------------------------------------------------------

    def open_study(self) -> optuna.Study:
        """Create or load the study; the sampler's seed moves on by the trials it already has,
        so a resumed study does not replay its first start-up points."""
        journal = Path(self.spec["journal"])
        journal.parent.mkdir(parents=True, exist_ok=True)
        st = storage(str(journal))
        name = self.spec["study"]
        existing = 0
        if name in optuna.study.get_all_study_names(st):
            existing = len(st.get_all_trials(st.get_study_id_from_name(name), deepcopy=False))
        seed = int(self.spec["sampler"].get("seed") or 0) + existing
        return optuna.create_study(
            storage=st,
            study_name=name,
            sampler=make_sampler(self.spec["sampler"], self.space, seed),
            pruner=make_pruner(self.spec["pruner"]),
            direction=self.spec["direction"],
            load_if_exists=True,
        )

    def counted(self) -> list[optuna.trial.FrozenTrial]:
        """The study's trials that count towards ``n_trials`` (told with an outcome)."""
        return [
            t
            for t in self.study.get_trials(deepcopy=False)
            if t.state.is_finished() and OUTCOME_ATTR in t.user_attrs
        ]

    def requeue_stale(self) -> None:
        """Fail the RUNNING trials of launches that are gone, and ask their params again."""
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = t.user_attrs.get(LAUNCHER_ATTR)
            if owner and not launcher_gone(owner):
                continue  # another launch, alive (or on another host): its trial
            self.study.tell(t.number, state=TrialState.FAIL)
            self.study.enqueue_trial(t.params, user_attrs={REQUEUED_ATTR: t.number})
            say(
                f"nnlab: study trial {t.number} was left running by a launch that is gone: "
                "failed, its params are asked again (its checkpoint resumes it)"
            )

    # --- one trial -------------------------------------------------------------------------

    def next_trial(self) -> optuna.Trial | None:
        with self.lock:
            if self.asked >= self.todo or self.stop.is_set():
                return None
            sampler = self.study.sampler
            if isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(
                self.study
            ):
                return None
            trial = self.study.ask(self.distributions)
            trial.set_user_attr(LAUNCHER_ATTR, self.tag)
            self.asked += 1
            return trial

    def run_trial(self, trial: optuna.Trial) -> None:
        record = self.session.run_one(trial.number, self.space.overrides(trial.params))
        with self.lock:
            self.launched += 1
            self.tell(trial, record)

    def tell(self, trial: optuna.Trial, record: dict) -> None:
        """Tell the study the trial's outcome (module docstring); tag its MLflow run."""
        outcome = record.get("outcome", "failed")
        if outcome == "killed":  # interrupted, not a result: not counted, asked again
            self.study.tell(trial, state=TrialState.FAIL)
            self.study.enqueue_trial(trial.params, user_attrs={REQUEUED_ATTR: trial.number})
            return
        epochs = int(record.get("epochs_run") or 0)
        trial.set_user_attr(OUTCOME_ATTR, outcome)
        trial.set_user_attr(EPOCHS_ATTR, epochs)
        if record.get("run_id"):
            trial.set_user_attr(RUN_ATTR, record["run_id"])
        reported = self.study.get_trials(deepcopy=False)[trial.number].intermediate_values
        state, value = study_state(outcome, epochs, reported)
        frozen = self.study.tell(trial, value, state=state)
        if self.ctx.uri and record.get("run_id"):
            from nnlab.tracking.store import client, one_line

            try:
                client(self.ctx.uri).set_tag(record["run_id"], Tag.OPTUNA_STATE, frozen.state.name)
            except Exception as exc:  # the study has it; the run lacks one tag
                say(f"nnlab: could not tag run {record['run_id']}: {one_line(exc)}")

    # --- the loop --------------------------------------------------------------------------

    def worker(self) -> None:
        try:
            while (trial := self.next_trial()) is not None:
                self.run_trial(trial)
        except BaseException as exc:  # raised again by the launching thread
            self.errors.append(exc)
            self.stop.set()

    def run_threads(self) -> None:
        threads = [
            threading.Thread(target=self.worker, name=f"nnlab-search-{i}", daemon=True)
            for i in range(min(self.n_jobs, self.todo))
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():  # short joins: Ctrl-C still reaches the launching thread
                t.join(0.2)
        if self.errors:
            raise self.errors[0]

    def run_batches(self) -> None:
        while True:
            batch = [t for t in (self.next_trial() for _ in range(self.n_jobs)) if t is not None]
            if not batch:
                return
            for trial in batch:
                self.run_trial(trial)

    def run(self) -> None:
        """Ask, run and tell until the study has ``n_trials``; then the sweep's summary."""
        session = self.session
        try:
            self.study = self.open_study()
            self.requeue_stale()
            done = len(self.counted())
            self.todo = max(self.spec["n_trials"] - done, 0)
            session.progress.total = self.todo
            print(
                f"  study {self.spec['study']}: {done} of {self.spec['n_trials']} trials done, "
                f"{self.todo} to go, {self.n_jobs} at a time (journal {self.spec['journal']})",
                flush=True,
            )
            if self.todo:
                (self.run_threads if self.threaded else self.run_batches)()
            session.study = self.summary()
        except KeyboardInterrupt:
            session.abort()
            raise
        except Exception as exc:
            session.close(error=exc)
            raise SystemExit(1) from None
        session.close()

    def summary(self) -> dict:
        """The study's counts (by nnlab outcome), epochs and best trial, for the sweep summary
        and the parent run."""
        trials = self.counted()
        outcomes = [t.user_attrs.get(OUTCOME_ATTR, "failed") for t in trials]
        counts = {o: outcomes.count(o) for o in RUN_OUTCOMES if o in outcomes}
        best = None
        if any(t.state == TrialState.COMPLETE for t in trials):
            b = self.study.best_trial
            best = {
                "number": b.number,  # Optuna's (from 0); the summary shows it from 1
                "value": b.value,
                "params": b.params,
                "run_id": b.user_attrs.get(RUN_ATTR),
            }
        return {
            "study": self.spec["study"],
            "journal": self.spec["journal"],
            "sampler": self.spec["sampler"]["name"],
            "pruner": self.spec["pruner"]["name"],
            "objective": self.spec["objective"],
            "direction": self.spec["direction"],
            "n_trials": self.spec["n_trials"],
            "launched": self.launched,
            "counts": counts,
            "epochs": sum(int(t.user_attrs.get(EPOCHS_ATTR, 0)) for t in trials),
            "best": best,
        }
