"""Each trial's config, composed once per distinct set of config-group choices.

Hydra composes every job of a sweep from scratch - its defaults list, every YAML file, the
merge - in the launching process: ~100 ms a job, which capped a sweep at ~10 trials a second
however many workers it had. The trials of a sweep differ only in their overrides, and most
overrides set values, not config groups. So :class:`Composer`:

1. parses each distinct override string once with Hydra's own override parser and splits the
   overrides as Hydra does: a group override chooses files (``data=spirals``,
   ``+experiment=x``), every other one sets a value (``lr=1e-3``, ``'model.hidden=[8,8]'``,
   ``+key=v``, ``~key``);
2. composes the config with Hydra's own loader (``load_sweep_config``) once per distinct tuple of
   group overrides, together with the value overrides every trial shares;
3. applies each trial's other value overrides to that composition as Hydra applies them (the
   rules of Hydra's config loader: ``key=v`` must exist, ``+key=v`` must not, ``++`` forces,
   ``~key[=v]`` deletes), resolves the result and fills the per-job hydra fields a job reads
   (``job.num``, ``job.id``, ``job.override_dirname``, ``runtime.output_dir``,
   ``overrides.task``).

tests/test_sweep_compose.py composes every trial of every study in ``conf/experiment/`` and of
sweeps over the config groups both ways, through Hydra's loader and through this, and asserts
the resolved configs are identical.

Setting a plain value (the common case) mutates the composition in place and restores it
afterwards (~0.1 ms); anything else (``+``, ``~``, a dict merged into a node) works on a copy
(~3 ms).
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write


@dataclass
class TrialConfig:
    """One trial's composed config: what its job would get from Hydra.

    ``plain`` is the resolved task config (no ``hydra`` node) as plain dicts and lists;
    ``out`` the job's output directory (absolute); ``overrides`` its ``hydra.overrides.task``.
    """

    job: int
    overrides: list[str]
    plain: dict
    out: str
    override_dirname: str
    raw: dict | None = None  # the task config unresolved (interpolations as text)


class CompositionError(Exception):
    """An override Hydra would refuse for this config (the message is Hydra's)."""


@dataclass
class Base:
    """One Hydra composition and what its trials reuse.

    ``plain`` is its resolved task config; ``deps`` maps an overridden key to the paths whose
    resolved value is that key's value (``optimizer.learning_rate: ${lr}``), or to None when the
    key feeds anything else (a string, a nested interpolation, a resolver): then the trial is
    resolved by OmegaConf.
    """

    cfg: DictConfig
    plain: dict
    raw: dict  # the task part unresolved
    hydra_resolver: bool  # the task part reads ${hydra:...}: resolved with HydraConfig set
    sweep_dir: str  # hydra.sweep.dir, resolved (${now:} is cached: the same for every job)
    subdir: Any  # hydra.sweep.subdir as written
    dirname: tuple  # hydra.job.config.override_dirname: (exclude_keys, item_sep, kv_sep)
    deps: dict[str, list[tuple] | None] = field(default_factory=dict)


class Composer:
    """Trial configs of one launch (see the module docstring).

    Parameters
    ----------
    config_loader : hydra ConfigLoader
        The launch's loader (``hydra_context.config_loader``).
    master : DictConfig
        The launch's config (what the sweeper gets): its ``hydra.overrides.hydra`` and resolver
        cache are every trial's.
    shared : list of str, optional
        Value overrides that every trial of the sweep carries unchanged (the grid's one-value
        axes): applied once per composition instead of once per trial.
    """

    def __init__(self, config_loader: Any, master: DictConfig, shared: list[str] | None = None):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.loader, self.master = config_loader, master
        _ = str(master.hydra.sweep.dir)  # fills the resolver cache (${now:}) every trial shares
        self.parser = OverridesParser.create(config_loader=config_loader)
        self._parsed: dict[str, Any] = {}
        self._values: dict[str, Any] = {}  # override text -> its value (Hydra copies on each call)
        self._groups: dict[str, bool] = {}
        self._bases: dict[tuple[str, ...], Base] = {}
        self.shared = set(shared or [])
        self.compositions = 0  # Hydra compositions made (one per distinct group choice)

    # --- parsing ---------------------------------------------------------------------------

    def parse(self, line: str) -> Any:
        override = self._parsed.get(line)
        if override is None:
            (override,) = self.parser.parse_overrides([line])
            self._parsed[line] = override
        return override

    def is_group(self, override: Any) -> bool:
        """Hydra's rule: a group override names an existing config group and no dict value."""
        if override.package is not None:
            return True  # `group@pkg=opt`: Hydra's composition refuses it if there is no group
        key = override.key_or_group
        known = self._groups.get(key)
        if known is None:
            parent, _, name = key.rpartition("/")
            known = name in self.loader.list_groups(parent)
            self._groups[key] = known
        return known and not isinstance(override.value(), dict)

    # --- compositions ----------------------------------------------------------------------

    def base(self, groups: tuple[str, ...], shared: tuple[str, ...]) -> Base:
        """Hydra's composition for these group overrides plus the shared value overrides."""
        key = (*groups, "|", *shared)
        base = self._bases.get(key)
        if base is None:
            try:
                cfg = self.loader.load_sweep_config(self.master, [*groups, *shared])
            except Exception as exc:  # Hydra refuses a group option or a shared override
                raise CompositionError(str(exc)) from None
            raw = OmegaConf.to_container(cfg, resolve=False)
            uses = bool(
                _HYDRA_RESOLVER.search(repr({k: v for k, v in raw.items() if k != "hydra"}))
            )
            plain = None if uses else _task(cfg)
            hc = cfg.hydra
            naming = hc.job.config.override_dirname
            base = self._bases[key] = Base(
                cfg,
                plain,
                raw,
                uses,
                str(hc.sweep.dir),
                hc.sweep._get_node("subdir")._value(),
                (list(naming.exclude_keys), naming.item_sep, naming.kv_sep),
            )
            self.compositions += 1
        return base

    def trial(self, job: int, overrides: list[str]) -> TrialConfig:
        """The config of job ``job`` with ``overrides`` (its ``key=value`` strings).

        Raises CompositionError (Hydra's message) for an override Hydra would refuse.
        """
        parsed = [self.parse(line) for line in overrides]
        groups = tuple(o.input_line for o in parsed if self.is_group(o))
        values = [o for o in parsed if not self.is_group(o)]
        keys = [o.key_or_group for o in values]
        shared = tuple(
            o.input_line
            for o in values
            if o.input_line in self.shared and not _overlaps(o.key_or_group, keys)
        )
        own = [o for o in values if o.input_line not in shared]
        base = self.base(groups, shared)
        fields = self._fields(base, job, overrides, parsed)
        if base.plain is not None and self._plain_path(base, own):
            plain = copy.deepcopy(base.plain)
            for o in own:
                value = self._values.get(o.input_line)
                if value is None:
                    value = self._values[o.input_line] = o.value()
                for path in [_path(o.key_or_group), *base.deps[o.key_or_group]]:
                    _set(plain, path, copy.deepcopy(value))
            return TrialConfig(job, list(overrides), plain, *fields, base.raw)
        cfg = base.cfg
        if all(_settable(cfg, o) for o in own) and not base.hydra_resolver:
            with _set_in_place(cfg, own):
                return TrialConfig(job, list(overrides), _task(cfg), *fields, base.raw)
        cfg = copy.deepcopy(cfg)
        apply_overrides(own, cfg)
        if base.hydra_resolver:
            self._set_hydra(cfg, job, overrides, fields)
        raw = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}
        return TrialConfig(job, list(overrides), _task(cfg), *fields, raw)

    def _plain_path(self, base: Base, own: list[Any]) -> bool:
        """Whether the trial's config is the base's resolved config with values set at known
        paths: plain settable values, whose dependants are known and overlap no other key."""
        for o in own:
            if not _settable(base.cfg, o) or _has_interpolation(o.value()):
                return False
            if o.key_or_group not in base.deps:
                base.deps[o.key_or_group] = _dependants(base.cfg, o.key_or_group)
            if base.deps[o.key_or_group] is None:
                return False
        keys = [_path(o.key_or_group) for o in own]
        for o in own:
            for dep in base.deps[o.key_or_group]:
                if any(dep[: len(k)] == k or k[: len(dep)] == dep for k in keys):
                    return False  # another override sets (a part of) what this one feeds
        return True

    def _fields(self, base: Base, job: int, overrides: list[str], parsed: list[Any]) -> tuple:
        """(output dir, override_dirname) of the job, as Hydra's launchers fill them."""
        dirname = override_dirname([o for o in parsed if not o.is_hydra_override()], *base.dirname)
        if base.subdir == "${hydra.job.num}":  # nnlab's own: no resolution needed
            out = os.path.join(base.sweep_dir, str(job))
        else:  # the subdir reads the job's fields: resolve it with them set
            hydra = base.cfg.hydra
            with read_write(hydra), open_dict(hydra):
                hydra.job.num, hydra.job.id = job, job
                hydra.job.override_dirname = dirname
                hydra.overrides.task = list(overrides)
                out = os.path.join(str(hydra.sweep.dir), str(hydra.sweep.subdir))
        return os.path.abspath(out), dirname

    @staticmethod
    def _set_hydra(cfg: DictConfig, job: int, overrides: list[str], fields: tuple) -> None:
        """This job's hydra fields, in ``cfg`` and in HydraConfig (``${hydra:...}`` reads it)."""
        from hydra.core.hydra_config import HydraConfig

        hydra = cfg.hydra
        with read_write(hydra), open_dict(hydra):
            hydra.job.num, hydra.job.id = job, job
            hydra.runtime.output_dir, hydra.job.override_dirname = fields
            hydra.overrides.task = list(overrides)
        HydraConfig.instance().set_config(cfg)


