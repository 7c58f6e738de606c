"""A search's space from Hydra's override grammar, and its plan; no Optuna import at module level.

Shared by the sweeper (which asks Optuna for trials) and ``nnlab.tracking.sweep`` (which checks
every fixed value and the bounds of every search space before anything is tracked).

Grammar -> Optuna distribution:

===================================  ==========================================================
``lr=tag(log, interval(1e-4, 1))``   ``FloatDistribution(1e-4, 1, log=True)``
``lr=interval(0.01, 0.1)``           ``FloatDistribution(0.01, 0.1)`` (always floats)
``epochs=range(10, 101, 10)``        ``IntDistribution(10, 100, step=10)``: the values Python's
                                     ``range`` (and the grid sweeper) gives, stop excluded
``units=tag(log, range(8, 257))``    ``IntDistribution(8, 256, log=True)``
``x=range(0.1, 1.0, 0.2)``           ``FloatDistribution(0.1, 0.9, step=0.2)``
``batch_size=choice(16, 64, 256)``   ``CategoricalDistribution([16, 64, 256])``; ``16,64,256``
                                     and ``shuffle(...)`` too; lists and dicts as their text
``epochs=100``                       fixed for every trial
===================================  ==========================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nnlab.config import MONITORS, ConfigError
from nnlab.search.settings import PRUNERS, SAMPLERS

SEARCH_TARGET = "hydra_plugins.nnlab_optuna_sweeper.sweeper.NnlabOptunaSweeper"
DIRECTIONS = ("minimize", "maximize")
_SCALARS = (str, int, float, bool, type(None))


def is_search_sweeper(sweeper_cfg: Any) -> bool:
    """True when the configured ``hydra.sweeper`` is this search sweeper."""
    return str(sweeper_cfg.get("_target_", "")) == SEARCH_TARGET


def value_text(value: Any) -> str:
    """A sampled number as override text (``repr`` keeps every digit: ``3.2e-05``)."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass
