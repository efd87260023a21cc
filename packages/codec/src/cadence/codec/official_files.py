"""Reading other projects' checkpoint files safely, with errors that say what a file is.

Shared by the loaders of published codecs (SpeechTokenizer, HiFi-Codec): ``torch.load`` runs
with ``weights_only=True`` so no pickled code executes, JSON configs are checked to be what
the loader expects, and a state dict that does not fit the model lists what differs.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cadence.core.checkpoint import CONFIG_NAME, CheckpointError

__all__ = ["describe_keys", "load_into", "read_json", "read_torch_file", "refuse_cadence_dir"]


def read_torch_file(path: Path, *, hint: str) -> Any:
    """``torch.load(path, weights_only=True)``; CheckpointError when it holds code or is no checkpoint.

    ``hint`` (what to pass instead) ends every message.
    """
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}; {hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # "Unsupported global": the pickle names a class or function to run on load.
        if "Unsupported global" not in str(err) and "global" not in str(err).lower():
            raise CheckpointError(f"{path} is not a PyTorch checkpoint ({err}); {hint}") from err
        raise CheckpointError(
            f"{path} holds Python code or objects besides tensors (its pickle names a class "
            f"or function to run when loaded), which is refused for safety; {hint}"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as err:
        # a corrupt or foreign file fails anywhere in the unpickler (KeyError: a bad memo)
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({err}); {hint}") from err


def read_json(path: Path, *, hint: str) -> dict[str, Any]:
    """A JSON object from ``path``; CheckpointError when missing, invalid or a Cadence checkpoint's."""
    if not path.is_file():
        raise CheckpointError(f"no config file {path}; {hint}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); {hint}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a JSON {type(data).__name__}, not an object; {hint}")
    return data


def refuse_cadence_dir(directory: Path) -> None:
    """Raise when ``directory`` is a Cadence checkpoint (it loads with ``load_pretrained``)."""
    config = directory / CONFIG_NAME
    if not config.is_file():
        return
    try:
        data = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return
    if isinstance(data, dict) and "format_version" in data and "class" in data:
        name = str(data["class"]).rsplit(".", 1)[-1]
        raise CheckpointError(
            f"{directory} is a Cadence checkpoint of {data['class']}; load it with "
            f"{name}.load_pretrained({str(directory)!r})"
        )


def describe_keys(keys: list[str]) -> str:
    """``"12 tensors under ['decoder', 'encoder'] (e.g. [...])"``: what a state dict holds."""
    prefixes = sorted({k.split(".")[0] for k in keys})[:8]
    return f"{len(keys)} tensors under {prefixes} (e.g. {keys[:3]})"


def load_into(model: nn.Module, state: dict[str, Tensor], *, where: str, what: str) -> None:
    """Strict ``load_state_dict`` whose error lists missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own.keys() & state.keys()
        if own[k].shape != state[k].shape
    ]
    if missing or unexpected or shapes:
        lines = [f"{where} does not match the {what} its config describes:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): {missing[:6]}")
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): {unexpected[:6]}")
        if shapes:
            lines.append(f"  shape mismatches: {shapes[:6]}")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state)
