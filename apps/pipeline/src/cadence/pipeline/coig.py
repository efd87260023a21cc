"""SpeechGPT-Gen's CoIG voice conversion: SpeechTokenizer RVQ-1 -> RVQ-2..q -> the SpeechTokenizer decoder.

Chain-of-Information Generation (Zhang et al. 2024) keeps the semantic and the perceptual
streams of one SpeechTokenizer apart: the source's RVQ-1 tokens carry what is said, and a
perceptual model generates the rest (voice, prosody), prompted by the target speaker's
recording. Two perceptual models are offered, as in :class:`~.synthesis.VoiceConversion`:
SoundStorm generating the RVQ-2..q codes, or the hierarchical flow matcher generating their
summed codebook vectors (SpeechGPT-Gen's own choice). Either way RVQ-1 is put back before
the SpeechTokenizer decoder.

A CoIG pipeline's ``pipeline.json`` says ``"conversion": "coig"``; its ``codec`` is a
SpeechTokenizer (a Cadence checkpoint or the official ``SpeechTokenizer.pt`` folder) and its
``semantic_tokenizer``, when given, names the same folder.
"""

# c channels | t samples | b batch | n frames

from __future__ import annotations

import os
from typing import Any, cast

import torch
from torch import Tensor

from cadence.codec import SpeechTokenizer, SpeechTokenizerAcoustic, SpeechTokenizerSemantic
from cadence.core.audio import batch_audio
from cadence.core.interfaces import Codec, SemanticTokenizer

from .components import PipelineError, check_compatible
from .pipeline import PipelineSpec
from .synthesis import (
    ConversionMethod,
    VoiceConversion,
    _check_guidance,
    _check_steps,
    _generator,
    _voice,
)

__all__ = ["COIG", "CoIGConversion", "check_coig"]

COIG = "coig"  # the value of "conversion" in a CoIG pipeline's pipeline.json


def check_coig(
    codec: Any,
    tokenizer: Any,
    *,
    soundstorm: Any = None,
    flowmatching: Any = None,
) -> SpeechTokenizerAcoustic:
    """Refuse parts that do not make a CoIG chain; returns the codec's RVQ-2..q view.

    The codec must be a SpeechTokenizer, the tokenizer its own RVQ-1 (the same codebook),
    and the perceptual model must model the codec's other levels (SoundStorm: ``q - 1``
    levels; flow matching: its latents) at the RVQ-1 vocabulary and rate.
    """
    if not isinstance(codec, SpeechTokenizer):
        raise PipelineError(
            f"a CoIG pipeline's codec must be a SpeechTokenizer (its RVQ-1 is the semantic "
            f'stream), got a {type(codec).__name__}; point "codec" at a SpeechTokenizer folder'
        )
    if not isinstance(tokenizer, SpeechTokenizerSemantic):
        raise PipelineError(
            f"a CoIG pipeline's semantic stream is the codec's own RVQ-1, not a "
            f'{type(tokenizer).__name__}; point "semantic_tokenizer" at the codec\'s folder '
            "or leave it out"
        )
    theirs, ours = tokenizer.codec, codec
    same = (
        theirs.config == ours.config
        and theirs.quantizer.codebooks.shape == ours.quantizer.codebooks.shape
        and torch.equal(theirs.quantizer.codebooks[0].cpu(), ours.quantizer.codebooks[0].cpu())
    )
    if not same:
        raise PipelineError(
            "the semantic tokenizer is RVQ-1 of another SpeechTokenizer than the codec; "
            "point both at the same folder"
        )
    acoustic = SpeechTokenizerAcoustic(codec)
    try:
        check_compatible(
            codec=acoustic, tokenizer=tokenizer, soundstorm=soundstorm, flowmatching=flowmatching
        )
    except PipelineError as err:
        raise PipelineError(
            f"CoIG (RVQ-1 -> RVQ-2..{codec.num_quantizers} of the SpeechTokenizer): {err}"
        ) from err
    return acoustic


