"""Checkpoints saved before the checkpoint format 2 (tests/data/checkpoints_v1) still load.

Format 2 moved training settings (loss weights, prompt sampling, condition dropout) from the
model configs into train configs. The fixtures are tiny models of every Cadence model class,
saved by the format-1 code (``make_v1.py`` beside them, run at commit 71057ab); loading one
drops the keys that moved and must give the same weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cadence.core.checkpoint import FORMAT_VERSION, load_pretrained, read_checkpoint_config
from cadence.core.config import config_to_dict

FIXTURES = Path(__file__).parent / "data" / "checkpoints_v1"
NAMES = sorted(p.name for p in FIXTURES.iterdir() if (p / "config.json").exists())


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_the_fixtures_are_format_1_and_cover_every_model():
    assert FORMAT_VERSION >= 2
    assert len(NAMES) >= 10
    for name in NAMES:
        assert read_checkpoint_config(FIXTURES / name)["format_version"] == 1


@pytest.mark.parametrize("name", NAMES)
def test_a_format_1_checkpoint_loads_with_its_weights(name):
    directory = FIXTURES / name
    model = load_pretrained(directory)
    stored = load_file(str(directory / "model.safetensors"))
    # Weights renamed since format 1 are compared under their new names (the model's own hook).
    upgrade = getattr(type(model), "upgrade_state_dict", None)
    if upgrade is not None:
        stored = upgrade(stored, 1)
    own = model.state_dict()
    for key, tensor in stored.items():
        assert torch.equal(own[key], tensor.to(own[key].dtype)), key
    # Every model setting that survived keeps its value; only keys that moved out are gone.
    saved = _flatten(json.loads((directory / "config.json").read_text())["config"])
    loaded = _flatten(config_to_dict(model.config))
    for key, value in loaded.items():
        if key in saved:
            assert json.dumps(saved[key]) == json.dumps(value), key
