"""Codec configs nest a :class:`SEANetConfig` (and a quantizer config): two helpers for that.

- :func:`with_changes`: a preset with some fields changed, where a dict for a nested config
  changes only the keys it names (``SoundStreamConfig.tiny(seanet={"causal": True})``);
- :func:`nest_format1`: checkpoints of format 1 held the nested settings as flat keys of
  the outer config; their ``upgrade_dict`` moves them under the nested field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from cadence.core.config import Config, ConfigError, config_to_dict

__all__ = ["nest_format1", "with_changes"]

C = TypeVar("C", bound=Config)


def with_changes(base: C, changes: Mapping[str, Any]) -> C:
    """``base`` with ``changes``; a dict given for a nested config field updates that config."""
    resolved: dict[str, Any] = {}
    for name, value in changes.items():
        current = getattr(base, name, None)
        if isinstance(value, Mapping) and isinstance(current, Config):
            unknown = sorted(set(value) - {f.name for f in dataclasses.fields(current)})
            if unknown:
                raise ConfigError(f"{type(current).__name__} has no field(s) {unknown}")
            value = dataclasses.replace(current, **value)
        resolved[name] = value
    return base.replace(**resolved)


def nest_format1(
    data: dict[str, Any],
    field: str,
    nested: type[Config],
    *,
    renames: Mapping[str, str] | None = None,
    base: Config | None = None,
) -> None:
    """Move the flat keys of a format-1 config dict that belong to ``nested`` under ``data[field]``.

    Args:
        data: the outer config dict, changed in place.
        field: the outer config's field that now holds ``nested``.
        nested: the nested config class; keys named like its fields move.
        renames: old flat key -> field of ``nested`` (moved first).
        base: the nested config the outer class defaults to; keys the old dict lacks keep
            that default's values rather than ``nested``'s own defaults.
    """
    if isinstance(data.get(field), dict):
        return  # already nested
    names = {f.name for f in dataclasses.fields(nested)}
    moved = {} if base is None else config_to_dict(base)
    for old, new in (renames or {}).items():
        if old in data:
            moved[new] = data.pop(old)
    for name in names & set(data):
        moved[name] = data.pop(name)
    data[field] = moved
