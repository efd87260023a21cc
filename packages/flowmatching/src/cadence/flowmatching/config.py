"""Configs of the flow-matching models and of their training (frozen, strict JSON round trip)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from cadence.core.config import Config, ConfigError
from cadence.core.nn import BackboneConfig

__all__ = ["FlowMatcherConfig", "FlowMatchingTrainConfig", "HierarchicalFlowMatcherConfig"]


def _default_backbone() -> BackboneConfig:
    # SpeechGPT-Gen's perceptual model: a U-shaped Conformer with adaptive norms driven by
    # the flow time.
    return BackboneConfig(kind="uconformer", dim=512, depth=8, heads=8, cond_dim=512)


@dataclass(frozen=True, kw_only=True)
class FlowMatcherConfig(Config):
    """Config of :class:`~cadence.flowmatching.ConditionalFlowMatcher`.

    Attributes:
        latent_dim: ``d``, width of the continuous latents generated (the codec's ``latent_dim``).
        semantic_dim: ``e``, width of the frame-aligned semantic embeddings conditioning it.
        backbone: the sequence network (``cadence.core.nn``); ``backbone.cond_dim`` is the
            width of the flow-time embedding fed to every block's adaptive LayerNorm, so it
            must be > 0.
        prior: ``"gaussian"``: ``x0 ~ N(0, prior_std^2 I)``; ``"semantic"``: SpeechGPT-Gen's
            chain-of-information prior ``x0 = W s + prior_std * noise``, the semantic
            embedding ``s`` projected to latent space by a learned linear map ``W``.
        prior_std: standard deviation of the prior's noise (in normalized latent units).

    The training settings (the path's ``sigma_min``, the prior loss weight, condition dropout
    and training contexts) are in :class:`FlowMatchingTrainConfig`; checkpoints of format 1
    held them here and load without them (:attr:`dropped_keys`).
    """

    dropped_keys: ClassVar[tuple[str, ...]] = (
        "sigma_min",
        "prior_loss_weight",
        "cond_drop_prob",
        "context_prob",
        "min_generate_fraction",
    )

    latent_dim: int = 64
    semantic_dim: int = 512
    backbone: BackboneConfig = field(default_factory=_default_backbone)
    prior: Literal["gaussian", "semantic"] = "semantic"
    prior_std: float = 1.0

    def __post_init__(self) -> None:
        if self.latent_dim < 1 or self.semantic_dim < 1:
            raise ConfigError("latent_dim and semantic_dim must be >= 1")
        if self.backbone.cond_dim < 1:
            raise ConfigError(
                "backbone.cond_dim must be > 0: it is the width of the flow-time embedding "
                "(adaptive LayerNorm); set e.g. cond_dim=backbone.dim"
            )
        if self.prior_std <= 0:
            raise ConfigError(f"prior_std must be > 0, got {self.prior_std}")

    @classmethod
    def tiny(cls, **changes) -> FlowMatcherConfig:
        """A few-thousand-parameter config for tests."""
        base = cls(
            latent_dim=8,
            semantic_dim=16,
            backbone=BackboneConfig(
                kind="conformer", dim=32, depth=2, heads=2, conv_kernel_size=5, cond_dim=32
            ),
        )
        return base.replace(**changes)


@dataclass(frozen=True, kw_only=True)
class FlowMatchingTrainConfig(Config):
    """How :class:`~cadence.flowmatching.FlowMatchingTrainStep` draws and scores its problems.

    Attributes:
        sigma_min: spread of the OT path at ``t = 1`` (Lipman et al. 2023); sampling does
            not use it.
        prior_loss_weight: weight of the prior projection's regression loss
            ``||W s - x1||^2`` (semantic prior only; see ``ConditionalFlowMatcher``).
        cond_drop_prob: probability of training a sample with no semantic condition and no
            context (the unconditional model of classifier-free guidance).
        context_prob: probability that a (conditioned) training sample gets an acoustic
            context: the latents outside one contiguous generated span are given.
        min_generate_fraction: the generated span covers a fraction of the frames drawn
            uniformly from ``[min_generate_fraction, 1]`` (Voicebox: 0.7).
    """

    sigma_min: float = 1e-4
    prior_loss_weight: float = 1.0
    cond_drop_prob: float = 0.2
    context_prob: float = 0.7
    min_generate_fraction: float = 0.7

    def __post_init__(self) -> None:
        if not 0.0 <= self.sigma_min < 1.0:
            raise ConfigError(f"sigma_min must be in [0, 1), got {self.sigma_min}")
        for name in ("cond_drop_prob", "context_prob", "min_generate_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        if self.prior_loss_weight < 0:
            raise ConfigError(f"prior_loss_weight must be >= 0, got {self.prior_loss_weight}")


@dataclass(frozen=True, kw_only=True)
class HierarchicalFlowMatcherConfig(Config):
    """Config of :class:`~cadence.flowmatching.HierarchicalConditionalFlowMatcher`.

    Attributes:
        codebook_size: semantic vocabulary (the ``SemanticTokenizer``'s ``codebook_size``).
        semantic_frame_rate: tokens per second (the tokenizer's ``frame_rate``).
        latent_frame_rate: latent frames per second (the ``LatentCodec``'s ``frame_rate``).
        flow: the flow matcher; ``flow.semantic_dim`` is the token embedding width and
            ``flow.latent_dim`` must be the codec's ``latent_dim``.
    """

    codebook_size: int = 500
    semantic_frame_rate: float = 50.0
    latent_frame_rate: float = 50.0
    flow: FlowMatcherConfig = field(default_factory=FlowMatcherConfig)

    def __post_init__(self) -> None:
        if self.codebook_size < 1:
            raise ConfigError(f"codebook_size must be >= 1, got {self.codebook_size}")
        if self.semantic_frame_rate <= 0 or self.latent_frame_rate <= 0:
            raise ConfigError("semantic_frame_rate and latent_frame_rate must be > 0")

    @classmethod
    def tiny(cls, **changes) -> HierarchicalFlowMatcherConfig:
        """A tiny config for tests: 32 tokens at 25 Hz -> 8-dim latents at 50 Hz."""
        base = cls(
            codebook_size=32,
            semantic_frame_rate=25.0,
            latent_frame_rate=50.0,
            flow=FlowMatcherConfig.tiny(),
        )
        return base.replace(**changes)
