"""The launcher configs, registered as ``hydra/launcher=parallel`` (and ``slurm``).

No ``from __future__ import annotations`` here: Hydra reads these dataclass annotations as types.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional  # noqa: UP035 - OmegaConf needs typing's generics

from hydra.core.config_store import ConfigStore


@dataclass
class NnlabParallelConf:
    """Trials in ``n_jobs`` long-lived worker processes of this machine, one BLAS thread each,
    fed chunks of trials whose configs the launching process composed (nnlab.sweep.pool).

    ``n_jobs``: workers (-1: one per core). The studies use 2, this machine's cores.
    """

    _target_: str = "hydra_plugins.nnlab_launcher.launcher.NnlabParallelLauncher"
    n_jobs: int = 2


ConfigStore.instance().store(
    group="hydra/launcher", name="parallel", node=NnlabParallelConf, provider="nnlab"
)


@dataclass
class NnlabSlurmConf:
    """Trials as SLURM array tasks, each task a chunk of trials in one Python process
    (nnlab.sweep.slurm); every trial is still its own job dir and MLflow run, filed by the
    launching process. Site settings are submitit's (its SLURM executor's parameters):
    ``hydra.launcher.partition=gpu hydra.launcher.account=proj hydra.launcher.timeout_min=240``.

    ``trials_per_task``: null picks it: the trials spread over the cluster's CPUs, at most about
    a minute of them per task (measured from the first trial's steps).
    """

    _target_: str = "hydra_plugins.nnlab_launcher.launcher.NnlabSlurmLauncher"
    trials_per_task: Optional[int] = None  # noqa: UP045
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%j"
    timeout_min: int = 60  # per task; a trial cut by it resumes from its checkpoint
    cpus_per_task: int = 1  # nnlab caps BLAS at one thread per trial
    gpus_per_node: Optional[int] = None  # noqa: UP045
    tasks_per_node: int = 1
    mem_gb: Optional[int] = None  # noqa: UP045
    nodes: int = 1
    name: str = "nnlab"
    stderr_to_stdout: bool = True  # one log per task: <sweep dir>/.submitit/<job id>/*_log.out
    partition: Optional[str] = None  # noqa: UP045
    qos: Optional[str] = None  # noqa: UP045
    comment: Optional[str] = None  # noqa: UP045
    constraint: Optional[str] = None  # noqa: UP045
    exclude: Optional[str] = None  # noqa: UP045
    gres: Optional[str] = None  # noqa: UP045
    cpus_per_gpu: Optional[int] = None  # noqa: UP045
    gpus_per_task: Optional[int] = None  # noqa: UP045
    mem_per_gpu: Optional[str] = None  # noqa: UP045
    mem_per_cpu: Optional[str] = None  # noqa: UP045
    account: Optional[str] = None  # noqa: UP045
    signal_delay_s: int = 120
    max_num_timeout: int = 3  # resubmissions after a time limit (finished trials are not rerun)
    additional_parameters: Dict[str, Any] = field(default_factory=dict)  # noqa: UP006
    array_parallelism: int = 64  # tasks running at once (the job array's %limit)
    setup: Optional[List[str]] = None  # noqa: UP006, UP045


ConfigStore.instance().store(
    group="hydra/launcher", name="slurm", node=NnlabSlurmConf, provider="nnlab"
)
