"""How a frame's per-level code embeddings become one vector: the paper's sum, or a U-Net.

SoundStorm (Borsos et al. 2023) sums the level embeddings of a frame. InstructTTS's SoundStorm
(Yang et al. 2023, github.com/yangdongchao/SoundStorm) combines them with a shallow U-Net
over the level axis, so the levels can interact before the backbone sees the frame.
"""

# b batch | n frames | q quantizer levels | d model dim

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = ["LevelUNet"]


class LevelUNet(nn.Module):
    """A shallow U-Net over the ``q`` level embeddings of each frame: ``(b, n, q, d) -> (b, n, d)``.

    One conv at full level resolution (the skip), one strided conv down to ``ceil(q / 2)``,
    nearest upsampling back to ``q``, and an output conv over the skip and the upsampled
    features; the result is summed over levels and added to the plain sum. The output conv
    starts at zero, so an untrained combiner is the paper's sum and learns only a correction.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.conv_in = nn.Conv1d(dim, dim, 3, padding=1)
        self.down = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.conv_out = nn.Conv1d(2 * dim, dim, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        assert self.conv_out.bias is not None
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, embeddings: Tensor) -> Tensor:
        """``(b, n, q, d)`` level embeddings -> ``(b, n, d)``."""
        b, q = embeddings.shape[0], embeddings.shape[2]
        h = rearrange(embeddings, "b n q d -> (b n) d q")
        skip = F.gelu(self.conv_in(h))
        low = F.gelu(self.down(skip))  # (b n, d, ceil(q / 2))
        up = F.interpolate(low, size=q, mode="nearest")
        out = self.conv_out(torch.cat([skip, up], dim=1))
        return embeddings.sum(-2) + rearrange(out, "(b n) d q -> b n q d", b=b).sum(-2)
