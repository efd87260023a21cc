# b batch | n frames (semantic tokens) | m condition length | d dim | v vocabulary
"""Stage 1: the semantic transformer, an autoregressive model of semantic tokens.

Sequence: ``[condition prefix] START t0 t1 ... t(n-1)``; the output at each position predicts
the next token, and after the last one an end-of-sequence class (EOS = ``codebook_size``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import ConfigError

from .transformer import GenerateOutput, StageConfig, StageTransformer

__all__ = ["LossOutput", "SemanticTransformer", "SemanticTransformerConfig"]


@dataclass
class LossOutput:
    """A stage's training loss and next-token accuracy over the predicted positions."""

    loss: Tensor
    accuracy: Tensor


def check_tokens(name: str, tokens: Tensor, codebook_size: int, what: str, ndim: int) -> None:
    """Integer ids of the right rank inside ``[0, codebook_size)``, with a fix in the error."""
    if tokens.ndim != ndim:
        shape = "(b, n)" if ndim == 2 else "(b, n, q)"
        raise ValueError(f"{name}: {what} must be {shape}, got shape {tuple(tokens.shape)}")
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise TypeError(f"{name}: {what} must be integer ids, got {tokens.dtype}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= codebook_size):
        raise ValueError(
            f"{name}: {what} hold values in [{int(tokens.min())}, {int(tokens.max())}] but the "
            f"model's codebook has {codebook_size} entries; were they made with another "
            "tokenizer / codec than the one this model was trained for?"
        )


def lengths_or_full(lengths: Tensor | None, batch: int, n: int, device: torch.device) -> Tensor:
    if lengths is None:
        return torch.full((batch,), n, dtype=torch.long, device=device)
    lengths = torch.as_tensor(lengths, device=device).long()
    if lengths.shape != (batch,) or bool((lengths < 0).any()) or bool((lengths > n).any()):
        raise ValueError(f"lengths must be (b={batch},) in [0, {n}], got {lengths.tolist()}")
    return lengths


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
            raise ConfigError("SemanticTransformerConfig: codebook_size must be >= 1 and frame_rate > 0")

    @classmethod
    def tiny(cls, **changes) -> SemanticTransformerConfig:
        base = cls(dim=64, depth=2, heads=4, dim_head=16, max_seq_len=192, codebook_size=32, max_cond_len=8)
        return base.replace(**changes)

    @property
    def max_frames(self) -> int:
        """Most tokens that fit in ``max_seq_len`` (START and a prefix condition take room)."""
        prefix = self.max_cond_len if self.cond_dim is not None and self.cond_mode == "prefix" else 0
        return self.max_seq_len - 1 - prefix


class SemanticTransformer(PretrainedMixin, StageTransformer):
    """AudioLM's first stage (Borsos et al. 2022, sec. 4.2): semantic tokens -> next token.

    Example::

        model = SemanticTransformer(SemanticTransformerConfig.tiny())
        out = model.generate(batch_size=2, max_frames=50, temperature=0.9)
        out.codes  # (2, n) tokens, out.lengths (2,)
    """

    config_class = SemanticTransformerConfig

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

    def forward(
        self,
        tokens: Tensor,
        lengths: Tensor | None = None,
        *,
        ends: Tensor | None = None,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
    ) -> LossOutput:
        """Training loss.

        Args:
            tokens: ``(b, n)`` semantic tokens, right-padded.
            lengths: ``(b,)`` real tokens per row (default all ``n``).
            ends: ``(b,)`` bool, whether the row is the end of its utterance (EOS is then a
                target); default True.
            cond, cond_mask: optional ``(b, m, cond_dim)`` conditioning and its mask.
        """
        check_tokens(type(self).__name__, tokens, self.config.codebook_size, "tokens", 2)
        b, n = tokens.shape
        lengths = lengths_or_full(lengths, b, n, tokens.device)
        prefix, prefix_lengths = self._prefix(b, tokens.device)
        loss, acc = self.sequence_loss(
            prefix, prefix_lengths, tokens[..., None], lengths, cond=cond, cond_mask=cond_mask, eos=ends
        )
        return LossOutput(loss, acc)

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
        """Sample semantic tokens, continuing ``prompt`` or from nothing.

        Args:
            prompt: ``(b, p)`` tokens to continue (right-padded; see ``prompt_lengths``).
            batch_size: rows to sample when there is no prompt (else taken from it).
            max_frames: most tokens per row, prompt included (int or ``(b,)``); default
                ``config.max_frames``.
            Others: see :meth:`StageTransformer.generate_flat`.

        Returns:
            :class:`GenerateOutput` with ``codes`` ``(b, n)`` tokens.
        """
        device = self.token_emb.weight.device
        if prompt is None:
            if batch_size is None:
                batch_size = cond.shape[0] if cond is not None else 1
            prompt = torch.zeros(batch_size, 0, dtype=torch.long, device=device)
        else:
            device = prompt.device
            check_tokens(type(self).__name__, prompt, self.config.codebook_size, "prompt", 2)
        b, p = prompt.shape
        prompt_lengths = lengths_or_full(prompt_lengths, b, p, device)
        if max_frames is None:
            max_frames = self.config.max_frames
        max_frames = torch.as_tensor(max_frames, device=device).long().expand(b)
        prefix, prefix_lengths = self._prefix(b, device)
        out = self.generate_flat(
            prefix, prefix_lengths, prompt[..., None], prompt_lengths, max_frames,
            cond=cond, cond_mask=cond_mask, cond_scale=cond_scale, temperature=temperature,
            top_k=top_k, top_p=top_p, use_cache=use_cache, allow_eos=allow_eos,
            generator=generator, return_logits=return_logits, progress=progress,
        )
        out.codes = out.codes[..., 0]
        return out

    @torch.inference_mode()
    def generate_long(
        self,
        prompt: Tensor | None = None,
        *,
        total_frames: int,
        batch_size: int = 1,
        window_frames: int | None = None,
        keep_frames: int | None = None,
        **kwargs,
    ) -> GenerateOutput:
        """Generate beyond the trained context with a sliding window (AudioLM sec. 4.4).

        Each window continues the last ``keep_frames`` tokens of the text so far, as AudioLM
        continues 10 s windows by re-prompting; EOS is only honoured in the last window.

        Args:
            prompt: ``(b, p)`` tokens to continue (same length in every row), or None.
            total_frames: tokens wanted per row, prompt included.
            window_frames: tokens per window (default ``config.max_frames``).
            keep_frames: tokens carried into the next window (default half a window).
            kwargs: sampling options of :meth:`generate`.
        """
        eos = kwargs.pop("allow_eos", True)
        window = window_frames or self.config.max_frames
        keep = keep_frames if keep_frames is not None else window // 2
        if not 0 <= keep < window:
            raise ValueError(f"keep_frames must be in [0, window_frames={window}), got {keep}")
        device = self.token_emb.weight.device if prompt is None else prompt.device
        tokens = prompt if prompt is not None else torch.zeros(batch_size, 0, dtype=torch.long, device=device)
        b = tokens.shape[0]
        lengths = torch.full((b,), tokens.shape[1], dtype=torch.long, device=device)
        while tokens.shape[1] < total_frames:
            done = tokens.shape[1]
            start = 0 if done < window else done - keep
            end = min(start + window, total_frames)
            out = self.generate(tokens[:, start:], max_frames=end - start, allow_eos=eos and end >= total_frames, **kwargs)
            tokens = torch.cat([tokens, out.codes[:, done - start :]], dim=1)
            lengths = start + out.lengths
            if tokens.shape[1] == done:
                break
        mask = torch.arange(tokens.shape[1], device=device)[None, :] < lengths[:, None]
        return GenerateOutput(codes=tokens.masked_fill(~mask, 0), lengths=lengths, mask=mask)
