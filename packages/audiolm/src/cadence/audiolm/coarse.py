"""Stage 2: the coarse acoustic transformer, semantic tokens -> the first residual levels.

Sequence: ``[condition prefix] START s0 .. s(s-1) SEP c[0,0] c[0,1] .. c[0,q-1] c[1,0] ..``.
Semantic tokens, each coarse level and the two markers have their own embedding rows; only
the acoustic positions are predicted (AudioLM sec. 4.2 models ``p(coarse | semantic)``), by
one output head per level. The level-0 head has one extra class, the end of sequence.
"""

# b batch | s semantic frames | n acoustic frames | q coarse levels | m condition length | d dim | v vocabulary

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor

from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import ConfigError
from cadence.core.validation import check_ids, check_lengths

from .long_form import check_window, select_rows, slide_windows, take_rows
from .sampling import SamplingOptions
from .transformer import GenerateOutput, StageConfig, StageOutput, StageTransformer

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
            raise ConfigError(
                "CoarseTransformerConfig: vocabulary sizes and num_coarse_quantizers must be >= 1"
            )
        if self.semantic_frame_rate <= 0 or self.frame_rate <= 0:
            raise ConfigError("CoarseTransformerConfig: frame rates must be > 0")

    @classmethod
    def tiny(cls, **changes) -> CoarseTransformerConfig:
        base = cls(
            dim=64,
            depth=2,
            heads=4,
            dim_head=16,
            max_seq_len=256,
            semantic_codebook_size=32,
            codebook_size=64,
            num_coarse_quantizers=2,
            max_cond_len=8,
        )
        return base.replace(**changes)

    @property
    def frames_per_semantic(self) -> float:
        """Acoustic frames per semantic token."""
        return self.frame_rate / self.semantic_frame_rate

    @property
    def max_frames(self) -> int:
        """Most acoustic frames whose sequence (with their semantic tokens) fits ``max_seq_len``."""
        prefix = (
            self.max_cond_len if self.cond_dim is not None and self.cond_mode == "prefix" else 0
        )
        per_frame = self.num_coarse_quantizers + 1 / self.frames_per_semantic
        # START, SEP, and one semantic token of rounding slack
        return max(1, math.floor((self.max_seq_len - prefix - 3) / per_frame))

    def semantic_frames(self, frames: int) -> int:
        """Semantic tokens spanning ``frames`` acoustic frames."""
        return math.ceil(frames / self.frames_per_semantic - 1e-9)