_HYDRA_RESOLVER = re.compile(r"\$\{hydra:")
_PROBE = "nnlab-probe-7f3a"  # a value no config holds


def _task(cfg: DictConfig) -> dict:
    """The resolved task config (every top-level key but ``hydra``) as plain containers."""
    plain = {}
    for key in cfg:
        if key == "hydra":
            continue
        node = cfg._get_node(key)
        if not isinstance(node, (DictConfig, ListConfig)):
            node = cfg[key]  # a value, or an interpolation that resolves to a node
        plain[key] = (
            OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
            if isinstance(node, (DictConfig, ListConfig))
            else node
        )
    return plain


def _node(cfg: DictConfig, dotted: str) -> Any:
    """The node at ``dotted`` (None if absent), without resolving it."""
    parent, _, leaf = dotted.rpartition(".")
    holder = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    if not isinstance(holder, DictConfig) or leaf not in holder:
        return None
    return holder._get_node(leaf)


def _raw(node: Any) -> Any:
    """A node's value as written (interpolations unresolved), for restoring it later."""
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=False)
    return node._value()


def _settable(cfg: DictConfig, override: Any) -> bool:
    """True when Hydra would simply set this existing leaf or list (no +, ~, dict merge)."""
    if override.is_delete() or override.is_add() or override.is_force_add():
        return False
    if override.package is not None or isinstance(override.value(), dict):
        return False
    node = _node(cfg, override.key_or_group)
    return node is not None and not isinstance(node, DictConfig)


