"""Voice conversion (SoundStorm or flow matching) and text-to-speech (NaturalSpeech 2) over a pipeline."""

from __future__ import annotations

import os
from typing import Literal

import torch
from torch import Tensor

from cadence.core.config import ConfigError
from cadence.core.interfaces import Codec, LatentCodec, SemanticTokenizer

from .components import PipelineError, load_component
from .continuation import prepare_audio
from .pipeline import PipelineSpec

ConversionMethod = Literal["soundstorm", "flow"]


def _codec(spec: PipelineSpec, device, *, latents: bool = False) -> Codec:
    codec = load_component(spec.path("codec"), "codec", device=device)
    wanted = LatentCodec if latents else Codec
    if not isinstance(codec, wanted):
        raise PipelineError(f"codec: {spec.path('codec')} does not hold a {wanted.__name__}")
    return codec


def _tokenizer(spec: PipelineSpec, device) -> SemanticTokenizer:
    tokenizer = load_component(spec.path("semantic_tokenizer"), "semantic_tokenizer", device=device)
    if not isinstance(tokenizer, SemanticTokenizer):
        raise PipelineError(f"semantic_tokenizer: {spec.path('semantic_tokenizer')} does not hold a semantic tokenizer")
    return tokenizer


class VoiceConversion:
    """Say what ``source`` says in the voice of ``target`` (SpeechGPT-Gen / SoundStorm style).

    ``method="soundstorm"``: the source's semantic tokens, decoded by SoundStorm prompted
    with the target's codes and tokens. ``method="flow"``: the hierarchical flow matcher
    maps the source's tokens to codec latents, prompted by the target's latents.
    """

    def __init__(self, codec: Codec, tokenizer: SemanticTokenizer, model: torch.nn.Module, method: ConversionMethod):
        if method not in ("soundstorm", "flow"):
            raise PipelineError(f"unknown conversion method {method!r}; use 'soundstorm' or 'flow'")
        if method == "flow":
            try:
                model.check_compatible(tokenizer=tokenizer, codec=codec)
            except ConfigError as err:
                raise PipelineError(f"flowmatching does not fit the codec/tokenizer: {err}") from err
        else:
            from .continuation import check_compatible

            check_compatible(codec, tokenizer, None, model)
        self.codec, self.tokenizer, self.model, self.method = codec, tokenizer, model, method

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, *, method: ConversionMethod = "soundstorm",
                        device: str | torch.device = "cpu") -> VoiceConversion:
        spec = PipelineSpec.read(directory)
        if method == "flow":
            from cadence.flowmatching import HierarchicalConditionalFlowMatcher

            model = load_component(spec.path("flowmatching"), "flowmatching", HierarchicalConditionalFlowMatcher, device=device)
        else:
            from cadence.soundstorm import SoundStorm

            model = load_component(spec.path("soundstorm"), "soundstorm", SoundStorm, device=device)
        return cls(_codec(spec, device, latents=method == "flow"), _tokenizer(spec, device), model, method)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @torch.no_grad()
    def convert(self, source: Tensor, target: Tensor, *, sample_rate: int, steps: int = 16,
                guidance_scale: float = 1.0, seed: int | None = None) -> Tensor:
        """``(c, t)`` source and target audio at ``sample_rate`` -> ``(c, t')`` at :attr:`sample_rate`.

        ``steps``: SoundStorm's passes on the first level, or the flow's ODE steps.
        """
        device = next(self.model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        src, _ = prepare_audio([source], sample_rate, self.sample_rate, self.codec.channels, what="source")
        tgt, _ = prepare_audio([target], sample_rate, self.sample_rate, self.codec.channels, what="target voice")
        src, tgt = src.to(device), tgt.to(device)
        if self.method == "flow":
            from cadence.flowmatching import voice_conversion

            audio = voice_conversion(self.model, self.tokenizer, self.codec, src, tgt, sample_rate=self.sample_rate,
                                     steps=steps, method="midpoint", guidance_scale=guidance_scale,
                                     generator=generator)
            return audio[0].cpu()
        iterations = [steps] + [1] * (self.model.config.num_quantizers - 1)
        codes = self.model.convert(self.tokenizer.tokenize(src), self.codec.encode(tgt),
                                   prompt_semantic=self.tokenizer.tokenize(tgt), iterations=iterations,
                                   guidance_scale=guidance_scale, generator=generator)
        return self.codec.decode(codes)[0].cpu()


class TextToSpeech:
    """NaturalSpeech 2: text (espeak-ng G2P) + a voice prompt -> speech."""

    def __init__(self, codec: LatentCodec, model: torch.nn.Module):
        cfg = model.config
        if cfg.latent_dim != codec.latent_dim or abs(cfg.frame_rate - codec.frame_rate) > 1e-6:
            raise PipelineError(
                f"naturalspeech2 models {cfg.latent_dim}-dim latents at {cfg.frame_rate} frames/s; the codec has "
                f"{codec.latent_dim} at {codec.frame_rate}. Use the codec it was trained on."
            )
        self.codec, self.model = codec, model

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, *, device: str | torch.device = "cpu") -> TextToSpeech:
        from cadence.naturalspeech2 import NaturalSpeech2

        spec = PipelineSpec.read(directory)
        model = load_component(spec.path("naturalspeech2"), "naturalspeech2", NaturalSpeech2, device=device)
        return cls(_codec(spec, device, latents=True), model)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @torch.no_grad()
    def synthesize(self, text: str, prompt: Tensor, *, sample_rate: int, steps: int = 32,
                   guidance: float | None = 1.5, seed: int | None = None) -> Tensor:
        """``text`` in the voice of ``prompt`` ``(c, t)`` -> ``(c, t')`` audio at :attr:`sample_rate`."""
        if not text or not text.strip():
            raise PipelineError("no text to synthesize: give a non-empty sentence")
        device = next(self.model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        voice, _ = prepare_audio([prompt], sample_rate, self.sample_rate, self.codec.channels, what="voice prompt")
        prompt_latents = self.codec.encode_latents(voice.to(device))[0]
        try:
            latents = self.model.synthesize(text, prompt_latents, steps=steps, guidance=guidance, generator=generator)
        except (KeyError, ValueError) as err:
            raise PipelineError(f"cannot synthesize {text!r}: {err}") from err
        return self.codec.decode_latents(latents)[0].cpu()
