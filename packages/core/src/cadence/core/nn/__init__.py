"""Shared neural building blocks: rotary attention, Transformer / Conformer / U-Conformer backbones, a log-mel front end."""

from .attention import Attention, RotaryEmbedding, apply_rotary
from .backbone import Backbone, BackboneConfig, BackboneKind, build_backbone
from .blocks import (
    AdaptiveLayerNorm,
    ConformerBlock,
    ConvolutionModule,
    FeedForward,
    TransformerBlock,
)
from .frontend import MelFrontend, MelFrontendConfig

__all__ = [
    "AdaptiveLayerNorm",
    "Attention",
    "Backbone",
    "BackboneConfig",
    "BackboneKind",
    "ConformerBlock",
    "ConvolutionModule",
    "FeedForward",
    "MelFrontend",
    "MelFrontendConfig",
    "RotaryEmbedding",
    "TransformerBlock",
    "apply_rotary",
    "build_backbone",
]
