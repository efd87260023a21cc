"""Cadence AudioLM: semantic, coarse and fine transformers with KV-cached sampling, guidance, long-form generation."""

from .coarse import CoarseTransformer, CoarseTransformerConfig
from .fine import FineTransformer, FineTransformerConfig
from .semantic import LossOutput, SemanticTransformer, SemanticTransformerConfig
from .transformer import ConditionMode, FastDecoder, GenerateOutput, StageConfig, StageTransformer

__all__ = [
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
    "StageTransformer",
]
