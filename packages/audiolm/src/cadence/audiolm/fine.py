# b batch | n frames | c coarse levels | f fine levels | m condition length | d dim
"""Stage 3: the fine acoustic transformer, coarse codes -> the remaining residual levels.

Sequence: ``[condition prefix] START c[0,0] .. c[0,C-1] c[1,0] .. SEP f[0,0] .. f[0,F-1] f[1,0] ..``.
The coarse codes of a window are all read first, then the fine levels are predicted frame by
frame, one head per fine level. The length is the coarse length, so there is no EOS. As in
AudioLM (sec. 4.2), long audio is processed in windows (here optionally overlapping: each
window may start from the last fine frames of the previous one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import ConfigError

from .semantic import LossOutput, check_tokens, lengths_or_full
from .transformer import GenerateOutput, StageConfig, StageTransformer

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
            raise ConfigError("FineTransformerConfig: codebook_size and quantizer counts must be >= 1")
        if self.frame_rate <= 0:
            raise ConfigError("FineTransformerConfig.frame_rate must be > 0")

    @classmethod
    def tiny(cls, **changes) -> FineTransformerConfig:
        base = cls(
            dim=64, depth=2, heads=4, dim_head=16, max_seq_len=256, codebook_size=64,
            num_coarse_quantizers=2, num_fine_quantizers=2, max_cond_len=8,
        )
        return base.replace(**changes)

    @property
    def max_frames(self) -> int:
        """Most frames whose coarse + fine sequence fits ``max_seq_len``."""
        prefix = self.max_cond_len if self.cond_dim is not None and self.cond_mode == "prefix" else 0
        per_frame = self.num_coarse_quantizers + self.num_fine_quantizers
        return max(1, (self.max_seq_len - prefix - 2) // per_frame)


class FineTransformer(PretrainedMixin, StageTransformer):
    """AudioLM's third stage: fine residual codes given the coarse ones."""

    config_class = FineTransformerConfig

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
        flat = rearrange(coarse + torch.arange(c, device=coarse.device) * k, "b n c -> b (n c)")
        ids = torch.zeros(b, n * c + 2, dtype=torch.long, device=coarse.device)
        ids[:, 0] = self.start_id
        ids[:, 1 : n * c + 1] = flat
        ids.scatter_(1, (lengths * c + 1)[:, None], self.sep_id)
        return ids, lengths * c + 2

    def _check(self, coarse: Tensor, fine: Tensor | None, what: str = "fine codes") -> None:
        name, cfg = type(self).__name__, self.config
        check_tokens(name, coarse, cfg.codebook_size, "coarse codes", 3)
        if coarse.shape[-1] != cfg.num_coarse_quantizers:
            raise ValueError(
                f"{name}: coarse codes have {coarse.shape[-1]} levels, the model reads "
                f"num_coarse_quantizers={cfg.num_coarse_quantizers}"
            )
        if fine is not None:
            check_tokens(name, fine, cfg.codebook_size, what, 3)
            if fine.shape[-1] != cfg.num_fine_quantizers:
                raise ValueError(
                    f"{name}: {what} have {fine.shape[-1]} levels, the model predicts "
                    f"num_fine_quantizers={cfg.num_fine_quantizers}"
                )
            if fine.shape[0] != coarse.shape[0] or fine.shape[1] > coarse.shape[1]:
                raise ValueError(f"{name}: {what} {tuple(fine.shape)} do not fit coarse codes {tuple(coarse.shape)}")

    def forward(
        self,
        coarse: Tensor,
        fine: Tensor,
        *,
        lengths: Tensor | None = None,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
    ) -> LossOutput:
        """Training loss on fine codes.

        Args:
            coarse: ``(b, n, c)`` coarse codes; fine: ``(b, n, f)`` fine codes of the same frames.
            lengths: ``(b,)`` real frames per row.
            cond, cond_mask: optional conditioning.
        """
        self._check(coarse, fine)
        b, n, _ = coarse.shape
        lengths = lengths_or_full(lengths, b, n, coarse.device)
        prefix, prefix_lengths = self._prefix(coarse, lengths)
        loss, acc = self.sequence_loss(prefix, prefix_lengths, fine, lengths, cond=cond, cond_mask=cond_mask)
        return LossOutput(loss, acc)

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
        cond_scale: float = 1.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        return_logits: bool = False,
        progress: bool = False,
    ) -> GenerateOutput:
        """Sample the fine codes of ``coarse`` ``(b, n, c)`` (one window).

        Returns:
            :class:`GenerateOutput`, ``codes`` ``(b, n, f)`` fine codes, as long as the coarse.
        """
        self._check(coarse, prompt, "prompt")
        b, n, _ = coarse.shape
        device = coarse.device
        lengths = lengths_or_full(lengths, b, n, device)
        if prompt is None:
            prompt = torch.zeros(b, 0, self.config.num_fine_quantizers, dtype=torch.long, device=device)
        prompt_lengths = lengths_or_full(prompt_lengths, b, prompt.shape[1], device)
        prefix, prefix_lengths = self._prefix(coarse, lengths)
        return self.generate_flat(
            prefix, prefix_lengths, prompt, prompt_lengths, torch.maximum(lengths, prompt_lengths),
            cond=cond, cond_mask=cond_mask, cond_scale=cond_scale, temperature=temperature,
            top_k=top_k, top_p=top_p, use_cache=use_cache, allow_eos=False,
            generator=generator, return_logits=return_logits, progress=progress,
        )

    @torch.inference_mode()
    def generate_long(
        self,
        coarse: Tensor,
        *,
        window_frames: int | None = None,
        keep_frames: int = 0,
        **kwargs,
    ) -> GenerateOutput:
        """Fine codes for coarse codes of any length, window by window.

        Args:
            coarse: ``(b, n, c)`` coarse codes, all rows ``n`` frames.
            window_frames: frames per window (default ``config.max_frames``).
            keep_frames: fine frames of the previous window given as the prompt of the next
                (0: non-overlapping windows, as in AudioLM).
            kwargs: sampling options of :meth:`generate`.
        """
        window = window_frames or self.config.max_frames
        if not 0 <= keep_frames < window:
            raise ValueError(f"keep_frames must be in [0, window_frames={window}), got {keep_frames}")
        self._check(coarse, None)
        b, n, _ = coarse.shape
        fine = torch.zeros(b, 0, self.config.num_fine_quantizers, dtype=torch.long, device=coarse.device)
        while fine.shape[1] < n:
            done = fine.shape[1]
            start = max(0, done - keep_frames)
            end = min(start + window, n)
            out = self.generate(coarse[:, start:end], prompt=fine[:, start:done], **kwargs)
            fine = torch.cat([fine, out.codes[:, done - start :]], dim=1)
        mask = torch.ones(b, n, dtype=torch.bool, device=coarse.device)
        return GenerateOutput(codes=fine, lengths=torch.full((b,), n, device=coarse.device), mask=mask)
