"""Frozen config dataclasses <-> JSON, strictly.

A model's config holds everything needed to rebuild it, and is saved beside its weights.
Loading is strict: an unknown key is an error (a typo in a config file must not be
silently ignored), a missing key takes the field's default, and ``Literal`` fields are
checked against their allowed values.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True, kw_only=True)
    ... class TinyConfig(Config):
    ...     dim: int = 8
    >>> TinyConfig.from_dict({"dim": 16})
    TinyConfig(dim=16)
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["Config", "ConfigError", "config_from_dict", "config_to_dict", "upgrade_config_dict"]

C = TypeVar("C", bound="DataclassInstance")


class ConfigError(ValueError):
    """A config dict or file does not describe a valid config."""


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass (possibly nested) as plain JSON-able data."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    return {f.name: _to_jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Build ``cls`` from a dict; unknown keys and ill-typed values raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{cls.__name__} got unknown key(s) {unknown}; valid keys are {sorted(fields)}"
        )
    hints = get_type_hints(cls)
    kwargs = {
        name: _coerce(hints[name], value, f"{cls.__name__}.{name}") for name, value in data.items()
    }
    try:
        return cls(**kwargs)
    except TypeError as err:  # e.g. a required field missing
        raise ConfigError(f"{cls.__name__}: {err}") from err


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Turn JSON data back into the annotated type (tuples, nested configs, Literals)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where} must be one of {list(get_args(tp))}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} matches none of {args}: {errors}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # an annotation is a class
        if isinstance(value, tp):
            return value
        return config_from_dict(tp, value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where} must have {len(args)} items, got {len(value)}")
        return tuple(
            _coerce(a, v, f"{where}[{i}]")
            for i, (a, v) in enumerate(zip(args or [Any] * len(value), value))
        )
    if origin is list:
        (arg,) = get_args(tp) or (Any,)
        return [_coerce(arg, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, arg = get_args(tp) or (Any, Any)
        return {k: _coerce(arg, v, f"{where}[{k!r}]") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def _config_types(tp: Any) -> list[type]:
    """The Config dataclasses a field annotation can hold (``X``, ``X | None``)."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return [tp]
    if get_origin(tp) in (Union, types.UnionType):
        return [a for a in get_args(tp) if dataclasses.is_dataclass(a) and isinstance(a, type)]
    return []


def upgrade_config_dict(cls: type, data: Any, from_version: int) -> Any:
    """Bring a config dict saved by an older checkpoint format up to date, nested configs too.

    Each Config class says what changed through :meth:`Config.upgrade_dict` (by default: drop
    its ``dropped_keys``); the result is then parsed as strictly as any config.
    """
    if not isinstance(data, dict):
        return data
    upgrade = getattr(cls, "upgrade_dict", None)
    if upgrade is not None:
        data = upgrade(dict(data), from_version)
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        nested = _config_types(hints.get(f.name))
        if f.name in data and len(nested) == 1:
            data[f.name] = upgrade_config_dict(nested[0], data[f.name], from_version)
    return data


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Base of every Cadence config: frozen, keyword-only, strict JSON round trip.

    Subclasses are declared with ``@dataclass(frozen=True, kw_only=True)``.

    Attributes:
        dropped_keys: keys that configs saved by an older checkpoint format held and this one
            no longer has (e.g. training settings that moved into a train config). Loading
            such a checkpoint drops them; in a current config they are unknown keys, refused.
    """

    dropped_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def upgrade_dict(cls, data: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Rewrite a config dict of checkpoint format ``from_version`` into this version's.

        The default drops :attr:`dropped_keys`; override to rename or restructure fields.
        """
        for key in cls.dropped_keys:
            data.pop(key, None)
        return data

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        return config_from_dict(cls, data)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The config as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        if path is not None:
            from .io import write_text

            write_text(path, text)
        return text

    @classmethod
    def from_json(cls: type[C], path_or_text: str | os.PathLike) -> C:
        """Read a config from a JSON file path or a JSON string."""
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            try:
                text = Path(path_or_text).read_text()
            except FileNotFoundError as err:
                raise ConfigError(f"config file not found: {path_or_text}") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{cls.__name__}: invalid JSON ({err})") from err
        return config_from_dict(cls, data)

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated like a load)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"{type(self).__name__} has no field(s) {unknown}")
        return dataclasses.replace(self, **changes)
