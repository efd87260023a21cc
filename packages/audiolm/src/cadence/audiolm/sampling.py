"""The sampling choices of every AudioLM stage, in one frozen dataclass.

Every ``generate`` / ``generate_long`` of the three stages, ``StageTransformer.generate_flat``
and :meth:`AudioLM.generate` take one ``sampling: SamplingOptions | None`` argument instead of
repeating the keywords; None means ``SamplingOptions()``. The random generator, logits and a
progress bar are not sampling choices and stay separate arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cadence.core.config import Config, ConfigError

__all__ = ["SamplingOptions"]


@dataclass(frozen=True, kw_only=True)
class SamplingOptions(Config):
    """How a stage draws its tokens.

    Attributes:
        temperature: softmax temperature; 0 is greedy (argmax).
        top_k: keep the ``top_k`` most likely classes (None: all).
        top_p: nucleus sampling, keep the smallest set of classes whose probability reaches
            ``top_p`` (None: all).
        guidance_scale: classifier-free guidance; 1 is off (one conditional pass), 0 the
            unconditional model, > 1 pushes away from it. Other than 1 it needs a condition.
        use_cache: decode incrementally over a KV cache; False re-runs the whole sequence
            through the x-transformers decoder every step (the reference, slow).
        allow_eos: let a row stop at a sampled end of sequence (else it runs to its
            ``max_frames``). The fine stage has no EOS and ignores it.
        weights: ``"float"``, or ``"int8"``: the cached decoding step runs the decoder's
            projections as int8 (per-channel weights, fbgemm's dynamic linear; CPU, float32
            models): about twice as fast at batch 1, where a step reads every weight once,
            at the price of slightly different logits (so other tokens than ``"float"``
            draws). The prompt's prefill and the output heads stay in float.

    Raises:
        ConfigError: a temperature or guidance scale that is negative or not finite, a
            ``top_k`` below 1 or a ``top_p`` outside ``(0, 1]``.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    guidance_scale: float = 1.0
    use_cache: bool = True
    allow_eos: bool = True
    weights: str = "float"

    def __post_init__(self) -> None:
        for name in ("temperature", "guidance_scale"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ConfigError(
                    f"SamplingOptions.{name} must be a finite number >= 0, got {value!r}"
                )
        if self.top_k is not None and (
            isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1
        ):
            raise ConfigError(
                f"SamplingOptions.top_k must be an integer >= 1 or None, got {self.top_k!r}"
            )
        if self.top_p is not None:
            p = self.top_p
            if (
                isinstance(p, bool)
                or not isinstance(p, (int, float))
                or not (math.isfinite(p) and 0 < p <= 1)
            ):
                raise ConfigError(f"SamplingOptions.top_p must be in (0, 1] or None, got {p!r}")
        if self.weights not in ("float", "int8"):
            raise ConfigError(
                f"SamplingOptions.weights must be 'float' or 'int8', got {self.weights!r}"
            )
        if self.weights == "int8" and not self.use_cache:
            raise ConfigError(
                "SamplingOptions.weights='int8' runs the cached step: keep use_cache=True"
            )
        for name in ("use_cache", "allow_eos"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"SamplingOptions.{name} must be True or False, got {getattr(self, name)!r}"
                )

    @property
    def guided(self) -> bool:
        """Whether sampling mixes conditional and unconditional logits (``guidance_scale != 1``)."""
        return self.guidance_scale != 1.0
