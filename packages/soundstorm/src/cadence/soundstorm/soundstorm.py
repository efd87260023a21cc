"""SoundStorm: residual codec codes from semantic tokens, decoded level by level with MaskGIT.

# b batch | n codec frames | p prompt frames | m semantic frames | q quantizer levels
# v codebook entries | d model dim

Borsos et al. 2023 (arXiv 2305.09636). Each frame's input is the sum of one embedding per
level (a table per level, with an extra mask id) and the embedding of the semantic token
aligned to that frame; a bidirectional backbone (a Conformer in the paper) maps it to one
output distribution per level. Generation fills level 1 in a few confidence-ranked
iterations, then each finer level (greedily, with one iteration, by default).
"""

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

from .config import SoundStormConfig
from .masking import align_semantic, aligned_length

__all__ = ["SoundStorm", "SoundStormOutput", "default_iterations"]


def default_iterations(num_quantizers: int, first: int = 16) -> tuple[int, ...]:
    """The paper's plan: ``first`` iterations on level 1, one greedy pass on each finer level."""
    return (first,) + (1,) * (num_quantizers - 1)


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


class SoundStorm(PretrainedMixin, nn.Module):
    """SoundStorm; see the module docstring and :class:`SoundStormConfig`.

    ``forward`` scores one masked-prediction problem (training); :meth:`generate` and
    :meth:`convert` decode.
    """

    config_class = SoundStormConfig

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
        """Semantic tokens ``(b, m)`` at ``semantic_frame_rate`` -> ``(b, n)`` per codec frame."""
        return align_semantic(
            semantic,
            num_frames,
            frame_rate=self.config.frame_rate,
            semantic_rate=self.config.semantic_frame_rate,
            semantic_lengths=semantic_lengths,
        )

    # -- network ---------------------------------------------------------------------------

    def embed_codes(self, codes: Tensor) -> Tensor:
        """``(b, n, q)`` codes (mask id allowed) -> ``(b, n, d)`` sum of the level embeddings."""
        return self.code_embedding(codes + self.level_offsets).sum(-2)

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
    ) -> Tensor:
        """Logits for masked codes.

        Args:
            codes: ``(b, n, q)`` long, values in ``[0, codebook_size]`` (``mask_id`` = masked).
            semantic: ``(b, n)`` long semantic tokens already aligned to codec frames
                (:meth:`align_semantic`), ``null_semantic_id`` for "no condition".
            mask: ``(b, n)`` bool, True at real frames (None: all real).
            level: see :meth:`head`.
        """
        self._check_frames(codes, semantic, mask)
        hidden = self.backbone(self.embed_codes(codes) + self.semantic_embedding(semantic), mask)
        return self.head(hidden, level)

    def _check_frames(self, codes: Tensor, semantic: Tensor, mask: Tensor | None) -> None:
        q = self.config.num_quantizers
        if codes.ndim != 3 or codes.shape[-1] != q:
            raise ValueError(
                f"codes must be (b, n, {q}) (one column per level), got {tuple(codes.shape)}"
            )
        if semantic.shape != codes.shape[:2]:
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
        guidance_scale: float = 1.0,
        schedule: MaskSchedule = "cosine",
        generator: torch.Generator | None = None,
    ) -> SoundStormOutput:
        """Decode codes for ``semantic`` tokens, optionally continuing an acoustic prompt.

        The decoded sequence of item ``i`` is its prompt (``prompt_lengths[i]`` frames, never
        changed) followed by ``lengths[i]`` new frames. Level ``l`` runs ``iterations[l]``
        network passes: with one, every frame takes its argmax (SoundStorm sec. 3.3, greedy on
        the finer levels); with more, MaskGIT: all masked frames are sampled, the least
        confident are re-masked so that ``gamma(s / S)`` of the frames stay masked (cosine
        ``gamma``), the sampling temperature falls linearly from ``temperature`` to 0 and
        the re-masking choice noise from ``choice_temperature`` to 0.

        Args:
            semantic: ``(b, m)`` semantic tokens of the frames to generate.
            semantic_lengths: ``(b,)`` real tokens per row (default ``m``).
            num_frames: frames to generate, an int or ``(b,)``; default
                ``round(semantic_lengths * frame_rate / semantic_frame_rate)``.
            prompt_codes: ``(b, p, q)`` codes of the acoustic prompt (all levels).
            prompt_lengths: ``(b,)`` real prompt frames (default ``p``).
            prompt_semantic: ``(b, m_p)`` semantic tokens of the prompt; without them the
                prompt frames get the "no condition" token (voice conversion from another
                speaker's recording).
            prompt_semantic_lengths: ``(b,)`` real prompt semantic tokens.
            iterations: passes per level (default ``(16, 1, 1, ...)``).
            temperature: sampling temperature of the first iteration of a level.
            choice_temperature: scale of the Gumbel noise on the re-masking confidences.
            guidance_scale: classifier-free guidance (1 = off; MaskGCT uses 2.5). The
                conditional and unconditional rows run as one batch of ``2b``, one pass.
            schedule: the masking schedule ``gamma``.
            generator: for reproducible sampling.
        """
        cfg = self.config
        device = semantic.device
        plan = self._check_plan(iterations, temperature, choice_temperature, guidance_scale)
        semantic, semantic_lengths = self._check_tokens(
            semantic, semantic_lengths, cfg.semantic_codebook_size, "semantic"
        )
        b = semantic.shape[0]
        lengths = self._target_lengths(num_frames, semantic_lengths, b)
        prompt_codes, prompt_lengths = self._check_prompt(prompt_codes, prompt_lengths, b, device)
        p_max = prompt_codes.shape[1]
        if prompt_semantic is not None:
            prompt_semantic, prompt_semantic_lengths = self._check_tokens(
                prompt_semantic,
                prompt_semantic_lengths,
                cfg.semantic_codebook_size,
                "prompt_semantic",
            )
            if prompt_semantic.shape[0] != b:
                raise ValueError(
                    f"prompt_semantic has {prompt_semantic.shape[0]} rows, semantic {b}"
                )

        # Layout (host-side integers, so the loop below never syncs): [prompt | new | pad].
        totals = prompt_lengths + lengths
        n_max, total_max = int(lengths.max()), int(totals.max())
        frames = torch.arange(total_max)
        is_prompt = frames[None] < prompt_lengths[:, None]
        is_real = frames[None] < totals[:, None]
        is_new = is_real & ~is_prompt
        new_index = (frames[None] - prompt_lengths[:, None]).clamp(0, max(n_max - 1, 0))
        prompt_index = frames[None].clamp(max=max(p_max - 1, 0)).expand(b, -1)

        null = self.null_semantic_id
        new_semantic = self.align_semantic(semantic, n_max, semantic_lengths.to(device))
        if prompt_semantic is not None and p_max > 0:
            prompt_aligned = self.align_semantic(
                prompt_semantic, p_max, prompt_semantic_lengths.to(device)
            )
        else:
            prompt_aligned = torch.full((b, max(p_max, 1)), null, device=device, dtype=torch.long)
        is_prompt, is_real, is_new = is_prompt.to(device), is_real.to(device), is_new.to(device)
        sem = torch.where(
            is_prompt,
            prompt_aligned.gather(1, prompt_index.to(device)),
            new_semantic.gather(1, new_index.to(device)),
        ).masked_fill(~is_real, null)

        codes = torch.full(
            (b, total_max, cfg.num_quantizers), self.mask_id, device=device, dtype=torch.long
        )
        if p_max > 0:
            window = min(p_max, total_max)
            codes[:, :window] = torch.where(
                is_prompt[:, :window, None], prompt_codes[:, :window], codes[:, :window]
            )

        guided = guidance_scale != 1.0
        semantic_embedding = self.semantic_embedding(sem)
        key_mask = None if bool(is_real.all()) else is_real
        if guided:
            null_embedding = self.semantic_embedding(torch.full_like(sem, null))
            semantic_embedding = torch.cat((semantic_embedding, null_embedding))
            key_mask = None if key_mask is None else torch.cat((key_mask, key_mask))

        passes = 0
        for level, steps in enumerate(plan):
            # Levels other than this one are fixed while it is decoded: embed them once.
            other_levels = [k for k in range(cfg.num_quantizers) if k != level]
            base = self.code_embedding(codes + self.level_offsets)[..., other_levels, :].sum(-2)
            base = (torch.cat((base, base)) if guided else base) + semantic_embedding
            left = self._masked_counts(steps, lengths, schedule, device)
            for step in range(steps):
                current = codes[..., level]
                x = self.code_embedding(current + self.level_offsets[level])
                x = base + (torch.cat((x, x)) if guided else x)
                logits = self.head(self.backbone(x, key_mask), level).float()
                passes += 1
                if guided:
                    cond, uncond = logits.chunk(2)
                    logits = classifier_free_guidance(cond, uncond, guidance_scale)
                still = (current == self.mask_id) & is_new
                if steps == 1:
                    codes[..., level] = torch.where(still, logits.argmax(-1), current)
                    continue
                heat = temperature * (steps - 1 - step) / (steps - 1)
                sampled = gumbel_sample(logits, heat, generator=generator)
                filled = torch.where(still, sampled, current)
                if step < steps - 1:
                    confidence = (
                        logits.log_softmax(-1).gather(-1, sampled[..., None]).squeeze(-1).exp()
                    )
                    remask = lowest_confidence_mask(
                        confidence,
                        left[step],
                        temperature=choice_temperature * (1 - (step + 1) / steps),
                        candidates=still,
                        generator=generator,
                    )
                    filled = filled.masked_fill(remask, self.mask_id)
                codes[..., level] = filled

        sequence = codes.masked_fill(~is_real[..., None], 0)
        seq_index = (prompt_lengths[:, None] + torch.arange(n_max)[None]).clamp(max=total_max - 1)
        out = sequence.gather(1, seq_index.to(device)[..., None].expand(-1, -1, cfg.num_quantizers))
        out = out.masked_fill(~lengths_to_mask(lengths, n_max).to(device)[..., None], 0)
        return SoundStormOutput(
            codes=out,
            lengths=lengths.to(device),
            sequence=sequence,
            prompt_lengths=prompt_lengths.to(device),
            forward_passes=passes,
        )

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
            semantic: ``(b, m)`` semantic tokens of the source speech.
            prompt_codes: ``(b, p, q)`` codec codes of the target speaker's recording.
            generate_kwargs: passed to :meth:`generate` (iterations, temperatures, guidance).

        Returns:
            ``(b, n, q)`` codes of the converted speech, ``n = round(m * frame_rate /
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

    # -- input checks (once per call, before the loop) --------------------------------------

    def _check_plan(
        self, iterations, temperature, choice_temperature, guidance_scale
    ) -> tuple[int, ...]:
        q = self.config.num_quantizers
        plan = default_iterations(q) if iterations is None else tuple(int(s) for s in iterations)
        if len(plan) != q or min(plan) < 1:
            raise ValueError(
                f"iterations must give >= 1 pass for each of the {q} levels, got {iterations}; "
                f"e.g. {default_iterations(q)}"
            )
        if temperature < 0 or choice_temperature < 0:
            raise ValueError(
                f"temperature and choice_temperature must be >= 0, got {temperature} and {choice_temperature}"
            )
        if guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0 (1 = no guidance), got {guidance_scale}")
        return plan

    @staticmethod
    def _check_tokens(
        tokens: Tensor, lengths: Tensor | None, vocab: int, name: str
    ) -> tuple[Tensor, Tensor]:
        if tokens.ndim == 1:
            raise ValueError(f"{name} must be (b, m); add a batch axis: {name}[None]")
        if tokens.ndim != 2 or tokens.shape[1] == 0:
            raise ValueError(
                f"{name} must be a non-empty (b, m) tensor, got shape {tuple(tokens.shape)}"
            )
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer token ids, got {tokens.dtype}")
        b, m = tokens.shape
        if lengths is None:
            lengths = torch.full((b,), m, dtype=torch.long)
        lengths = lengths.detach().to("cpu", torch.long)
        if lengths.shape != (b,) or int(lengths.min()) < 1 or int(lengths.max()) > m:
            raise ValueError(
                f"{name}_lengths must be (b,) = ({b},) in [1, {m}], got {lengths.tolist()}"
            )
        real = lengths_to_mask(lengths, m).to(tokens.device)
        lo, hi = int(tokens[real].min()), int(tokens[real].max())
        if lo < 0 or hi >= vocab:
            raise ValueError(
                f"{name} tokens lie in [{lo}, {hi}] but the model's semantic vocabulary is [0, {vocab}); "
                "were they made with another tokenizer? (SoundStormConfig.semantic_codebook_size)"
            )
        return tokens.long(), lengths

    def _target_lengths(self, num_frames, semantic_lengths: Tensor, b: int) -> Tensor:
        cfg = self.config
        if num_frames is None:
            lengths = torch.tensor(
                [
                    max(1, aligned_length(int(m), cfg.frame_rate, cfg.semantic_frame_rate))
                    for m in semantic_lengths
                ]
            )
        elif isinstance(num_frames, int):
            lengths = torch.full((b,), num_frames, dtype=torch.long)
        else:
            lengths = torch.as_tensor(num_frames).detach().to("cpu", torch.long).reshape(-1)
        if lengths.shape != (b,) or int(lengths.min()) < 1:
            raise ValueError(
                f"num_frames must be >= 1 for each of the {b} rows, got {lengths.tolist()}"
            )
        return lengths

    def _check_prompt(
        self, codes: Tensor | None, lengths: Tensor | None, b: int, device
    ) -> tuple[Tensor, Tensor]:
        q, v = self.config.num_quantizers, self.config.codebook_size
        if codes is None:
            if lengths is not None:
                raise ValueError("prompt_lengths given without prompt_codes")
            return torch.zeros((b, 0, q), dtype=torch.long, device=device), torch.zeros(
                b, dtype=torch.long
            )
        if codes.ndim != 3 or codes.shape[0] != b or codes.shape[2] != q:
            raise ValueError(
                f"prompt_codes must be (b, p, q) = ({b}, p, {q}) with codes of all {q} levels, "
                f"got {tuple(codes.shape)}"
            )
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise TypeError(f"prompt_codes must hold integer codes, got {codes.dtype}")
        p = codes.shape[1]
        lengths = (
            torch.full((b,), p, dtype=torch.long)
            if lengths is None
            else lengths.detach().to("cpu", torch.long)
        )
        if lengths.shape != (b,) or int(lengths.min()) < 0 or int(lengths.max()) > p:
            raise ValueError(
                f"prompt_lengths must be (b,) = ({b},) in [0, {p}], got {lengths.tolist()}"
            )
        real = lengths_to_mask(lengths, p).to(codes.device)
        if bool(real.any()):
            lo, hi = int(codes[real].min()), int(codes[real].max())
            if lo < 0 or hi >= v:
                raise ValueError(
                    f"prompt_codes lie in [{lo}, {hi}] but the model's codebook is [0, {v}); "
                    "were they made with another codec? (SoundStormConfig.codebook_size)"
                )
        return codes.long().to(device), lengths

    @staticmethod
    def _masked_counts(steps: int, lengths: Tensor, schedule: MaskSchedule, device) -> list[Tensor]:
        """Frames left masked after each iteration, per row, computed once on the host."""
        if steps == 1:
            return []
        table = [
            [num_masked(step, steps, int(n), schedule) for n in lengths] for step in range(steps)
        ]
        return [torch.tensor(row, device=device) for row in table]
