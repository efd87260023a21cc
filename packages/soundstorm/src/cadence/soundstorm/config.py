"""SoundStormConfig (everything needed to rebuild a model) and SoundStormTrainConfig."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

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
            ``cond_dim`` and ``cross_attn_dim`` must be 0 (conditioning is summed per frame).

    The training settings (prompt sampling, condition dropout) are in
    :class:`SoundStormTrainConfig`; checkpoints of format 1 held them here and load without
    them (:attr:`dropped_keys`).
    """

    dropped_keys: ClassVar[tuple[str, ...]] = (
        "prompt_range",
        "cond_drop_prob",
        "prompt_cond_drop_prob",
    )

    num_quantizers: int = 12
    codebook_size: int = 1024
    semantic_codebook_size: int = 1024
    frame_rate: float = 50.0
    semantic_frame_rate: float = 25.0
    backbone: BackboneConfig = field(default_factory=_paper_backbone)

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
        if self.backbone.cond_dim or self.backbone.cross_attn_dim:
            raise ConfigError(
                "SoundStormConfig.backbone: SoundStorm sums its conditioning into the frame "
                "embeddings; set cond_dim=0 and cross_attn_dim=0"
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
    """

    prompt_range: tuple[float, float] = (0.0, 1.0)
    cond_drop_prob: float = 0.1
    prompt_cond_drop_prob: float = 0.1

    def __post_init__(self) -> None:
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
