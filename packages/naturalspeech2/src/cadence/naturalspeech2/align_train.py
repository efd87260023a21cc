"""Training the :class:`~cadence.naturalspeech2.aligner.Aligner` with core's ``Trainer``.

A corpus with phonemes but no timings (a real corpus phonemized with espeak-ng) gets its
durations from an aligner trained on it: :class:`AlignerDataset` pairs each utterance's
phoneme ids with its log-mel frames at the codec's frame rate (the frames NaturalSpeech 2's
latents have), :func:`collate_aligner` pads them, and :class:`AlignerTrainStep` returns the
forward-sum loss (soft alignments only: MAS runs when the durations are read, in
:func:`~cadence.naturalspeech2.data.preprocess_corpus`).
"""

# b batch | l phonemes | n frames | f mel bins

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torch.utils.data import Dataset

from cadence.core.audio import load
from cadence.core.config import Config, ConfigError
from cadence.core.data import pad_sequences
from cadence.core.train import StepOutput

from .data import mel_features
from .text import SILENCE, PhonemeVocabulary

__all__ = ["AlignerDataset", "AlignerTrainConfig", "AlignerTrainStep", "collate_aligner"]


@dataclass(frozen=True, kw_only=True)
class AlignerTrainConfig(Config):
    """How the aligner is trained.

    Attributes:
        max_seconds: utterances longer than this are left out of training (the soft alignment
            is ``n x l`` per item; durations are still read for every utterance).
    """

    max_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.max_seconds > 0:
            raise ConfigError(f"max_seconds must be > 0, got {self.max_seconds}")


class AlignerDataset(Dataset):
    """Utterances of a manifest as ``{"id", "phonemes" (l,), "mel" (n, f)}`` for the aligner.

    Rows without phonemes, and rows too short for their phonemes (MAS gives every phoneme at
    least one frame) or longer than ``max_seconds``, are left out (:attr:`skipped` counts them).

    Args:
        manifest: a ``.jsonl`` with ``id``, ``path`` (relative to the manifest), ``phonemes``
            and ``duration`` (seconds) per line.
        vocabulary: the aligner's phoneme ids (a silence symbol opens each sequence, as in
            :func:`~cadence.naturalspeech2.data.preprocess_corpus`).
        sample_rate, hop_length: the codec's, so that one mel frame is one latent frame.
        n_mels: mel bins (the aligner's ``feature_dim``).
        max_seconds: longer utterances are left out (the soft alignment is ``n x l`` per item).
    """

    def __init__(
        self,
        manifest: str | os.PathLike,
        vocabulary: PhonemeVocabulary,
        *,
        sample_rate: int,
        hop_length: int,
        n_mels: int = 80,
        max_seconds: float = 30.0,
    ):
        import json

        self.root = Path(manifest).parent
        self.vocabulary = vocabulary
        self.sample_rate, self.hop_length, self.n_mels = sample_rate, hop_length, n_mels
        frame_rate = sample_rate / hop_length
        self.rows: list[dict[str, Any]] = []
        self.skipped = 0
        with open(manifest) as f:
            for line in f:
                if not line.strip():
                    continue
                row = json.loads(line)
                phonemes = row.get("phonemes") or []
                seconds = float(row.get("duration", 0.0))
                # the silence symbol is one more phoneme
                too_short = len(phonemes) + 1 > seconds * frame_rate
                if not phonemes or too_short or seconds > max_seconds:
                    self.skipped += 1
                    continue
                # keep only what an item needs: a manifest of 300k rows stays small in memory
                self.rows.append({"id": row["id"], "path": row["path"], "phonemes": phonemes})

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        audio, _ = load(self.root / row["path"], sample_rate=self.sample_rate, channels=1)
        frames = max(1, math.ceil(audio.shape[-1] / self.hop_length))
        mel = mel_features(audio[0], self.sample_rate, self.hop_length, frames, self.n_mels)
        return {
            "id": row["id"],
            "phonemes": self.vocabulary.encode([SILENCE, *row["phonemes"]]),
            "mel": mel,
        }


def collate_aligner(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pad a list of :class:`AlignerDataset` items: ``phonemes`` ``(b, l)``, ``mel`` ``(b, n, f)`` and masks."""
    phonemes, phoneme_mask = pad_sequences([it["phonemes"] for it in items])
    mel, frame_mask = pad_sequences([it["mel"].float() for it in items])
    return {
        "phonemes": phonemes,
        "phoneme_mask": phoneme_mask,
        "mel": mel,
        "frame_mask": frame_mask,
        "ids": [it["id"] for it in items],
    }


class AlignerTrainStep:
    """``step(model, batch) -> StepOutput``: the aligner's forward-sum loss (no MAS in training)."""

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> StepOutput:
        out = model(
            batch["phonemes"],
            batch["phoneme_mask"].bool(),
            batch["mel"],
            batch["frame_mask"].bool(),
            hard=False,
        )
        loss: Tensor = out.loss
        return StepOutput(
            loss=loss,
            metrics={"forward_sum": loss.detach()},
            num_items=int(batch["phonemes"].shape[0]),
        )
