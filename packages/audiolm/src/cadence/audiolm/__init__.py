"""Cadence AudioLM: semantic, coarse and fine transformers with KV-cached sampling, guidance, long-form generation."""

from .audiolm import AudioLM, AudioLMOutput
from .chains import speaker_groups
from .coarse import CoarseTransformer, CoarseTransformerConfig
from .fine import FineTransformer, FineTransformerConfig
from .sampling import SamplingOptions
from .semantic import SemanticTransformer, SemanticTransformerConfig
from .text import T5TextEncoder, TextEncoder
from .train import (
    AudioLMTrainConfig,
    StageDataset,
    StageTrainStep,
    collate_stage,
    next_token_loss,
    stage_step,
)
from .transformer import (
    ConditionMode,
    FastDecoder,
    GenerateOutput,
    StageConfig,
    StageOutput,
    StageTransformer,
)

__all__ = [
    "AudioLM",
    "AudioLMOutput",
    "AudioLMTrainConfig",
    "CoarseTransformer",
    "CoarseTransformerConfig",
    "ConditionMode",
    "FastDecoder",
    "FineTransformer",
    "FineTransformerConfig",
    "GenerateOutput",
    "SamplingOptions",
    "SemanticTransformer",
    "SemanticTransformerConfig",
    "StageConfig",
    "StageDataset",
    "StageOutput",
    "StageTrainStep",
    "StageTransformer",
    "T5TextEncoder",
    "TextEncoder",
    "collate_stage",
    "next_token_loss",
    "speaker_groups",
    "stage_step",
]
