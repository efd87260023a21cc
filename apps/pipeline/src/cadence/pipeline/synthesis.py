"""Voice conversion (SoundStorm or flow matching) and text-to-speech (NaturalSpeech 2) over a pipeline."""

# c channels | t samples

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from torch import Tensor

from cadence.core.audio import batch_audio
from cadence.core.interfaces import Codec, LatentCodec, SemanticTokenizer

from .components import PipelineError, check_compatible
from .guidance import FLOW_GUIDANCE, SOUNDSTORM_GUIDANCE, soundstorm_scales
from .pipeline import PipelineSpec

if TYPE_CHECKING:
    from .streaming import StreamChunk

__all__ = ["VOICE_PROMPT_SECONDS", "ConversionMethod", "TextToSpeech", "VoiceConversion"]

ConversionMethod = Literal["soundstorm", "flow"]

# The most of a voice recording (convert's target voice, tts's prompt) the models are
# prompted with: its first VOICE_PROMPT_SECONDS. Their training prompts were parts of
# utterances of a few seconds; a longer recording adds cost (attention over every prompt
# frame), not voice. Cropped before encoding, so a 10-minute recording costs what 10 s does.
VOICE_PROMPT_SECONDS = 10.0


def _generator(model: torch.nn.Module, seed: int | None) -> torch.Generator | None:
    device = next(model.parameters()).device
    return torch.Generator(device=device).manual_seed(seed) if seed is not None else None


def _check_steps(steps: int, what: str) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PipelineError(f"{what} must be a whole number >= 1, got {steps!r}")


def _voice(audio: Tensor, sample_rate: int) -> Tensor:
    """The part of a ``(b, c, t)`` voice recording the models use (its first seconds)."""
    return audio[..., : math.ceil(VOICE_PROMPT_SECONDS * sample_rate)]


def _check_guidance(scale: float) -> None:
    if not math.isfinite(scale) or scale < 0:
        raise PipelineError(f"guidance_scale must be a finite number >= 0 (1 = off), got {scale}")


class VoiceConversion:
    """Say what ``source`` says in the voice of ``target`` (SpeechGPT-Gen / SoundStorm style).

    ``method="soundstorm"``: the source's semantic tokens, decoded by SoundStorm prompted
    with the target's codes and tokens. ``method="flow"``: the hierarchical flow matcher
    maps the source's tokens to codec latents, prompted by the target's latents.
    """

    model: Any  # a SoundStorm or a HierarchicalConditionalFlowMatcher, as `method` says

    def __init__(
        self,
        codec: Codec,
        tokenizer: SemanticTokenizer,
        model: torch.nn.Module,
        method: ConversionMethod,
    ):
        if method not in ("soundstorm", "flow"):
            raise PipelineError(f"unknown conversion method {method!r}; use 'soundstorm' or 'flow'")
        role = "flowmatching" if method == "flow" else "soundstorm"
        check_compatible(codec=codec, tokenizer=tokenizer, **{role: model})
        self.codec, self.tokenizer, self.model, self.method = codec, tokenizer, model, method
        self._decoder_reach: tuple[int, int] | None = None  # measured once, for streaming

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        *,
        method: ConversionMethod = "soundstorm",
        device: str | torch.device = "cpu",
    ) -> VoiceConversion:
        if method not in ("soundstorm", "flow"):
            raise PipelineError(f"unknown conversion method {method!r}; use 'soundstorm' or 'flow'")
        spec = PipelineSpec.read(directory)
        conversion = spec.extra.get("conversion")
        if conversion == "coig":  # SpeechTokenizer RVQ-1 -> RVQ-2..q (cadence.pipeline.coig)
            from .coig import CoIGConversion

            return CoIGConversion.from_spec(spec, method=method, device=device)
        if conversion is not None:
            raise PipelineError(
                f'{spec.directory}: unknown "conversion" {conversion!r}; use "coig" or leave it out'
            )
        model = spec.load("flowmatching" if method == "flow" else "soundstorm", device=device)
        codec = _load_codec(spec, latents=method == "flow", device=device)
        return cls(codec, spec.load("semantic_tokenizer", device=device), model, method)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def default_guidance(self) -> float:
        """The method's guidance unless told otherwise: :data:`SOUNDSTORM_GUIDANCE` or
        :data:`FLOW_GUIDANCE`."""
        return SOUNDSTORM_GUIDANCE if self.method == "soundstorm" else FLOW_GUIDANCE

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
        """``(c, t)`` source and target audio at ``sample_rate`` -> ``(c, t')`` at :attr:`sample_rate`.

        ``steps``: SoundStorm's passes on the first level, or the flow's ODE steps.
        ``guidance_scale``: classifier-free guidance (1 = off; default
        :attr:`default_guidance`). Only the first :data:`VOICE_PROMPT_SECONDS` of ``target``
        are used.
        """
        _check_steps(steps, "steps")
        guidance_scale = self.default_guidance if guidance_scale is None else guidance_scale
        _check_guidance(guidance_scale)
        generator = _generator(self.model, seed)
        device = next(self.model.parameters()).device
        src, _ = batch_audio(
            [source],
            sample_rate,
            target_rate=self.sample_rate,
            channels=self.codec.channels,
            what="source",
        )
        tgt, _ = batch_audio(
            [target],
            sample_rate,
            target_rate=self.sample_rate,
            channels=self.codec.channels,
            what="target voice",
        )
        src, tgt = src.to(device), _voice(tgt, self.sample_rate).to(device)
        if self.method == "flow":
            from cadence.flowmatching import voice_conversion

            audio = voice_conversion(
                self.model,
                self.tokenizer,
                cast(LatentCodec, self.codec),  # the flow method loads a LatentCodec
                src,
                tgt,
                sample_rate=self.sample_rate,
                steps=steps,
                method="midpoint",
                guidance_scale=guidance_scale,
                generator=generator,
            )
            return audio[0].cpu()
        from cadence.soundstorm import default_iterations

        codes = self.model.convert(
            self.tokenizer.tokenize(src),
            self.codec.encode(tgt),
            prompt_semantic=self.tokenizer.tokenize(tgt),
            iterations=default_iterations(self.model.config.num_quantizers, first=steps),
            guidance_scale=soundstorm_scales(guidance_scale, self.model.config.num_quantizers),
            generator=generator,
        )
        return self.codec.decode(codes)[0].cpu()

    def stream(
        self,
        source: Tensor | Iterable[Tensor],
        target: Tensor,
        *,
        sample_rate: int,
        chunk_seconds: float = 1.0,
        left_context_seconds: float = 2.0,
        source_context_seconds: float = 2.0,
        lookahead_seconds: float = 0.5,
        steps: int = 16,
        guidance_scale: float | None = None,
        seed: int | None = None,
    ) -> Iterator[StreamChunk]:
        """Convert ``source`` (a clip, or an iterable of ``(c, t)`` blocks read as they come)
        chunk by chunk, yielding :class:`StreamChunk` s (SoundStorm method only). See
        :mod:`cadence.pipeline.streaming_conversion` for the chunking and for exactly how
        the result relates to :meth:`convert`."""
        from .streaming_conversion import ConversionStreamOptions, stream_conversion

        options = ConversionStreamOptions(
            chunk_seconds=chunk_seconds, left_context_seconds=left_context_seconds,
            source_context_seconds=source_context_seconds, lookahead_seconds=lookahead_seconds,
        )  # fmt: skip
        return stream_conversion(
            self, source, target, sample_rate=sample_rate, options=options, steps=steps,
            guidance_scale=guidance_scale, seed=seed,
        )  # fmt: skip


