"""Stage 1: the semantic transformer, an autoregressive model of semantic tokens.

Sequence: ``[condition prefix] START t0 t1 ... t(s-1)``; the output at each position predicts
the next token, and after the last one an end-of-sequence class (EOS = ``codebook_size``).
"""

# b batch | s semantic frames | m condition length | d dim | v vocabulary

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import ConfigError
from cadence.core.validation import check_ids, check_lengths

from .long_form import check_window, select_rows, slide_windows
from .sampling import SamplingOptions
from .semantic_stream import stream_tokens
from .transformer import GenerateOutput, StageConfig, StageOutput, StageTransformer

__all__ = ["SemanticTransformer", "SemanticTransformerConfig"]


@dataclass(frozen=True, kw_only=True)
class SemanticTransformerConfig(StageConfig):
    """Config of :class:`SemanticTransformer`.

    Attributes:
        codebook_size: semantic vocabulary (the tokenizer's k-means clusters).
        frame_rate: semantic tokens per second (the tokenizer's ``frame_rate``).
    """

    codebook_size: int = 500
    frame_rate: float = 50.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.codebook_size < 1 or self.frame_rate <= 0:
            raise ConfigError(
                "SemanticTransformerConfig: codebook_size must be >= 1 and frame_rate > 0"
            )

    @classmethod
    def tiny(cls, **changes) -> SemanticTransformerConfig:
        base = cls(
            dim=64, depth=2, heads=4, dim_head=16, max_seq_len=192, codebook_size=32, max_cond_len=8
        )
        return base.replace(**changes)

    @property
    def max_frames(self) -> int:
        """Most tokens that fit in ``max_seq_len`` (START and a prefix condition take room)."""
        prefix = (
            self.max_cond_len if self.cond_dim is not None and self.cond_mode == "prefix" else 0
        )
        return self.max_seq_len - 1 - prefix


