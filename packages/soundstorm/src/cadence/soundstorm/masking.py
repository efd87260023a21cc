"""SoundStorm's training mask and the semantic-to-codec frame alignment, as pure functions.

Training mask (SoundStorm, Borsos et al. 2023, sec. 3.2), per sample of real length ``T``:

1. a prompt delimiter ``t`` is drawn uniformly; frames ``< t`` stay visible on every level;
2. a level ``q`` is drawn uniformly from ``{0, ..., Q-1}``;
3. a masking ratio ``p = cos(u)``, ``u ~ U[0, pi/2]`` (the cosine schedule);
4. at level ``q`` each non-prompt frame is masked i.i.d. with probability ``p``; levels
   ``< q`` stay visible; levels ``> q`` are masked on every non-prompt frame;
5. the loss is taken on the masked frames of level ``q`` only.
"""

# b batch | n codec frames | s semantic frames | q quantizer levels

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from cadence.core.data import lengths_to_mask

__all__ = [
    "TrainingMask",
    "align_semantic",
    "aligned_length",
    "semantic_frame_index",
    "training_mask",
]


@dataclass
class TrainingMask:
    """One draw of the SoundStorm training mask for a batch.

    Attributes:
        level: ``(b,)`` long, the level ``q`` trained on (0-based).
        prompt_lengths: ``(b,)`` long, frames at the start visible on every level.
        masked: ``(b, n, q)`` bool, True where the input code is replaced by the mask id.
        loss_mask: ``(b, n)`` bool, True where the loss is taken (masked frames of ``level``).
        ratio: ``(b,)`` float64, the masking probability drawn for each sample's level.
    """

    level: Tensor
    prompt_lengths: Tensor
    masked: Tensor
    loss_mask: Tensor
    ratio: Tensor | None = None


def training_mask(
    lengths: Tensor,
    num_frames: int,
    num_quantizers: int,
    *,
    prompt_range: tuple[float, float] = (0.0, 1.0),
    level: int | None = None,
    level_weights: Sequence[float] | None = None,
    mask_ratio: float | None = None,
    schedule: Literal["cosine", "linear"] = "cosine",
    generator: torch.Generator | None = None,
) -> TrainingMask:
    """Draw the SoundStorm training mask (see the module docstring) for a batch.

    Args:
        lengths: ``(b,)`` real frames per sample (>= 1 each); frames past it are padding and
            are never masked nor scored.
        num_frames: ``n``, the padded length (>= ``lengths.max()``).
        num_quantizers: ``Q``.
        prompt_range: the prompt length is drawn uniformly from the integers
            ``floor(lo * (T - 1)), ..., floor(hi * (T - 1))``; ``(0, 1)`` is the paper's
            ``t ~ U{0, T-1}``.
            The prompt never covers the last frame, so there is always something to predict.
        level: evaluate one fixed level instead of drawing it (evaluation).
        level_weights: relative probability of drawing each level (default uniform).
        mask_ratio: a fixed masking probability instead of ``cos(u)`` (evaluation).
        schedule: how the ratio is drawn: ``"cosine"`` (the paper, ``cos(u)``) or
            ``"linear"`` (``1 - u``, uniform in ``(0, 1]``: absorbing-state diffusion's
            ``t / T`` with ``t`` uniform, for ``objective="diffusion"``).
        generator: a CPU generator for reproducible draws (all draws happen on the CPU, so no
            device sync is needed to read ``level``).

    Returns:
        A :class:`TrainingMask` on ``lengths.device``. Every sample has at least one scored
        frame: when the Bernoulli draw masks nothing, one random non-prompt frame is masked
        (the paper does not say what it does then; an empty draw would drop the sample).
    """
    lo, hi = prompt_range
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"prompt_range must satisfy 0 <= lo <= hi <= 1, got {prompt_range}")
    if lengths.ndim != 1 or lengths.numel() == 0:
        raise ValueError(
            f"lengths must be a non-empty (b,) tensor, got shape {tuple(lengths.shape)}"
        )
    device = lengths.device
    lengths_cpu = lengths.detach().to("cpu", torch.long)
    if int(lengths_cpu.min()) < 1 or int(lengths_cpu.max()) > num_frames:
        raise ValueError(
            f"every length must be in [1, num_frames={num_frames}], got {lengths_cpu.tolist()}"
        )
    b = lengths_cpu.numel()

    # Prompt delimiter t ~ U{floor(lo (T-1)), ..., floor(hi (T-1))}.
    last = (lengths_cpu - 1).double()
    low = torch.floor(last * lo + 1e-9).long()
    high = torch.floor(last * hi + 1e-9).long()
    u = torch.rand(b, generator=generator, dtype=torch.float64)
    prompt = (low + (u * (high - low + 1).double()).floor().long()).clamp(max=high)

    if level is None and level_weights is not None:
        weights = torch.as_tensor(level_weights, dtype=torch.float64)
        if weights.shape != (num_quantizers,) or bool((weights < 0).any()) or weights.sum() <= 0:
            raise ValueError(
                f"level_weights must hold {num_quantizers} non-negative weights (one per "
                f"level), not all zero; got {list(level_weights)}"
            )
        levels_drawn = torch.multinomial(weights, b, replacement=True, generator=generator)
    elif level is None:
        levels_drawn = torch.randint(0, num_quantizers, (b,), generator=generator)
    elif not 0 <= level < num_quantizers:
        raise ValueError(f"level must be in [0, {num_quantizers}), got {level}")
    else:
        levels_drawn = torch.full((b,), level, dtype=torch.long)
    if schedule not in ("cosine", "linear"):
        raise ValueError(f"schedule must be 'cosine' or 'linear', got {schedule!r}")
    if mask_ratio is None and schedule == "linear":
        ratio = 1.0 - torch.rand(b, generator=generator, dtype=torch.float64)
    elif mask_ratio is None:
        # Cosine schedule: p = cos(u), u ~ U[0, pi/2].
        ratio = torch.cos(torch.rand(b, generator=generator, dtype=torch.float64) * (math.pi / 2))
    elif not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}")
    else:
        ratio = torch.full((b,), float(mask_ratio), dtype=torch.float64)

    candidates = lengths_to_mask(lengths_cpu, num_frames) & ~lengths_to_mask(prompt, num_frames)
    draw = torch.rand(b, num_frames, generator=generator, dtype=torch.float64)
    chosen = (draw < ratio[:, None]) & candidates
    # Guarantee one scored frame: the candidate with the smallest draw.
    empty = ~chosen.any(1)
    first = draw.masked_fill(~candidates, 2.0).argmin(1)
    chosen[empty, first[empty]] = True

    levels = torch.arange(num_quantizers)
    above = levels[None, None, :] > levels_drawn[:, None, None]  # (b, 1, q)
    at = levels[None, None, :] == levels_drawn[:, None, None]
    masked = (above & candidates[..., None]) | (at & chosen[..., None])
    return TrainingMask(
        level=levels_drawn.to(device),
        prompt_lengths=prompt.to(device),
        masked=masked.to(device),
        loss_mask=chosen.to(device),
        ratio=ratio.to(device),
    )


