# b batch | c channels | t samples | s semantic frames | n acoustic frames | q levels | m text tokens
"""The AudioLM pipeline: semantic tokens -> coarse codes -> fine codes -> waveform.

:class:`AudioLM` holds no weights of its own: it wires a :class:`SemanticTokenizer`, a
:class:`Codec` and the three stage transformers (and optionally a :class:`TextEncoder`),
checking at construction that they fit together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from cadence.core.audio import check_audio, resample
from cadence.core.config import ConfigError
from cadence.core.interfaces import Codec, SemanticTokenizer

from .coarse import CoarseTransformer
from .fine import FineTransformer
from .semantic import SemanticTransformer
from .text import TextEncoder

__all__ = ["AudioLM", "AudioLMOutput"]


@dataclass
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
        for name, obj, proto in (("tokenizer", tokenizer, SemanticTokenizer), ("codec", codec, Codec)):
            if not isinstance(obj, proto):
                raise TypeError(f"AudioLM: `{name}` must conform to cadence.core.interfaces.{proto.__name__}")
        self.tokenizer, self.codec = tokenizer, codec
        self.semantic, self.coarse, self.fine = semantic, coarse, fine
        self.text_encoder = text_encoder
        self._check()

    def _check(self) -> None:
        tok, codec = self.tokenizer, self.codec
        sem, crs, fin = self.semantic.config, self.coarse.config, None if self.fine is None else self.fine.config
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
        if not _close(sem.frame_rate, tok.frame_rate) or not _close(crs.semantic_frame_rate, tok.frame_rate):
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
                problems.append(f"FineTransformer.frame_rate={fin.frame_rate} but the codec runs at {codec.frame_rate}")
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

    def _cond(self, stage, texts_cond):
        cond, mask = texts_cond
        if cond is None or stage.config.cond_dim is None:
            return {}
        return {"cond": cond, "cond_mask": mask}

    @torch.inference_mode()
    def generate(
        self,
        prompt_audio: Tensor | None = None,
        *,
        prompt_sample_rate: int | None = None,
        seconds: float = 4.0,
        batch_size: int = 1,
        texts: Sequence[str] | None = None,
        cond_scale: float = 1.0,
        temperature: float | tuple[float, float, float] = (0.95, 0.95, 0.4),
        top_k: int | None = None,
        top_p: float | None = None,
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
            cond_scale: classifier-free guidance for the conditional stages.
            temperature: one for all stages, or (semantic, coarse, fine); AudioLM samples the
                fine stage cooler.
            top_k, top_p, generator, progress: sampling options.
        """
        device = self.semantic.token_emb.weight.device
        temps = temperature if isinstance(temperature, tuple) else (temperature,) * 3
        cond = (None, None)
        if texts is not None:
            if self.text_encoder is None:
                raise ValueError("texts given but AudioLM has no text_encoder; pass text_encoder=... at construction")
            cond = self.text_encoder.encode(list(texts))
            cond = (cond[0].to(device), cond[1].to(device))
            batch_size = len(texts)
        sample = {"top_k": top_k, "top_p": top_p, "generator": generator, "progress": progress}
        codec, tok = self.codec, self.tokenizer
        crs_cfg = self.coarse.config
        q_coarse = crs_cfg.num_coarse_quantizers

        semantic_prompt = coarse_prompt = None
        if prompt_audio is not None:
            check_audio(prompt_audio, channels=codec.channels)
            rate = prompt_sample_rate or codec.sample_rate
            audio_tok = prompt_audio if rate == tok.sample_rate else resample(prompt_audio, rate, tok.sample_rate)
            audio_codec = prompt_audio if rate == codec.sample_rate else resample(prompt_audio, rate, codec.sample_rate)
            semantic_prompt = tok.tokenize(audio_tok.to(device)).to(device)
            codes = codec.encode(audio_codec.to(device)).to(device)
            frames = min(codes.shape[1], math.floor(semantic_prompt.shape[1] * crs_cfg.frames_per_semantic + 1e-6))
            coarse_prompt = codes[:, :frames, :q_coarse]
            if texts is not None and len(texts) != prompt_audio.shape[0]:
                raise ValueError(f"{len(texts)} texts for {prompt_audio.shape[0]} prompt clips")
            batch_size = prompt_audio.shape[0]

        # 1. semantic tokens
        total_semantic = math.ceil(seconds * tok.frame_rate)
        if semantic_prompt is not None:
            total_semantic = max(total_semantic, semantic_prompt.shape[1])
        sem_kwargs = {**sample, "temperature": temps[0], **self._cond(self.semantic, cond)}
        if self.semantic.config.cond_dim is not None and cond[0] is not None:
            sem_kwargs["cond_scale"] = cond_scale
        if total_semantic <= self.semantic.config.max_frames:
            semantic = self.semantic.generate(
                semantic_prompt, batch_size=batch_size, max_frames=total_semantic, **sem_kwargs
            )
        else:
            semantic = self.semantic.generate_long(
                semantic_prompt, total_frames=total_semantic, batch_size=batch_size, **sem_kwargs
            )
        # 2. coarse, row by row where lengths differ and windows are needed
        crs_kwargs = {**sample, "temperature": temps[1], **self._cond(self.coarse, cond)}
        if self.coarse.config.cond_dim is not None and cond[0] is not None:
            crs_kwargs["cond_scale"] = cond_scale
        coarse_frames = torch.ceil(semantic.lengths * crs_cfg.frames_per_semantic - 1e-6).long()
        if int(coarse_frames.max()) <= crs_cfg.max_frames:
            coarse = self.coarse.generate(semantic.codes, semantic.lengths, prompt=coarse_prompt, **crs_kwargs)
            coarse_codes, frames = coarse.codes, coarse.lengths
        else:
            rows = []
            for i in range(batch_size):
                row_kwargs = self._row(crs_kwargs, i)
                prompt_i = None if coarse_prompt is None else coarse_prompt[i : i + 1]
                out = self.coarse.generate_long(semantic.codes[i : i + 1, : semantic.lengths[i]], prompt=prompt_i, **row_kwargs)
                rows.append(out)
            coarse_codes, frames = _stack(rows)
        # 3. fine
        if self.fine is not None:
            fin_kwargs = {**sample, "temperature": temps[2], **self._cond(self.fine, cond)}
            if self.fine.config.cond_dim is not None and cond[0] is not None:
                fin_kwargs["cond_scale"] = cond_scale
            if int(frames.max()) <= self.fine.config.max_frames:
                fine_codes = self.fine.generate(coarse_codes, frames, **fin_kwargs).codes
            else:
                rows = [
                    self.fine.generate_long(coarse_codes[i : i + 1, : frames[i]], **self._row(fin_kwargs, i))
                    for i in range(batch_size)
                ]
                fine_codes, _ = _stack(rows)
            codes = torch.cat([coarse_codes, fine_codes[:, : coarse_codes.shape[1]]], dim=-1)
        else:
            codes = coarse_codes
        # 4. waveform
        audio = codec.decode(codes)
        hop = codec.sample_rate / codec.frame_rate
        lengths = torch.clamp(torch.round(frames * hop).long(), max=audio.shape[-1])
        keep = torch.arange(audio.shape[-1], device=audio.device)[None, :] < lengths.to(audio.device)[:, None]
        audio = audio * keep[:, None, :]
        return AudioLMOutput(audio=audio, lengths=lengths, semantic=semantic.codes, codes=codes, frames=frames)

    @staticmethod
    def _row(kwargs: dict, i: int) -> dict:
        out = dict(kwargs)
        for key in ("cond", "cond_mask"):
            if out.get(key) is not None:
                out[key] = out[key][i : i + 1]
        return out


def _stack(rows: list) -> tuple[Tensor, Tensor]:
    """Right-pad single-row outputs into one batch."""
    width = max(r.codes.shape[1] for r in rows)
    codes = torch.cat([torch.nn.functional.pad(r.codes, (0, 0, 0, width - r.codes.shape[1])) for r in rows])
    return codes, torch.cat([r.lengths.reshape(1) for r in rows]).long()
