"""Sampling utilities shared by the autoregressive (AudioLM) and masked (SoundStorm) models.

Logits are ``(..., v)`` over a vocabulary of size ``v``. Filters return new logits with
excluded entries at ``-inf``; samplers return long indices ``(...)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "MaskSchedule",
    "classifier_free_guidance",
    "gumbel_noise",
    "gumbel_sample",
    "lowest_confidence_mask",
    "mask_schedule",
    "num_masked",
    "sample_logits",
    "top_k_filter",
    "top_p_filter",
]

MaskSchedule = Literal["cosine", "linear", "arccos", "square", "sqrt"]


def top_k_filter(logits: Tensor, k: int | None = None, *, fraction: float | None = None) -> Tensor:
    """Keep the ``k`` largest logits (or the top ``fraction`` of the vocabulary)."""
    vocab = logits.shape[-1]
    if fraction is not None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"top-k fraction must be in (0, 1], got {fraction}")
        k = max(1, math.ceil(fraction * vocab))
    if k is None or k >= vocab:
        return logits
    if k < 1:
        raise ValueError(f"top-k needs k >= 1, got {k}")
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering: keep the smallest set of tokens whose probability mass reaches ``p``."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top-p must be in (0, 1], got {p}")
    if p == 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    # Drop a token when the mass before it already reaches p; the top token always stays.
    drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def gumbel_noise(
    shape: torch.Size | tuple[int, ...], *, device=None, generator: torch.Generator | None = None
) -> Tensor:
    """Standard Gumbel(0, 1) noise."""
    u = torch.rand(shape, device=device, generator=generator)
    return -torch.log((-torch.log(u.clamp(min=1e-20))).clamp(min=1e-20))


def gumbel_sample(
    logits: Tensor,
    temperature: float = 1.0,
    *,
    dim: int = -1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample ``argmax(logits / temperature + g)``, g ~ Gumbel: a categorical draw.

    ``temperature == 0`` is greedy decoding.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=dim)
    noise = gumbel_noise(logits.shape, device=logits.device, generator=generator)
    return (logits.float() / temperature + noise).argmax(dim=dim)


def sample_logits(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Filter (top-k, then top-p) and draw one token per row of ``(..., v)`` logits."""
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return gumbel_sample(logits, temperature, generator=generator)


def classifier_free_guidance(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """``uncond + scale * (cond - uncond)``: scale 1 is the conditional model, 0 unconditional.

    Works on logits (AudioLM, SoundStorm) and on predicted noise/velocity (diffusion, flows).
    """
    if cond.shape != uncond.shape:
        raise ValueError(
            f"guidance needs equal shapes, got {tuple(cond.shape)} and {tuple(uncond.shape)}"
        )
    if scale == 1.0:
        return cond
    return uncond + scale * (cond - uncond)


_SCHEDULES: dict[str, Callable[[Tensor], Tensor]] = {
    # gamma(r): the fraction of tokens still masked at progress r in [0, 1]; gamma(0) = 1,
    # gamma(1) = 0. MaskGIT (Chang et al. 2022, sec. 3.2) found cosine best; SoundStorm uses it.
    "cosine": lambda r: torch.cos(r * math.pi / 2),
    "linear": lambda r: 1 - r,
    "arccos": lambda r: torch.arccos(r.clamp(-1, 1)) / (math.pi / 2),
    "square": lambda r: 1 - r**2,
    "sqrt": lambda r: 1 - r.sqrt(),
}


def mask_schedule(name: MaskSchedule) -> Callable[[Tensor], Tensor]:
    """The masking schedule ``gamma``: progress ``r`` in [0, 1] -> masked fraction."""
    if name not in _SCHEDULES:
        raise ValueError(f"unknown mask schedule {name!r}; choose from {sorted(_SCHEDULES)}")
    return _SCHEDULES[name]


def num_masked(step: int, steps: int, length: int, schedule: MaskSchedule = "cosine") -> int:
    """Tokens left masked after iteration ``step`` (0-based) of ``steps`` over ``length`` tokens.

    Strictly decreasing from ``length`` to 0 while there are more tokens than steps: each
    iteration unmasks at least one token and the last unmasks all that remain.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if step >= steps - 1:
        return 0
    ratio = torch.tensor((step + 1) / steps, dtype=torch.float64)
    left = math.floor(length * mask_schedule(schedule)(ratio).item())
    # Leave at least one token per remaining iteration, and unmask at least one now.
    previous = length if step == 0 else num_masked(step - 1, steps, length, schedule)
    return int(max(min(left, previous - 1), min(steps - 1 - step, max(previous - 1, 0)), 0))


def lowest_confidence_mask(
    confidence: Tensor,
    count: Tensor | int,
    *,
    temperature: float = 0.0,
    candidates: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Select, per row of ``(b, n)`` confidences, the ``count`` least confident positions.

    Args:
        confidence: ``(b, n)`` scores (e.g. the probability of the sampled token).
        count: how many to select, an int or ``(b,)``.
        temperature: MaskGIT's "choice temperature": Gumbel noise scaled by it is added to
            the log-confidence so re-masking is stochastic early on.
        candidates: ``(b, n)`` bool, positions allowed to be selected (others never are).

    Returns:
        ``(b, n)`` bool, True where selected (to be re-masked).
    """
    scores = confidence.float().clamp(min=1e-20).log()
    if temperature > 0:
        scores = scores + temperature * gumbel_noise(
            scores.shape, device=scores.device, generator=generator
        )
    if candidates is not None:
        scores = scores.masked_fill(~candidates, float("inf"))
    b, n = scores.shape
    count = torch.as_tensor(count, device=scores.device).expand(b).clamp(0, n)
    ranks = scores.argsort(dim=-1).argsort(dim=-1)  # 0 = least confident
    selected = ranks < count[:, None]
    if candidates is not None:
        selected &= candidates
    return selected
