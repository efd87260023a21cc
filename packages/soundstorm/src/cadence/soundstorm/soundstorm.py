"""SoundStorm: residual codec codes from semantic tokens, decoded level by level with MaskGIT.

Borsos et al. 2023 (arXiv 2305.09636). Each frame's input is the sum of one embedding per
level (a table per level, with an extra mask id) and the embedding of the semantic token
aligned to that frame; a bidirectional backbone (a Conformer in the paper) maps it to one
output distribution per level. Generation fills level 1 in a few confidence-ranked
iterations, then each finer level (greedily, with one iteration, by default).
"""

# b batch | n codec frames | p prompt frames | s semantic frames | f frames of a decoded row
# (p + n, padded) | q quantizer levels | v codebook entries | d model dim

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import einsum
from torch import Tensor, nn

from cadence.core.checkpoint import PretrainedMixin
from cadence.core.data import lengths_to_mask
from cadence.core.nn import build_backbone
from cadence.core.sampling import (
    MaskSchedule,
    classifier_free_guidance,
    gumbel_sample,
    lowest_confidence_mask,
    num_masked,
)

from .combiner import LevelUNet
from .config import SoundStormConfig
from .cross import time_features
from .layout import (
    DecodePlan,
    Layout,
    Sampler,
    check_plan,
    check_request,
    default_iterations,
    lay_out,
)
from .masking import align_semantic

__all__ = ["SoundStorm", "SoundStormOutput", "default_iterations"]


@dataclass
class SoundStormOutput:
    """What :meth:`SoundStorm.generate` returns.

    Attributes:
        codes: ``(b, n, q)`` the generated frames (prompt excluded), 0 past ``lengths``.
        lengths: ``(b,)`` generated frames per sample.
        sequence: ``(b, p + n, q)`` prompt followed by generated frames, as decoded; item
            ``i`` holds ``prompt_lengths[i] + lengths[i]`` real frames, 0 after them.
        prompt_lengths: ``(b,)`` prompt frames at the start of ``sequence``.
        forward_passes: network evaluations made (a guided pass over ``2b`` rows counts once).
    """

    codes: Tensor
    lengths: Tensor
    sequence: Tensor
    prompt_lengths: Tensor
    forward_passes: int


