"""The NaturalSpeech 2 denoiser: a WaveNet stack with FiLM conditioning and prompt attention.

NaturalSpeech 2 sec. 3.2 / appendix: non-causal WaveNet layers (dilated 1-D convolutions,
gated tanh/sigmoid units, residual and skip paths). Each layer is conditioned

* per frame on ``cond`` (the length-regulated phoneme hidden + pitch embedding), added
  before the gate (WaveNet's local conditioning);
* on the diffusion step by FiLM (a per-layer scale and shift from the step embedding);
* on the speech prompt by cross-attention to the query tokens (the paper's "Q-K-V
  attention with the prompt"), in every ``attention_every``-th layer.

The output head predicts the clean latent ``x0`` (the paper's parameterisation).
"""

# b batch | n latent frames | d latent dim | e widths (residual, condition, prompt) | m query tokens

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from cadence.core.nn import Attention

__all__ = ["WaveNetDenoiser", "timestep_embedding"]


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal ``(b, dim)`` embedding of ``(b,)`` (possibly fractional) diffusion steps."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class WaveNetLayer(nn.Module):
    def __init__(
        self,
        channels: int,
        cond_dim: int,
        time_dim: int,
        dilation: int,
        kernel_size: int,
        heads: int,
        context_dim: int | None,
    ):
        super().__init__()
        self.conv = nn.Conv1d(
            channels,
            2 * channels,
            kernel_size,
            dilation=dilation,
            padding=dilation * (kernel_size - 1) // 2,
        )
        self.cond = nn.Conv1d(cond_dim, 2 * channels, 1)
        self.film = nn.Linear(time_dim, 4 * channels)
        nn.init.zeros_(self.film.weight)  # start as an unmodulated WaveNet layer
        nn.init.zeros_(self.film.bias)
        self.attention = None
        if context_dim is not None:
            self.attention_norm = nn.LayerNorm(channels)
            self.attention = Attention(channels, heads=heads, context_dim=context_dim)
        self.out = nn.Conv1d(channels, 2 * channels, 1)

    def forward(
        self, x: Tensor, mask: Tensor, cond: Tensor, time: Tensor, context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        # x (b, e, n); padded frames are zeroed so real frames never see them through the conv
        h = self.conv(x * mask) + self.cond(cond)
        scale, shift = rearrange(self.film(time), "b (two e) -> two b e 1", two=2)
        h = h * (1 + scale) + shift
        gate, filt = h.chunk(2, dim=1)
        z = torch.tanh(filt) * torch.sigmoid(gate)
        if self.attention is not None:
            zt = rearrange(z, "b e n -> b n e")
            zt = zt + self.attention(self.attention_norm(zt), context=context)
            z = rearrange(zt, "b n e -> b e n")
        residual, skip = self.out(z).chunk(2, dim=1)
        return (x + residual) / math.sqrt(2), skip


class WaveNetDenoiser(nn.Module):
    """``(x_t, t, cond, context, mask) -> x0``.

    Args:
        latent_dim: ``d`` of the latents.
        channels: residual channels.
        depth: number of layers; dilations cycle ``1, 2, ..., 2**(dilation_cycle-1)``.
        cond_dim: width of the frame condition.
        context_dim: width of the prompt query tokens.
        attention_every: cross-attend to the prompt in every k-th layer.
    """

    def __init__(
        self,
        *,
        latent_dim: int,
        channels: int,
        depth: int,
        cond_dim: int,
        context_dim: int,
        heads: int = 4,
        kernel_size: int = 3,
        dilation_cycle: int = 4,
        attention_every: int = 3,
    ):
        super().__init__()
        self.channels = channels
        self.time_mlp = nn.Sequential(
            nn.Linear(channels, 4 * channels), nn.SiLU(), nn.Linear(4 * channels, channels)
        )
        self.proj_in = nn.Conv1d(latent_dim, channels, 1)
        self.layers = nn.ModuleList(
            WaveNetLayer(
                channels,
                cond_dim,
                channels,
                2 ** (i % dilation_cycle),
                kernel_size,
                heads,
                context_dim if (i + 1) % attention_every == 0 else None,
            )
            for i in range(depth)
        )
        self.proj_out = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(channels, channels, 1),
            nn.ReLU(),
            nn.Conv1d(channels, latent_dim, 1),
        )

    def forward(self, x: Tensor, t: Tensor, cond: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        """x (b, n, d) noisy latents, t (b,) steps, cond (b, n, e), context (b, m, e), mask (b, n) -> x0."""
        m = rearrange(mask, "b n -> b 1 n").to(x.dtype)
        h = self.proj_in(rearrange(x, "b n d -> b d n")) * m
        c = rearrange(cond, "b n e -> b e n") * m
        time = self.time_mlp(timestep_embedding(t, self.channels))
        skips = 0.0
        for layer in self.layers:
            h, skip = layer(h, m, c, time, context)
            skips = skips + skip
        out = self.proj_out(skips / math.sqrt(len(self.layers))) * m
        return rearrange(out, "b d n -> b n d")
