"""Stage 3: the fine acoustic transformer, coarse codes -> the remaining residual levels.

Sequence: ``[condition prefix] START c[0,0] .. c[0,q_c-1] c[1,0] .. SEP f[0,0] .. f[0,q_f-1] f[1,0] ..``
(``c`` coarse codes, ``f`` fine codes). The coarse codes of a window are all read first, then
the fine levels are predicted frame by frame, one head per fine level. The length is the coarse length, so there is no EOS. As in
AudioLM (sec. 4.2), long audio is processed in windows (here optionally overlapping: each
window may start from the last fine frames of the previous one).
"""

# b batch | n acoustic frames | q levels (q_c coarse, read; q_f fine, predicted) | m condition length | d dim | v vocabulary

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from einops import rearrange
from torch import Tensor

from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import ConfigError
from cadence.core.validation import check_ids, check_lengths

from .long_form import check_window, select_rows, slide_windows, take_rows
from .sampling import SamplingOptions
from .transformer import GenerateOutput, StageConfig, StageOutput, StageTransformer

__all__ = ["FineTransformer", "FineTransformerConfig"]


@dataclass(frozen=True, kw_only=True)
class FineTransformerConfig(StageConfig):
    """Config of :class:`FineTransformer`.

    Attributes:
        codebook_size: entries per codec codebook.
        num_coarse_quantizers: levels given as input (the coarse stage's).
        num_fine_quantizers: levels predicted here; coarse + fine = the codec's levels.
        frame_rate: codec frames per second.
    """

    codebook_size: int = 1024
    num_coarse_quantizers: int = 3
    num_fine_quantizers: int = 5
    frame_rate: float = 50.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.codebook_size, self.num_coarse_quantizers, self.num_fine_quantizers) < 1:
            raise ConfigError(
                "FineTransformerConfig: codebook_size and quantizer counts must be >= 1"
            )
        if self.frame_rate <= 0:
            raise ConfigError("FineTransformerConfig.frame_rate must be > 0")

    @classmethod
    def tiny(cls, **changes) -> FineTransformerConfig:
        base = cls(
            dim=64,
            depth=2,
            heads=4,
            dim_head=16,
            max_seq_len=256,
            codebook_size=64,
            num_coarse_quantizers=2,
            num_fine_quantizers=2,
            max_cond_len=8,
        )
        return base.replace(**changes)

    @property
    def max_frames(self) -> int:
        """Most frames whose coarse + fine sequence fits ``max_seq_len``."""
        prefix = (
            self.max_cond_len if self.cond_dim is not None and self.cond_mode == "prefix" else 0
        )
        per_frame = self.num_coarse_quantizers + self.num_fine_quantizers
        return max(1, (self.max_seq_len - prefix - 2) // per_frame)


class FineTransformer(PretrainedMixin, StageTransformer):
    """AudioLM's third stage: fine residual codes given the coarse ones."""

    config_class = FineTransformerConfig
    config: FineTransformerConfig

    def __init__(self, config: FineTransformerConfig):
        super().__init__()
        self.config = config
        k, c, f = config.codebook_size, config.num_coarse_quantizers, config.num_fine_quantizers
        self.start_id, self.sep_id = c * k, c * k + 1
        self.target_offset = c * k + 2
        self.target_codebook_size = k
        self.has_eos = False
        self._setup(config, vocab=c * k + 2 + f * k, num_levels=f, num_classes=k)

    def _prefix(self, coarse: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``START coarse-flat SEP`` per row, right-padded."""
        b, n, c = coarse.shape
        k = self.config.codebook_size
        flat = rearrange(coarse + torch.arange(c, device=coarse.device) * k, "b n q -> b (n q)")
        ids = torch.zeros(b, n * c + 2, dtype=torch.long, device=coarse.device)
        ids[:, 0] = self.start_id
        ids[:, 1 : n * c + 1] = flat
        ids.scatter_(1, (lengths * c + 1)[:, None], self.sep_id)
        return ids, lengths * c + 2

    def _check(
        self, coarse: Tensor, fine: Tensor | None, what: str = "fine codes"
    ) -> tuple[Tensor, Tensor | None]:
        """The coarse and fine codes as long ids, checked against the config."""
        name, cfg = type(self).__name__, self.config
        coarse = check_ids(coarse, cfg.codebook_size, name=f"{name} coarse codes", ndim=3)
        if coarse.shape[-1] != cfg.num_coarse_quantizers:
            raise ValueError(
                f"{name}: coarse codes have {coarse.shape[-1]} levels, the model reads "
                f"num_coarse_quantizers={cfg.num_coarse_quantizers}"
            )
        if fine is not None:
            fine = check_ids(fine, cfg.codebook_size, name=f"{name} {what}", ndim=3)
            if fine.shape[-1] != cfg.num_fine_quantizers:
                raise ValueError(
                    f"{name}: {what} have {fine.shape[-1]} levels, the model predicts "
                    f"num_fine_quantizers={cfg.num_fine_quantizers}"
                )
            if fine.shape[0] != coarse.shape[0] or fine.shape[1] > coarse.shape[1]:
                raise ValueError(
                    f"{name}: {what} {tuple(fine.shape)} do not fit coarse codes {tuple(coarse.shape)}"
                )
        return coarse, fine

    def forward(
        self,
        coarse: Tensor,
        fine: Tensor,
        *,
        lengths: Tensor | None = None,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        keep: Tensor | None = None,
    ) -> StageOutput:
        """Teacher-forced predictions of the fine codes (the loss is the train step's).

        Args:
            coarse: ``(b, n, q_c)`` coarse codes; fine: ``(b, n, q_f)`` fine codes of the same frames.
            lengths: ``(b,)`` real frames per row.
            cond, cond_mask: optional conditioning.
            keep: ``(b,)`` bool, False where the condition is dropped (the null condition).

        Returns:
            :class:`StageOutput`: ``logits`` ``(b, n, q_f, codebook_size)``, ``mask`` ``(b, n)``,
            no ``eos_logits`` (the fine stage has no EOS).
        """
        coarse, fine = cast(tuple[Tensor, Tensor], self._check(coarse, fine))
        b, n, _ = coarse.shape
        lengths = check_lengths(lengths, b, n, name="lengths", device=coarse.device)
        prefix, prefix_lengths = self._prefix(coarse, lengths)
        return self.target_logits(
            prefix, prefix_lengths, fine, lengths, cond=cond, cond_mask=cond_mask, keep=keep
        )

    @torch.inference_mode()
    def generate(
        self,
        coarse: Tensor,
        lengths: Tensor | None = None,
        *,
        prompt: Tensor | None = None,
        prompt_lengths: Tensor | None = None,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        sampling: SamplingOptions | None = None,
        generator: torch.Generator | None = None,
        return_logits: bool = False,
        progress: bool = False,
    ) -> GenerateOutput:
        """Sample the fine codes of ``coarse`` ``(b, n, q_c)`` (one window).

        Args:
            coarse: ``(b, n, q_c)`` coarse codes, right-padded; lengths: ``(b,)`` real frames.
            prompt: ``(b, p, q_f)`` fine codes of the first frames, kept as they are.
            sampling: see :class:`SamplingOptions`; ``allow_eos`` does not apply (no EOS).
            Others: see :meth:`StageTransformer.generate_flat`.

        Returns:
            :class:`GenerateOutput`, ``codes`` ``(b, n, q_f)`` fine codes, as long as the coarse.
        """
        coarse, prompt = self._check(coarse, prompt, "prompt")
        b, n, _ = coarse.shape
        device = coarse.device
        lengths = check_lengths(lengths, b, n, name="lengths", device=device)
        if prompt is None:
            prompt = torch.zeros(
                b, 0, self.config.num_fine_quantizers, dtype=torch.long, device=device
            )
        prompt_lengths = check_lengths(
            prompt_lengths, b, prompt.shape[1], name="prompt_lengths", device=device
        )
        prefix, prefix_lengths = self._prefix(coarse, lengths)
        return self.generate_flat(
            prefix,
            prefix_lengths,
            prompt,
            prompt_lengths,
            torch.maximum(lengths, prompt_lengths),
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
        coarse: Tensor,
        lengths: Tensor | None = None,
        *,
        window_frames: int | None = None,
        keep_frames: int = 0,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        sampling: SamplingOptions | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> GenerateOutput:
        """Fine codes for coarse codes of any length, window by window.

        Args:
            coarse: ``(b, n, q_c)`` coarse codes, right-padded.
            lengths: ``(b,)`` real frames per row (default all ``n``); rows of different
                lengths share one call.
            window_frames: frames per window (default ``config.max_frames``).
            keep_frames: fine frames of the previous window given as the prompt of the next
                (0: non-overlapping windows, as in AudioLM).
            cond, cond_mask, sampling, generator, progress: as in :meth:`generate`.

        Returns:
            :class:`GenerateOutput`, ``codes`` ``(b, n, q_f)`` (no logits).
        """
        window = window_frames or self.config.max_frames
        check_window(window, keep_frames)
        coarse, _ = self._check(coarse, None)
        b, n, _ = coarse.shape
        device = coarse.device
        lengths = check_lengths(lengths, b, n, name="lengths", device=device)
        prompt = torch.zeros(b, 0, self.config.num_fine_quantizers, dtype=torch.long, device=device)

        def run(
            rows: Tensor,
            starts: list[int],
            ends: list[int],
            window_prompt: Tensor,
            prompt_lengths: Tensor,
        ) -> GenerateOutput:
            window_coarse, window_lengths = take_rows(
                coarse[rows], starts, [e - s for s, e in zip(starts, ends)]
            )
            return self.generate(
                window_coarse,
                window_lengths,
                prompt=window_prompt,
                prompt_lengths=prompt_lengths,
                cond=select_rows(cond, rows),
                cond_mask=select_rows(cond_mask, rows),
                sampling=sampling,
                generator=generator,
                progress=progress,
            )

        # the rule of every stage: a window past the first starts `keep` frames back
        return slide_windows(
            prompt,
            torch.zeros(b, dtype=torch.long),
            lengths.tolist(),
            window=window,
            keep=keep_frames,
            run=run,
        )
