"""HuBERT (Hsu et al. 2021) as a feature extractor, in plain torch.

The module reproduces fairseq's ``HubertModel`` and ``transformers.HubertModel`` at
inference: a strided conv stack over the 16 kHz waveform (320 samples per frame), a layer
norm and projection to the transformer width, a convolutional positional embedding
(weight-normed grouped conv), and a transformer encoder that is post-LN for the base model
(``layer_norm_first=False``) and pre-LN for large / x-large (``layer_norm_first=True``).

Which layer ``output_layer = L`` returns (1-based, counting transformer blocks):

* fairseq ``model.extract_features(wav, output_layer=L)`` returns the output of block ``L``
  (it stops at ``tgt_layer = L - 1``, 0-based) with no final layer norm;
* ``transformers.HubertModel(..., output_hidden_states=True).hidden_states[L]`` is the same
  tensor for ``L < depth``; ``hidden_states[0]`` is the input of the first block. For
  ``L == depth`` of a pre-LN model the two differ: transformers applies ``encoder.layer_norm``
  to its last hidden state, fairseq does not. We follow fairseq there, and apply the final
  norm only when ``output_layer`` is None (the full model's output, as both libraries do).

Only blocks ``1..L`` run, so layer 9 of a 12-block model costs 9 blocks.

Padding: items of a batch are computed as if each ran alone. The group norm of the base
model's first conv layer normalizes over time, so its statistics are taken over each item's
valid samples only (fairseq and transformers include the padding, which makes a padded
item's features depend on what it was batched with); padded frames are zeroed before the
positional conv and masked out of attention. A clip of ``t`` samples gives
``n = conv_output_length(t)`` frames, ``floor((t - 400) / 320) + 1`` for the standard stack
(49 frames for one second).
"""

# b batch | t samples (time steps inside the conv stack) | e conv channels | s frames (50 Hz) | d model width | h heads

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import Config, ConfigError
from cadence.core.data import lengths_to_mask

__all__ = ["Hubert", "HubertConfig", "HubertOutput", "conv_output_length"]

BASE_CONV_LAYERS: tuple[tuple[int, int, int], ...] = (
    ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
)


