"""The keys nnlab knows, read from conf/, and the check that a config holds no other key.

Hydra adds any key given with ``+`` (``+learning_rate=0.1``, ``+model.hiden=[4]``) and nnlab
would train on without it. The schema here is what conf/ defines: the top-level keys of
``config.yaml`` and, for each group (``data``, ``optimizer``, ...), the keys of the option the
config chose, found by its ``name`` (``optimizer.name: adam`` -> ``conf/optimizer/adam.yaml``;
a user's own option under ``--config-dir`` that extends ``csv`` has ``name: csv``). Groups
whose options have no ``name`` (``trainer``, ``tracking``, ``debug``) accept the keys of any
of their options.

Top-level keys beyond nnlab's are an experiment's helpers (``problem`` and ``problems`` in
``data: ${problems.${problem}}``): they are in use when another key interpolates them. A plain
dict has no interpolations left, so its top-level extras cannot be traced and are let through
(``validate`` of its own output passes again); the composed config is where this check bites.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_REFERENCE = re.compile(r"\$\{\s*([A-Za-z_]\w*)")  # ${name...}: the top-level key it reads
CLOSE = 0.5  # difflib ratio below which no known key is offered as "did you mean"
_ALIAS = re.compile(r"^\$\{([A-Za-z_]\w*)\}$")  # a key that only repeats a top-level one


def leaves(tree: Mapping, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of a nested mapping (lists are leaves)."""
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@dataclass(frozen=True)
class Schema:
    """What conf/ defines.

    Attributes
    ----------
    top : dict
        Dotted top-level key (``lr``, ``report.out``) -> its raw value in ``config.yaml``.
    groups : dict
        Group -> option -> dotted key inside the group -> raw value (``${lr}`` stays a string).
    named : frozenset of str
        Groups whose options carry a ``name`` equal to the option (the config's choice).
    """

    top: dict[str, Any]
    groups: dict[str, dict[str, dict[str, Any]]]
    named: frozenset[str]

    def option_keys(self, group: str, name: Any) -> tuple[str | None, set[str]]:
        """The chosen option (None when it cannot be told) and the keys it allows."""
        options = self.groups[group]
        if group in self.named and isinstance(name, str) and name in options:
            return name, set(options[name])
        return None, {k for keys in options.values() for k in keys}

    def candidates(self) -> Iterator[tuple[str, str | None, Any]]:
        """Every known ``(dotted key, option label or None, raw value)``."""
        for key, value in self.top.items():
            yield key, None, value
        for group, options in self.groups.items():
            for option, keys in options.items():
                label = f"{group}={option}" if group in self.named else None
                for key, value in keys.items():
                    yield f"{group}.{key}", label, value


def _load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text("utf-8")) or {}


@functools.cache
def load_schema(conf: str) -> Schema:
    """The schema of the config directory ``conf`` (read once per process)."""
    root = Path(conf)
    top_file = {
        k: v for k, v in _load(root / "config.yaml").items() if k not in ("defaults", "hydra")
    }
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "hydra"):
        options = {}
        for path in sorted(folder.glob("*.yaml")):
            if "@package _global_" in path.read_text("utf-8"):  # experiments, sweepers
                continue
            body = {k: v for k, v in _load(path).items() if k != "defaults"}
            options[path.stem] = dict(leaves(body))
        if options:
            groups[folder.name] = options
    named = frozenset(
        g for g, opts in groups.items() if all(keys.get("name") == o for o, keys in opts.items())
    )
    return Schema(dict(leaves(top_file)), groups, named)


def nnlab_schema() -> Schema:
    """The schema of nnlab's own configs (a checkout's ``conf/`` or a wheel's ``nnlab/conf``)."""
    from nnlab.run import conf_dir  # lazy: nnlab.run imports this module's caller

    return load_schema(str(conf_dir()))


