"""Transformer and Conformer blocks with optional adaptive-norm and cross-attention conditioning."""

# b batch | n frames | m context frames | d dim | e condition dim

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .attention import Attention

__all__ = [
    "AdaptiveLayerNorm",
    "ConformerBlock",
    "ConvolutionModule",
    "FeedForward",
    "TransformerBlock",
]


class AdaptiveLayerNorm(nn.Module):
    """LayerNorm whose scale and shift are also predicted from a per-sample condition.

    With ``cond_dim == 0`` it is a plain LayerNorm. The condition projection starts at zero,
    so a freshly built conditioned block behaves like an unconditioned one (as in DiT's adaLN).
    """

    def __init__(self, dim: int, cond_dim: int = 0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.to_scale_shift = None
        if cond_dim > 0:
            self.to_scale_shift = nn.Linear(cond_dim, 2 * dim)
            nn.init.zeros_(self.to_scale_shift.weight)
            nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        x = self.norm(x)
        if self.to_scale_shift is None:
            return x
        if cond is None:
            raise ValueError("this block was built with cond_dim > 0: pass cond=(b, cond_dim)")
        scale, shift = rearrange(self.to_scale_shift(cond), "b (two d) -> two b 1 d", two=2)
        return x * (1 + scale) + shift


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, mult: float = 4.0, dropout: float = 0.0, activation: str = "gelu"):
        hidden = int(dim * mult)
        act = {"gelu": nn.GELU, "silu": nn.SiLU}[activation]
        super().__init__(
            nn.Linear(dim, hidden),
            act(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )


class ConvolutionModule(nn.Module):
    """The Conformer convolution module: pointwise + GLU, depthwise, norm, SiLU, pointwise.

    Padded frames are zeroed before the depthwise convolution so real frames never see them.
    The paper's BatchNorm is replaced by a per-frame LayerNorm: BatchNorm statistics would mix
    padding and other batch items, making outputs depend on how a batch was assembled.
    """

    def __init__(self, dim: int, kernel_size: int = 31, dropout: float = 0.0):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"conv_kernel_size must be odd for 'same' padding, got {kernel_size}")
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = F.glu(self.pointwise_in(x), dim=-1)
        if mask is not None:
            x = x.masked_fill(~mask[..., None], 0.0)
        x = self.depthwise(rearrange(x, "b n d -> b d n"))
        x = F.silu(self.norm(rearrange(x, "b d n -> b n d")))
        return self.dropout(self.pointwise_out(x))


class TransformerBlock(nn.Module):
    """Pre-norm self-attention (+ optional cross-attention) + feed-forward."""

    def __init__(
        self,
        dim: int,
        *,
        heads: int,
        ff_mult: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        cond_dim: int = 0,
        cross_attn_dim: int = 0,
    ):
        super().__init__()
        self.attn_norm = AdaptiveLayerNorm(dim, cond_dim)
        self.attn = Attention(dim, heads=heads, dropout=attn_dropout)
        self.cross_norm = self.cross_attn = None
        if cross_attn_dim > 0:
            self.cross_norm = AdaptiveLayerNorm(dim, cond_dim)
            self.cross_attn = Attention(
                dim, heads=heads, context_dim=cross_attn_dim, dropout=attn_dropout
            )
        self.ff_norm = AdaptiveLayerNorm(dim, cond_dim)
        self.ff = FeedForward(dim, ff_mult, dropout, activation="gelu")
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, *, mask=None, cond=None, context=None, context_mask=None, rotary=None):
        x = x + self.dropout(self.attn(self.attn_norm(x, cond), mask=mask, rotary=rotary))
        if self.cross_attn is not None:
            x = x + self.dropout(
                self.cross_attn(
                    self.cross_norm(x, cond), context=context, context_mask=context_mask
                )
            )
        return x + self.ff(self.ff_norm(x, cond))


class ConformerBlock(nn.Module):
    """Gulati et al. 2020: half-step FF, self-attention, [cross-attention], convolution, half-step FF, LN."""

    def __init__(
        self,
        dim: int,
        *,
        heads: int,
        ff_mult: float = 4.0,
        conv_kernel_size: int = 31,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        cond_dim: int = 0,
        cross_attn_dim: int = 0,
    ):
        super().__init__()
        self.ff1_norm = AdaptiveLayerNorm(dim, cond_dim)
        self.ff1 = FeedForward(dim, ff_mult, dropout, activation="silu")
        self.attn_norm = AdaptiveLayerNorm(dim, cond_dim)
        self.attn = Attention(dim, heads=heads, dropout=attn_dropout)
        self.cross_norm = self.cross_attn = None
        if cross_attn_dim > 0:
            self.cross_norm = AdaptiveLayerNorm(dim, cond_dim)
            self.cross_attn = Attention(
                dim, heads=heads, context_dim=cross_attn_dim, dropout=attn_dropout
            )
        self.conv_norm = AdaptiveLayerNorm(dim, cond_dim)
        self.conv = ConvolutionModule(dim, conv_kernel_size, dropout)
        self.ff2_norm = AdaptiveLayerNorm(dim, cond_dim)
        self.ff2 = FeedForward(dim, ff_mult, dropout, activation="silu")
        self.out_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, *, mask=None, cond=None, context=None, context_mask=None, rotary=None):
        x = x + 0.5 * self.ff1(self.ff1_norm(x, cond))
        x = x + self.dropout(self.attn(self.attn_norm(x, cond), mask=mask, rotary=rotary))
        if self.cross_attn is not None:
            x = x + self.dropout(
                self.cross_attn(
                    self.cross_norm(x, cond), context=context, context_mask=context_mask
                )
            )
        x = x + self.conv(self.conv_norm(x, cond), mask)
        x = x + 0.5 * self.ff2(self.ff2_norm(x, cond))
        return self.out_norm(x)