@dataclass(frozen=True, kw_only=True)
class HubertConfig(Config):
    """Architecture of a HuBERT encoder (defaults: ``hubert_base_ls960``).

    Attributes:
        conv_layers: ``(channels, kernel, stride)`` of each waveform conv layer.
        conv_bias: conv layers carry a bias (False in HuBERT base/large).
        extractor_norm: ``"group"``: a group norm (one group per channel) after the first
            conv only (fairseq ``extractor_mode="default"``, base); ``"layer"``: a layer norm
            after every conv (``"layer_norm"``, large and x-large).
        feature_layer_norm: layer norm on the conv features before the projection.
        dim: transformer width.
        depth: transformer blocks.
        heads: attention heads.
        ff_dim: feed-forward hidden width.
        pos_conv_kernel: kernel of the convolutional positional embedding.
        pos_conv_groups: groups of that conv.
        layer_norm_first: pre-LN blocks and a final layer norm (large); False = post-LN
            blocks after an input layer norm (base).
        layer_norm_eps: epsilon of every layer/group norm.
        output_layer: transformer block whose output is returned (1-based; 0 = the input of
            the first block; None = the full model with its final norm).
        normalize_waveform: zero-mean unit-variance each clip first (fairseq task flag
            ``normalize``; False for HuBERT base, True for large / x-large).
        sample_rate: the rate the model was trained at.
    """

    conv_layers: tuple[tuple[int, int, int], ...] = BASE_CONV_LAYERS
    conv_bias: bool = False
    extractor_norm: Literal["group", "layer"] = "group"
    feature_layer_norm: bool = True
    dim: int = 768
    depth: int = 12
    heads: int = 12
    ff_dim: int = 3072
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    layer_norm_first: bool = False
    layer_norm_eps: float = 1e-5
    output_layer: int | None = 9
    normalize_waveform: bool = False
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ConfigError(
                f"HubertConfig: dim={self.dim} is not divisible by heads={self.heads}"
            )
        if self.dim % self.pos_conv_groups:
            raise ConfigError(
                f"HubertConfig: dim={self.dim} is not divisible by pos_conv_groups={self.pos_conv_groups}"
            )
        if self.output_layer is not None and not 0 <= self.output_layer <= self.depth:
            raise ConfigError(
                f"HubertConfig: output_layer={self.output_layer} must lie in [0, depth={self.depth}] "
                "(1-based block index; None for the full model)"
            )
        if not self.conv_layers:
            raise ConfigError("HubertConfig: conv_layers is empty")

    @property
    def hop_length(self) -> int:
        """Samples per output frame (the product of the conv strides: 320)."""
        return math.prod(stride for _, _, stride in self.conv_layers)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def receptive_field(self) -> int:
        """Samples seen by one frame (400 for the standard stack)."""
        field, jump = 1, 1
        for _, kernel, stride in self.conv_layers:
            field += (kernel - 1) * jump
            jump *= stride
        return field

    @classmethod
    def base(cls, **changes) -> HubertConfig:
        """HuBERT base (fairseq ``hubert_base_ls960``, HF ``facebook/hubert-base-ls960``)."""
        return cls(**changes)

    @classmethod
    def large(cls, **changes) -> HubertConfig:
        """HuBERT large (``hubert_large_ll60k``): pre-LN, layer-norm conv stack, normalized input."""
        values: dict[str, Any] = dict(
            extractor_norm="layer",
            conv_bias=True,
            dim=1024,
            depth=24,
            heads=16,
            ff_dim=4096,
            layer_norm_first=True,
            normalize_waveform=True,
        )
        values.update(changes)
        return cls(**values)

    @classmethod
    def tiny(cls, **changes) -> HubertConfig:
        """A few-thousand-parameter model with the real strides (320 samples per frame)."""
        values: dict[str, Any] = dict(
            conv_layers=((16, 10, 5),) + ((16, 3, 2),) * 4 + ((16, 2, 2),) * 2,
            dim=32,
            depth=3,
            heads=4,
            ff_dim=64,
            pos_conv_kernel=16,
            pos_conv_groups=4,
            output_layer=2,
        )
        values.update(changes)
        return cls(**values)