@contextlib.contextmanager
def _set_in_place(cfg: DictConfig, overrides: list[Any]) -> Iterator[None]:
    """Set the overrides' values in ``cfg`` for the block, then restore what was there."""
    undo = [(o.key_or_group, _raw(_node(cfg, o.key_or_group))) for o in overrides]
    try:
        for o in overrides:
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
        yield
    finally:
        for key, old in reversed(undo):
            OmegaConf.update(cfg, key, old, merge=False)


def _dependants(cfg: DictConfig, key: str) -> list[tuple] | None:
    """The paths of the task config whose resolved value IS ``key``'s value (by reference), or
    None when ``key`` feeds anything else or the probe cannot be set."""
    node = _node(cfg, key)
    if node is None or isinstance(node, (DictConfig, ListConfig)):
        return None
    try:
        with _set_in_place_raw(cfg, key, _PROBE):
            plain = _task(cfg)
    except Exception:  # a typed node, a nested interpolation that now fails: OmegaConf's path
        return None
    found: list[tuple] = []
    for path, value in _leaves(plain):
        if value == _PROBE:
            found.append(path)
        elif isinstance(value, str) and _PROBE in value:
            return None  # a string built from it
    own = _path(key)
    return [p for p in found if p != own]


@contextlib.contextmanager
def _set_in_place_raw(cfg: DictConfig, key: str, value: Any) -> Iterator[None]:
    old = _raw(_node(cfg, key))
    try:
        OmegaConf.update(cfg, key, value, merge=False)
        yield
    finally:
        OmegaConf.update(cfg, key, old, merge=False)


