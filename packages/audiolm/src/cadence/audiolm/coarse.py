# b batch | s semantic frames | n acoustic frames | q coarse levels | m condition length | d dim
"""Stage 2: the coarse acoustic transformer, semantic tokens -> the first residual levels.

Sequence: ``[condition prefix] START s0 .. s(S-1) SEP c[0,0] c[0,1] .. c[0,q-1] c[1,0] ..``.
Semantic tokens, each coarse level and the two markers have their own embedding rows; only
the acoustic positions are predicted (AudioLM sec. 4.2 models ``p(coarse | semantic)``), by
one output head per level. The level-0 head has one extra class, the end of sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import ConfigError

from .semantic import LossOutput, check_tokens, lengths_or_full
from .transformer import GenerateOutput, StageConfig, StageTransformer

__all__ = ["CoarseTransformer", "CoarseTransformerConfig"]


@dataclass(frozen=True, kw_only=True)
class CoarseTransformerConfig(StageConfig):
    """Config of :class:`CoarseTransformer`.

    Attributes:
        semantic_codebook_size: semantic vocabulary.
        codebook_size: entries per codec codebook.
        num_coarse_quantizers: residual levels modelled here (AudioLM: the first 4 of 12
            SoundStream levels; 3 of 8 in audiolm-pytorch's defaults).
        semantic_frame_rate: semantic tokens per second.
        frame_rate: codec frames per second.
    """

    semantic_codebook_size: int = 500
    codebook_size: int = 1024
    num_coarse_quantizers: int = 3
    semantic_frame_rate: float = 50.0
    frame_rate: float = 50.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.semantic_codebook_size, self.codebook_size, self.num_coarse_quantizers) < 1:
            raise ConfigError("CoarseTransformerConfig: vocabulary sizes and num_coarse_quantizers must be >= 1")
        if self.semantic_frame_rate <= 0 or self.frame_rate <= 0:
            raise ConfigError("CoarseTransformerConfig: frame rates must be > 0")

    @classmethod
    def tiny(cls, **changes) -> CoarseTransformerConfig:
        base = cls(
            dim=64, depth=2, heads=4, dim_head=16, max_seq_len=256, semantic_codebook_size=32,
            codebook_size=64, num_coarse_quantizers=2, max_cond_len=8,
        )
        return base.replace(**changes)

    @property
    def frames_per_semantic(self) -> float:
        """Acoustic frames per semantic token."""
        return self.frame_rate / self.semantic_frame_rate

    @property
    def max_frames(self) -> int:
        """Most acoustic frames whose sequence (with their semantic tokens) fits ``max_seq_len``."""
        prefix = self.max_cond_len if self.cond_dim is not None and self.cond_mode == "prefix" else 0
        per_frame = self.num_coarse_quantizers + 1 / self.frames_per_semantic
        # START, SEP, and one semantic token of rounding slack
        return max(1, math.floor((self.max_seq_len - prefix - 3) / per_frame))

    def semantic_frames(self, frames: int) -> int:
        """Semantic tokens spanning ``frames`` acoustic frames."""
        return math.ceil(frames / self.frames_per_semantic - 1e-9)


class CoarseTransformer(PretrainedMixin, StageTransformer):
    """AudioLM's second stage: coarse residual codes given semantic tokens."""

    config_class = CoarseTransformerConfig

    def __init__(self, config: CoarseTransformerConfig):
        super().__init__()
        self.config = config
        ks, k, q = config.semantic_codebook_size, config.codebook_size, config.num_coarse_quantizers
        self.start_id, self.sep_id = ks, ks + 1
        self.target_offset = ks + 2
        self.target_codebook_size = k
        self.has_eos = True
        self._setup(config, vocab=ks + 2 + q * k, num_levels=q, num_classes=k + 1)

    def _prefix(self, semantic: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``START s.. SEP`` per row, right-padded."""
        b, s = semantic.shape
        device = semantic.device
        ids = torch.zeros(b, s + 2, dtype=torch.long, device=device)
        ids[:, 0] = self.start_id
        ids[:, 1 : s + 1] = semantic
        ids.scatter_(1, (lengths + 1)[:, None], self.sep_id)
        return ids, lengths + 2

    def _check_inputs(self, semantic: Tensor, codes: Tensor | None, what: str = "codes") -> None:
        name = type(self).__name__
        cfg = self.config
        check_tokens(name, semantic, cfg.semantic_codebook_size, "semantic tokens", 2)
        if codes is not None:
            check_tokens(name, codes, cfg.codebook_size, what, 3)
            if codes.shape[-1] != cfg.num_coarse_quantizers:
                raise ValueError(
                    f"{name}: {what} have {codes.shape[-1]} levels but the model predicts "
                    f"num_coarse_quantizers={cfg.num_coarse_quantizers}; pass codes[..., :"
                    f"{cfg.num_coarse_quantizers}]"
                )
            if codes.shape[0] != semantic.shape[0]:
                raise ValueError(f"{name}: semantic tokens and {what} have different batch sizes")

    def forward(
        self,
        semantic: Tensor,
        codes: Tensor,
        *,
        semantic_lengths: Tensor | None = None,
        lengths: Tensor | None = None,
        ends: Tensor | None = None,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
    ) -> LossOutput:
        """Training loss on coarse codes.

        Args:
            semantic: ``(b, s)`` semantic tokens covering the same audio as ``codes``.
            codes: ``(b, n, q)`` coarse codes (``q = num_coarse_quantizers``).
            semantic_lengths, lengths: real tokens / frames per row (default full).
            ends: ``(b,)`` bool: the row reaches the end of its utterance (EOS is a target).
            cond, cond_mask: optional conditioning.
        """
        self._check_inputs(semantic, codes)
        b = semantic.shape[0]
        semantic_lengths = lengths_or_full(semantic_lengths, b, semantic.shape[1], semantic.device)
        lengths = lengths_or_full(lengths, b, codes.shape[1], codes.device)
        prefix, prefix_lengths = self._prefix(semantic, semantic_lengths)
        loss, acc = self.sequence_loss(prefix, prefix_lengths, codes, lengths, cond=cond, cond_mask=cond_mask, eos=ends)
        return LossOutput(loss, acc)

    @torch.inference_mode()
    def generate(
        self,
        semantic: Tensor,
        semantic_lengths: Tensor | None = None,
        *,
        prompt: Tensor | None = None,
        prompt_lengths: Tensor | None = None,
        max_frames: int | Tensor | None = None,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        cond_scale: float = 1.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        allow_eos: bool = True,
        generator: torch.Generator | None = None,
        return_logits: bool = False,
        progress: bool = False,
    ) -> GenerateOutput:
        """Sample coarse codes for semantic tokens.

        Args:
            semantic: ``(b, s)`` semantic tokens (right-padded; ``semantic_lengths``).
            prompt: ``(b, p, q)`` coarse codes of the first frames to continue.
            max_frames: most frames per row, prompt included; default the frames the
                semantic tokens span (``ceil(s * frame_rate / semantic_frame_rate)``).
            Others: see :meth:`StageTransformer.generate_flat`.

        Returns:
            :class:`GenerateOutput`, ``codes`` ``(b, n, q)``.
        """
        self._check_inputs(semantic, prompt, "prompt")
        b, device = semantic.shape[0], semantic.device
        semantic_lengths = lengths_or_full(semantic_lengths, b, semantic.shape[1], device)
        q = self.config.num_coarse_quantizers
        if prompt is None:
            prompt = torch.zeros(b, 0, q, dtype=torch.long, device=device)
        prompt_lengths = lengths_or_full(prompt_lengths, b, prompt.shape[1], device)
        if max_frames is None:
            max_frames = torch.ceil(semantic_lengths * self.config.frames_per_semantic - 1e-6).long()
            max_frames = torch.maximum(max_frames, prompt_lengths)
        max_frames = torch.as_tensor(max_frames, device=device).long().expand(b)
        prefix, prefix_lengths = self._prefix(semantic, semantic_lengths)
        return self.generate_flat(
            prefix, prefix_lengths, prompt, prompt_lengths, max_frames,
            cond=cond, cond_mask=cond_mask, cond_scale=cond_scale, temperature=temperature,
            top_k=top_k, top_p=top_p, use_cache=use_cache, allow_eos=allow_eos,
            generator=generator, return_logits=return_logits, progress=progress,
        )

    @torch.inference_mode()
    def generate_long(
        self,
        semantic: Tensor,
        *,
        prompt: Tensor | None = None,
        window_frames: int | None = None,
        keep_frames: int | None = None,
        **kwargs,
    ) -> GenerateOutput:
        """Coarse codes for semantic tokens longer than the trained context.

        Windows of ``window_frames`` acoustic frames slide over the semantic tokens; each
        starts from the last ``keep_frames`` coarse frames already generated (the prompt of
        the window, AudioLM sec. 4.4) and sees the semantic tokens of its own span. Rows
        must have equal lengths; EOS is only honoured in the last window.

        Args:
            semantic: ``(b, s)`` semantic tokens.
            prompt: ``(b, p, q)`` coarse codes of the first frames, or None.
            window_frames: acoustic frames per window (default ``config.max_frames``).
            keep_frames: frames carried into the next window (default half a window).
            kwargs: sampling options of :meth:`generate`.
        """
        cfg = self.config
        eos = kwargs.pop("allow_eos", True)
        window = window_frames or cfg.max_frames
        keep = keep_frames if keep_frames is not None else window // 2
        if not 0 <= keep < window:
            raise ValueError(f"keep_frames must be in [0, window_frames={window}), got {keep}")
        self._check_inputs(semantic, prompt, "prompt")
        b, device = semantic.shape[0], semantic.device
        ratio = cfg.frames_per_semantic
        total = math.ceil(semantic.shape[1] * ratio - 1e-6)
        codes = prompt if prompt is not None else torch.zeros(b, 0, cfg.num_coarse_quantizers, dtype=torch.long, device=device)
        lengths = torch.full((b,), codes.shape[1], dtype=torch.long, device=device)
        while codes.shape[1] < total:
            done = codes.shape[1]
            start = 0 if done < window else done - keep
            end = min(start + window, total)
            # the semantic tokens of the window, aligned to its first acoustic frame
            s0 = math.floor(start / ratio + 1e-9)
            s1 = min(semantic.shape[1], math.ceil(end / ratio - 1e-9))
            out = self.generate(
                semantic[:, s0:s1], prompt=codes[:, start:], max_frames=end - start,
                allow_eos=eos and end >= total, **kwargs,
            )
            codes = torch.cat([codes, out.codes[:, done - start :]], dim=1)
            lengths = start + out.lengths
            if codes.shape[1] == done:
                break
        mask = torch.arange(codes.shape[1], device=device)[None, :] < lengths[:, None]
        return GenerateOutput(codes=codes.masked_fill(~mask[..., None], 0), lengths=lengths, mask=mask)