def conv_output_length(config: HubertConfig, samples: Tensor | int) -> Tensor | int:
    """Frames the conv stack makes of ``samples`` (0 for clips shorter than one window)."""
    length = samples
    for _, kernel, stride in config.conv_layers:
        if isinstance(length, Tensor):
            length = torch.div(length - kernel, stride, rounding_mode="floor").add(1).clamp(min=0)
        else:
            length = max((length - kernel) // stride + 1, 0)
    return length


@dataclass
class HubertOutput:
    """Features of a batch.

    Attributes:
        features: ``(b, s, d)``; padded frames are zero.
        mask: ``(b, s)`` bool, True = a real frame.
        lengths: ``(b,)`` real frames per item.
    """

    features: Tensor
    mask: Tensor
    lengths: Tensor


class ConvLayer(nn.Module):
    """Conv1d -> optional norm -> GELU (fairseq ``ConvFeatureExtractionModel`` block)."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        kernel: int,
        stride: int,
        *,
        bias: bool,
        norm: str | None,
        eps: float,
    ):
        super().__init__()
        self.stride, self.kernel, self.eps = stride, kernel, eps
        self.conv = nn.Conv1d(dim_in, dim_out, kernel, stride=stride, bias=bias)
        self.norm_kind = norm
        self.norm: Any = None  # nn.LayerNorm or nn.GroupNorm, as norm_kind says
        if norm == "layer":
            self.norm = nn.LayerNorm(dim_out, eps=eps)
        elif norm == "group":
            # one group per channel: a per-channel normalization over time
            self.norm = nn.GroupNorm(dim_out, dim_out, eps=eps, affine=True)

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """``(b, e, t)`` -> ``(b, e', t')``; ``lengths`` are the valid output steps per item."""
        x = self.conv(x)
        if self.norm_kind == "group":
            if lengths is None or bool((lengths == x.shape[-1]).all()):
                x = self.norm(x)
            else:
                x = self._masked_group_norm(x, lengths)
        elif self.norm_kind == "layer":
            x = rearrange(self.norm(rearrange(x, "b e t -> b t e")), "b t e -> b e t")
        return F.gelu(x)

    def _masked_group_norm(self, x: Tensor, lengths: Tensor) -> Tensor:
        # Statistics over each item's own valid steps, so padding never changes real frames.
        keep = lengths_to_mask(lengths, x.shape[-1])[:, None].to(x.dtype)  # (b, 1, t)
        count = lengths.clamp(min=1).to(x.dtype)[:, None, None]
        mean = (x * keep).sum(-1, keepdim=True) / count
        var = ((x - mean) * keep).square().sum(-1, keepdim=True) / count
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.norm.weight[:, None] + self.norm.bias[:, None]


class PositionalConv(nn.Module):
    """Weight-normed grouped conv over frames, trimmed to 'same' length, then GELU.

    ``weight = weight_g * weight_v / ||weight_v||`` with the norm over every axis but the
    kernel axis (``torch.nn.utils.weight_norm(conv, dim=2)``, as fairseq and transformers).
    """

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.kernel, self.groups = kernel, groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.empty(dim, dim // groups, kernel))
        self.bias = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.weight_v, std=math.sqrt(4.0 / (kernel * dim)))

    def weight(self) -> Tensor:
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=(0, 1), keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        """``(b, s, d)`` -> ``(b, s, d)``."""
        x = rearrange(x, "b s d -> b d s")
        y = F.conv1d(x, self.weight(), self.bias, padding=self.kernel // 2, groups=self.groups)
        if self.kernel % 2 == 0:  # fairseq SamePad: an even kernel makes one frame too many
            y = y[..., :-1]
        return rearrange(F.gelu(y), "b d s -> b s d")


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, attn_mask: Tensor | None) -> Tensor:
        q, k, v = (
            rearrange(proj(x), "b s (h d) -> b h s d", h=self.heads)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(rearrange(out, "b h s d -> b s (h d)"))


class EncoderLayer(nn.Module):
    """fairseq ``TransformerSentenceEncoderLayer``: post-LN or pre-LN, GELU feed-forward."""

    def __init__(self, config: HubertConfig):
        super().__init__()
        self.layer_norm_first = config.layer_norm_first
        self.self_attn = Attention(config.dim, config.heads)
        self.self_attn_layer_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(config.dim, config.ff_dim)
        self.fc2 = nn.Linear(config.ff_dim, config.dim)
        self.final_layer_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)

    def forward(self, x: Tensor, attn_mask: Tensor | None) -> Tensor:
        if self.layer_norm_first:
            x = x + self.self_attn(self.self_attn_layer_norm(x), attn_mask)
            return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x + self.self_attn(x, attn_mask))
        return self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x))))


class Hubert(PretrainedMixin, nn.Module):
    """HuBERT encoder returning one layer's features at 50 Hz.

    Load released weights with :func:`cadence.semantic.load_hubert` (fairseq ``.pt``, a
    Hugging Face directory, or a Cadence checkpoint).

    Example:
        >>> model = Hubert(HubertConfig.tiny()).eval()
        >>> out = model(torch.zeros(2, 16000), lengths=torch.tensor([16000, 8000]))
        >>> out.features.shape, out.lengths.tolist()
        (torch.Size([2, 49, 32]), [49, 24])
    """

    config_class = HubertConfig

    def __init__(self, config: HubertConfig):
        super().__init__()
        self.config = config
        layers, dim_in = [], 1
        for i, (channels, kernel, stride) in enumerate(config.conv_layers):
            norm = "layer" if config.extractor_norm == "layer" else ("group" if i == 0 else None)
            layers.append(
                ConvLayer(
                    dim_in,
                    channels,
                    kernel,
                    stride,
                    bias=config.conv_bias,
                    norm=norm,
                    eps=config.layer_norm_eps,
                )
            )
            dim_in = channels
        self.conv_layers = nn.ModuleList(layers)
        self.feature_norm = (
            nn.LayerNorm(dim_in, eps=config.layer_norm_eps)
            if config.feature_layer_norm
            else nn.Identity()
        )
        self.feature_proj = nn.Linear(dim_in, config.dim)
        self.pos_conv = PositionalConv(config.dim, config.pos_conv_kernel, config.pos_conv_groups)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.depth))
        # post-LN: the norm of the block input; pre-LN: the final norm
        self.layer_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)

    @property
    def dim(self) -> int:
        return self.config.dim

    def forward(
        self,
        waveform: Tensor,
        lengths: Tensor | None = None,
        *,
        output_layer: int | Literal["config"] | None = "config",
    ) -> HubertOutput:
        """Features of 16 kHz waveforms.

        Args:
            waveform: ``(b, t)`` (or ``(b, 1, t)``) float audio at ``config.sample_rate``.
            lengths: ``(b,)`` valid samples per item (default: all ``t``).
            output_layer: override ``config.output_layer`` for this call.

        Returns:
            :class:`HubertOutput` with features ``(b, s, d)`` and their mask.
        """
        if waveform.ndim == 3:
            if waveform.shape[1] != 1:
                raise ValueError(
                    f"Hubert takes mono audio (b, t) or (b, 1, t), got {tuple(waveform.shape)}"
                )
            waveform = waveform[:, 0]
        if waveform.ndim != 2:
            raise ValueError(f"Hubert takes audio (b, t), got shape {tuple(waveform.shape)}")
        layer = self.config.output_layer if output_layer == "config" else output_layer
        if layer is not None and not 0 <= layer <= self.config.depth:
            raise ValueError(f"output_layer={layer} must lie in [0, {self.config.depth}]")
        b, t = waveform.shape
        full = lengths is None or bool((lengths == t).all())
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=waveform.device)
        lengths = lengths.to(device=waveform.device, dtype=torch.long)
        keep_samples = lengths_to_mask(lengths, t)
        x = waveform
        if self.config.normalize_waveform:
            # fairseq: F.layer_norm(wav, wav.shape) per clip, over its valid samples only
            count = lengths.clamp(min=1)[:, None].to(x.dtype)
            mean = (x * keep_samples).sum(-1, keepdim=True) / count
            var = ((x - mean) * keep_samples).square().sum(-1, keepdim=True) / count
            x = (x - mean) * torch.rsqrt(var + 1e-5)
        # Zero the padding so every conv window that touches it sees what a lone clip would
        # (its real windows never reach it; this only keeps padded frames finite and tidy).
        x = (x * keep_samples)[:, None]
        step_lengths = lengths
        for conv in cast(list[ConvLayer], self.conv_layers):
            step_lengths = (
                torch.div(step_lengths - conv.kernel, conv.stride, rounding_mode="floor")
                .add(1)
                .clamp(min=0)
            )
            x = conv(x, None if full else step_lengths)
        frame_lengths = step_lengths
        n = x.shape[-1]
        mask = lengths_to_mask(frame_lengths, n)  # (b, s)
        x = self.feature_proj(self.feature_norm(rearrange(x, "b e s -> b s e")))
        if not full:
            x = x * mask[..., None]
        x = x + self.pos_conv(x)
        if not self.config.layer_norm_first:
            x = self.layer_norm(x)
        # (b, 1, 1, s) True = attend; an item with no frame attends everywhere (and is zeroed
        # below) rather than producing NaN from an all-masked softmax.
        attn_mask = None if full else (mask | (frame_lengths == 0)[:, None])[:, None, None, :]
        stop = self.config.depth if layer is None else layer
        for block in self.layers[:stop]:
            x = block(x, attn_mask)
        if layer is None and self.config.layer_norm_first:
            x = self.layer_norm(x)
        if not full:
            x = x * mask[..., None]
        return HubertOutput(features=x, mask=mask, lengths=frame_lengths)