def _load_codec(spec: PipelineSpec, *, latents: bool, device: str | torch.device) -> Codec:
    from .components import load_component

    return load_component(
        spec.path("codec"), "codec", LatentCodec if latents else Codec, device=device
    )


class TextToSpeech:
    """NaturalSpeech 2: text (espeak-ng G2P) + a voice prompt -> speech."""

    model: Any  # a NaturalSpeech2

    def __init__(self, codec: LatentCodec, model: torch.nn.Module):
        check_compatible(codec=codec, naturalspeech2=model)
        self.codec, self.model = codec, model

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, *, device: str | torch.device = "cpu"
    ) -> TextToSpeech:
        spec = PipelineSpec.read(directory)
        return cls(
            cast(LatentCodec, _load_codec(spec, latents=True, device=device)),
            spec.load("naturalspeech2", device=device),
        )

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @torch.inference_mode()
    def synthesize(
        self,
        text: str,
        prompt: Tensor,
        *,
        sample_rate: int,
        steps: int = 32,
        guidance_scale: float = 1.5,
        seed: int | None = None,
        accent: str | None = None,
    ) -> Tensor:
        """``text`` in the voice of ``prompt`` ``(c, t)`` -> ``(c, t')`` audio at :attr:`sample_rate`.

        Only the first :data:`VOICE_PROMPT_SECONDS` of ``prompt`` are used. ``accent`` is the
        espeak-ng voice that turns the text into phonemes (``"en-gb-x-rp"``, ``"en-us"``; default
        the model's ``config.voice``): the prompt gives the timbre, the accent the pronunciation.
        """
        if not text or not text.strip():
            raise PipelineError("no text to synthesize: give a non-empty sentence")
        from cadence.naturalspeech2.espeak import EspeakError

        _check_steps(steps, "steps")
        _check_guidance(guidance_scale)
        generator = _generator(self.model, seed)
        device = next(self.model.parameters()).device
        voice, _ = batch_audio(
            [prompt],
            sample_rate,
            target_rate=self.sample_rate,
            channels=self.codec.channels,
            what="voice prompt",
        )
        prompt_latents = self.codec.encode_latents(_voice(voice, self.sample_rate).to(device))[0]
        try:
            latents = self.model.synthesize(
                text,
                prompt_latents,
                steps=steps,
                guidance_scale=guidance_scale,
                generator=generator,
                voice=accent,
            )
        except (KeyError, ValueError) as err:
            raise PipelineError(f"cannot synthesize {text!r}: {err}") from err
        except EspeakError as err:  # no such espeak-ng voice; the message lists the way to see them
            raise PipelineError(f"cannot read {text!r} with accent {accent!r}: {err}") from err
        return self.codec.decode_latents(latents)[0].cpu()