def referenced(raw: Any) -> set[str]:
    """Top-level names that the interpolations in an unresolved config read."""
    if isinstance(raw, Mapping):
        return {name for value in raw.values() for name in referenced(value)}
    if isinstance(raw, list):
        return {name for value in raw for name in referenced(value)}
    return set(_REFERENCE.findall(raw)) if isinstance(raw, str) else set()


def nearest(key: str, schema: Schema, chosen: dict[str, str | None]) -> str:
    """``did you mean K?`` for the known key most like ``key`` (the option it needs, if any).

    A key that only repeats a top-level one (``optimizer.learning_rate: ${lr}``) is named by
    that one: ``lr`` is the knob.
    """

    def score(candidate: tuple[str, str | None, Any]) -> tuple[float, float, bool]:
        name, label, _ = candidate
        full = difflib.SequenceMatcher(None, key, name).ratio()
        last = difflib.SequenceMatcher(None, key.rsplit(".")[-1], name.rsplit(".")[-1]).ratio()
        here = label is None or label == chosen.get(name.split(".")[0])
        return max(full, last), full, here

    best = max(schema.candidates(), key=score)
    if score(best)[0] < CLOSE:
        roots = ", ".join(dict.fromkeys(k.split(".")[0] for k in schema.top))
        return (
            f"no known key is close (top level: {roots}, and the groups "
            f"{', '.join(schema.groups)}; --cfg job prints the whole config)"
        )
    name, label, value = best
    alias = _ALIAS.match(value) if isinstance(value, str) else None
    if alias:
        return f"did you mean {alias.group(1)}?"
    chosen_label = chosen.get(name.split(".")[0])
    needs = f" ({label})" if label is not None and label != chosen_label else ""
    return f"did you mean {name}{needs}?"


def unknown_key(plain: Mapping, raw: Any | None) -> str | None:
    """The one-line refusal of the first key nnlab does not know, or None when all are known.

    Parameters
    ----------
    plain : mapping
        The resolved config (``hydra`` node excluded or ignored).
    raw : mapping or None
        The same config unresolved (interpolations as text), or None when only the resolved one
        exists (then top-level extras are not checked: see the module docstring).
    """
    schema = nnlab_schema()
    chosen: dict[str, str | None] = {}
    for group in schema.groups:
        if isinstance(plain.get(group), Mapping):
            option, _ = schema.option_keys(group, plain[group].get("name"))
            chosen[group] = f"{group}={option}" if option else None
    uses = referenced(raw) if raw is not None else set()
    for section, value in plain.items():
        if section == "hydra":
            continue
        if section in schema.groups and isinstance(value, Mapping):
            _, known = schema.option_keys(section, value.get("name"))
            where = chosen[section] or section
            found = [(f"{section}.{k}", v) for k, v in leaves(value) if k not in known]
        else:
            roots = {k.split(".")[0] for k in schema.top}
            if section not in roots and (raw is None or section in uses):
                continue  # an experiment's helper key (or untraceable in a resolved dict)
            where = section if section in roots else "nnlab knows"
            found = [(k, v) for k, v in leaves({section: value}) if k not in schema.top]
        if found:
            key, bad = found[0]
            return f"{key}={bad!r}: {_not_known(key, where, schema, chosen)}"
    return None


def _not_known(key: str, where: str, schema: Schema, chosen: dict[str, str | None]) -> str:
    """``not a key of optimizer=adam; ...`` with the option that has it or the nearest key."""
    what = "not a key nnlab knows" if where == "nnlab knows" else f"not a key of {where}"
    group = key.split(".")[0]
    if group in schema.named and "." in key:
        inner = key.split(".", 1)[1]
        others = sorted(f"{group}={o}" for o, keys in schema.groups[group].items() if inner in keys)
        if others:
            example = f"{others[-1]} {key}=..."
            return f"{what}; it is a key of {', '.join(others)} (e.g. {example})"
    return f"{what}; {nearest(key, schema, chosen)}"
