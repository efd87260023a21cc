"""The AudioLM pipeline: semantic tokens -> coarse codes -> fine codes -> waveform.

:class:`AudioLM` holds no weights of its own: it wires a :class:`SemanticTokenizer`, a
:class:`Codec` and the three stage transformers (and optionally a :class:`TextEncoder`),
checking at construction that they fit together.
"""

# b batch | c channels | t samples | s semantic frames | n acoustic frames | q levels | m text tokens

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cadence.core.audio import check_audio, resample
from cadence.core.config import ConfigError
from cadence.core.data import lengths_to_mask
from cadence.core.interfaces import Codec, SemanticTokenizer

from .coarse import CoarseTransformer
from .fine import FineTransformer
from .sampling import SamplingOptions
from .semantic import SemanticTransformer
from .text import TextEncoder

__all__ = ["AudioLM", "AudioLMOutput"]

# AudioLM samples the fine stage cooler than the other two
DEFAULT_SAMPLING = (
    SamplingOptions(temperature=0.95),
    SamplingOptions(temperature=0.95),
    SamplingOptions(temperature=0.4),
)


@dataclass(frozen=True, kw_only=True)
class AudioLMOutput:
    """What :meth:`AudioLM.generate` returns.

    Attributes:
        audio: ``(b, c, t)`` waveforms at the codec's sample rate, zero after each row's end.
        lengths: ``(b,)`` real samples per row.
        semantic: ``(b, s)`` semantic tokens (prompt + continuation), 0 after each row's end.
        codes: ``(b, n, q)`` codec codes (coarse + fine levels).
        frames: ``(b,)`` real acoustic frames per row.
    """

    audio: Tensor
    lengths: Tensor
    semantic: Tensor
    codes: Tensor
    frames: Tensor


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6)