class CoIGConversion(VoiceConversion):
    """Voice conversion over one SpeechTokenizer: the source's RVQ-1, the target's RVQ-2..q.

    ``method="soundstorm"``: SoundStorm (trained on RVQ-2..q codes conditioned on RVQ-1)
    generates the acoustic codes. ``method="flow"``: the hierarchical flow matcher (trained
    on the summed RVQ-2..q vectors) generates them as latents.
    """

    def __init__(
        self,
        codec: SpeechTokenizer,
        model: torch.nn.Module,
        method: ConversionMethod,
        tokenizer: Any = None,
    ):
        if method not in ("soundstorm", "flow"):
            raise PipelineError(f"unknown conversion method {method!r}; use 'soundstorm' or 'flow'")
        tokenizer = codec.semantic_tokenizer() if tokenizer is None else tokenizer
        role = "flowmatching" if method == "flow" else "soundstorm"
        self.acoustic = check_coig(codec, tokenizer, **{role: model})
        # the Codec / SemanticTokenizer protocols declare plain attributes, these have properties
        self.codec, self.tokenizer = cast(Codec, codec), cast(SemanticTokenizer, tokenizer)
        self.model, self.method = model, method

    @classmethod
    def from_spec(
        cls, spec: PipelineSpec, *, method: ConversionMethod, device: str | torch.device = "cpu"
    ) -> CoIGConversion:
        """The parts of the CoIG pipeline ``spec`` (the codec is loaded once for both streams)."""
        if method not in ("soundstorm", "flow"):
            raise PipelineError(f"unknown conversion method {method!r}; use 'soundstorm' or 'flow'")
        model = spec.load("flowmatching" if method == "flow" else "soundstorm", device=device)
        codec = spec.load("codec", device=device)
        tokenizer = None
        if spec.has("semantic_tokenizer") and spec.path("semantic_tokenizer") != spec.path("codec"):
            tokenizer = spec.load("semantic_tokenizer", device=device)
        return cls(codec, model, method, tokenizer)

    @classmethod
    def from_pretrained(  # type: ignore[override]  # same arguments, a narrower result
        cls,
        directory: str | os.PathLike,
        *,
        method: ConversionMethod = "soundstorm",
        device: str | torch.device = "cpu",
    ) -> CoIGConversion:
        return cls.from_spec(PipelineSpec.read(directory), method=method, device=device)

    @property
    def default_guidance(self) -> float:
        """Off: guidance was measured on the toy pipeline's models, not on these."""
        return 1.0

    @torch.inference_mode()
    def convert(
        self,
        source: Tensor,
        target: Tensor,
        *,
        sample_rate: int,
        steps: int = 16,
        guidance_scale: float | None = None,
        seed: int | None = None,
    ) -> Tensor:
        """``(c, t)`` source and target audio -> ``(c, t')`` at :attr:`sample_rate` (see the base class)."""
        _check_steps(steps, "steps")
        guidance_scale = self.default_guidance if guidance_scale is None else guidance_scale
        _check_guidance(guidance_scale)
        generator = _generator(self.model, seed)
        device = next(self.model.parameters()).device
        src, tgt = (
            batch_audio(
                [audio],
                sample_rate,
                target_rate=self.sample_rate,
                channels=self.codec.channels,
                what=what,
            )[0]
            for audio, what in ((source, "source"), (target, "target voice"))
        )
        src, tgt = src.to(device), _voice(tgt, self.sample_rate).to(device)
        tokens = self.tokenizer.tokenize(src)
        prompt_tokens = self.tokenizer.tokenize(tgt)
        if self.method == "flow":
            out = self.model.generate(
                tokens,
                prompt_tokens=prompt_tokens,
                prompt_latents=self.acoustic.encode_latents(tgt),
                steps=steps,
                method="midpoint",
                guidance_scale=guidance_scale,
                generator=generator,
            )
            n = min(out.latents.shape[1], tokens.shape[1])
            audio = self.acoustic.decode_latents_with_semantic(tokens[:, :n], out.latents[:, :n])
            return audio[0].cpu()
        from cadence.soundstorm import default_iterations

        codes = self.model.convert(
            tokens,
            self.acoustic.encode(tgt),
            prompt_semantic=prompt_tokens,
            iterations=default_iterations(self.model.config.num_quantizers, first=steps),
            guidance_scale=guidance_scale,
            generator=generator,
        )
        n = min(codes.shape[1], tokens.shape[1])
        return self.acoustic.decode_with_semantic(tokens[:, :n], codes[:, :n])[0].cpu()
