"""Text conditioning: a pluggable :class:`TextEncoder`, and a local T5 encoder behind the ``t5`` extra.

Any object with ``dim`` and ``encode(texts) -> (embeddings (b, m, dim), mask (b, m))``
conforms. Models take the embeddings as ``cond`` / ``cond_mask`` (their config's ``cond_dim``
must equal the encoder's ``dim``).
"""

# b batch | m text tokens | d embedding width

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["T5TextEncoder", "TextEncoder"]


@runtime_checkable
class TextEncoder(Protocol):
    """Texts -> a conditioning sequence.

    Attributes:
        dim: width of the embeddings (a model's ``cond_dim``).
    """

    dim: int

    def encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """``b`` texts -> ``(b, m, dim)`` float embeddings and ``(b, m)`` bool mask (True = token)."""
        ...


class T5TextEncoder:
    """The encoder of a T5 checkpoint, read from a local directory (nothing is downloaded).

    Needs the ``t5`` extra: ``pip install "cadence-audiolm[t5]"`` (transformers,
    sentencepiece). The directory holds a ``T5EncoderModel`` or ``T5ForConditionalGeneration``
    checkpoint and its tokenizer (``save_pretrained`` of both).

    Args:
        path: local checkpoint directory.
        max_length: texts are truncated to this many tokens.
        device: where the encoder runs.
    """

    def __init__(
        self, path: str | os.PathLike, *, max_length: int = 64, device: str | torch.device = "cpu"
    ):
        try:
            from transformers import AutoTokenizer, T5EncoderModel
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                'T5TextEncoder needs the `t5` extra: pip install "cadence-audiolm[t5]" '
                "(transformers and sentencepiece)"
            ) from err
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"T5 checkpoint directory {path} not found; give a local directory made with "
                "save_pretrained (T5TextEncoder never downloads)"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = T5EncoderModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.dim = int(self.model.config.d_model)
        self.max_length = max_length

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, not one string")
        if len(texts) == 0:
            raise ValueError("encode needs at least one text")
        device = next(self.model.parameters()).device
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        ids = batch["input_ids"].to(device)
        mask = batch["attention_mask"].to(device).bool()
        hidden = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return hidden.float(), mask