def semantic_frame_index(
    num_frames: int, frame_rate: float, semantic_rate: float, *, device=None
) -> Tensor:
    """For each codec frame, the semantic frame that holds its centre.

    Codec frame ``i`` covers ``[i, i + 1) / frame_rate`` seconds; its centre
    ``(i + 0.5) / frame_rate`` falls in semantic frame ``floor((i + 0.5) * semantic_rate /
    frame_rate)``. With 25 Hz semantic tokens and 50 Hz codes this repeats every token twice
    (as the paper does); with 50 Hz and 75 Hz it maps frames 0, 1, 2 to tokens 0, 1, 1.

    Returns:
        ``(n,)`` long (not clamped to the semantic length; see :func:`align_semantic`).
    """
    centres = torch.arange(num_frames, device=device, dtype=torch.float64) + 0.5
    return torch.floor(centres * (semantic_rate / frame_rate) + 1e-9).long()


def align_semantic(
    semantic: Tensor,
    num_frames: int,
    *,
    frame_rate: float,
    semantic_rate: float,
    semantic_lengths: Tensor | None = None,
) -> Tensor:
    """Resample semantic tokens ``(b, s)`` onto ``num_frames`` codec frames ``(b, n)``.

    Nearest-frame mapping (:func:`semantic_frame_index`); a codec frame past the last real
    semantic token of its sample (rounding at the end of an utterance) takes that last token.
    """
    if semantic.ndim != 2:
        raise ValueError(f"semantic tokens must be (b, s), got shape {tuple(semantic.shape)}")
    b, s = semantic.shape
    if s == 0:
        raise ValueError("semantic tokens are empty (s = 0); give at least one token per sample")
    index = semantic_frame_index(num_frames, frame_rate, semantic_rate, device=semantic.device)
    if semantic_lengths is None:
        last = torch.full((b,), s - 1, device=semantic.device, dtype=torch.long)
    else:
        last = (semantic_lengths.to(semantic.device).long() - 1).clamp(min=0)
    index = torch.minimum(index[None, :].expand(b, -1), last[:, None])
    return semantic.gather(1, index)


def aligned_length(semantic_length: int, frame_rate: float, semantic_rate: float) -> int:
    """Codec frames spanned by ``semantic_length`` semantic frames: ``round(s * fr / sr)``."""
    return round(semantic_length * frame_rate / semantic_rate)
