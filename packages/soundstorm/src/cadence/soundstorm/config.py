"""SoundStormConfig (everything needed to rebuild a model) and SoundStormTrainConfig."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from cadence.core.config import Config, ConfigError
from cadence.core.nn import BackboneConfig

__all__ = ["SoundStormConfig", "SoundStormTrainConfig"]


def _paper_backbone() -> BackboneConfig:
    # SoundStorm sec. 4: 12-layer Conformer, 16 heads, width 1024, FF 4096, kernel 5, rotary.
    return BackboneConfig(
        kind="conformer", dim=1024, depth=12, heads=16, ff_mult=4.0, conv_kernel_size=5
    )


@dataclass(frozen=True, kw_only=True)
class SoundStormConfig(Config):
    """SoundStorm (Borsos et al. 2023): codec codes from semantic tokens by per-level MaskGIT.

    Defaults are the paper's model (12 SoundStream levels of 1024 codes at 50 Hz, 25 Hz
    semantic tokens, a 12-layer Conformer of width 1024).

    Attributes:
        num_quantizers: residual levels ``Q`` of the codec.
        codebook_size: codes per level ``V``; id ``V`` is the mask token of every level.
        semantic_codebook_size: semantic vocabulary ``S``; id ``S`` is the "no condition"
            token (classifier-free guidance and prompts without semantic tokens).
        frame_rate: codec frames per second.
        semantic_frame_rate: semantic tokens per second; tokens are mapped onto codec frames
            by nearest frame (:func:`cadence.soundstorm.masking.semantic_frame_index`).
        backbone: the sequence model (Conformer, Transformer or U-Conformer from core);
            ``cond_dim`` must be 0; ``cross_attn_dim`` is 0 with ``semantic_conditioning=
            "aligned"`` and ``dim`` with ``"cross_attention"``.
        codebook_combiner: how a frame's level embeddings become one vector: ``"sum"`` (the
            paper) or ``"unet"`` (InstructTTS: a shallow U-Net over the level axis,
            :class:`~cadence.soundstorm.combiner.LevelUNet`, which starts as the sum).
        semantic_conditioning: ``"aligned"`` (the paper): each codec frame gets the
            embedding of the semantic token at its centre, summed in; ``"cross_attention"``:
            the backbone cross-attends to the semantic tokens at their own rate, both sides
            carrying sinusoidal time features, so the rates need not divide each other.

    The training settings (prompt sampling, condition dropout) are in
    :class:`SoundStormTrainConfig`; checkpoints of format 1 held them here and load without
    them (:attr:`dropped_keys`).
    """

    # Every training setting (SoundStormTrainConfig's fields): format 1 held the first three
    # here; "objective" came later and never was, so dropping it on upgrade changes nothing.
    dropped_keys: ClassVar[tuple[str, ...]] = (
        "prompt_range",
        "cond_drop_prob",
        "prompt_cond_drop_prob",
        "objective",
    )

    num_quantizers: int = 12
    codebook_size: int = 1024
    semantic_codebook_size: int = 1024
    frame_rate: float = 50.0
    semantic_frame_rate: float = 25.0
    backbone: BackboneConfig = field(default_factory=_paper_backbone)
    codebook_combiner: Literal["sum", "unet"] = "sum"
    semantic_conditioning: Literal["aligned", "cross_attention"] = "aligned"

    def __post_init__(self) -> None:
        for name in ("num_quantizers", "codebook_size", "semantic_codebook_size"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"SoundStormConfig.{name} must be >= 1, got {getattr(self, name)}"
                )
        if self.frame_rate <= 0 or self.semantic_frame_rate <= 0:
            raise ConfigError(
                "SoundStormConfig: frame_rate and semantic_frame_rate must be > 0, got "
                f"{self.frame_rate} and {self.semantic_frame_rate}"
            )
        if self.semantic_conditioning == "aligned" and (
            self.backbone.cond_dim or self.backbone.cross_attn_dim
        ):
            raise ConfigError(
                "SoundStormConfig.backbone: SoundStorm sums its conditioning into the frame "
                "embeddings; set cond_dim=0 and cross_attn_dim=0"
            )
        if self.semantic_conditioning == "cross_attention" and (
            self.backbone.cond_dim or self.backbone.cross_attn_dim != self.backbone.dim
        ):
            raise ConfigError(
                "SoundStormConfig: semantic_conditioning='cross_attention' attends to semantic "
                f"embeddings of the model width: set backbone.cross_attn_dim={self.backbone.dim} "
                "and cond_dim=0"
            )
        if self.codebook_combiner not in ("sum", "unet"):
            raise ConfigError(
                f"codebook_combiner must be 'sum' or 'unet', got {self.codebook_combiner!r}"
            )
        if self.semantic_conditioning not in ("aligned", "cross_attention"):
            raise ConfigError(
                "semantic_conditioning must be 'aligned' or 'cross_attention', got "
                f"{self.semantic_conditioning!r}"
            )

    @classmethod
    def tiny(cls, **changes) -> SoundStormConfig:
        """A few-thousand-parameter model for tests."""
        base = cls(
            num_quantizers=3,
            codebook_size=16,
            semantic_codebook_size=12,
            frame_rate=50.0,
            semantic_frame_rate=50.0,
            backbone=BackboneConfig(
                kind="conformer", dim=32, depth=2, heads=2, ff_mult=2.0, conv_kernel_size=5
            ),
        )
        return base.replace(**changes) if changes else base


@dataclass(frozen=True, kw_only=True)
class SoundStormTrainConfig(Config):
    """How :class:`~cadence.soundstorm.SoundStormTrainStep` draws its masked problems.

    Attributes:
        prompt_range: training prompt length as a fraction of ``T - 1``, drawn uniformly
            (the paper's ``t ~ U{0, T-1}`` is ``(0, 1)``).
        cond_drop_prob: probability, per training sample, of replacing all its semantic tokens
            by the "no condition" token, which makes classifier-free guidance possible.
        prompt_cond_drop_prob: probability, per training sample, of replacing the semantic
            tokens of its prompt frames only, so that a prompt without semantic tokens
            (voice conversion from a bare recording) is seen in training.
        objective: ``"maskgit"`` (the paper: masking ratio ``cos(u)``, cross-entropy averaged
            over the masked frames) or ``"diffusion"`` (absorbing-state discrete diffusion,
            as InstructTTS trains: masking ratio ``r ~ U(0, 1]``, each sample's masked
            cross-entropy weighted by ``1 / r``, the ELBO of the masking process; decode it
            with ``generate(sampler="diffusion")``).
        level_weights: relative probability of training each level (one weight per level,
            ``None``: uniform, the paper). Level 0 carries the content a listener hears, and
            at a small training budget it is the one left behind when every level gets an
            eighth of the steps; weighting it up (e.g. ``(4, 2, 1, 1, 1, 1, 1, 1)``) trades
            fine-level accuracy for it.
    """

    prompt_range: tuple[float, float] = (0.0, 1.0)
    cond_drop_prob: float = 0.1
    prompt_cond_drop_prob: float = 0.1
    objective: Literal["maskgit", "diffusion"] = "maskgit"
    level_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.level_weights is not None:
            weights = tuple(float(w) for w in self.level_weights)
            if (
                not weights
                or min(weights) < 0
                or sum(weights) <= 0
                or not all(math.isfinite(w) for w in weights)
            ):
                raise ConfigError(
                    "SoundStormTrainConfig.level_weights must be finite, non-negative and not "
                    f"all zero (one per level), got {self.level_weights}"
                )
            object.__setattr__(self, "level_weights", weights)
        lo, hi = self.prompt_range
        if not 0.0 <= lo <= hi <= 1.0:
            raise ConfigError(
                "SoundStormTrainConfig.prompt_range must satisfy 0 <= lo <= hi <= 1, got "
                f"{self.prompt_range}"
            )
        if not 0.0 <= self.prompt_cond_drop_prob <= 1.0:
            raise ConfigError(
                "SoundStormTrainConfig.prompt_cond_drop_prob must be in [0, 1], got "
                f"{self.prompt_cond_drop_prob}"
            )
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise ConfigError(
                f"SoundStormTrainConfig.cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}"
            )
        if self.objective not in ("maskgit", "diffusion"):
            raise ConfigError(
                f"SoundStormTrainConfig.objective must be 'maskgit' or 'diffusion', got {self.objective!r}"
            )
