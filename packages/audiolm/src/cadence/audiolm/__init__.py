"""Cadence AudioLM: semantic, coarse and fine transformers with KV-cached sampling, guidance, long-form generation."""

from .audiolm import AudioLM, AudioLMOutput
from .coarse import CoarseTransformer, CoarseTransformerConfig
from .fine import FineTransformer, FineTransformerConfig
from .semantic import LossOutput, SemanticTransformer, SemanticTransformerConfig
from .text import T5TextEncoder, TextEncoder
from .train import StageDataset, collate_stage, stage_step
from .transformer import ConditionMode, FastDecoder, GenerateOutput, StageConfig, StageTransformer

__all__ = [
    "AudioLM",
    "AudioLMOutput",
    "CoarseTransformer",
    "CoarseTransformerConfig",
    "ConditionMode",
    "FastDecoder",
    "FineTransformer",
    "FineTransformerConfig",
    "GenerateOutput",
    "LossOutput",
    "SemanticTransformer",
    "SemanticTransformerConfig",
    "StageConfig",
    "StageDataset",
    "StageTransformer",
    "T5TextEncoder",
    "TextEncoder",
    "collate_stage",
    "stage_step",
]
