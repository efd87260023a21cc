"""Pipeline components in their publishers' own layouts, loaded in place from local folders.

A ``pipeline.json`` component may name a Cadence checkpoint or one of these released
layouts, so a user points a pipeline at weights they already have without converting them:

- an official SpeechTokenizer folder: ``SpeechTokenizer.pt`` + its ``config.json``
  (``fnlp/SpeechTokenizer/speechtokenizer_hubert_avg``), read by
  :meth:`cadence.codec.SpeechTokenizer.from_official`;
- a Hugging Face DAC or Mimi folder: ``config.json`` with ``"model_type": "dac"`` or
  ``"mimi"`` + ``model.safetensors`` (``descript/dac_16khz``, ``kyutai/mimi``), read by
  :class:`cadence.codec.DacCodec` / :class:`cadence.codec.MimiCodec` (the ``hf`` extra).

Every loader reads weights only (safetensors, or ``torch.load(weights_only=True)``): no
pickled code runs. A folder in none of these layouts is left to the Cadence loader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from cadence.core.checkpoint import CONFIG_NAME

__all__ = ["SPEECHTOKENIZER_FILE", "load_official", "official_layout"]

SPEECHTOKENIZER_FILE = "SpeechTokenizer.pt"
# Hugging Face model_type -> the adapter class in cadence.codec
_HF_CODECS = {"dac": "DacCodec", "mimi": "MimiCodec"}


def official_layout(directory: str | os.PathLike) -> str | None:
    """``"speechtokenizer"``, ``"dac"``, ``"mimi"`` or None (a Cadence checkpoint or anything else)."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    if (directory / SPEECHTOKENIZER_FILE).is_file():
        return "speechtokenizer"
    config = directory / CONFIG_NAME
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None  # the Cadence loader says what is wrong with it
    model_type = data.get("model_type") if isinstance(data, dict) else None
    return model_type if model_type in _HF_CODECS else None


def load_official(directory: str | os.PathLike, *, device: str | torch.device = "cpu") -> Any:
    """The codec in ``directory`` if it is in a released layout (see the module), else None."""
    layout = official_layout(directory)
    if layout is None:
        return None
    import cadence.codec as codec

    if layout == "speechtokenizer":
        return codec.SpeechTokenizer.from_official(directory, device=device)
    return getattr(codec, _HF_CODECS[layout]).from_pretrained(directory, device=device)
