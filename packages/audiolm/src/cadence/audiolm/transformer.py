"""The decoder shared by the three AudioLM stages, and its KV-cached incremental path.

Every stage reads one flat sequence of discrete tokens::

    [pad ...] [condition prefix] START [prefix tokens] SEP [target tokens, levels flattened per frame]

- *prefix tokens* are what the stage is conditioned on and never predicts: nothing for the
  semantic stage, the semantic tokens for the coarse stage, the coarse codes for the fine stage.
- *target tokens* are what the stage predicts: semantic tokens, or residual codes flattened
  frame by frame ``c[0,0] c[0,1] .. c[0,q-1] c[1,0] ..`` (AudioLM sec. 4.2).
- Each stream and each residual level has its own slice of one embedding table (a per-level
  embedding), and each target level its own output head.
- Sequences of different prefix lengths in one batch are **left-padded**: rotary position
  embeddings only see relative distances, so left padding changes nothing for the real
  tokens, and every row reaches its first target token at the same step, which keeps the
  level schedule (which head predicts next) identical across a batch.

``forward`` of a stage returns :class:`StageOutput`, the logits of its target codes laid out
as the codes are (``(b, n, q, v)``) plus the logits of the end of sequence; the train step
(:mod:`cadence.audiolm.train`) turns them into the loss and draws condition dropout.

The network is an ``x_transformers.Decoder`` (pre-norm, rotary, SDPA attention). ``forward``
and the reference (uncached) sampler call it as is. Cached sampling runs the same weights
through :class:`FastDecoder`, a lean re-implementation of the decoder's forward pass over
preallocated key/value buffers: it writes one position per step instead of concatenating
caches, and skips the generic machinery of x-transformers, which dominates the per-token
cost at these sizes. Tests check it against the x-transformers forward pass.
"""

# b batch | n target frames (semantic or acoustic) | q target levels | m condition length | d dim | v vocabulary

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from x_transformers import Decoder

from cadence.core.config import Config, ConfigError
from cadence.core.data import lengths_to_mask

from .fast_decoder import FastDecoder
from .sampling import SamplingOptions
from .sampling_loop import SamplingLoop

__all__ = [
    "ConditionMode",
    "FastDecoder",
    "GenerateOutput",
    "StageConfig",
    "StageOutput",
    "StageTransformer",
    "left_align",
]

ConditionMode = Literal["cross", "prefix"]


@dataclass(frozen=True, kw_only=True)
class StageConfig(Config):
    """Fields every stage shares.

    Attributes:
        dim, depth, heads, dim_head: decoder size (``dim_head`` per attention head).
        ff_mult: feed-forward expansion.
        attn_dropout, ff_dropout: dropout inside the decoder (training only).
        max_seq_len: the longest flat sequence trained on (tokens, including START/SEP and
            a prefix condition); sampling slides a window beyond it (see ``generate_long``).
        cond_dim: width of an optional conditioning embedding sequence (e.g. a T5
            encoder's ``d_model``); None: unconditional model.
        cond_mode: ``"cross"`` (cross-attention in every layer) or ``"prefix"`` (the
            projected condition is prepended to the sequence).
        max_cond_len: longest conditioning sequence (prefix mode reserves it in the context).

    Condition dropout (``cond_drop_prob``) was a field here up to checkpoint format 1; it is
    a training setting and lives in :class:`~cadence.audiolm.train.AudioLMTrainConfig` now.
    Older configs that hold it load (the key is dropped).
    """

    dropped_keys: ClassVar[tuple[str, ...]] = ("cond_drop_prob",)

    dim: int = 1024
    depth: int = 12
    heads: int = 16
    dim_head: int = 64
    ff_mult: int = 4
    attn_dropout: float = 0.0
    ff_dropout: float = 0.0
    max_seq_len: int = 1024
    cond_dim: int | None = None
    cond_mode: ConditionMode = "cross"
    max_cond_len: int = 64

    def __post_init__(self) -> None:
        for name in ("dim", "depth", "heads", "dim_head", "ff_mult", "max_seq_len", "max_cond_len"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"{type(self).__name__}.{name} must be >= 1, got {getattr(self, name)}"
                )
        if self.dim_head % 2:
            raise ConfigError(
                f"{type(self).__name__}.dim_head must be even (rotary), got {self.dim_head}"
            )
        if self.cond_dim is not None and self.cond_dim < 1:
            raise ConfigError(f"{type(self).__name__}.cond_dim must be >= 1 or None")
        for name in ("attn_dropout", "ff_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{type(self).__name__}.{name} must be in [0, 1)")


