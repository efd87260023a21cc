"""Cadence SoundStorm: Conformer with per-level MaskGIT decoding, prompting and voice conversion."""

from .config import SoundStormConfig, SoundStormTrainConfig
from .layout import default_iterations
from .masking import (
    TrainingMask,
    align_semantic,
    aligned_length,
    semantic_frame_index,
    training_mask,
)
from .soundstorm import SoundStorm, SoundStormOutput
from .train import (
    SoundStormTrainStep,
    masked_accuracy,
    open_shards,
    train_soundstorm,
    unigram_accuracy,
)

__all__ = [
    "SoundStorm",
    "SoundStormConfig",
    "SoundStormOutput",
    "SoundStormTrainConfig",
    "SoundStormTrainStep",
    "TrainingMask",
    "align_semantic",
    "aligned_length",
    "default_iterations",
    "masked_accuracy",
    "open_shards",
    "semantic_frame_index",
    "train_soundstorm",
    "training_mask",
    "unigram_accuracy",
]
