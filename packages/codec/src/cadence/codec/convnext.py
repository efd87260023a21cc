"""ConvNeXt blocks over frame sequences (Liu et al. 2022, as used by Vocos, Siuzdak 2023).

A block is a depthwise convolution over time, a LayerNorm, a pointwise MLP and a learned
per-channel scale on the residual branch. At a codec's frame rate (50 Hz) these are cheap:
one second of audio is 50 positions, not 16000, which is what lets a codec train on a CPU.
A causal block pads on the left only, so a frame never sees the future.
"""

# b batch | n frames | d width

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = ["ConvNeXtBlock", "ConvNeXtStack"]


class ConvNeXtBlock(nn.Module):
    """One ConvNeXt block on ``(b, d, n)``.

    Args:
        dim: channels ``d``.
        ff_mult: width of the pointwise MLP relative to ``dim``.
        kernel_size: taps of the depthwise convolution.
        layer_scale: initial scale of the residual branch (small: blocks start near identity).
        causal: pad on the left only.
    """

    def __init__(
        self,
        dim: int,
        *,
        ff_mult: float = 3.0,
        kernel_size: int = 7,
        layer_scale: float = 1e-2,
        causal: bool = False,
    ):
        super().__init__()
        self.padding = (
            (kernel_size - 1, 0) if causal else ((kernel_size - 1) // 2, kernel_size // 2)
        )
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim)
        hidden = int(dim * ff_mult)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.scale = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: Tensor) -> Tensor:
        h = self.depthwise(F.pad(x, self.padding))
        h = self.down(F.gelu(self.up(self.norm(rearrange(h, "b d n -> b n d")))))
        return x + rearrange(self.scale * h, "b n d -> b d n")


class ConvNeXtStack(nn.Module):
    """Input projection, ``depth`` ConvNeXt blocks and a final LayerNorm: ``(b, c_in, n) -> (b, n, d)``."""

    def __init__(
        self,
        in_channels: int,
        dim: int,
        depth: int,
        *,
        ff_mult: float = 3.0,
        kernel_size: int = 7,
        causal: bool = False,
    ):
        super().__init__()
        self.padding = (
            (kernel_size - 1, 0) if causal else ((kernel_size - 1) // 2, kernel_size // 2)
        )
        self.proj = nn.Conv1d(in_channels, dim, kernel_size)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(dim, ff_mult=ff_mult, kernel_size=kernel_size, causal=causal)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.proj(F.pad(x, self.padding))
        for block in self.blocks:
            h = block(h)
        return self.norm(rearrange(h, "b d n -> b n d"))
