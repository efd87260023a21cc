from dataclasses import dataclass, field
from typing import Literal

import pytest

from cadence.core.config import Config, ConfigError


@dataclass(frozen=True, kw_only=True)
class InnerConfig(Config):
    width: int = 4


@dataclass(frozen=True, kw_only=True)
class OuterConfig(Config):
    dim: int = 8
    rate: float = 0.5
    strides: tuple[int, ...] = (2, 4)
    norm: Literal["layer", "rms"] = "rms"
    inner: InnerConfig = field(default_factory=InnerConfig)
    dropout: float | None = None
    name: str = "x"


def test_json_round_trip(tmp_path):
    config = OuterConfig(
        dim=16, strides=(2, 4, 5, 8), norm="layer", inner=InnerConfig(width=3), dropout=0.1
    )
    config.to_json(tmp_path / "c.json")
    loaded = OuterConfig.from_json(tmp_path / "c.json")
    assert loaded == config
    assert isinstance(loaded.strides, tuple) and isinstance(loaded.inner, InnerConfig)
    assert OuterConfig.from_json(config.to_json()) == config


def test_frozen():
    with pytest.raises(AttributeError):
        OuterConfig().dim = 3  # type: ignore[misc]


def test_unknown_key_raises_with_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['dimm'\].*valid keys"):
        OuterConfig.from_dict({"dimm": 3})
    with pytest.raises(ConfigError, match="unknown key"):
        OuterConfig.from_dict({"inner": {"widht": 3}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"norm": "batch"}, "must be one of"),
        ({"dim": "8"}, "must be an integer"),
        ({"dim": True}, "must be an integer"),
        ({"rate": "fast"}, "must be a number"),
        ({"strides": 3}, "must be a list"),
        ({"name": 3}, "must be a string"),
    ],
)
def test_ill_typed_values(data, message):
    with pytest.raises(ConfigError, match=message):
        OuterConfig.from_dict(data)


def test_missing_keys_take_defaults_and_ints_become_floats():
    config = OuterConfig.from_dict({"rate": 1})
    assert config.rate == 1.0 and isinstance(config.rate, float)
    assert config.dim == 8


def test_replace_validates_names():
    assert OuterConfig().replace(dim=3).dim == 3
    with pytest.raises(ConfigError, match="no field"):
        OuterConfig().replace(depth=3)


def test_bad_json(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        OuterConfig.from_json(path)
    with pytest.raises(ConfigError, match="not found"):
        OuterConfig.from_json(tmp_path / "missing.json")


def test_an_older_format_drops_the_keys_that_moved_even_in_nested_configs():
    from dataclasses import dataclass, field
    from typing import ClassVar

    from cadence.core.config import Config, ConfigError, config_from_dict, upgrade_config_dict

    @dataclass(frozen=True, kw_only=True)
    class Inner(Config):
        dropped_keys: ClassVar[tuple[str, ...]] = ("old_weight",)
        dim: int = 4

    @dataclass(frozen=True, kw_only=True)
    class Outer(Config):
        dropped_keys: ClassVar[tuple[str, ...]] = ("drop_prob",)
        inner: Inner = field(default_factory=Inner)
        depth: int = 1

    old = {"depth": 2, "drop_prob": 0.1, "inner": {"dim": 8, "old_weight": 1.0}}
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict(Outer, old)  # a current config may not hold them
    upgraded = config_from_dict(Outer, upgrade_config_dict(Outer, old, 1))
    assert upgraded == Outer(depth=2, inner=Inner(dim=8))
