# b batch | c audio channels | t samples | d latent dimension | n frames (t / hop_length)
"""SEANet encoder and decoder (Tagliasacchi et al. 2020), as used by SoundStream and EnCodec.

Argument names, defaults and module layout follow EnCodec / audiocraft, so official EnCodec
weights map onto these modules by renaming keys (see :mod:`cadence.codec.encodec_loading`).
``ratios`` are given in decoder order (upsampling first by ``ratios[0]``); the encoder uses
them reversed. Causal models also run stateful, chunk by chunk (:mod:`cadence.codec.streaming`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .conv import ConvNorm, PadMode, StreamableConv1d, StreamableConvTranspose1d, StreamableLSTM

__all__ = ["SEANetDecoder", "SEANetEncoder", "SEANetResnetBlock", "stream_init", "stream_step"]


def _activation(name: str, params: dict[str, Any] | None) -> nn.Module:
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"unknown activation {name!r}; give the name of a torch.nn module such as 'ELU'")
    return cls(**(params if params is not None else ({"alpha": 1.0} if name == "ELU" else {})))


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
        activation_params: dict[str, Any] | None = None,
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
                _activation(activation, activation_params),
                StreamableConv1d(
                    in_ch, out_ch, kernel_size, dilation=dilation, norm=norm, causal=causal, pad_mode=pad_mode
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


class SEANetEncoder(nn.Module):
    """Waveform ``(b, c, t)`` -> latents ``(b, dimension, ceil(t / hop_length))``.

    Args:
        channels: audio channels.
        dimension: latent width ``d``.
        n_filters: width of the first conv; doubled at each downsampling.
        n_residual_layers: residual units per resolution (dilations ``dilation_base ** j``).
        ratios: strides in decoder order; the encoder downsamples by ``reversed(ratios)``.
        activation: a torch.nn activation name (``activation_params`` its kwargs).
        norm: ``"weight_norm"``, ``"time_group_norm"`` (non-causal only) or ``"none"``.
        kernel_size: kernel of the first conv.
        residual_kernel_size: kernel of the dilated conv in residual units.
        last_kernel_size: kernel of the last conv.
        dilation_base: dilation growth across residual units.
        causal: all padding on the left, so the model can stream.
        pad_mode: ``"reflect"`` (EnCodec), ``"constant"`` (zeros) or ``"replicate"``.
        true_skip: identity shortcuts in residual units (else 1x1 convs).
        compress: residual hidden width divisor.
        lstm: LSTM layers before the last conv (0 disables it).
    """

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        n_residual_layers: int = 1,
        ratios: Sequence[int] = (8, 5, 4, 2),
        activation: str = "ELU",
        activation_params: dict[str, Any] | None = None,
        norm: ConvNorm = "weight_norm",
        kernel_size: int = 7,
        residual_kernel_size: int = 3,
        last_kernel_size: int = 7,
        dilation_base: int = 2,
        causal: bool = False,
        pad_mode: PadMode = "reflect",
        true_skip: bool = True,
        compress: int = 2,
        lstm: int = 2,
    ):
        super().__init__()
        self.channels = channels
        self.dimension = dimension
        self.ratios = list(reversed(ratios))
        self.hop_length = math.prod(self.ratios)
        self.causal = causal
        conv_kw: dict[str, Any] = {"norm": norm, "causal": causal, "pad_mode": pad_mode}
        mult = 1
        layers: list[nn.Module] = [StreamableConv1d(channels, n_filters, kernel_size, **conv_kw)]
        for ratio in self.ratios:
            for j in range(n_residual_layers):
                layers.append(
                    SEANetResnetBlock(
                        mult * n_filters,
                        kernel_sizes=(residual_kernel_size, 1),
                        dilations=(dilation_base**j, 1),
                        activation=activation,
                        activation_params=activation_params,
                        compress=compress,
                        true_skip=true_skip,
                        **conv_kw,
                    )
                )
            layers += [
                _activation(activation, activation_params),
                StreamableConv1d(
                    mult * n_filters, mult * n_filters * 2, kernel_size=2 * ratio, stride=ratio, **conv_kw
                ),
            ]
            mult *= 2
        if lstm:
            layers.append(StreamableLSTM(mult * n_filters, num_layers=lstm))
        layers += [
            _activation(activation, activation_params),
            StreamableConv1d(mult * n_filters, dimension, last_kernel_size, **conv_kw),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``(b, c, t) -> (b, d, ceil(t / hop_length))``."""
        return self.model(x)


class SEANetDecoder(nn.Module):
    """Latents ``(b, dimension, n)`` -> waveform ``(b, c, n * hop_length)``.

    Same arguments as :class:`SEANetEncoder`, plus ``final_activation`` (e.g. ``"Tanh"``)
    and ``trim_right_ratio`` (share of a causal transposed conv's padding trimmed on the right).
    """

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        n_residual_layers: int = 1,
        ratios: Sequence[int] = (8, 5, 4, 2),
        activation: str = "ELU",
        activation_params: dict[str, Any] | None = None,
        final_activation: str | None = None,
        final_activation_params: dict[str, Any] | None = None,
        norm: ConvNorm = "weight_norm",
        kernel_size: int = 7,
        residual_kernel_size: int = 3,
        last_kernel_size: int = 7,
        dilation_base: int = 2,
        causal: bool = False,
        pad_mode: PadMode = "reflect",
        true_skip: bool = True,
        compress: int = 2,
        lstm: int = 2,
        trim_right_ratio: float = 1.0,
    ):
        super().__init__()
        self.channels = channels
        self.dimension = dimension
        self.ratios = list(ratios)
        self.hop_length = math.prod(self.ratios)
        self.causal = causal
        conv_kw: dict[str, Any] = {"norm": norm, "causal": causal, "pad_mode": pad_mode}
        mult = 2 ** len(self.ratios)
        layers: list[nn.Module] = [StreamableConv1d(dimension, mult * n_filters, kernel_size, **conv_kw)]
        if lstm:
            layers.append(StreamableLSTM(mult * n_filters, num_layers=lstm))
        for ratio in self.ratios:
            layers += [
                _activation(activation, activation_params),
                StreamableConvTranspose1d(
                    mult * n_filters,
                    mult * n_filters // 2,
                    kernel_size=2 * ratio,
                    stride=ratio,
                    norm=norm,
                    causal=causal,
                    trim_right_ratio=trim_right_ratio,
                ),
            ]
            for j in range(n_residual_layers):
                layers.append(
                    SEANetResnetBlock(
                        mult * n_filters // 2,
                        kernel_sizes=(residual_kernel_size, 1),
                        dilations=(dilation_base**j, 1),
                        activation=activation,
                        activation_params=activation_params,
                        compress=compress,
                        true_skip=true_skip,
                        **conv_kw,
                    )
                )
            mult //= 2
        layers += [
            _activation(activation, activation_params),
            StreamableConv1d(n_filters, channels, last_kernel_size, **conv_kw),
        ]
        if final_activation is not None:
            layers.append(_activation(final_activation, final_activation_params or {}))
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
        return module.stream_init()
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
        return module.stream_step(x, state, final)
    return module(x)


def _is_pointwise(module: nn.Module) -> bool:
    # Activations act on each time step alone (torch.nn.modules.activation holds them all).
    return isinstance(module, nn.Identity) or type(module).__module__ == "torch.nn.modules.activation"
