"""Cadence flow matching: SpeechGPT-Gen's perceptual model, conditional flow matching from semantic to acoustic.

* :class:`ConditionalFlowMatcher`: frame-aligned semantic embeddings -> codec latents
  (OT conditional flow matching, Gaussian or semantic-injected prior, infilling context,
  classifier-free guidance, Euler / midpoint sampling with exactly ``steps`` steps).
* :class:`HierarchicalConditionalFlowMatcher`: discrete semantic tokens -> latents of any
  ``LatentCodec``, frame rates converted automatically, with or without an acoustic prompt.
* Training on precomputed shards (:func:`build_trainer`, :class:`FlowMatchingTrainStep`
  configured by :class:`FlowMatchingTrainConfig`) and :func:`voice_conversion`.
"""

from .config import FlowMatcherConfig, FlowMatchingTrainConfig, HierarchicalFlowMatcherConfig
from .hierarchical import Generation, HierarchicalConditionalFlowMatcher, pack_prefix
from .model import (
    ConditionalFlowMatcher,
    FlowMatchingDraw,
    FlowPrediction,
    SinusoidalTimeEmbedding,
)
from .paths import ot_interpolate, ot_velocity
from .solvers import EVALUATIONS_PER_STEP, ODEMethod, solve_ode
from .step import FlowMatchingLoss, FlowMatchingTrainStep
from .train import (
    build_trainer,
    check_shards,
    collate_flow_batch,
    fit_latent_statistics,
    reconstruction_errors,
)
from .vc import voice_conversion

__all__ = [
    "EVALUATIONS_PER_STEP",
    "ConditionalFlowMatcher",
    "FlowMatcherConfig",
    "FlowMatchingDraw",
    "FlowMatchingLoss",
    "FlowMatchingTrainConfig",
    "FlowMatchingTrainStep",
    "FlowPrediction",
    "Generation",
    "HierarchicalConditionalFlowMatcher",
    "HierarchicalFlowMatcherConfig",
    "ODEMethod",
    "SinusoidalTimeEmbedding",
    "build_trainer",
    "check_shards",
    "collate_flow_batch",
    "fit_latent_statistics",
    "ot_interpolate",
    "ot_velocity",
    "pack_prefix",
    "reconstruction_errors",
    "solve_ode",
    "voice_conversion",
]