class Dim:
    """One searched key.

    ``kind`` is ``float``, ``int`` or ``categorical``; ``low``/``high`` are inclusive bounds;
    ``choices`` are the categorical values as Optuna stores them and ``texts`` their override
    text (the same order); ``source`` is the override as written.
    """

    name: str
    key: str
    kind: str
    source: str
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    choices: list[Any] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def override(self, value: Any) -> str:
        """``key=value`` for a value Optuna sampled."""
        if self.kind == "categorical":
            return f"{self.key}={self.texts[self.choices.index(value)]}"
        return f"{self.key}={value_text(value)}"

    def bounds(self) -> list[str]:
        """The overrides a check must compose: both ends, or every choice."""
        if self.kind == "categorical":
            return [f"{self.key}={t}" for t in self.texts]
        cast = int if self.kind == "int" else float
        return list(dict.fromkeys(self.override(cast(v)) for v in (self.low, self.high)))

    def grid_values(self) -> list[Any]:
        """Every value (for the grid sampler); an ``interval`` has none to list."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.step is None:
            raise ConfigError(
                f"{self.source}: the grid sampler needs choice() or range() for every searched "
                "key, not interval(); or use hydra/sweeper/sampler=tpe"
            )
        n = int(round((self.high - self.low) / self.step)) + 1
        values = [self.low + i * self.step for i in range(n)]
        return [int(v) for v in values] if self.kind == "int" else values

    def distribution(self) -> Any:
        """The Optuna distribution (imports Optuna)."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.kind == "categorical":
            return CategoricalDistribution(self.choices)
        if self.kind == "int":
            return IntDistribution(
                int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def canonical(self) -> str:
        """The space whatever its spelling (``tag(log,interval(1e-4,1))`` = ``... 0.0001, 1.0``)."""
        if self.kind == "categorical":
            return f"{self.key}=choice({','.join(self.texts)})"
        return (
            f"{self.key}={self.kind}({self.low!r},{self.high!r},step={self.step!r},log={self.log})"
        )

    def describe(self) -> dict[str, Any]:
        """JSON-able summary (for the report and the parent run)."""
        return {
            "kind": self.kind,
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "choices": self.texts,
            "source": self.source,
        }


@dataclass
class SearchSpace:
    """Searched keys (Optuna param name -> :class:`Dim`) and the fixed overrides."""

    dims: dict[str, Dim]
    fixed: list[str]

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """A trial's overrides from Optuna's params (fixed values first, as given)."""
        return [*self.fixed, *(self.dims[n].override(params[n]) for n in self.dims)]

    def probe_jobs(self) -> list[list[str]]:
        """Job override lists that together hold every fixed value and every bound: the first
        with each key at its first bound, then one more per other bound of one key."""
        bounds = [d.bounds() for d in self.dims.values()]
        first = [b[0] for b in bounds]
        jobs = [[*self.fixed, *first]]
        for i, values in enumerate(bounds):
            for other in values[1:]:
                jobs.append([*self.fixed, *first[:i], other, *first[i + 1 :]])
        return jobs


def _scalar_choices(natives: list[Any], texts: list[str]) -> list[Any]:
    """Optuna's categorical values: the parsed values when all are scalars, else the texts."""
    if all(isinstance(v, _SCALARS) for v in natives) and len(set(map(repr, natives))) == len(
        natives
    ):
        return natives
    return texts


def _dim(override: Any) -> Dim:
    """One sweep override -> :class:`Dim` (HydraException naming the fix if unsupported)."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from hydra.errors import HydraException

    key = override.get_key_element()
    name = key.lstrip("+~")
    source = override.input_line or key
    value = override.value()
    tags = set(getattr(value, "tags", None) or ())
    if tags - {"log"}:
        raise HydraException(f"{source}: the only tag the search knows is log, e.g. tag(log, ...)")
    log = "log" in tags
    if isinstance(value, IntervalSweep):
        low, high = float(value.start), float(value.end)
        if not low < high or (log and low <= 0):
            raise HydraException(
                f"{source}: interval(low, high) needs low < high"
                + (" and low > 0 for a log scale" if log else "")
            )
        return Dim(name, key, "float", source, low, high, None, log)
    if isinstance(value, RangeSweep) and not value.shuffle:
        natives = list(override.sweep_iterator())
        if not natives:
            raise HydraException(f"{source}: the range is empty")
        is_float = any(isinstance(v, float) for v in (value.start, value.stop, value.step))
        step = float(value.step) if is_float else int(value.step)
        low, high = natives[0], natives[0] + (len(natives) - 1) * step
        if step < 0:
            low, high, step = high, low, -step
        if log and (step != 1 or is_float or low <= 0):
            raise HydraException(f"{source}: tag(log, range(a, b)) needs integers a > 0, step 1")
        return Dim(name, key, "float" if is_float else "int", source, low, high, step, log)
    if isinstance(value, (ChoiceSweep, RangeSweep)) and override.is_discrete_sweep():
        natives = list(override.sweep_iterator())
        texts = list(override.sweep_string_iterator())
        if isinstance(value, RangeSweep):  # shuffle(range(...)): its values, in order
            natives = sorted(natives)
            texts = [str(v) for v in natives]
        if log:
            raise HydraException(f"{source}: tag(log, ...) applies to interval() and range() only")
        return Dim(
            name, key, "categorical", source, choices=_scalar_choices(natives, texts), texts=texts
        )
    raise HydraException(
        f"{source}: the search takes interval(), range(), choice() or a comma list "
        f"(not {override.value_type.name if override.value_type else 'this sweep'})"
    )


def parse(config_loader: Any, arguments: list[str]) -> SearchSpace:
    """The search space of ``arguments`` (``hydra.sweeper.params`` as ``key=value`` strings, then
    the command line's overrides; a later override of a key replaces an earlier one)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(arguments)
    dims: dict[str, Dim] = {}
    fixed: dict[str, str] = {}
    for override in parsed:
        key = override.get_key_element()
        name = key.lstrip("+~")
        dims.pop(name, None)
        fixed.pop(name, None)
        if override.is_sweep_override():
            dims[name] = _dim(override)
        else:
            fixed[name] = f"{key}={override.get_value_element_as_str()}"
    return SearchSpace(dims, list(fixed.values()))


@dataclass
class SearchPlan:
    """What the sweeper and the trials need to agree on, from ``hydra.sweeper``."""

    space: SearchSpace
    n_trials: int
    n_jobs: int
    objective: str
    direction: str
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    study_dir: str

    def signature(self) -> list[str]:
        """What identifies the study across re-runs: not ``n_trials`` (a re-run with a larger
        total extends the study) nor ``n_jobs``."""
        return [
            *sorted(self.space.fixed),
            *sorted(d.canonical() for d in self.space.dims.values()),
            f"objective={self.objective}",
            f"direction={self.direction}",
            f"sampler={self.sampler['name']}",
            f"pruner={self.pruner['name']}",
        ]

    def context(self, base: Path, experiment: str, sweep_hash: str, plain: dict) -> dict:
        """The ``search`` entry of the sweep context (``.nnlab/sweep.json``): the journal file,
        the study's name, the pruner with ``auto`` resolved where the epochs are fixed."""
        pruner, sampler = dict(self.pruner), dict(self.sampler)
        if sampler.get("seed") is None:  # the run's own seed
            sampler["seed"] = int(plain.get("seed") or 0)
        searched = {"epochs", "trainer.epochs"} & set(self.space.dims)
        if pruner["name"] == "hyperband" and pruner.get("max_resource") == "auto" and not searched:
            pruner["max_resource"] = int(plain["trainer"]["epochs"])
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
        journal = (base / self.study_dir / f"{safe}-{sweep_hash}.journal").resolve()
        return {
            "study": f"{experiment}-{sweep_hash}",
            "journal": str(journal),
            "objective": self.objective,
            "direction": self.direction,
            "n_trials": self.n_trials,
            "sampler": sampler,
            "pruner": pruner,
            "space": {n: d.describe() for n, d in self.space.dims.items()},
        }


def _check_named(group: str, spec: dict, table: dict) -> None:
    """``spec["name"]`` is one of ``table`` and every other key one of that config's fields."""
    name = spec.get("name")
    if name not in table:
        raise ConfigError(
            f"hydra.sweeper.{group}.name={name!r}: must be one of {list(table)} "
            f"(hydra/sweeper/{group}={list(table)[0]})"
        )
    known = [f.name for f in fields(table[name])]
    for key in spec:
        if key not in known:
            raise ConfigError(
                f"hydra.sweeper.{group}.{key}: the {name} {group} takes {', '.join(known[1:])}"
            )


def _positive_int(sweeper_cfg: Any, key: str) -> int:
    value = sweeper_cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"hydra.sweeper.{key}={value!r}: must be an integer >= 1")
    return value


def plan(config_loader: Any, sweeper_cfg: Any, task_overrides: list[str]) -> SearchPlan:
    """The search of ``hydra.sweeper`` + the command line; ConfigError (one line) when a setting
    is out of range, HydraException when the grammar is not one the search takes."""
    from omegaconf import OmegaConf

    params = sweeper_cfg.get("params") or {}
    space = parse(config_loader, [f"{k}={v}" for k, v in params.items()] + list(task_overrides))
    if not space.dims:
        raise ConfigError(
            "hydra/sweeper=optuna: nothing to search; give at least one key a search space, "
            "e.g. 'lr=tag(log, interval(1e-4, 1))' or batch_size=choice(16,64)"
        )
    objective, direction = sweeper_cfg.get("objective"), sweeper_cfg.get("direction")
    if objective not in MONITORS:
        raise ConfigError(f"hydra.sweeper.objective={objective!r}: must be one of {list(MONITORS)}")
    if direction not in DIRECTIONS:
        raise ConfigError(f"hydra.sweeper.direction={direction!r}: must be minimize or maximize")

    def plain(node: Any, default: str) -> dict:
        node = node if node is not None else {"name": default}
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    sampler = plain(sweeper_cfg.get("sampler"), "tpe")
    pruner = plain(sweeper_cfg.get("pruner"), "none")
    _check_named("sampler", sampler, SAMPLERS)
    _check_named("pruner", pruner, PRUNERS)
    if sampler["name"] == "grid":
        for dim in space.dims.values():
            dim.grid_values()  # ConfigError for an interval
    for key in ("min_resource", "max_resource"):
        value = pruner.get(key)
        if value is not None and value != "auto" and (not isinstance(value, int) or value < 1):
            raise ConfigError(
                f"hydra.sweeper.pruner.{key}={value!r}: must be an epoch count >= 1 or auto"
            )
    if (
        pruner["name"] == "threshold"
        and pruner.get("lower") is None
        and pruner.get("upper") is None
    ):
        raise ConfigError(
            "hydra/sweeper/pruner=threshold needs hydra.sweeper.pruner.lower or .upper"
        )
    for key in ("lower", "upper"):
        value = pruner.get(key)
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise ConfigError(f"hydra.sweeper.pruner.{key}={value!r}: must be a finite number")
    return SearchPlan(
        space,
        _positive_int(sweeper_cfg, "n_trials"),
        _positive_int(sweeper_cfg, "n_jobs"),
        objective,
        direction,
        sampler,
        pruner,
        str(sweeper_cfg.get("study_dir") or ".nnlab/studies"),
    )
