"""Cross-attention conditioning: semantic tokens at their own rate, placed in time.

With ``SoundStormConfig.semantic_conditioning="cross_attention"`` the backbone attends from the
codec frames to the semantic tokens instead of summing an aligned token into each frame.
Attention has no notion of where a token lies, so both sides carry sinusoidal features of
their time in seconds (frame ``i`` at ``(i + 0.5) / frame_rate``, token ``j`` at ``(j + 0.5) /
semantic_frame_rate``); the model can then learn the alignment whatever the two rates are.
"""

# b batch | n codec frames | s semantic frames | d model dim

from __future__ import annotations

import math

import torch
from torch import Tensor

from cadence.core.data import lengths_to_mask

__all__ = ["prompt_tokens", "time_features"]


def time_features(num: int, rate: float, dim: int, *, device=None) -> Tensor:
    """``(num, dim)`` sinusoids of the centre times ``(i + 0.5) / rate`` seconds.

    Periods are spaced geometrically from 10 ms to 100 s, so nearby frames differ and a
    whole utterance is covered without wrapping.
    """
    t = (torch.arange(num, device=device, dtype=torch.float32) + 0.5) / rate
    half = dim // 2
    periods = 0.01 * (
        1e4 ** (torch.arange(half, device=device, dtype=torch.float32) / max(half - 1, 1))
    )
    angles = 2 * math.pi * t[:, None] / periods[None]
    out = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return torch.nn.functional.pad(out, (0, dim - out.shape[-1]))


def prompt_tokens(
    prompt_frames: Tensor, num_tokens: int, *, frame_rate: float, semantic_rate: float
) -> Tensor:
    """``(b, s)`` bool: semantic tokens whose centre lies in each row's first ``prompt_frames``."""
    # token j is in the prompt when its centre (j + 0.5) / semantic_rate < p / frame_rate
    bound = (prompt_frames.double() * semantic_rate / frame_rate - 0.5).ceil().long()
    return lengths_to_mask(bound.clamp(0, num_tokens).cpu(), num_tokens).to(prompt_frames.device)
