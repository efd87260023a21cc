"""The prior side of NaturalSpeech 2: prompt query tokens, duration/pitch predictors, length regulation.

NaturalSpeech 2 sec. 3.3-3.4: the prompt encoder's hidden sequence is summarised by a fixed
number of learned query tokens (attention with the queries as Q and the prompt as K/V);
the duration and pitch predictors and the diffusion denoiser attend to those tokens, so the
prompt's length never changes their cost and the prompt's speaker and prosody reach every
module.
"""

# b batch | l phonemes | n frames | p prompt frames | m query tokens | d model width

from __future__ import annotations

import torch
from einops import repeat
from torch import Tensor, nn

from cadence.core.data import lengths_to_mask
from cadence.core.nn import Attention, BackboneConfig, build_backbone

__all__ = ["PromptQueries", "SequencePredictor", "length_regulate"]


class PromptQueries(nn.Module):
    """``num_queries`` learned tokens attend to the ``(b, p, d)`` prompt hidden -> ``(b, m, d)``."""

    def __init__(self, dim: int, num_queries: int, heads: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.attention = Attention(dim, heads=heads, context_dim=dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, prompt: Tensor, prompt_mask: Tensor) -> Tensor:
        q = repeat(self.queries, "m d -> b m d", b=prompt.shape[0])
        return self.norm(q + self.attention(q, context=prompt, context_mask=prompt_mask))


class SequencePredictor(nn.Module):
    """A Transformer over ``(b, l | n, d)`` cross-attending to ``(b, m, d)`` prompt tokens -> ``(b, l | n, out)``.

    Used as the duration predictor (phoneme level, one output: log duration) and the pitch
    predictor (frame level, two outputs: normalised log-F0 and a voicing logit).
    """

    def __init__(self, dim: int, depth: int, heads: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = build_backbone(
            BackboneConfig(
                kind="transformer",
                dim=dim,
                depth=depth,
                heads=heads,
                ff_mult=2.0,
                dropout=dropout,
                cross_attn_dim=dim,
            )
        )
        self.head = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor, mask: Tensor, prompt_tokens: Tensor) -> Tensor:
        return self.head(self.backbone(x, mask, context=prompt_tokens))


def length_regulate(
    hidden: Tensor, durations: Tensor, num_frames: int | None = None
) -> tuple[Tensor, Tensor]:
    """Repeat phoneme ``i`` of ``(b, l, d)`` ``durations[:, i]`` times -> ``(b, n, d)`` and a ``(b, n)`` mask.

    Args:
        hidden: phoneme-level hidden states.
        durations: ``(b, l)`` non-negative integer frame counts (0 on padding).
        num_frames: pad / trim to this many frames (default: the longest total).
    """
    durations = durations.long().clamp(min=0)
    totals = durations.sum(-1)
    n = int(totals.max()) if num_frames is None else num_frames
    # frame j belongs to the phoneme whose cumulative end first exceeds j
    ends = durations.cumsum(-1)  # (b, l)
    frames = torch.arange(n, device=hidden.device)
    index = torch.searchsorted(
        ends, repeat(frames, "n -> b n", b=hidden.shape[0]).contiguous(), right=True
    )
    index = index.clamp(max=hidden.shape[1] - 1)
    out = torch.gather(hidden, 1, repeat(index, "b n -> b n d", d=hidden.shape[-1]))
    mask = lengths_to_mask(totals, n)
    return out * mask[..., None], mask