class AudioLM:
    """Prompt audio (or nothing, or text) -> semantic continuation -> coarse -> fine -> audio.

    Args:
        tokenizer: any :class:`SemanticTokenizer` (``codebook_size`` = the semantic vocabulary).
        codec: any :class:`Codec`; coarse + fine levels must equal ``codec.num_quantizers``.
        semantic, coarse, fine: the three stages. ``fine`` may be None: the codes are then
            the coarse levels only and the codec decodes them coarsely.
        text_encoder: turns ``texts`` into the conditioning of every conditional stage.

    Raises:
        ConfigError: naming the mismatched sizes and how to fix them.
    """

    def __init__(
        self,
        *,
        tokenizer: SemanticTokenizer,
        codec: Codec,
        semantic: SemanticTransformer,
        coarse: CoarseTransformer,
        fine: FineTransformer | None = None,
        text_encoder: TextEncoder | None = None,
    ):
        for name, obj, proto in (
            ("tokenizer", tokenizer, SemanticTokenizer),
            ("codec", codec, Codec),
        ):
            if not isinstance(obj, proto):
                raise TypeError(
                    f"AudioLM: `{name}` must conform to cadence.core.interfaces.{proto.__name__}"
                )
        self.tokenizer, self.codec = tokenizer, codec
        self.semantic, self.coarse, self.fine = semantic, coarse, fine
        self.text_encoder = text_encoder
        self._check()

    def _check(self) -> None:
        tok, codec = self.tokenizer, self.codec
        sem, crs, fin = (
            self.semantic.config,
            self.coarse.config,
            None if self.fine is None else self.fine.config,
        )
        problems = []
        if sem.codebook_size != tok.codebook_size:
            problems.append(
                f"SemanticTransformer has codebook_size={sem.codebook_size} but the tokenizer makes "
                f"{tok.codebook_size} tokens: train it with SemanticTransformerConfig(codebook_size={tok.codebook_size})"
            )
        if crs.semantic_codebook_size != tok.codebook_size:
            problems.append(
                f"CoarseTransformer reads {crs.semantic_codebook_size} semantic tokens but the tokenizer makes "
                f"{tok.codebook_size}: use CoarseTransformerConfig(semantic_codebook_size={tok.codebook_size})"
            )
        if not _close(sem.frame_rate, tok.frame_rate) or not _close(
            crs.semantic_frame_rate, tok.frame_rate
        ):
            problems.append(
                f"semantic frame rates differ: tokenizer {tok.frame_rate}/s, SemanticTransformer "
                f"{sem.frame_rate}/s, CoarseTransformer.semantic_frame_rate {crs.semantic_frame_rate}/s; "
                "set the configs to the tokenizer's frame_rate"
            )
        if crs.codebook_size != codec.codebook_size:
            problems.append(
                f"CoarseTransformer has codebook_size={crs.codebook_size}, the codec {codec.codebook_size}: "
                f"use CoarseTransformerConfig(codebook_size={codec.codebook_size})"
            )
        if not _close(crs.frame_rate, codec.frame_rate):
            problems.append(
                f"CoarseTransformer.frame_rate={crs.frame_rate} but the codec runs at {codec.frame_rate} frames/s"
            )
        if fin is None:
            if crs.num_coarse_quantizers > codec.num_quantizers:
                problems.append(
                    f"CoarseTransformer predicts {crs.num_coarse_quantizers} levels, the codec has only "
                    f"{codec.num_quantizers}"
                )
        else:
            if fin.codebook_size != codec.codebook_size:
                problems.append(
                    f"FineTransformer has codebook_size={fin.codebook_size}, the codec {codec.codebook_size}: "
                    f"use FineTransformerConfig(codebook_size={codec.codebook_size})"
                )
            if fin.num_coarse_quantizers != crs.num_coarse_quantizers:
                problems.append(
                    f"FineTransformer reads {fin.num_coarse_quantizers} coarse levels but CoarseTransformer "
                    f"makes {crs.num_coarse_quantizers}; the two configs' num_coarse_quantizers must agree"
                )
            if crs.num_coarse_quantizers + fin.num_fine_quantizers != codec.num_quantizers:
                problems.append(
                    f"coarse ({crs.num_coarse_quantizers}) + fine ({fin.num_fine_quantizers}) levels = "
                    f"{crs.num_coarse_quantizers + fin.num_fine_quantizers}, but the codec has "
                    f"num_quantizers={codec.num_quantizers}; set num_fine_quantizers="
                    f"{codec.num_quantizers - crs.num_coarse_quantizers}"
                )
            if not _close(fin.frame_rate, codec.frame_rate):
                problems.append(
                    f"FineTransformer.frame_rate={fin.frame_rate} but the codec runs at {codec.frame_rate}"
                )
        if self.text_encoder is not None:
            for stage in self.stages:
                cond_dim = stage.config.cond_dim
                if cond_dim is not None and cond_dim != self.text_encoder.dim:
                    problems.append(
                        f"{type(stage).__name__} has cond_dim={cond_dim} but the text encoder gives "
                        f"{self.text_encoder.dim}-dim embeddings"
                    )
        if problems:
            raise ConfigError("AudioLM parts do not fit: " + "; ".join(problems))

    @property
    def stages(self) -> list:
        return [m for m in (self.semantic, self.coarse, self.fine) if m is not None]

    def _stage_options(self, stage, options: SamplingOptions, cond: tuple) -> dict:
        """The condition and sampling options of one stage (no guidance where it has no condition)."""
        if cond[0] is None or stage.config.cond_dim is None:
            if options.guided:
                options = options.replace(guidance_scale=1.0)
            return {"sampling": options}
        return {"cond": cond[0], "cond_mask": cond[1], "sampling": options}

    @torch.inference_mode()
    def generate(
        self,
        prompt_audio: Tensor | None = None,
        *,
        prompt_sample_rate: int | None = None,
        seconds: float = 4.0,
        batch_size: int = 1,
        texts: Sequence[str] | None = None,
        sampling: SamplingOptions | Sequence[SamplingOptions] | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> AudioLMOutput:
        """Continue prompt audio, or generate from nothing (optionally from text).

        Args:
            prompt_audio: ``(b, c, t)`` audio in [-1, 1] at ``prompt_sample_rate`` (default
                the codec's); its semantic tokens and coarse codes prompt the stages and it is
                kept at the start of the output.
            seconds: total duration per row (prompt included); beyond a stage's context the
                stages slide windows (AudioLM sec. 4.4). A row may end earlier at EOS.
            batch_size: rows when there is no prompt or text.
            texts: one text per row (needs ``text_encoder``).
            sampling: one :class:`SamplingOptions` for all stages, or three (semantic, coarse,
                fine); default temperatures 0.95, 0.95, 0.4 (AudioLM samples the fine stage
                cooler). ``guidance_scale`` applies to the stages that are conditioned on the
                texts; the others sample without guidance.
            generator, progress: a random generator for reproducible draws; progress bars.
        """
        options = _per_stage(sampling)
        device = self.semantic.token_emb.weight.device
        cond: tuple[Tensor | None, Tensor | None] = (None, None)
        if texts is not None:
            if self.text_encoder is None:
                raise ValueError(
                    "texts given but AudioLM has no text_encoder; pass text_encoder=... at construction"
                )
            cond = self.text_encoder.encode(list(texts))
            cond = (cond[0].to(device), cond[1].to(device))
            batch_size = len(texts)
        extra: dict[str, Any] = {"generator": generator, "progress": progress}
        codec, tok = self.codec, self.tokenizer

        semantic_prompt = coarse_prompt = None
        if prompt_audio is not None:
            semantic_prompt, coarse_prompt = self._prompt(prompt_audio, prompt_sample_rate, device)
            if texts is not None and len(texts) != prompt_audio.shape[0]:
                raise ValueError(f"{len(texts)} texts for {prompt_audio.shape[0]} prompt clips")
            batch_size = prompt_audio.shape[0]

        # 1. semantic tokens (one window when they fit the context)
        total_semantic = math.ceil(seconds * tok.frame_rate)
        if semantic_prompt is not None:
            total_semantic = max(total_semantic, semantic_prompt.shape[1])
        semantic = self.semantic.generate_long(
            semantic_prompt,
            total_frames=total_semantic,
            batch_size=batch_size,
            **self._stage_options(self.semantic, options[0], cond),
            **extra,
        )
        # 2. coarse codes of the rows' semantic tokens, rows of different lengths in one batch
        coarse = self.coarse.generate_long(
            semantic.codes,
            semantic.lengths,
            prompt=coarse_prompt,
            **self._stage_options(self.coarse, options[1], cond),
            **extra,
        )
        coarse_codes, frames = coarse.codes, coarse.lengths
        # 3. fine
        if self.fine is not None:
            fine = self.fine.generate_long(
                coarse_codes, frames, **self._stage_options(self.fine, options[2], cond), **extra
            )
            codes = torch.cat([coarse_codes, fine.codes[:, : coarse_codes.shape[1]]], dim=-1)
        else:
            codes = coarse_codes
        # 4. waveform
        audio = codec.decode(codes)
        hop = codec.sample_rate / codec.frame_rate
        lengths = torch.clamp(torch.round(frames * hop).long(), max=audio.shape[-1])
        audio = audio * lengths_to_mask(lengths.to(audio.device), audio.shape[-1])[:, None, :]
        return AudioLMOutput(
            audio=audio, lengths=lengths, semantic=semantic.codes, codes=codes, frames=frames
        )

    def _prompt(
        self, prompt_audio: Tensor, sample_rate: int | None, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """The semantic tokens ``(b, s)`` and coarse codes ``(b, n, q)`` of the prompt audio."""
        codec, tok = self.codec, self.tokenizer
        check_audio(prompt_audio, channels=codec.channels)
        rate = sample_rate or codec.sample_rate
        audio_tok = (
            prompt_audio
            if rate == tok.sample_rate
            else resample(prompt_audio, rate, tok.sample_rate)
        )
        audio_codec = (
            prompt_audio
            if rate == codec.sample_rate
            else resample(prompt_audio, rate, codec.sample_rate)
        )
        semantic = tok.tokenize(audio_tok.to(device)).to(device)
        codes = codec.encode(audio_codec.to(device)).to(device)
        frames = min(
            codes.shape[1],
            math.floor(semantic.shape[1] * self.coarse.config.frames_per_semantic + 1e-6),
        )
        return semantic, codes[:, :frames, : self.coarse.config.num_coarse_quantizers]


def _per_stage(
    sampling: SamplingOptions | Sequence[SamplingOptions] | None,
) -> tuple[SamplingOptions, ...]:
    if sampling is None:
        return DEFAULT_SAMPLING
    if isinstance(sampling, SamplingOptions):
        return (sampling,) * 3
    options = tuple(sampling)
    if len(options) != 3 or not all(isinstance(o, SamplingOptions) for o in options):
        raise TypeError("sampling must be one SamplingOptions or three (semantic, coarse, fine)")
    return options
