"""The autoregressive sampling loop of every stage, one token per step, resumable.

:class:`SamplingLoop` is what ``StageTransformer.generate_flat`` runs, and what
``SemanticTransformer.stream`` advances a chunk at a time. Its per-step work is fixed:

- the decoder step of :class:`~cadence.audiolm.static_cache.StaticDecoder` (or, with
  ``use_cache=False``, the whole x-transformers decoder again: the reference);
- one ``addmm`` for the level's logits; where EOS is never allowed and there is no guidance,
  EOS is excluded by a ``-inf`` in a copy of the head's bias (no masking op per step);
- the draw of :func:`cadence.core.sampling.sample_logits` done in place on preallocated
  buffers: the same operations in the same order on the same random numbers (one
  ``torch.rand((b, v))`` per sampled step), so the tokens are those of the original loop;
- no host synchronisation at all unless EOS may end a row. With ``allow_eos`` the loop
  checks once per frame whether every row has ended, exactly where the original loop did,
  so the random generator is left in the same state for whatever draws next (SoundStorm, in
  the pipelines). Without EOS every row runs its budget; the loop knows the schedule up front.
"""

# b batch (b' = 2b when guided) | d dim | v classes of a level | q levels per frame

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from cadence.core.sampling import classifier_free_guidance, top_p_filter

from .sampling import SamplingOptions
from .static_cache import static_decoder

if TYPE_CHECKING:
    from .transformer import StageTransformer, _PromptBatch

__all__ = ["SamplingLoop"]


class _StaticStep:
    """The cached path: prefill, then :meth:`StaticDecoder.step` per token."""

    def __init__(self, model: StageTransformer, batch: _PromptBatch, steps: int, int8: bool):
        self.model, self.batch = model, batch
        self.static = static_decoder(model.decoder, int8=int8)
        self.state = self.static.start(
            batch.x.shape[0],
            batch.x.shape[1] + steps,
            start_pos=batch.start_pos,
            context=batch.context,
            context_mask=batch.context_mask,
        )
        self.weight = model.token_emb.weight

    def prefill(self) -> Tensor:
        return self.static.prefill(self.state, self.batch.x)[:, -1]

    def push(self, ids: Tensor) -> Tensor:
        if self.batch.guided:
            ids = torch.cat([ids, ids])
        return self.static.step(self.state, F.embedding(ids, self.weight))


class _ReferenceStep:
    """``use_cache=False``: the whole x-transformers decoder over everything so far, each step."""

    def __init__(self, model: StageTransformer, batch: _PromptBatch):
        self.model, self.batch = model, batch
        self.x = batch.x

    def prefill(self) -> Tensor:
        return self._run()

    def push(self, ids: Tensor) -> Tensor:
        ids = ids[:, None]
        if self.batch.guided:
            ids = torch.cat([ids, ids])
        self.x = torch.cat([self.x, self.model.token_emb(ids)], dim=1)
        return self._run()

    def _run(self) -> Tensor:
        batch = self.batch
        h = self.model.run_decoder(
            self.x,
            start_pos=batch.start_pos,
            context=batch.context,
            context_mask=batch.context_mask,
        )
        return h[:, -1]