def _leaves(tree: Any, prefix: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _leaves(v, (*prefix, i))
    else:
        yield prefix, tree


def _path(dotted: str) -> tuple:
    return tuple(dotted.split("."))


def _set(tree: Any, path: tuple, value: Any) -> None:
    for part in path[:-1]:
        tree = tree[part]
    tree[path[-1]] = value


def _overlaps(key: str, keys: list[str]) -> bool:
    """Whether ``key`` is a prefix of another key in ``keys`` or has one of them as prefix."""
    return any(k != key and (k.startswith(f"{key}.") or key.startswith(f"{k}.")) for k in keys)


def _has_interpolation(value: Any) -> bool:
    return "${" in repr(value)


def override_dirname(
    overrides: list[Any], exclude_keys: list[str], item_sep: str, kv_sep: str
) -> str:
    """``hydra.job.override_dirname`` as Hydra computes it: the overrides' texts (those not in
    ``exclude_keys``), sorted, joined by ``item_sep``, with ``=`` replaced by ``kv_sep``."""
    lines = sorted(o.input_line for o in overrides if o.key_or_group not in exclude_keys)
    return re.sub("[=]", kv_sep, item_sep.join(lines))


def apply_overrides(overrides: list[Any], cfg: DictConfig) -> None:
    """Apply value overrides to ``cfg`` by the rules of Hydra's config loader (same refusals)."""
    for override in overrides:
        key, value = override.key_or_group, override.value()
        if override.package is not None:
            raise CompositionError(
                f"Override {override.input_line} looks like a config group override, but config "
                f"group '{key}' does not exist."
            )
        try:
            if override.is_delete():
                current = OmegaConf.select(cfg, key, throw_on_missing=False)
                if current is None:
                    raise CompositionError(f"Could not delete from config. '{key}' does not exist.")
                if value is not None and value != current:
                    raise CompositionError(
                        f"Could not delete from config. The value of '{key}' is {current} and "
                        f"not {value}."
                    )
                parent, _, leaf = key.rpartition(".")
                with open_dict(cfg):
                    del (OmegaConf.select(cfg, parent) if parent else cfg)[leaf]
            elif override.is_add():
                exists = OmegaConf.select(cfg, key, throw_on_missing=False) is not None
                if exists and not isinstance(value, (dict, list)):
                    raise CompositionError(
                        f"Could not append to config. An item is already at '{key}'. Either "
                        f"remove + prefix: '{override.input_line[1:]}' Or add a second + to add "
                        f"or override '{key}': '+{override.input_line}'"
                    )
                OmegaConf.update(cfg, key, value, merge=True, force_add=True)
            elif override.is_force_add():
                OmegaConf.update(cfg, key, value, merge=True, force_add=True)
            else:
                try:
                    OmegaConf.update(cfg, key, value, merge=True)
                except Exception as exc:
                    if type(exc).__name__ in ("ConfigAttributeError", "ConfigKeyError"):
                        raise CompositionError(
                            f"Could not override '{key}'. To append to your config use "
                            f"+{override.input_line}"
                        ) from None
                    raise
        except CompositionError:
            raise
        except Exception as exc:
            raise CompositionError(f"Error merging override {override.input_line}: {exc}") from None
