"""Compose once: every trial's config through nnlab's composer equals Hydra's own composition.

For each sweep, every trial is composed both ways - through Hydra's loader, as its launchers do
(``load_sweep_config`` and the job fields ``run_job`` fills), and through
:class:`nnlab.sweep.compose.Composer` - and the resolved task configs and the per-job hydra
fields a job reads must be identical. The default suite composes a spread of each study's
trials; the slow pass composes every one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import CONF
from omegaconf import OmegaConf

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))

# sweeps over config groups and over every kind of override Hydra's grammar has
GROUP_SWEEPS = {
    "data": ["data=moons,spirals,xor,circles,blobs,breast_cancer,digits", "epochs=2"],
    "optimizer": ["optimizer=sgd,adam,rmsprop", "lr=0.1,1e-3"],
    "schedule": ["schedule=constant,exponential,cosine,plateau", "lr=0.3,3e-3", "epochs=5,40"],
    "groups x values": [
        "data=moons,spirals",
        "optimizer=sgd,adam",
        "model.hidden=[8],[8,8],[]",
        "data.noise=0.1,0.3",
    ],
    "add, delete, force": [
        "+trainer.extra=1,2",
        "~trainer.early_stopping",
        "++seed=3,4",
        "lr=1e-3",
    ],
    "dict merge": ["trainer={epochs: 3, shuffle: false},{epochs: 4}", "lr=0.5,0.05"],
    "experiment + data": ["+experiment=quick", "data=spirals,moons", "data.noise=0.2"],
    # the job's own hydra fields read by the config: the job dir named by its overrides
    "hydra fields": [
        "hydra.sweep.subdir=${hydra.job.override_dirname}",
        "+note=${hydra:job.num}-${hydra:job.override_dirname}",
        "lr=0.1,0.2",
        "seed=1,2",
    ],
}


@pytest.fixture(autouse=True)
def no_hydra_job_left():
    """A composition with ``${hydra:...}`` sets Hydra's job config in this process, as a job
    would; other tests in this worker must not see it."""
    yield
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = None


@pytest.fixture(scope="module")
def hydra_loader():
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import nnlab.run  # noqa: F401 - registers the nnlab_launch_id resolver

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


def sweep_of(loader, arguments: list[str]):
    """(master config, trials' overrides, shared overrides) of ``-m <arguments>``."""
    from hydra.types import RunMode

    from nnlab.sweep.grid import expand

    master = loader.load_configuration("config", list(arguments), RunMode.MULTIRUN)
    arguments = [a for a in arguments if not a.startswith("hydra.")]  # Hydra keeps these apart
    _ = str(master.hydra.sweep.dir)  # as the sweeper does first: ${now:} cached for every job
    if "hydra_plugins.nnlab_sweeper" not in str(master.hydra.sweeper._target_):
        from nnlab.search.space import parse

        space = parse(loader, [f"{k}={v}" for k, v in master.hydra.sweeper.params.items()])
        jobs = [arguments + o for o in space.probe_jobs()]
        return master, jobs, list(arguments)
    params = [f"{k}={v}" for k, v in (master.hydra.sweeper.get("params") or {}).items()]
    jobs, varying = expand(loader, params + list(arguments))
    shared = [o for o in jobs[0] if o.split("=", 1)[0] not in varying]
    return master, jobs, shared


def hydra_trial(loader, master, job: int, overrides: list[str]) -> tuple[dict, dict]:
    """What Hydra's launchers give job ``job``: (resolved task config, the job's hydra fields)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    cfg = loader.load_sweep_config(master, list(overrides))
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.job.num = job
        cfg.hydra.job.id = job
        out = os.path.join(str(cfg.hydra.sweep.dir), str(cfg.hydra.sweep.subdir))
        cfg.hydra.runtime.output_dir = os.path.abspath(out)
    HydraConfig.instance().set_config(cfg)  # as run_job does: ${hydra:...} reads it
    fields = {
        "num": cfg.hydra.job.num,
        "override_dirname": cfg.hydra.job.override_dirname,
        "output_dir": cfg.hydra.runtime.output_dir,
        "task": list(cfg.hydra.overrides.task),
    }
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=True), fields


def nnlab_trial(composer, job: int, overrides: list[str]) -> tuple[dict, dict]:
    t = composer.trial(job, overrides)
    fields = {
        "num": t.job,
        "override_dirname": t.override_dirname,
        "output_dir": t.out,
        "task": t.overrides,
    }
    return t.plain, fields


def plain_types(tree) -> bool:
    """Only dicts, lists and scalars (an OmegaConf node compares equal to a dict, but is not)."""
    if isinstance(tree, dict):
        return type(tree) is dict and all(plain_types(v) for v in tree.values())
    if isinstance(tree, list):
        return type(tree) is list and all(plain_types(v) for v in tree)
    return isinstance(tree, (str, int, float, bool, type(None)))


def spread(n: int, k: int) -> list[int]:
    """``k`` job numbers spread over ``range(n)`` (first and last included)."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def assert_same_trials(loader, arguments: list[str], sample: int | None) -> int:
    from nnlab.sweep.compose import Composer

    master, jobs, shared = sweep_of(loader, arguments)
    composer = Composer(loader, master, shared)
    picked = range(len(jobs)) if sample is None else spread(len(jobs), sample)
    for job in picked:
        ours = nnlab_trial(composer, job, jobs[job])
        theirs = hydra_trial(loader, master, job, jobs[job])
        assert ours == theirs, f"trial {job} {jobs[job]} differs"
        assert plain_types(ours[0]), f"trial {job}: not plain Python containers"
    distinct = {tuple(o for o in job if o.split("=")[0].lstrip("+~") in ("data", "optimizer",
                "schedule", "experiment")) for job in jobs}  # fmt: skip
    assert composer.compositions <= len(distinct)  # once per distinct group choice
    return len(picked)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_study_trials_compose_as_hydra_composes_them(hydra_loader, experiment: str) -> None:
    assert assert_same_trials(hydra_loader, [f"+experiment={experiment}"], sample=12) >= 2


@pytest.mark.parametrize("name", sorted(GROUP_SWEEPS))
def test_group_and_override_sweeps_compose_as_hydra(hydra_loader, name: str) -> None:
    assert assert_same_trials(hydra_loader, GROUP_SWEEPS[name], sample=None) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_trial_of_every_study_composes_as_hydra(hydra_loader, experiment: str) -> None:
    assert assert_same_trials(hydra_loader, [f"+experiment={experiment}"], sample=None) >= 2


def test_hydra_refusals_are_kept(hydra_loader) -> None:
    """An override Hydra refuses is refused here too, with Hydra's words."""
    from nnlab.sweep.compose import Composer, CompositionError

    master, _, _ = sweep_of(hydra_loader, ["lr=0.1,0.2"])
    composer = Composer(hydra_loader, master)
    for bad, words in [
        (["lr=0.1", "trainer.nope=1"], "Could not override 'trainer.nope'"),
        (["+lr=0.1"], "Could not append to config"),
        (["~trainer.nope"], "Could not delete"),
        (["data=nope"], "nope"),
    ]:
        with pytest.raises(CompositionError, match=words):
            composer.trial(0, bad)


def test_composition_is_restored_after_each_trial(hydra_loader) -> None:
    """Setting values in place must leave the shared composition as it was."""
    from nnlab.sweep.compose import Composer

    master, jobs, shared = sweep_of(hydra_loader, ["lr=0.5,0.05", "model.hidden=[4],[8,8]"])
    composer = Composer(hydra_loader, master, shared)
    plain = composer.trial(0, []).plain
    for job, overrides in enumerate(jobs):
        assert composer.trial(job, overrides).plain != plain
    assert composer.trial(0, []).plain == plain  # nothing left behind by the trials
    assert plain["optimizer"]["learning_rate"] == 0.01 and plain["model"]["hidden"] == [16, 16]


def test_study_dirs_are_absolute_and_per_job(hydra_loader, tmp_path: Path) -> None:
    from nnlab.sweep.compose import Composer

    master, jobs, shared = sweep_of(hydra_loader, ["lr=0.5,0.05"])
    composer = Composer(hydra_loader, master, shared)
    outs = [composer.trial(j, o).out for j, o in enumerate(jobs)]
    assert all(os.path.isabs(o) for o in outs) and [Path(o).name for o in outs] == ["0", "1"]