class SamplingLoop:
    """Sample up to ``budget[i]`` frames per row after a prompt batch, resumably.

    Args:
        model: the stage.
        batch: its embedded, left-aligned prompt batch.
        budget: ``(b,)`` new frames per row.
        sampling, generator: as in ``generate_flat``.
        return_logits: keep the (guided, EOS-masked) logits of every step.

    :meth:`run` advances by a number of frames (all by default); :meth:`result` gives what
    ``generate_flat`` assembles. Tokens of a row after its end are 0.
    """

    def __init__(
        self,
        model: StageTransformer,
        batch: _PromptBatch,
        budget: Tensor,
        sampling: SamplingOptions,
        generator: torch.Generator | None,
        return_logits: bool = False,
    ):
        self.model, self.sampling, self.generator = model, sampling, generator
        self.return_logits = return_logits
        self.b = b = budget.shape[0]
        self.q, self.k = q, k = model.num_levels, model.target_codebook_size
        self.budget = budget
        self.steps = steps = int(budget.max()) * q if b else 0
        self.step = 0
        self.done = steps == 0
        device = budget.device
        self.decoder = (
            _StaticStep(model, batch, steps, sampling.weights == "int8")
            if sampling.use_cache
            else _ReferenceStep(model, batch)
        )
        self.h: Tensor | None = None
        self.tokens = torch.zeros(b, steps, dtype=torch.long, device=device)
        self.track_eos = model.has_eos and sampling.allow_eos
        self.finished = budget <= 0
        self.frames = torch.zeros(b, dtype=torch.long, device=device)
        self.offsets = [model.target_offset + level * k for level in range(q)]
        self.all_logits: list[Tensor] = []
        self.guided = batch.guided
        self.weights = [model.head_weight[level] for level in range(q)]
        biases = [model.head_bias[level] for level in range(q)]
        # EOS (class k) is masked on every level but 0, and on 0 too unless allowed. Without
        # guidance the -inf can sit in the bias; with it, masking follows the mix (else
        # -inf - -inf would enter it), as in the original loop.
        self.mask_eos = [
            model.has_eos and (level != 0 or not sampling.allow_eos) for level in range(q)
        ]
        if not self.guided:
            biases = [
                bias.clone().index_fill_(0, torch.tensor([k], device=device), float("-inf"))
                if masked
                else bias
                for bias, masked in zip(biases, self.mask_eos)
            ]
            self.mask_eos = [False] * q
        self.biases = biases
        self.noise: Tensor | None = None

    def run(self, frames: int | None = None, progress=None) -> int:
        """Advance by up to ``frames`` frames (default: to the end); returns the steps taken."""
        if self.h is None:
            self.h = self.decoder.prefill()
        stop = self.steps if frames is None else min(self.steps, self.step + frames * self.q)
        start = self.step
        h, q, k = self.h, self.q, self.k
        while self.step < stop:
            step = self.step
            level = step % q
            if self.track_eos and level == 0 and bool(self.finished.all()):
                # one host sync per frame, only where EOS may end a row (see module docstring)
                self._end(step)
                break
            logits = self._logits(h, level)
            if self.return_logits:
                self.all_logits.append(logits.clone())
            token = self._draw(logits)
            if self.track_eos:
                if level == 0:
                    self.finished = self.finished | (token == k)
                token = torch.where(self.finished, 0, token)
                if level == q - 1:
                    self.frames = self.frames + (~self.finished).long()
                    self.finished = self.finished | (self.frames >= self.budget)
            self.tokens[:, step] = token
            self.step = step + 1
            h = self.decoder.push(token + self.offsets[level])
            if progress is not None:
                progress.update(1)
        self.h = h
        if self.step >= self.steps:
            self._end(self.steps)
        return self.step - start

    def _end(self, step: int) -> None:
        self.done = True
        self.steps = step
        self.tokens = self.tokens[:, :step]

    def _logits(self, h: Tensor, level: int) -> Tensor:
        logits = torch.addmm(self.biases[level], h, self.weights[level])
        if self.guided:
            b = self.b
            logits = classifier_free_guidance(logits[:b], logits[b:], self.sampling.guidance_scale)
        if self.mask_eos[level]:
            logits[:, self.k] = float("-inf")
        return logits

    def _draw(self, logits: Tensor) -> Tensor:
        """:func:`cadence.core.sampling.sample_logits`, in place (same ops, same draws)."""
        s = self.sampling
        if s.top_k is not None and s.top_k < logits.shape[-1]:
            kth = logits.topk(s.top_k, dim=-1).values[..., -1:]
            logits.masked_fill_(logits < kth, float("-inf"))
        if s.top_p is not None:
            logits = top_p_filter(logits, s.top_p)
        if s.temperature == 0:
            return logits.argmax(dim=-1)
        if self.noise is None or self.noise.shape != logits.shape:
            self.noise = torch.empty(logits.shape, device=logits.device)
        # gumbel_noise: -log(-log(u)), clamped, on rand drawn into the preallocated buffer
        noise = torch.rand(logits.shape, generator=self.generator, out=self.noise)
        noise.clamp_(min=1e-20).log_().neg_().clamp_(min=1e-20).log_().neg_()
        scaled = logits.float() if logits.dtype != torch.float32 else logits
        return scaled.div_(s.temperature).add_(noise).argmax(dim=-1)

    def frames_so_far(self) -> Tensor:
        """``(b,)`` new frames of each row so far (its end counted, once reached)."""
        if self.track_eos:
            return self.frames
        return self.budget.clamp(max=self.step // self.q)

    def result(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(tokens, frames, logits)`` as ``generate_flat`` assembles them."""
        logits = torch.stack(self.all_logits, dim=1) if self.all_logits else None
        frames = self.frames_so_far()
        tokens = self.tokens
        if not self.track_eos and tokens.shape[1]:
            # rows with a smaller budget ran on with the batch; their extra tokens are dropped
            past = (
                torch.arange(tokens.shape[1], device=tokens.device)[None]
                >= (frames * self.q)[:, None]
            )
            tokens = tokens.masked_fill(past, 0)
        return tokens, frames, logits
