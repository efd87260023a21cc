"""One configurable sequence backbone: Transformer, Conformer or U-shaped Conformer.

SoundStorm (Conformer), SpeechGPT-Gen's flow matcher (Transformer / Conformer / U-Conformer)
and NaturalSpeech 2's encoders share these blocks, so they live in core.
"""

# b batch | n frames | m context frames | d dim

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..config import Config, ConfigError
from .attention import RotaryEmbedding
from .blocks import AdaptiveLayerNorm, ConformerBlock, TransformerBlock

__all__ = ["Backbone", "BackboneConfig", "BackboneKind", "build_backbone"]


BackboneKind = Literal["transformer", "conformer", "uconformer"]


@dataclass(frozen=True, kw_only=True)
class BackboneConfig(Config):
    """A non-causal sequence model over (b, n, dim) with rotary self-attention.

    ``cond_dim > 0`` modulates every norm by a per-sample vector (diffusion/flow time,
    speaker); ``cross_attn_dim > 0`` adds cross-attention to a context sequence in every block.
    ``uconformer`` (SpeechGPT-Gen, Voicebox) joins the input of block i to the input of block
    depth-1-i through a skip connection; its depth must be even.
    """

    kind: BackboneKind = "conformer"
    dim: int = 256
    depth: int = 4
    heads: int = 8
    ff_mult: float = 4.0
    conv_kernel_size: int = 31
    dropout: float = 0.0
    attn_dropout: float = 0.0
    cond_dim: int = 0
    cross_attn_dim: int = 0

    def __post_init__(self):
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ConfigError(
                f"BackboneConfig: dim {self.dim} / heads {self.heads} must give an even head dim "
                "(rotary embeddings rotate pairs); change dim or heads"
            )
        if self.kind == "uconformer" and self.depth % 2:
            raise ConfigError(f"BackboneConfig: a uconformer needs an even depth, got {self.depth}")
        if self.depth < 1:
            raise ConfigError("BackboneConfig: depth must be >= 1")


class Backbone(nn.Module):
    """``forward(x, mask=None, cond=None, context=None, context_mask=None) -> (b, n, dim)``.

    ``mask`` (b, n) is True at real frames; padded frames are neither attended to nor
    convolved over, so outputs at real frames do not depend on padding.
    """

    def __init__(self, config: BackboneConfig):
        super().__init__()
        self.config = config
        c = config
        common: dict[str, Any] = dict(
            heads=c.heads,
            ff_mult=c.ff_mult,
            dropout=c.dropout,
            attn_dropout=c.attn_dropout,
            cond_dim=c.cond_dim,
            cross_attn_dim=c.cross_attn_dim,
        )
        if c.kind == "transformer":
            blocks: list[nn.Module] = [TransformerBlock(c.dim, **common) for _ in range(c.depth)]
        else:
            blocks = [
                ConformerBlock(c.dim, conv_kernel_size=c.conv_kernel_size, **common)
                for _ in range(c.depth)
            ]
        self.blocks = nn.ModuleList(blocks)
        self.skip_projections = nn.ModuleList(
            [nn.Linear(2 * c.dim, c.dim) for _ in range(c.depth // 2)]
            if c.kind == "uconformer"
            else []
        )
        self.rotary = RotaryEmbedding(c.dim // c.heads)
        self.final_norm = AdaptiveLayerNorm(c.dim, c.cond_dim)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        *,
        cond: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        c = self.config
        if x.ndim != 3 or x.shape[-1] != c.dim:
            raise ValueError(f"backbone input must be (b, n, {c.dim}), got {tuple(x.shape)}")
        if mask is not None:
            if mask.shape != x.shape[:2]:
                raise ValueError(
                    f"mask must be (b, n) = {tuple(x.shape[:2])}, got {tuple(mask.shape)}"
                )
            mask = mask.bool()  # no `mask.all()` shortcut: it would sync the host every pass
        if c.cross_attn_dim > 0 and context is None:
            raise ValueError(
                f"this backbone cross-attends: pass context=(b, m, {c.cross_attn_dim})"
            )
        rotary = self.rotary(x.shape[1], x.device)
        kwargs = dict(
            mask=mask, cond=cond, context=context, context_mask=context_mask, rotary=rotary
        )
        if c.kind == "uconformer":
            half = c.depth // 2
            skips = []
            for block in self.blocks[:half]:
                skips.append(x)
                x = block(x, **kwargs)
            for block, project in zip(self.blocks[half:], self.skip_projections):
                x = project(torch.cat((x, skips.pop()), dim=-1))
                x = block(x, **kwargs)
        else:
            for block in self.blocks:
                x = block(x, **kwargs)
        return self.final_norm(x, cond)


def build_backbone(config: BackboneConfig) -> Backbone:
    return Backbone(config)