@dataclass(frozen=True)
class _Conditioning:
    """What every pass of one call shares: the semantic embedding ``(b, f, d)`` (``2b`` rows
    with guidance: conditional, then unconditional) and the attention mask ``(b, f)``; with
    cross-attention conditioning, the embedded semantic context ``(b, m, d)`` and its mask."""

    embedding: Tensor
    key_mask: Tensor | None
    guided: bool
    context: Tensor | None = None
    context_mask: Tensor | None = None

    def conditional(self) -> _Conditioning:
        """The conditional rows alone, for a level decoded without guidance."""
        if not self.guided:
            return self
        b = self.embedding.shape[0] // 2

        def half(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[:b]

        return _Conditioning(
            self.embedding[:b],
            half(self.key_mask),
            False,
            half(self.context),
            half(self.context_mask),
        )


class SoundStorm(PretrainedMixin, nn.Module):
    """SoundStorm; see the module docstring and :class:`SoundStormConfig`.

    ``forward`` scores one masked-prediction problem (training); :meth:`generate` and
    :meth:`convert` decode.
    """

    config_class = SoundStormConfig
    level_offsets: Tensor

    def __init__(self, config: SoundStormConfig):
        super().__init__()
        self.config = config
        q, v, d = config.num_quantizers, config.codebook_size, config.backbone.dim
        # One table per level, stored as one embedding with per-level offsets; row v of each
        # level's block is that level's mask token.
        self.code_embedding = nn.Embedding(q * (v + 1), d)
        self.semantic_embedding = nn.Embedding(config.semantic_codebook_size + 1, d)
        self.backbone = build_backbone(config.backbone)
        # One output head per level, stacked so per-sample levels are one batched matmul.
        self.head_weight = nn.Parameter(torch.empty(q, v, d))
        self.head_bias = nn.Parameter(torch.zeros(q, v))
        self.register_buffer("level_offsets", torch.arange(q) * (v + 1), persistent=False)
        for weight in (
            self.code_embedding.weight,
            self.semantic_embedding.weight,
            self.head_weight,
        ):
            nn.init.normal_(weight, std=0.02)
        # Options built after the paper's modules, so its initialisation is unchanged.
        if config.codebook_combiner == "unet":
            self.combiner = LevelUNet(d)
        if config.semantic_conditioning == "cross_attention":
            # learned projections of the sinusoidal time features of frames and tokens
            self.frame_time = nn.Linear(d, d, bias=False)
            self.token_time = nn.Linear(d, d, bias=False)
            for weight in (self.frame_time.weight, self.token_time.weight):
                nn.init.normal_(weight, std=0.02)

    @property
    def cross_attends(self) -> bool:
        """Whether the semantic tokens are a cross-attention context (not aligned per frame)."""
        return self.config.semantic_conditioning == "cross_attention"

    # -- vocabulary ------------------------------------------------------------------------

    @property
    def mask_id(self) -> int:
        """The mask token of every level (``codebook_size``)."""
        return self.config.codebook_size

    @property
    def null_semantic_id(self) -> int:
        """The "no condition" semantic token (``semantic_codebook_size``)."""
        return self.config.semantic_codebook_size

    def align_semantic(
        self, semantic: Tensor, num_frames: int, semantic_lengths: Tensor | None = None
    ) -> Tensor:
        """Semantic tokens ``(b, s)`` at ``semantic_frame_rate`` -> ``(b, n)`` per codec frame."""
        return align_semantic(
            semantic,
            num_frames,
            frame_rate=self.config.frame_rate,
            semantic_rate=self.config.semantic_frame_rate,
            semantic_lengths=semantic_lengths,
        )

    # -- network ---------------------------------------------------------------------------

    def embed_codes(self, codes: Tensor) -> Tensor:
        """``(b, n, q)`` codes (mask id allowed) -> ``(b, n, d)``: the level embeddings combined
        (summed, or through the level U-Net with ``codebook_combiner="unet"``)."""
        embeddings = self.code_embedding(codes + self.level_offsets)
        if self.config.codebook_combiner == "sum":
            return embeddings.sum(-2)
        return self.combiner(embeddings)

    def frame_time_embedding(self, num_frames: int, device) -> Tensor:
        """``(n, d)``: where codec frames lie in time (cross-attention conditioning only)."""
        d = self.config.backbone.dim
        return self.frame_time(time_features(num_frames, self.config.frame_rate, d, device=device))

    def embed_context(self, semantic: Tensor) -> Tensor:
        """Semantic tokens ``(b, s)`` at their own rate -> the cross-attention context ``(b, s, d)``."""
        d = self.config.backbone.dim
        times = time_features(
            semantic.shape[1], self.config.semantic_frame_rate, d, device=semantic.device
        )
        return self.semantic_embedding(semantic) + self.token_time(times)

    def head(self, hidden: Tensor, level: int | Tensor | None = None) -> Tensor:
        """Logits of one level (int), of a level per sample (``(b,)`` tensor) or of all levels.

        Returns ``(b, n, v)`` for a level, ``(b, n, q, v)`` for ``level=None``.
        """
        if level is None:
            return einsum(hidden, self.head_weight, "b n d, q v d -> b n q v") + self.head_bias
        if isinstance(level, int):
            return F.linear(hidden, self.head_weight[level], self.head_bias[level])
        weight = self.head_weight[level]  # (b, v, d)
        return torch.baddbmm(self.head_bias[level][:, None, :], hidden, weight.transpose(1, 2))

    def forward(
        self,
        codes: Tensor,
        semantic: Tensor,
        mask: Tensor | None = None,
        *,
        level: int | Tensor | None = None,
        semantic_mask: Tensor | None = None,
    ) -> Tensor:
        """Logits for masked codes.

        Args:
            codes: ``(b, n, q)`` long, values in ``[0, codebook_size]`` (``mask_id`` = masked).
            semantic: ``(b, n)`` long semantic tokens already aligned to codec frames
                (:meth:`align_semantic`), ``null_semantic_id`` for "no condition". With
                cross-attention conditioning: ``(b, s)`` tokens at ``semantic_frame_rate``
                from the first frame on, not aligned.
            mask: ``(b, n)`` bool, True at real frames (None: all real).
            level: see :meth:`head`.
            semantic_mask: ``(b, s)`` bool, the real semantic tokens (cross-attention only).
        """
        if self.cross_attends:
            self._check_frames(codes, None, mask)
            if semantic.ndim != 2 or semantic.shape[0] != codes.shape[0]:
                raise ValueError(f"semantic must be (b, s) tokens, got {tuple(semantic.shape)}")
            x = self.embed_codes(codes) + self.frame_time_embedding(codes.shape[1], codes.device)
            hidden = self.backbone(
                x, mask, context=self.embed_context(semantic), context_mask=semantic_mask
            )
            return self.head(hidden, level)
        self._check_frames(codes, semantic, mask)
        hidden = self.backbone(self.embed_codes(codes) + self.semantic_embedding(semantic), mask)
        return self.head(hidden, level)

    def _check_frames(self, codes: Tensor, semantic: Tensor | None, mask: Tensor | None) -> None:
        q = self.config.num_quantizers
        if codes.ndim != 3 or codes.shape[-1] != q:
            raise ValueError(
                f"codes must be (b, n, {q}) (one column per level), got {tuple(codes.shape)}"
            )
        if semantic is not None and semantic.shape != codes.shape[:2]:
            raise ValueError(
                f"semantic must be aligned to the codec frames, (b, n) = {tuple(codes.shape[:2])}, "
                f"got {tuple(semantic.shape)}; use model.align_semantic(tokens, num_frames)"
            )
        if mask is not None and mask.shape != codes.shape[:2]:
            raise ValueError(
                f"mask must be (b, n) = {tuple(codes.shape[:2])}, got {tuple(mask.shape)}"
            )

    # -- generation ------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self,
        semantic: Tensor,
        *,
        semantic_lengths: Tensor | None = None,
        num_frames: int | Tensor | None = None,
        prompt_codes: Tensor | None = None,
        prompt_lengths: Tensor | None = None,
        prompt_semantic: Tensor | None = None,
        prompt_semantic_lengths: Tensor | None = None,
        iterations: Sequence[int] | None = None,
        temperature: float = 1.0,
        choice_temperature: float = 1.0,
        guidance_scale: float | Sequence[float] = 1.0,
        schedule: MaskSchedule = "cosine",
        sampler: Sampler = "maskgit",
        generator: torch.Generator | None = None,
    ) -> SoundStormOutput:
        """Decode codes for ``semantic`` tokens, optionally continuing an acoustic prompt.

        The decoded sequence of item ``i`` is its prompt (``prompt_lengths[i]`` frames, never
        changed) followed by ``lengths[i]`` new frames. Level ``l`` runs ``iterations[l]``
        network passes: with one, every frame takes its argmax (SoundStorm sec. 3.3, greedy on
        the finer levels); with more, MaskGIT: all masked frames are sampled, the least
        confident are re-masked so that ``gamma(k / K)`` of the frames stay masked (cosine
        ``gamma``), the sampling temperature falls linearly from ``temperature`` to 0 and
        the re-masking choice noise from ``choice_temperature`` to 0.

        Args:
            semantic: ``(b, s)`` semantic tokens of the frames to generate.
            semantic_lengths: ``(b,)`` real tokens per row (default ``s``).
            num_frames: frames to generate, an int or ``(b,)``; default
                ``round(semantic_lengths * frame_rate / semantic_frame_rate)``.
            prompt_codes: ``(b, p, q)`` codes of the acoustic prompt (all levels).
            prompt_lengths: ``(b,)`` real prompt frames (default ``p``).
            prompt_semantic: ``(b, s_p)`` semantic tokens of the prompt; without them the
                prompt frames get the "no condition" token (voice conversion from another
                speaker's recording).
            prompt_semantic_lengths: ``(b,)`` real prompt semantic tokens.
            iterations: passes per level (default ``(16, 1, 1, ...)``).
            temperature: sampling temperature of the first iteration of a level.
            choice_temperature: scale of the Gumbel noise on the re-masking confidences.
            guidance_scale: classifier-free guidance (1 = off; MaskGCT uses 2.5), one scale
                for every level or one per level. The conditional and unconditional rows
                run as one batch of ``2b``, one pass; a level at 1 runs the ``b``
                conditional rows alone (e.g. ``(2, 1, 1, ...)`` guides the coarsest level,
                where the content is decided; only its passes run the doubled batch).
            schedule: the masking schedule ``gamma``.
            sampler: how a level with several passes is decoded: ``"maskgit"`` (above) or
                ``"diffusion"``, the absorbing-state reverse process (for models trained with
                ``objective="diffusion"``): at pass ``k`` of ``K`` each still-masked frame is
                revealed with probability ``1 / (K - k)``, sampled at ``temperature``, in a
                random order rather than by confidence. One pass is greedy in both.
            generator: for reproducible sampling.
        """
        plan = check_plan(
            self.config.num_quantizers,
            iterations,
            temperature,
            choice_temperature,
            guidance_scale,
            schedule,
            sampler,
        )
        request = check_request(
            self.config,
            semantic,
            semantic_lengths=semantic_lengths,
            num_frames=num_frames,
            prompt_codes=prompt_codes,
            prompt_lengths=prompt_lengths,
            prompt_semantic=prompt_semantic,
            prompt_semantic_lengths=prompt_semantic_lengths,
        )
        layout = lay_out(self.config, request)
        codes = layout.codes  # filled in place, level by level
        conditioning = self._conditioning(layout, plan.guided)
        passes = 0
        for level, steps in enumerate(plan.iterations):
            passes += self._decode_level(codes, level, steps, layout, conditioning, plan, generator)
        return self._assemble(codes, layout, passes)

    @torch.inference_mode()
    def convert(
        self,
        semantic: Tensor,
        prompt_codes: Tensor,
        *,
        semantic_lengths: Tensor | None = None,
        prompt_lengths: Tensor | None = None,
        prompt_semantic: Tensor | None = None,
        prompt_semantic_lengths: Tensor | None = None,
        **generate_kwargs,
    ) -> Tensor:
        """Voice conversion: the content of ``semantic`` in the voice of ``prompt_codes``.

        As in SpeechGPT-Gen: semantic tokens of the source utterance, the acoustic prompt of
        the target speaker (codes of a short recording, and its semantic tokens when
        available). The pipeline app wraps this with a codec and a tokenizer.

        Args:
            semantic: ``(b, s)`` semantic tokens of the source speech.
            prompt_codes: ``(b, p, q)`` codec codes of the target speaker's recording.
            generate_kwargs: passed to :meth:`generate` (iterations, temperatures, guidance).

        Returns:
            ``(b, n, q)`` codes of the converted speech, ``n = round(s * frame_rate /
            semantic_frame_rate)`` per row (0 past each row's length).
        """
        if prompt_codes is None:
            raise ValueError("convert needs prompt_codes (b, p, q) of the target speaker")
        return self.generate(
            semantic,
            semantic_lengths=semantic_lengths,
            prompt_codes=prompt_codes,
            prompt_lengths=prompt_lengths,
            prompt_semantic=prompt_semantic,
            prompt_semantic_lengths=prompt_semantic_lengths,
            **generate_kwargs,
        ).codes

    # -- decoding, one level at a time (inputs checked, lengths on the host: no syncs in the loop)

    def _conditioning(self, layout: Layout, guided: bool) -> _Conditioning:
        """The semantic embedding of every row and the attention mask, ``2b`` rows if guided."""
        key_mask = None if bool(layout.is_real.all()) else layout.is_real
        if layout.context is not None:
            return self._cross_conditioning(layout, key_mask, guided)
        embedding = self.semantic_embedding(layout.semantic)
        if guided:
            # the unconditional rows: every frame gets "no condition"; prompt codes stay
            null = self.semantic_embedding(torch.full_like(layout.semantic, self.null_semantic_id))
            embedding = torch.cat((embedding, null))
            key_mask = None if key_mask is None else torch.cat((key_mask, key_mask))
        return _Conditioning(embedding=embedding, key_mask=key_mask, guided=guided)

    def _cross_conditioning(
        self, layout: Layout, key_mask: Tensor | None, guided: bool
    ) -> _Conditioning:
        """Cross-attention conditioning: frame times summed in, the semantic row as context."""
        assert layout.context is not None and layout.context_mask is not None
        b, f = layout.semantic.shape
        embedding = self.frame_time_embedding(f, layout.semantic.device).expand(b, -1, -1)
        context, context_mask = self.embed_context(layout.context), layout.context_mask
        if guided:  # unconditional rows: every token "no condition"
            null = torch.full_like(layout.context, self.null_semantic_id)
            embedding = torch.cat((embedding, embedding))
            context = torch.cat((context, self.embed_context(null)))
            context_mask = torch.cat((context_mask, context_mask))
            key_mask = None if key_mask is None else torch.cat((key_mask, key_mask))
        return _Conditioning(embedding, key_mask, guided, context, context_mask)

    def _decode_level(
        self,
        codes: Tensor,
        level: int,
        steps: int,
        layout: Layout,
        conditioning: _Conditioning,
        plan: DecodePlan,
        generator: torch.Generator | None,
    ) -> int:
        """Fill the new frames of one level of ``codes`` ``(b, f, q)`` in place; returns passes.

        One pass: every frame takes its argmax (SoundStorm sec. 3.3, greedy on the finer
        levels). More: MaskGIT (:meth:`_maskgit_step`).
        """
        scale = plan.guidance_scale[level]
        if scale == 1.0:  # this level unguided: the unconditional rows would be wasted
            conditioning = conditioning.conditional()
        summed = self.config.codebook_combiner == "sum"
        if summed:
            base = self._other_levels_embedding(codes, level, conditioning)
        else:  # a combiner mixes the levels: every pass embeds the whole frame
            base = conditioning.embedding
        left = self._masked_counts(steps, layout.lengths, plan.schedule, codes.device)
        for step in range(steps):
            current = codes[..., level]
            frame = current if summed else codes
            logits = self._level_logits(base, frame, level, conditioning, scale)
            still = (current == self.mask_id) & layout.is_new
            if steps == 1:
                codes[..., level] = torch.where(still, logits.argmax(-1), current)
            elif plan.sampler == "diffusion":
                codes[..., level] = self._diffusion_step(
                    logits, current, still, step, steps, plan, generator
                )
            else:
                codes[..., level] = self._maskgit_step(
                    logits, current, still, step, steps, left, plan, generator
                )
        return steps

    def _other_levels_embedding(
        self, codes: Tensor, level: int, conditioning: _Conditioning
    ) -> Tensor:
        """``(b, f, d)`` (``2b`` rows if guided): the levels fixed while ``level`` is decoded,
        embedded once per level, plus the semantic embedding."""
        other_levels = [k for k in range(self.config.num_quantizers) if k != level]
        base = self.code_embedding(codes + self.level_offsets)[..., other_levels, :].sum(-2)
        base = torch.cat((base, base)) if conditioning.guided else base
        return base + conditioning.embedding

    def _level_logits(
        self,
        base: Tensor,
        current: Tensor,
        level: int,
        conditioning: _Conditioning,
        guidance_scale: float,
    ) -> Tensor:
        """One network pass: ``(b, f, v)`` float logits of ``level``, guided if asked.

        ``current`` is the level's ``(b, f)`` codes (summed levels) or every level's
        ``(b, f, q)`` (a combiner). The conditional and unconditional rows run as one batch
        of ``2b``.
        """
        if current.ndim == 2:
            x = self.code_embedding(current + self.level_offsets[level])
        else:
            x = self.embed_codes(current)
        x = base + (torch.cat((x, x)) if conditioning.guided else x)
        if conditioning.context is None:
            hidden = self.backbone(x, conditioning.key_mask)
        else:
            hidden = self.backbone(
                x,
                conditioning.key_mask,
                context=conditioning.context,
                context_mask=conditioning.context_mask,
            )
        logits = self.head(hidden, level).float()
        if not conditioning.guided:
            return logits
        cond, uncond = logits.chunk(2)
        return classifier_free_guidance(cond, uncond, guidance_scale)

    def _maskgit_step(
        self,
        logits: Tensor,
        current: Tensor,
        still: Tensor,
        step: int,
        steps: int,
        left: list[Tensor],
        plan: DecodePlan,
        generator: torch.Generator | None,
    ) -> Tensor:
        """Iteration ``step`` of ``steps`` on one level: the level's new ``(b, f)`` codes.

        Every still-masked frame is sampled, at a temperature falling linearly to 0 on the
        last iteration; before the last, the least confident of them are masked again so
        that ``left[step]`` stay masked (choice noise falling to 0 as well).
        """
        heat = plan.temperature * (steps - 1 - step) / (steps - 1)
        sampled = gumbel_sample(logits, heat, generator=generator)
        filled = torch.where(still, sampled, current)
        if step == steps - 1:
            return filled
        confidence = logits.log_softmax(-1).gather(-1, sampled[..., None]).squeeze(-1).exp()
        remask = lowest_confidence_mask(
            confidence,
            left[step],
            temperature=plan.choice_temperature * (1 - (step + 1) / steps),
            candidates=still,
            generator=generator,
        )
        return filled.masked_fill(remask, self.mask_id)

    def _diffusion_step(
        self,
        logits: Tensor,
        current: Tensor,
        still: Tensor,
        step: int,
        steps: int,
        plan: DecodePlan,
        generator: torch.Generator | None,
    ) -> Tensor:
        """Pass ``step`` of ``steps`` of the absorbing-state reverse process on one level.

        With ``t = steps - step`` passes left, each masked frame is revealed with probability
        ``1 / t`` (masked at ``t / T`` of the way, revealed at ``(t - 1) / T``), from the
        model's distribution at ``temperature``; revealed frames stay (they never re-mask).
        """
        sampled = gumbel_sample(logits, plan.temperature, generator=generator)
        draw = torch.rand(still.shape, device=still.device, generator=generator)
        reveal = still & (draw < 1.0 / (steps - step))
        return torch.where(reveal, sampled, current)

    def _assemble(self, codes: Tensor, layout: Layout, passes: int) -> SoundStormOutput:
        """The decoded rows and the new frames cut out of them, 0 past every length."""
        device = codes.device
        q = self.config.num_quantizers
        sequence = codes.masked_fill(~layout.is_real[..., None], 0)
        n_max, total_max = int(layout.lengths.max()), sequence.shape[1]
        seq_index = (layout.prompt_lengths[:, None] + torch.arange(n_max)[None]).clamp(
            max=total_max - 1
        )
        out = sequence.gather(1, seq_index.to(device)[..., None].expand(-1, -1, q))
        out = out.masked_fill(~lengths_to_mask(layout.lengths, n_max).to(device)[..., None], 0)
        return SoundStormOutput(
            codes=out,
            lengths=layout.lengths.to(device),
            sequence=sequence,
            prompt_lengths=layout.prompt_lengths.to(device),
            forward_passes=passes,
        )

    @staticmethod
    def _masked_counts(steps: int, lengths: Tensor, schedule: MaskSchedule, device) -> list[Tensor]:
        """Frames left masked after each iteration, per row, computed once on the host."""
        if steps == 1:
            return []
        table = [
            [num_masked(step, steps, int(n), schedule) for n in lengths] for step in range(steps)
        ]
        return [torch.tensor(row, device=device) for row in table]
