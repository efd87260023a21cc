"""Voice conversion: source semantic tokens + target-speaker context -> latents -> audio.

SpeechGPT-Gen sec. 4 (zero-shot voice conversion): the content comes from the source's
semantic tokens, the voice from the target's latents given as an acoustic prompt.
"""

# b batch | c channels | t samples | s semantic frames | n latent frames | d latent dim

from __future__ import annotations

import torch
from torch import Tensor

from cadence.core.audio import check_audio, resample
from cadence.core.interfaces import LatentCodec, SemanticTokenizer

from .hierarchical import HierarchicalConditionalFlowMatcher
from .solvers import ODEMethod

__all__ = ["voice_conversion"]


def _at_rate(audio: Tensor, sample_rate: int, target_rate: int) -> Tensor:
    return audio if sample_rate == target_rate else resample(audio, sample_rate, target_rate)


@torch.inference_mode()
def voice_conversion(
    model: HierarchicalConditionalFlowMatcher,
    tokenizer: SemanticTokenizer,
    codec: LatentCodec,
    source: Tensor,
    target: Tensor,
    *,
    sample_rate: int,
    steps: int = 8,
    method: ODEMethod = "euler",
    guidance_scale: float = 1.0,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Say what ``source`` says in the voice of ``target``.

    Args:
        model: a trained hierarchical flow matcher for this tokenizer and codec.
        tokenizer: gives the semantic tokens of source and target.
        codec: gives the target's latents and decodes the result.
        source: ``(b, c, t)`` audio whose content is kept.
        target: ``(b, c, t')`` audio of the target speaker (the acoustic prompt).
        sample_rate: the rate of ``source`` and ``target`` (resampled for each model).
        steps, method, guidance_scale, temperature, generator: see
            :meth:`HierarchicalConditionalFlowMatcher.generate`.

    Returns:
        ``(b, c, t'')`` audio at ``codec.sample_rate``, the length of the source's latent
        frames.
    """
    model.check_compatible(tokenizer=tokenizer, codec=codec)
    check_audio(source, sample_rate=sample_rate)
    check_audio(target, sample_rate=sample_rate)
    if source.shape[0] != target.shape[0]:
        raise ValueError(
            f"source and target batches differ ({source.shape[0]} vs {target.shape[0]}): "
            "give one target per source"
        )
    tokens = tokenizer.tokenize(_at_rate(source, sample_rate, int(tokenizer.sample_rate)))
    prompt_tokens = tokenizer.tokenize(_at_rate(target, sample_rate, int(tokenizer.sample_rate)))
    prompt_latents = codec.encode_latents(_at_rate(target, sample_rate, int(codec.sample_rate)))
    if tokens.shape[1] == 0 or prompt_tokens.shape[1] == 0 or prompt_latents.shape[1] == 0:
        raise ValueError(
            "source or target is shorter than one frame; give at least "
            f"{1 / min(model.config.semantic_frame_rate, model.config.latent_frame_rate):.3f} s"
        )
    out = model.generate(
        tokens,
        prompt_tokens=prompt_tokens,
        prompt_latents=prompt_latents,
        steps=steps,
        method=method,
        guidance_scale=guidance_scale,
        temperature=temperature,
        generator=generator,
    )
    return codec.decode_latents(out.latents)
