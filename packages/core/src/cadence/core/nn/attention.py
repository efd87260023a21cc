"""Multi-head attention on ``F.scaled_dot_product_attention`` with rotary positions.

Rotary embeddings (Su et al. 2021) make self-attention scores depend only on relative
positions, which is what a non-autoregressive audio model needs to generalise across lengths.
"""

# b batch | n query frames | m key frames | h heads | e head dim

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = ["Attention", "RotaryEmbedding", "apply_rotary"]


class RotaryEmbedding(nn.Module):
    """cos/sin tables for rotating query/key pairs by position-dependent angles."""

    inv_freq: Tensor

    def __init__(self, dim_head: int, theta: float = 10000.0):
        super().__init__()
        if dim_head % 2:
            raise ValueError(f"rotary embeddings need an even head dim, got {dim_head}")
        inv_freq = 1.0 / theta ** (torch.arange(0, dim_head, 2).float() / dim_head)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache: dict[tuple[torch.device, bool], tuple[Tensor, Tensor]] = {}

    def forward(self, length: int, device: torch.device) -> tuple[Tensor, Tensor]:
        # Iterative decoders ask for the same tables many times, so the longest are kept. Tables
        # made under inference_mode cannot be saved for backward, hence one cache per mode.
        key = (torch.device(device), torch.is_inference_mode_enabled())
        cached = self._cache.get(key)
        if cached is not None and cached[0].shape[0] >= length:
            return cached[0][:length], cached[1][:length]
        positions = torch.arange(length, device=device, dtype=torch.float32)
        angles = torch.outer(positions, self.inv_freq.to(device))  # (n, d/2)
        angles = torch.cat((angles, angles), dim=-1)  # (n, d)
        cos, sin = angles.cos(), angles.sin()
        self._cache[key] = (cos, sin)
        return cos, sin


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate (b, h, n, d) by the (n, d) tables (the "rotate half" convention)."""
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


def _key_mask(mask: Tensor | None) -> Tensor | None:
    """(b, m) keep-mask -> SDPA's (b, 1, 1, m) boolean mask; None when nothing is masked."""
    if mask is None:
        return None
    return rearrange(mask.bool(), "b m -> b 1 1 m")


class Attention(nn.Module):
    """Self-attention (``context is None``) or cross-attention to ``context``.

    ``mask`` / ``context_mask`` are (b, n) / (b, m) booleans, True = keep. Keys at padded
    positions are never attended to; queries at padded positions give values that the
    caller ignores.
    """

    def __init__(
        self,
        dim: int,
        *,
        heads: int,
        context_dim: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.is_cross = context_dim is not None
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        rotary: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        source = context if self.is_cross else x
        if source is None:
            raise ValueError("cross-attention needs a context tensor (b, m, context_dim)")
        key_mask = context_mask if self.is_cross else mask
        q = rearrange(self.to_q(x), "b n (h e) -> b h n e", h=self.heads)
        k, v = rearrange(self.to_kv(source), "b m (two h e) -> two b h m e", two=2, h=self.heads)
        if rotary is not None and not self.is_cross:
            cos, sin = rotary
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=_key_mask(key_mask), dropout_p=self.dropout if self.training else 0.0
        )
        return self.to_out(rearrange(out, "b h n e -> b n (h e)"))