class CoarseTransformer(PretrainedMixin, StageTransformer):
    """AudioLM's second stage: coarse residual codes given semantic tokens."""

    config_class = CoarseTransformerConfig
    config: CoarseTransformerConfig

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

    def _check_inputs(
        self, semantic: Tensor, codes: Tensor | None, what: str = "codes"
    ) -> tuple[Tensor, Tensor | None]:
        """The semantic tokens and coarse codes as long ids, checked against the config."""
        name = type(self).__name__
        cfg = self.config
        semantic = check_ids(
            semantic, cfg.semantic_codebook_size, name=f"{name} semantic tokens", ndim=2
        )
        if codes is not None:
            codes = check_ids(codes, cfg.codebook_size, name=f"{name} {what}", ndim=3)
            if codes.shape[-1] != cfg.num_coarse_quantizers:
                raise ValueError(
                    f"{name}: {what} have {codes.shape[-1]} levels but the model predicts "
                    f"num_coarse_quantizers={cfg.num_coarse_quantizers}; pass codes[..., :"
                    f"{cfg.num_coarse_quantizers}]"
                )
            if codes.shape[0] != semantic.shape[0]:
                raise ValueError(f"{name}: semantic tokens and {what} have different batch sizes")
        return semantic, codes

    def _frames_spanned(self, semantic_lengths: Tensor) -> Tensor:
        """``(b,)`` acoustic frames the rows' semantic tokens span."""
        return torch.ceil(semantic_lengths * self.config.frames_per_semantic - 1e-6).long()

    def forward(
        self,
        semantic: Tensor,
        codes: Tensor,
        *,
        semantic_lengths: Tensor | None = None,
        lengths: Tensor | None = None,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        keep: Tensor | None = None,
    ) -> StageOutput:
        """Teacher-forced predictions of the coarse codes (the loss is the train step's).

        Args:
            semantic: ``(b, s)`` semantic tokens covering the same audio as ``codes``.
            codes: ``(b, n, q)`` coarse codes (``q = num_coarse_quantizers``).
            semantic_lengths, lengths: real tokens / frames per row (default full).
            cond, cond_mask: optional conditioning.
            keep: ``(b,)`` bool, False where the condition is dropped (the null condition).

        Returns:
            :class:`StageOutput`: ``logits`` ``(b, n, q, v)`` with ``v = codebook_size + 1``,
            ``mask`` ``(b, n)``, and ``eos_logits`` ``(b, v)`` after each row's last frame.
        """
        semantic, codes = cast(tuple[Tensor, Tensor], self._check_inputs(semantic, codes))
        b = semantic.shape[0]
        semantic_lengths = check_lengths(
            semantic_lengths, b, semantic.shape[1], name="semantic_lengths", device=semantic.device
        )
        lengths = check_lengths(lengths, b, codes.shape[1], name="lengths", device=codes.device)
        prefix, prefix_lengths = self._prefix(semantic, semantic_lengths)
        return self.target_logits(
            prefix, prefix_lengths, codes, lengths, cond=cond, cond_mask=cond_mask, keep=keep
        )

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
        sampling: SamplingOptions | None = None,
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
            sampling: see :class:`SamplingOptions` (default ``SamplingOptions()``).
            Others: see :meth:`StageTransformer.generate_flat`.

        Returns:
            :class:`GenerateOutput`, ``codes`` ``(b, n, q)``.
        """
        semantic, prompt = self._check_inputs(semantic, prompt, "prompt")
        b, device = semantic.shape[0], semantic.device
        semantic_lengths = check_lengths(
            semantic_lengths, b, semantic.shape[1], name="semantic_lengths", device=device
        )
        if prompt is None:
            prompt = torch.zeros(
                b, 0, self.config.num_coarse_quantizers, dtype=torch.long, device=device
            )
        prompt_lengths = check_lengths(
            prompt_lengths, b, prompt.shape[1], name="prompt_lengths", device=device
        )
        if max_frames is None:
            max_frames = torch.maximum(self._frames_spanned(semantic_lengths), prompt_lengths)
        max_frames = torch.as_tensor(max_frames, device=device).long().expand(b)
        prefix, prefix_lengths = self._prefix(semantic, semantic_lengths)
        return self.generate_flat(
            prefix,
            prefix_lengths,
            prompt,
            prompt_lengths,
            max_frames,
            cond=cond,
            cond_mask=cond_mask,
            sampling=sampling,
            generator=generator,
            return_logits=return_logits,
            progress=progress,
        )

    @torch.inference_mode()
    def generate_long(
        self,
        semantic: Tensor,
        semantic_lengths: Tensor | None = None,
        *,
        prompt: Tensor | None = None,
        prompt_lengths: Tensor | None = None,
        window_frames: int | None = None,
        keep_frames: int | None = None,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        sampling: SamplingOptions | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> GenerateOutput:
        """Coarse codes for semantic tokens longer than the trained context.

        Windows of ``window_frames`` acoustic frames slide over the semantic tokens; each
        starts from the last ``keep_frames`` coarse frames already generated (the prompt of
        the window, AudioLM sec. 4.4) and sees the semantic tokens of its own span. Rows may
        differ in semantic and prompt lengths (one batch, one call; each row is what it
        would be alone). With ``sampling.allow_eos`` a row that samples EOS ends there, in
        whichever window.

        Args:
            semantic: ``(b, s)`` semantic tokens, right-padded.
            semantic_lengths: ``(b,)`` real tokens per row (default all ``s``).
            prompt: ``(b, p, q)`` coarse codes of the first frames, or None.
            prompt_lengths: ``(b,)`` real prompt frames per row (default all ``p``).
            window_frames: acoustic frames per window (default ``config.max_frames``).
            keep_frames: frames carried into the next window (default half a window).
            cond, cond_mask, sampling, generator, progress: as in :meth:`generate`.

        Returns:
            :class:`GenerateOutput`, ``codes`` ``(b, n, q)`` (no logits).
        """
        cfg = self.config
        window = window_frames or cfg.max_frames
        keep = keep_frames if keep_frames is not None else window // 2
        check_window(window, keep)
        semantic, prompt = self._check_inputs(semantic, prompt, "prompt")
        b, device = semantic.shape[0], semantic.device
        semantic_lengths = check_lengths(
            semantic_lengths, b, semantic.shape[1], name="semantic_lengths", device=device
        )
        if prompt is None:
            prompt = torch.zeros(b, 0, cfg.num_coarse_quantizers, dtype=torch.long, device=device)
        prompt_lengths = check_lengths(
            prompt_lengths, b, prompt.shape[1], name="prompt_lengths", device=device
        )
        ratio = cfg.frames_per_semantic
        semantic_frames = semantic_lengths.tolist()
        totals = [math.ceil(s * ratio - 1e-6) for s in semantic_frames]

        def run(
            rows: Tensor, starts: list[int], ends: list[int], window_prompt: Tensor, lengths: Tensor
        ) -> GenerateOutput:
            # the semantic tokens of each window, aligned to its first acoustic frame
            first = [math.floor(start / ratio + 1e-9) for start in starts]
            last = [
                min(semantic_frames[i], math.ceil(end / ratio - 1e-9))
                for i, end in zip(rows.tolist(), ends)
            ]
            tokens, token_lengths = take_rows(
                semantic[rows], first, [e - s for s, e in zip(first, last)]
            )
            return self.generate(
                tokens,
                token_lengths,
                prompt=window_prompt,
                prompt_lengths=lengths,
                max_frames=torch.tensor([e - s for s, e in zip(starts, ends)], device=device),
                cond=select_rows(cond, rows),
                cond_mask=select_rows(cond_mask, rows),
                sampling=sampling,
                generator=generator,
                progress=progress,
            )

        return slide_windows(prompt, prompt_lengths, totals, window=window, keep=keep, run=run)