def left_align(x: Tensor, lengths: Tensor) -> Tensor:
    """Move the first ``lengths[i]`` entries of each row of ``(b, n, ...)`` to its right end.

    The freed left part is filled with zeros (callers mask it).
    """
    n = x.shape[1]
    shift = (n - lengths).to(x.device)  # (b,)
    index = torch.arange(n, device=x.device)[None, :] - shift[:, None]  # source position
    valid = index >= 0
    index = index.clamp(min=0)
    if x.ndim == 2:
        out = x.gather(1, index)
        return out.masked_fill(~valid, 0)
    expanded = index[..., None].expand(-1, -1, x.shape[-1])
    out = x.gather(1, expanded)
    return out.masked_fill(~valid[..., None], 0)


class StageTransformer(nn.Module):
    """Embeddings, decoder, conditioning and per-level heads of one AudioLM stage.

    Subclasses describe their streams through :meth:`_setup` and build sequences; this
    class owns the network.

    Args (to ``_setup``):
        vocab: size of the input vocabulary (every stream, level and special token).
        num_levels: target levels per frame (1 for semantic tokens).
        num_classes: output classes per level (codebook size, +1 when EOS is predicted).
    """

    config: StageConfig

    def _setup(self, config: StageConfig, *, vocab: int, num_levels: int, num_classes: int) -> None:
        self.num_levels = num_levels
        self.num_classes = num_classes
        self.token_emb = nn.Embedding(vocab, config.dim)
        nn.init.normal_(self.token_emb.weight, std=0.02)
        cross = config.cond_dim is not None and config.cond_mode == "cross"
        self.decoder = Decoder(
            dim=config.dim,
            depth=config.depth,
            heads=config.heads,
            attn_dim_head=config.dim_head,
            ff_mult=config.ff_mult,
            attn_dropout=config.attn_dropout,
            ff_dropout=config.ff_dropout,
            attn_flash=True,  # F.scaled_dot_product_attention
            rotary_pos_emb=True,
            rotary_emb_dim=config.dim_head,
            cross_attend=cross,
            verbose=False,
        )
        # One head per target level: (q, d, v) weights, used with einsum / indexing so a step
        # computes only the level it needs.
        self.head_weight = nn.Parameter(
            torch.randn(num_levels, config.dim, num_classes) * config.dim**-0.5
        )
        self.head_bias = nn.Parameter(torch.zeros(num_levels, num_classes))
        if config.cond_dim is not None:
            self.cond_proj = nn.Linear(config.cond_dim, config.dim)
            # The learned "no condition": a context token (cross) or the fill of the prefix
            # slots (prefix) seen when the condition is dropped, and at guidance time.
            self.null_cond = nn.Parameter(torch.randn(config.dim) * 0.02)

    # -- conditioning ---------------------------------------------------------------------

    @property
    def is_conditional(self) -> bool:
        return self.config.cond_dim is not None

    def check_condition(self, cond: Tensor | None, cond_mask: Tensor | None, batch: int) -> None:
        name = type(self).__name__
        if cond is None:
            if cond_mask is not None:
                raise ValueError(f"{name}: cond_mask given without cond")
            return
        if not self.is_conditional:
            raise ValueError(
                f"{name} was built without conditioning (config.cond_dim=None) but got `cond`; "
                "build it with cond_dim=<embedding width> or drop the condition"
            )
        if cond.ndim != 3 or cond.shape[0] != batch or cond.shape[-1] != self.config.cond_dim:
            raise ValueError(
                f"{name}: cond must be (b={batch}, m, cond_dim={self.config.cond_dim}), got "
                f"{tuple(cond.shape)}"
            )
        if cond.shape[1] > self.config.max_cond_len:
            raise ValueError(
                f"{name}: cond has {cond.shape[1]} positions, more than config.max_cond_len="
                f"{self.config.max_cond_len}; truncate it or raise max_cond_len"
            )
        if cond_mask is not None and cond_mask.shape != cond.shape[:2]:
            raise ValueError(
                f"{name}: cond_mask must be {tuple(cond.shape[:2])}, got {tuple(cond_mask.shape)}"
            )

    def condition_inputs(
        self,
        cond: Tensor | None,
        cond_mask: Tensor | None,
        keep: Tensor | None,
        batch: int,
        device: torch.device,
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """The condition as the decoder sees it: ``(prefix, context, context_mask)``.

        ``keep`` ``(b,)`` bool: False replaces the example's condition by the null one
        (condition dropout in training; the unconditional half of guidance). A conditional
        model called with no ``cond`` at all runs fully unconditionally.
        """
        if not self.is_conditional:
            return None, None, None
        cfg = self.config
        null = self.null_cond
        if cond is None:
            cond_emb = null.new_zeros(batch, 0, cfg.dim)
            real = torch.zeros(batch, 0, dtype=torch.bool, device=device)
        else:
            cond_emb = self.cond_proj(cond)
            real = (
                cond_mask
                if cond_mask is not None
                else torch.ones(cond.shape[:2], dtype=torch.bool, device=device)
            )
            if keep is not None:
                real = real & keep[:, None]
        if cfg.cond_mode == "prefix":
            # Always max_cond_len slots, so a missing, dropped or short condition looks the
            # same to the model in training and at sampling (null-filled slots).
            extra = cfg.max_cond_len - cond_emb.shape[1]
            cond_emb = F.pad(cond_emb, (0, 0, 0, extra))
            real = F.pad(real, (0, extra), value=False)
        if cfg.cond_mode == "cross":
            context = torch.cat([null.expand(batch, 1, -1), cond_emb], dim=1)
            context_mask = torch.cat(
                [torch.ones(batch, 1, dtype=torch.bool, device=device), real], dim=1
            )
            return None, context, context_mask
        # prefix: dropped or padded condition slots hold the null embedding
        prefix = torch.where(real[..., None], cond_emb, null.to(cond_emb.dtype))
        return prefix, None, None

    # -- the full (training / reference) forward ------------------------------------------

    def embed(
        self,
        ids: Tensor,
        lengths: Tensor,
        *,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        keep: Tensor | None = None,
        left_pad: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Embed right-padded flat sequences, with the condition.

        Args:
            ids: ``(b, positions)`` global token ids, row ``i`` real on its first ``lengths[i]``.
            lengths: ``(b,)``.
            cond, cond_mask, keep: see :meth:`condition_inputs`.
            left_pad: move each row's real positions to its right end (sampling), so every
                row's next position is the same column.

        Returns:
            ``(x, lengths, context, context_mask)``: ``x`` ``(b, m + positions, d)`` with the ``m``
            prefix-condition slots in front of each row's tokens, the rows' real lengths
            ``m + lengths``, and the cross-attention context (or None).
        """
        b = ids.shape[0]
        x = self.token_emb(ids)
        prefix, context, context_mask = self.condition_inputs(cond, cond_mask, keep, b, ids.device)
        if prefix is not None and prefix.shape[1] > 0:
            x = torch.cat([prefix, x], dim=1)
            lengths = lengths + prefix.shape[1]
        if left_pad:
            x = left_align(x, lengths)
        return x, lengths, context, context_mask

    def run_decoder(
        self,
        x: Tensor,
        *,
        start_pos: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        """The x-transformers decoder over embedded positions ``(b, positions, d)`` (left
        padding masked through ``start_pos``)."""
        if start_pos is not None and not bool((start_pos > 0).any()):
            start_pos = None
        return self.decoder(x, seq_start_pos=start_pos, context=context, context_mask=context_mask)

    def level_logits(self, h: Tensor, first_level: int = 0) -> Tensor:
        """Logits of hidden states ``(b, positions, d)`` whose positions predict levels
        ``first_level, first_level + 1, ...`` (mod q) in turn -> ``(b, positions, v)``."""
        q = self.num_levels
        n = h.shape[1]
        pad_front = first_level
        total = pad_front + n
        pad_back = (-total) % q
        h = F.pad(h, (0, 0, pad_front, pad_back))
        h = rearrange(h, "b (f q) d -> b f q d", q=q)
        logits = torch.einsum("bfqd,qdv->bfqv", h, self.head_weight) + self.head_bias
        logits = rearrange(logits, "b f q v -> b (f q) v")
        return logits[:, pad_front : pad_front + n]

    # -- flat sequences -------------------------------------------------------------------

    # Set by each stage: where target level 0 starts in the global vocabulary, the target
    # codebook size, and whether the stage predicts an end of sequence (EOS = class K).
    target_offset: int
    target_codebook_size: int
    has_eos: bool

    def target_ids(self, codes: Tensor) -> Tensor:
        """``(b, n, q)`` target codes -> ``(b, n * q)`` global ids (level-wise offsets)."""
        levels = torch.arange(self.num_levels, device=codes.device) * self.target_codebook_size
        return rearrange(codes + levels + self.target_offset, "b n q -> b (n q)")

    @staticmethod
    def join(
        first: Tensor, first_lengths: Tensor, second: Tensor, second_lengths: Tensor
    ) -> Tensor:
        """Concatenate two right-padded ``(b, positions)`` id batches row by row (right-padded result)."""
        b, n1 = first.shape
        n2 = second.shape[1]
        out = first.new_zeros(b, n1 + n2)
        out[:, :n1] = first
        cols = first_lengths[:, None] + torch.arange(n2, device=first.device)[None, :]
        # padded entries of `second` land beyond each row's real length, where nothing reads
        out.scatter_(1, cols, second)
        return out

    def target_logits(
        self,
        prefix: Tensor,
        prefix_lengths: Tensor,
        codes: Tensor,
        frames: Tensor,
        *,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        keep: Tensor | None = None,
    ) -> StageOutput:
        """Teacher-forced predictions of every target code of a batch (the full forward).

        Args:
            prefix: ``(b, positions)`` right-padded global ids ``START ... SEP`` (or just ``START``).
            prefix_lengths: ``(b,)``.
            codes: ``(b, n, q)`` target codes, right-padded.
            frames: ``(b,)`` real frames per row.
            cond, cond_mask: optional condition.
            keep: ``(b,)`` bool, False where the example's condition is replaced by the null
                one (condition dropout, drawn by the train step); default all kept.

        Returns:
            :class:`StageOutput`: ``logits[:, i, j]`` predicts ``codes[:, i, j]``.
        """
        b, n, q = codes.shape
        self.check_condition(cond, cond_mask, b)
        if keep is not None and (keep.shape != (b,) or keep.dtype != torch.bool):
            raise ValueError(
                f"{type(self).__name__}: keep must be a (b={b},) bool tensor, got {keep.dtype} {tuple(keep.shape)}"
            )
        tokens = frames * q
        ids = self.join(prefix, prefix_lengths, self.target_ids(codes), tokens)
        x, _, context, context_mask = self.embed(
            ids, prefix_lengths + tokens, cond=cond, cond_mask=cond_mask, keep=keep
        )
        h = self.run_decoder(x, context=context, context_mask=context_mask)
        m = x.shape[1] - ids.shape[1]
        # The position of SEP (the last prefix token) predicts target token 0, and so on; one
        # more position, after a row's last real token, predicts its end of sequence.
        num_pred = n * q + (1 if self.has_eos else 0)
        index = (m + prefix_lengths - 1)[:, None] + torch.arange(num_pred, device=h.device)[None, :]
        index = index.clamp(max=h.shape[1] - 1)
        logits = self.level_logits(h.gather(1, index[..., None].expand(-1, -1, h.shape[-1])))
        eos_logits = None
        if self.has_eos:
            # the row's token count is a multiple of q: these are level-0 (EOS-capable) logits
            eos_logits = logits[torch.arange(b, device=h.device), tokens.to(h.device)]
        logits = rearrange(logits[:, : n * q], "b (n q) v -> b n q v", q=q)
        return StageOutput(
            logits=logits, mask=lengths_to_mask(frames.to(h.device), n), eos_logits=eos_logits
        )

    # -- sampling -------------------------------------------------------------------------

    def step_logits(self, h: Tensor, level: int) -> Tensor:
        """``(b, d)`` hidden -> ``(b, v)`` logits of the given level."""
        return torch.addmm(self.head_bias[level], h, self.head_weight[level])

    def generate_flat(
        self,
        prefix: Tensor,
        prefix_lengths: Tensor,
        prompt: Tensor,
        prompt_frames: Tensor,
        max_frames: Tensor,
        *,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        sampling: SamplingOptions | None = None,
        generator: torch.Generator | None = None,
        return_logits: bool = False,
        progress: bool = False,
    ) -> GenerateOutput:
        """Autoregressive sampling of target frames after a prefix and a prompt.

        Args:
            prefix, prefix_lengths: as in :meth:`target_logits`.
            prompt: ``(b, p, q)`` target codes to continue, right-padded (``p`` may be 0).
            prompt_frames: ``(b,)`` real prompt frames per row.
            max_frames: ``(b,)`` most frames per row, prompt included.
            cond, cond_mask: optional conditioning sequence.
            sampling: temperature, top-k / top-p, guidance, cache, EOS (default
                ``SamplingOptions()``); a ``guidance_scale`` other than 1 needs ``cond``.
            generator: for reproducible draws.
            return_logits: also return the (guided) logits of every step.
            progress: show a progress bar.

        Returns:
            :class:`GenerateOutput` with prompt + continuation per row.
        """
        prompt_frames = prompt_frames.to(prefix.device)
        # sampling is inference: no dropout, whatever mode the module was left in
        was_training = self.training
        self.eval()
        try:
            loop = self.sampling_loop(
                prefix, prefix_lengths, prompt, prompt_frames, max_frames,
                cond=cond, cond_mask=cond_mask, sampling=sampling, generator=generator,
                return_logits=return_logits,
            )  # fmt: skip
            bar = _progress_bar(progress, loop.steps, type(self).__name__)
            loop.run(progress=bar)
            if bar is not None:
                bar.close()
            tokens, new_frames, logits = loop.result()
        finally:
            self.train(was_training)
        return self._assemble(prompt, prompt_frames, tokens, new_frames, logits)

    def _prompt_batch(
        self,
        prefix: Tensor,
        prefix_lengths: Tensor,
        prompt: Tensor,
        prompt_frames: Tensor,
        cond: Tensor | None,
        cond_mask: Tensor | None,
        sampling: SamplingOptions,
    ) -> _PromptBatch:
        """Prefix + prompt of every row, embedded and left-aligned (doubled when guided)."""
        b, q = prefix.shape[0], self.num_levels
        self.check_condition(cond, cond_mask, b)
        if sampling.guided and cond is None:
            raise ValueError(
                "guidance_scale != 1 needs a condition (`cond`); guidance mixes conditional and "
                "unconditional logits"
            )
        guided = sampling.guided
        ids = self.join(prefix, prefix_lengths, self.target_ids(prompt), prompt_frames * q)
        lengths = prefix_lengths + prompt_frames * q
        keep = None
        if guided:
            # one batch of 2b rows: the conditional ones first, then the same rows unconditioned
            ids, lengths, cond = (
                torch.cat([ids, ids]),
                torch.cat([lengths, lengths]),
                torch.cat([cond, cond]),  # type: ignore[list-item]  # guided implies cond (checked above)
            )
            cond_mask = None if cond_mask is None else torch.cat([cond_mask, cond_mask])
            keep = torch.arange(2 * b, device=ids.device) < b
        x, lengths, context, context_mask = self.embed(
            ids, lengths, cond=cond, cond_mask=cond_mask, keep=keep, left_pad=True
        )
        return _PromptBatch(
            x=x,
            start_pos=x.shape[1] - lengths,
            context=context,
            context_mask=context_mask,
            guided=guided,
        )

    def sampling_loop(
        self,
        prefix: Tensor,
        prefix_lengths: Tensor,
        prompt: Tensor,
        prompt_frames: Tensor,
        max_frames: Tensor,
        *,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        sampling: SamplingOptions | None = None,
        generator: torch.Generator | None = None,
        return_logits: bool = False,
    ) -> SamplingLoop:
        """The resumable loop :meth:`generate_flat` runs (arguments as there); the caller
        puts the model in eval mode and runs it under ``torch.inference_mode()``."""
        sampling = sampling if sampling is not None else SamplingOptions()
        max_frames, prompt_frames = max_frames.to(prefix.device), prompt_frames.to(prefix.device)
        if bool((max_frames < prompt_frames).any()):
            raise ValueError("max_frames must be at least the prompt length of every row")
        batch = self._prompt_batch(
            prefix, prefix_lengths, prompt, prompt_frames, cond, cond_mask, sampling
        )
        return SamplingLoop(
            self, batch, max_frames - prompt_frames, sampling, generator, return_logits
        )

    def _assemble(
        self,
        prompt: Tensor,
        prompt_frames: Tensor,
        tokens: Tensor,
        new_frames: Tensor,
        logits: Tensor | None,
    ) -> GenerateOutput:
        """Prompt + generated frames per row, right-padded with 0."""
        b, q = prompt.shape[0], self.num_levels
        generated = rearrange(tokens[:, : (tokens.shape[1] // q) * q], "b (n q) -> b n q", q=q)
        total = prompt_frames + new_frames
        width = int(total.max()) if b else 0
        codes = torch.zeros(b, width, q, dtype=torch.long, device=prompt.device)
        p = min(prompt.shape[1], width)
        codes[:, :p] = prompt[:, :p]
        if generated.shape[1] > 0:
            rows = torch.arange(b, device=codes.device)[:, None]
            cols = (
                prompt_frames[:, None]
                + torch.arange(generated.shape[1], device=codes.device)[None, :]
            )
            inside = cols < width
            codes[rows.expand_as(cols)[inside], cols[inside]] = generated[inside]
        mask = lengths_to_mask(total, width)
        return GenerateOutput(
            codes=codes.masked_fill(~mask[..., None], 0), lengths=total, mask=mask, logits=logits
        )

    # -- cached decoding ------------------------------------------------------------------

    def fast_decoder(self) -> FastDecoder:
        return FastDecoder(self.decoder)


@dataclass(frozen=True)
class _PromptBatch:
    """The embedded prefix + prompt of a sampling batch, left-aligned.

    ``x`` ``(b', positions, d)`` with ``b' = 2b`` when guided (conditional rows first),
    ``start_pos`` ``(b',)`` the first real position of each row, and the cross-attention
    context (or None).
    """

    x: Tensor
    start_pos: Tensor
    context: Tensor | None
    context_mask: Tensor | None
    guided: bool


def _progress_bar(show: bool, total: int, desc: str):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


@dataclass(frozen=True, kw_only=True)
class StageOutput:
    """What a stage's ``forward`` predicts (teacher-forced); the train step computes the loss.

    The logits are laid out as the target codes are, so a loss needs no knowledge of the
    flat sequence: ``cross_entropy(logits[mask], codes[mask])``, plus, for stages with an
    end of sequence, ``cross_entropy(eos_logits[ends], EOS)`` with ``EOS = v - 1``.

    Attributes:
        logits: ``(b, n, q, v)``; ``logits[:, i, j]`` predicts target code ``[:, i, j]``
            (``q = 1`` for the semantic stage). Where a stage predicts EOS, ``v`` is its
            codebook size + 1 (the last class is EOS).
        mask: ``(b, n)`` bool, True on each row's real frames.
        eos_logits: ``(b, v)``, the prediction right after each row's last real frame (EOS
            is its target when the row is the end of its utterance); None for the fine stage,
            which has no EOS.
    """

    logits: Tensor
    mask: Tensor
    eos_logits: Tensor | None = None


@dataclass(frozen=True, kw_only=True)
class GenerateOutput:
    """What the samplers return (frozen: a stage builds a new one rather than editing it).

    Attributes:
        codes: ``(b, n, q)`` prompt + generated codes per row, right-padded with 0
            (semantic stage: ``(b, s)`` tokens).
        lengths: ``(b,)`` real frames per row (a row stops at its EOS or its max length).
        mask: ``(b, n)`` bool, True = real frame.
        logits: ``(b, steps, v)`` logits of every sampling step when asked for.
    """

    codes: Tensor
    lengths: Tensor
    mask: Tensor
    logits: Tensor | None = None
