"""SEANet encoder and decoder (Tagliasacchi et al. 2020), as used by SoundStream and EnCodec.

One :class:`SEANetConfig` describes both halves; the decoder mirrors the encoder. The module
layout follows EnCodec / audiocraft, so official EnCodec weights map onto these modules by
renaming keys (see :mod:`cadence.codec.encodec_loading`, the only place that knows the
official option names). Causal models also run stateful, chunk by chunk
(:mod:`cadence.codec.streaming`).
"""

# b batch | c audio channels | t samples | n frames (ceil(t / hop_length)) | d latent dim

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cadence.core.config import Config, ConfigError

from .conv import ConvNorm, PadMode, StreamableConv1d, StreamableConvTranspose1d, StreamableLSTM

__all__ = [
    "SEANetConfig",
    "SEANetDecoder",
    "SEANetEncoder",
    "SEANetResnetBlock",
    "stream_init",
    "stream_step",
]


@dataclass(frozen=True, kw_only=True)
class SEANetConfig(Config):
    """The SEANet autoencoder of a codec: the encoder, and the decoder that mirrors it.

    Attributes:
        channels: audio channels.
        latent_dim: width ``d`` of a latent frame.
        strides: downsampling strides in encoder order (the first is applied first); their
            product is the hop length. The decoder upsamples by them in reverse order.
        n_filters: width of the first conv; doubled at each downsampling.
        n_residual_layers: residual units per resolution (dilations ``dilation_base ** j``).
        activation: a torch.nn activation name (``"ELU"`` gets ``alpha=1.0``).
        norm: ``"weight_norm"``, ``"time_group_norm"`` (non-causal only) or ``"none"``.
        pad_mode: ``"reflect"`` (EnCodec), ``"constant"`` (zeros) or ``"replicate"``.
        kernel_size: kernel of the first conv.
        residual_kernel_size: kernel of the dilated conv in residual units.
        last_kernel_size: kernel of the last conv.
        dilation_base: dilation growth across residual units.
        causal: all padding on the left, so the model can stream.
        true_skip: identity shortcuts in residual units (else 1x1 convs, as in EnCodec).
        compress: residual hidden width divisor (Demucs v3).
        lstm: LSTM layers at the bottleneck (0 disables them).
        trim_right_ratio: share of a causal transposed conv's padding trimmed on the right
            (the rest on the left); 1.0 for non-causal models.
    """

    channels: int = 1
    latent_dim: int = 128
    strides: tuple[int, ...] = (2, 4, 5, 8)
    n_filters: int = 32
    n_residual_layers: int = 1
    activation: str = "ELU"
    norm: ConvNorm = "weight_norm"
    pad_mode: PadMode = "reflect"
    kernel_size: int = 7
    residual_kernel_size: int = 3
    last_kernel_size: int = 7
    dilation_base: int = 2
    causal: bool = False
    true_skip: bool = True
    compress: int = 2
    lstm: int = 2
    trim_right_ratio: float = 1.0

    def __post_init__(self) -> None:
        positive = (
            "channels",
            "latent_dim",
            "n_filters",
            "kernel_size",
            "residual_kernel_size",
            "last_kernel_size",
            "dilation_base",
            "compress",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"SEANetConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_residual_layers < 0 or self.lstm < 0:
            raise ConfigError("SEANetConfig: n_residual_layers and lstm must be >= 0")
        if not self.strides or any(s < 1 for s in self.strides):
            raise ConfigError(f"SEANetConfig.strides must be positive integers, got {self.strides}")
        if self.causal and self.norm == "time_group_norm":
            raise ConfigError(
                "time_group_norm looks at the whole clip; a causal model needs weight_norm or none"
            )
        if not 0.0 <= self.trim_right_ratio <= 1.0:
            raise ConfigError(
                f"SEANetConfig.trim_right_ratio must be in [0, 1], got {self.trim_right_ratio}"
            )
        if not self.causal and self.trim_right_ratio != 1.0:
            raise ConfigError("trim_right_ratio != 1.0 only makes sense for a causal model")
        _activation_class(self.activation)

    @property
    def hop_length(self) -> int:
        """Samples per latent frame: the product of the strides."""
        return math.prod(self.strides)


def _activation_class(name: str) -> type[nn.Module]:
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(
            f"unknown activation {name!r}; give the name of a torch.nn module such as 'ELU'"
        )
    return cls


def _activation(name: str) -> nn.Module:
    return _activation_class(name)(**({"alpha": 1.0} if name == "ELU" else {}))


class SEANetResnetBlock(nn.Module):
    """Residual unit: ``shortcut(x) + [act, conv(k, dilation), act, conv(1)](x)``.

    The hidden width is ``dim // compress`` (Demucs v3); ``true_skip=False`` makes the
    shortcut a 1x1 conv, as in the EnCodec checkpoints.
    """

    def __init__(
        self,
        dim: int,
        kernel_sizes: Sequence[int] = (3, 1),
        dilations: Sequence[int] = (1, 1),
        activation: str = "ELU",
        norm: ConvNorm = "weight_norm",
        causal: bool = False,
        pad_mode: PadMode = "reflect",
        compress: int = 2,
        true_skip: bool = True,
    ):
        super().__init__()
        if len(kernel_sizes) != len(dilations):
            raise ValueError("kernel_sizes and dilations must have the same length")
        hidden = dim // compress
        block: list[nn.Module] = []
        for i, (kernel_size, dilation) in enumerate(zip(kernel_sizes, dilations)):
            in_ch = dim if i == 0 else hidden
            out_ch = dim if i == len(kernel_sizes) - 1 else hidden
            block += [
                _activation(activation),
                StreamableConv1d(
                    in_ch,
                    out_ch,
                    kernel_size,
                    dilation=dilation,
                    norm=norm,
                    causal=causal,
                    pad_mode=pad_mode,
                ),
            ]
        self.block = nn.Sequential(*block)
        self.shortcut: nn.Module = (
            nn.Identity()
            if true_skip
            else StreamableConv1d(dim, dim, 1, norm=norm, causal=causal, pad_mode=pad_mode)
        )

    def forward(self, x: Tensor) -> Tensor:
        # The block first: its intermediates are freed before the shortcut output exists,
        # which lowers peak memory by one activation.
        y = self.block(x)
        return self.shortcut(x) + y


def _conv_options(config: SEANetConfig) -> dict[str, Any]:
    return {"norm": config.norm, "causal": config.causal, "pad_mode": config.pad_mode}


def _residual_units(config: SEANetConfig, dim: int) -> list[nn.Module]:
    """The ``n_residual_layers`` dilated residual units of one resolution."""
    return [
        SEANetResnetBlock(
            dim,
            kernel_sizes=(config.residual_kernel_size, 1),
            dilations=(config.dilation_base**j, 1),
            activation=config.activation,
            compress=config.compress,
            true_skip=config.true_skip,
            **_conv_options(config),
        )
        for j in range(config.n_residual_layers)
    ]


class _SEANet(nn.Module):
    """What the encoder and decoder share: their config and its rates."""

    def __init__(self, config: SEANetConfig):
        super().__init__()
        self.config = config

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def causal(self) -> bool:
        return self.config.causal


class SEANetEncoder(_SEANet):
    """Waveform ``(b, c, t)`` -> latents ``(b, d, ceil(t / hop_length))``.

    The widths double at each of ``config.strides`` (downsampling in that order), residual
    units before each downsampling, then the LSTM and a last conv to ``latent_dim``.
    """

    def __init__(self, config: SEANetConfig):
        super().__init__(config)
        c = config
        conv_kw = _conv_options(c)
        width = c.n_filters
        layers: list[nn.Module] = [StreamableConv1d(c.channels, width, c.kernel_size, **conv_kw)]
        for stride in c.strides:
            layers += _residual_units(c, width)
            layers += [
                _activation(c.activation),
                StreamableConv1d(
                    width, width * 2, kernel_size=2 * stride, stride=stride, **conv_kw
                ),
            ]
            width *= 2
        if c.lstm:
            layers.append(StreamableLSTM(width, num_layers=c.lstm))
        layers += [
            _activation(c.activation),
            StreamableConv1d(width, c.latent_dim, c.last_kernel_size, **conv_kw),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``(b, c, t) -> (b, d, ceil(t / hop_length))``."""
        return self.model(x)


class SEANetDecoder(_SEANet):
    """Latents ``(b, d, n)`` -> waveform ``(b, c, n * hop_length)``: the encoder mirrored.

    Upsamples by ``config.strides`` in reverse order, each transposed conv followed by the
    residual units of that resolution.
    """

    def __init__(self, config: SEANetConfig):
        super().__init__(config)
        c = config
        conv_kw = _conv_options(c)
        width = c.n_filters * 2 ** len(c.strides)
        layers: list[nn.Module] = [StreamableConv1d(c.latent_dim, width, c.kernel_size, **conv_kw)]
        if c.lstm:
            layers.append(StreamableLSTM(width, num_layers=c.lstm))
        for stride in reversed(c.strides):
            layers += [
                _activation(c.activation),
                StreamableConvTranspose1d(
                    width,
                    width // 2,
                    kernel_size=2 * stride,
                    stride=stride,
                    norm=c.norm,
                    causal=c.causal,
                    trim_right_ratio=c.trim_right_ratio,
                ),
            ]
            layers += _residual_units(c, width // 2)
            width //= 2
        layers += [
            _activation(c.activation),
            StreamableConv1d(c.n_filters, c.channels, c.last_kernel_size, **conv_kw),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """``(b, d, n) -> (b, c, n * hop_length)``."""
        return self.model(z)


# -- stateful execution -----------------------------------------------------------------------


@dataclass
class _ResidualState:
    shortcut: Any
    block: Any
    pending: Tensor | None = None  # shortcut outputs waiting for the (later) block outputs


def stream_init(module: nn.Module) -> Any:
    """The initial streaming state of a SEANet module tree (raises for non-causal layers)."""
    if isinstance(module, (SEANetEncoder, SEANetDecoder)):
        return stream_init(module.model)
    if isinstance(module, nn.Sequential):
        return [stream_init(m) for m in module]
    if isinstance(module, SEANetResnetBlock):
        return _ResidualState(stream_init(module.shortcut), stream_init(module.block))
    if hasattr(module, "stream_init"):
        return module.stream_init()  # type: ignore[operator]  # a streaming layer's method
    if _is_pointwise(module):
        return None
    raise TypeError(f"{type(module).__name__} cannot run in streaming mode")


def stream_step(module: nn.Module, x: Tensor, state: Any, final: bool = False) -> Tensor:
    """Run ``module`` on the next chunk ``x``, updating ``state`` in place.

    Returns the outputs that are final so far (possibly none); with ``final=True`` the input
    is known to end here and everything left is returned. Chunk outputs concatenate to
    ``module(whole_input)``.
    """
    if isinstance(module, (SEANetEncoder, SEANetDecoder)):
        return stream_step(module.model, x, state, final)
    if isinstance(module, nn.Sequential):
        for layer, layer_state in zip(module, state):
            x = stream_step(layer, x, layer_state, final)
        return x
    if isinstance(module, SEANetResnetBlock):
        skip = stream_step(module.shortcut, x, state.shortcut, final)
        y = stream_step(module.block, x, state.block, final)
        # Convs with reflect padding start late (they wait for enough samples to mirror), so
        # the block can lag the shortcut: hold shortcut outputs until the block catches up.
        if state.pending is not None:
            skip = torch.cat([state.pending, skip], dim=-1)
        n = y.shape[-1]
        state.pending = skip[..., n:] if skip.shape[-1] > n else None
        return skip[..., :n] + y
    if hasattr(module, "stream_step"):
        return module.stream_step(x, state, final)  # type: ignore[operator]  # as above
    return module(x)


def _is_pointwise(module: nn.Module) -> bool:
    # Activations act on each time step alone (torch.nn.modules.activation holds them all).
    return (
        isinstance(module, nn.Identity) or type(module).__module__ == "torch.nn.modules.activation"
    )
