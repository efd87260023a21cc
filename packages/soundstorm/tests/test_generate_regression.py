"""``SoundStorm.generate`` decodes exactly what it decoded before it was split into pieces.

``data/generate_regression.safetensors`` holds a tiny model's weights, the inputs of the
cases below and the outputs the code of commit 2621415 (``generate`` in one 158-line
function) gave for them with a seeded generator, prompts and guidance on and off. It was
written by ``record()`` (``python tests/test_generate_regression.py`` in the package);
rewriting it is only right when the decoding is meant to change.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from cadence.soundstorm import SoundStorm, SoundStormConfig

# b batch | s semantic frames | p prompt frames | n codec frames | q quantizer levels

FIXTURE = Path(__file__).parent / "data" / "generate_regression.safetensors"
OUTPUTS = ("codes", "lengths", "sequence", "prompt_lengths")


def _config() -> SoundStormConfig:
    return SoundStormConfig.tiny(semantic_frame_rate=25.0)  # 25 Hz tokens, 50 Hz codes


def _inputs() -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(11)
    return {
        "semantic": torch.randint(0, 12, (3, 12), generator=gen),
        "semantic_lengths": torch.tensor([12, 9, 5]),
        "prompt_codes": torch.randint(0, 16, (3, 8, 3), generator=gen),
        "prompt_lengths": torch.tensor([8, 3, 0]),
        "prompt_semantic": torch.randint(0, 12, (3, 4), generator=gen),
        "prompt_semantic_lengths": torch.tensor([4, 2, 1]),
        "num_frames": torch.tensor([7, 20, 3]),
    }


def _prompted(x: dict[str, Tensor], *, with_semantic: bool = True) -> dict:
    out = dict(prompt_codes=x["prompt_codes"], prompt_lengths=x["prompt_lengths"])
    if with_semantic:
        out |= dict(
            prompt_semantic=x["prompt_semantic"],
            prompt_semantic_lengths=x["prompt_semantic_lengths"],
        )
    return out


# name -> (keyword arguments of generate from the inputs, generator seed)
CASES = {
    "plain": (lambda x: dict(semantic_lengths=x["semantic_lengths"], iterations=(5, 2, 1)), 1),
    "plain_guided": (
        lambda x: dict(
            semantic_lengths=x["semantic_lengths"],
            iterations=(5, 2, 1),
            guidance_scale=2.5,
            temperature=0.8,
            choice_temperature=0.5,
        ),
        2,
    ),
    "prompt": (
        lambda x: dict(
            semantic_lengths=x["semantic_lengths"], iterations=(6, 2, 1), **_prompted(x)
        ),
        3,
    ),
    "prompt_guided": (
        lambda x: dict(
            semantic_lengths=x["semantic_lengths"],
            iterations=(6, 2, 1),
            guidance_scale=2.5,
            schedule="linear",
            **_prompted(x),
        ),
        4,
    ),
    "bare_prompt_guided_default_plan": (
        lambda x: dict(
            semantic_lengths=x["semantic_lengths"],
            num_frames=x["num_frames"],
            guidance_scale=3.0,
            **_prompted(x, with_semantic=False),
        ),
        5,
    ),
}


def _model(weights: dict[str, Tensor] | None = None) -> SoundStorm:
    torch.manual_seed(0)
    model = SoundStorm(_config()).eval()
    if weights is not None:
        model.load_state_dict(weights, strict=True)
    return model


def _run(model: SoundStorm, inputs: dict[str, Tensor], name: str) -> dict[str, Tensor]:
    kwargs, seed = CASES[name]
    out = model.generate(
        inputs["semantic"], generator=torch.Generator().manual_seed(seed), **kwargs(inputs)
    )
    result = {key: getattr(out, key) for key in OUTPUTS}
    result["forward_passes"] = torch.tensor(out.forward_passes)
    return result


def record() -> None:
    """Write the fixture from the code as it is now (see the module docstring)."""
    model = _model()
    inputs = _inputs()
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    tensors |= {f"inputs.{k}": v for k, v in inputs.items()}
    for name in CASES:
        tensors |= {f"{name}.{k}": v.clone() for k, v in _run(model, inputs, name).items()}
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(FIXTURE))


@pytest.fixture(scope="module")
def recorded() -> dict[str, Tensor]:
    return load_file(str(FIXTURE))


@pytest.mark.parametrize("name", sorted(CASES))
def test_generate_output_is_bit_identical_to_the_recorded_one(recorded, name):
    weights = {k[len("model.") :]: v for k, v in recorded.items() if k.startswith("model.")}
    inputs = {k[len("inputs.") :]: v for k, v in recorded.items() if k.startswith("inputs.")}
    assert all(torch.equal(inputs[k], v) for k, v in _inputs().items())
    out = _run(_model(weights), inputs, name)
    for key, value in out.items():
        expected = recorded[f"{name}.{key}"]
        assert value.dtype == expected.dtype and torch.equal(value, expected), f"{name}: {key}"


if __name__ == "__main__":
    record()