class SemanticTransformer(PretrainedMixin, StageTransformer):
    """AudioLM's first stage (Borsos et al. 2022, sec. 4.2): semantic tokens -> next token.

    Example::

        model = SemanticTransformer(SemanticTransformerConfig.tiny())
        out = model.generate(batch_size=2, max_frames=50, sampling=SamplingOptions(temperature=0.9))
        out.codes  # (2, s) tokens, out.lengths (2,)
    """

    config_class = SemanticTransformerConfig
    config: SemanticTransformerConfig

    def __init__(self, config: SemanticTransformerConfig):
        super().__init__()
        self.config = config
        k = config.codebook_size
        self.start_id = k
        self.target_offset = 0
        self.target_codebook_size = k
        self.has_eos = True
        self._setup(config, vocab=k + 1, num_levels=1, num_classes=k + 1)

    def _prefix(self, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
        ids = torch.full((batch, 1), self.start_id, dtype=torch.long, device=device)
        return ids, torch.ones(batch, dtype=torch.long, device=device)

    def _tokens(self, tokens: Tensor, what: str) -> Tensor:
        return check_ids(
            tokens, self.config.codebook_size, name=f"{type(self).__name__} {what}", ndim=2
        )

    def forward(
        self,
        tokens: Tensor,
        lengths: Tensor | None = None,
        *,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        keep: Tensor | None = None,
    ) -> StageOutput:
        """Teacher-forced next-token predictions (the loss is the train step's).

        Args:
            tokens: ``(b, s)`` semantic tokens, right-padded.
            lengths: ``(b,)`` real tokens per row (default all ``s``).
            cond, cond_mask: optional ``(b, m, cond_dim)`` conditioning and its mask.
            keep: ``(b,)`` bool, False where the condition is dropped (the null condition).

        Returns:
            :class:`StageOutput`: ``logits`` ``(b, s, 1, v)`` with ``v = codebook_size + 1``,
            ``mask`` ``(b, s)``, and ``eos_logits`` ``(b, v)`` after each row's last token.
        """
        tokens = self._tokens(tokens, "tokens")
        b, s = tokens.shape
        lengths = check_lengths(lengths, b, s, name="lengths", device=tokens.device)
        prefix, prefix_lengths = self._prefix(b, tokens.device)
        return self.target_logits(
            prefix,
            prefix_lengths,
            tokens[..., None],
            lengths,
            cond=cond,
            cond_mask=cond_mask,
            keep=keep,
        )

    @torch.inference_mode()
    def generate(
        self,
        prompt: Tensor | None = None,
        prompt_lengths: Tensor | None = None,
        *,
        batch_size: int | None = None,
        max_frames: int | Tensor | None = None,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        sampling: SamplingOptions | None = None,
        generator: torch.Generator | None = None,
        return_logits: bool = False,
        progress: bool = False,
    ) -> GenerateOutput:
        """Sample semantic tokens, continuing ``prompt`` or from nothing.

        Args:
            prompt: ``(b, p)`` tokens to continue (right-padded; see ``prompt_lengths``).
            batch_size: rows to sample when there is no prompt (else taken from it).
            max_frames: most tokens per row, prompt included (int or ``(b,)``); default
                ``config.max_frames``.
            sampling: see :class:`SamplingOptions` (default ``SamplingOptions()``).
            Others: see :meth:`StageTransformer.generate_flat`.

        Returns:
            :class:`GenerateOutput` with ``codes`` ``(b, s)`` tokens.
        """
        device = self.token_emb.weight.device
        if prompt is None:
            if batch_size is None:
                batch_size = cond.shape[0] if cond is not None else 1
            prompt = torch.zeros(batch_size, 0, dtype=torch.long, device=device)
        else:
            device = prompt.device
            prompt = self._tokens(prompt, "prompt")
        b, p = prompt.shape
        prompt_lengths = check_lengths(prompt_lengths, b, p, name="prompt_lengths", device=device)
        if max_frames is None:
            max_frames = self.config.max_frames
        max_frames = torch.as_tensor(max_frames, device=device).long().expand(b)
        prefix, prefix_lengths = self._prefix(b, device)
        out = self.generate_flat(
            prefix,
            prefix_lengths,
            prompt[..., None],
            prompt_lengths,
            max_frames,
            cond=cond,
            cond_mask=cond_mask,
            sampling=sampling,
            generator=generator,
            return_logits=return_logits,
            progress=progress,
        )
        return replace(out, codes=out.codes[..., 0])

    @torch.inference_mode()
    def stream(
        self,
        prompt: Tensor,
        *,
        new_frames: int,
        chunk_frames: int,
        window_frames: int | None = None,
        keep_frames: int | None = None,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        sampling: SamplingOptions | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[Tensor]:
        """Yield the tokens that continue one prompt ``(1, p)`` in ``(1, n)`` chunks, as sampled.

        Joined, the chunks are :meth:`generate_long`'s continuation (and :meth:`generate`'s
        where prompt + ``new_frames`` fit in one window) for the same generator; see
        :func:`cadence.audiolm.semantic_stream.stream_tokens`.
        """
        yield from stream_tokens(
            self, prompt, new_frames=new_frames, chunk_frames=chunk_frames,
            window_frames=window_frames, keep_frames=keep_frames, cond=cond,
            cond_mask=cond_mask, sampling=sampling, generator=generator,
        )  # fmt: skip

    @torch.inference_mode()
    def generate_long(
        self,
        prompt: Tensor | None = None,
        prompt_lengths: Tensor | None = None,
        *,
        total_frames: int | Tensor,
        batch_size: int | None = None,
        window_frames: int | None = None,
        keep_frames: int | None = None,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        sampling: SamplingOptions | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> GenerateOutput:
        """Generate beyond the trained context with a sliding window (AudioLM sec. 4.4).

        Each window continues the last ``keep_frames`` tokens of the row so far, as AudioLM
        continues 10 s windows by re-prompting. Prompts may differ in length (one batch, one
        call; each row is what it would be alone). With ``sampling.allow_eos`` a row that
        samples EOS ends there, in whichever window.

        Args:
            prompt: ``(b, p)`` tokens to continue, right-padded, or None.
            prompt_lengths: ``(b,)`` real prompt tokens per row (default all ``p``).
            total_frames: tokens wanted per row, prompt included (int or ``(b,)``).
            batch_size: rows when there is no prompt (default: the condition's, or 1).
            window_frames: tokens per window (default ``config.max_frames``).
            keep_frames: tokens carried into the next window (default half a window).
            cond, cond_mask, sampling, generator, progress: as in :meth:`generate`.

        Returns:
            :class:`GenerateOutput` with ``codes`` ``(b, s)`` tokens (no logits).
        """
        window = window_frames or self.config.max_frames
        keep = keep_frames if keep_frames is not None else window // 2
        check_window(window, keep)
        device = self.token_emb.weight.device if prompt is None else prompt.device
        if prompt is None:
            if batch_size is None:
                batch_size = cond.shape[0] if cond is not None else 1
            prompt = torch.zeros(batch_size, 0, dtype=torch.long, device=device)
        prompt = self._tokens(prompt, "prompt")
        b, p = prompt.shape
        prompt_lengths = check_lengths(prompt_lengths, b, p, name="prompt_lengths", device=device)
        totals = torch.as_tensor(total_frames).long().expand(b).tolist()

        def run(
            rows: Tensor, starts: list[int], ends: list[int], window_prompt: Tensor, lengths: Tensor
        ) -> GenerateOutput:
            budget = torch.tensor([e - s for s, e in zip(starts, ends)], device=device)
            out = self.generate(
                window_prompt[..., 0],
                lengths,
                max_frames=budget,
                cond=select_rows(cond, rows),
                cond_mask=select_rows(cond_mask, rows),
                sampling=sampling,
                generator=generator,
                progress=progress,
            )
            return replace(out, codes=out.codes[..., None])

        out = slide_windows(
            prompt[..., None], prompt_lengths, totals, window=window, keep=keep, run=run
        )
        return replace(out, codes=out.codes[..., 0])
