"""Streamable 1-d convolutions, as in EnCodec / audiocraft (``SConv1d``, ``SConvTranspose1d``).

A convolution pads its input itself so that the output has ``ceil(t / stride)`` steps,
causally (all padding on the left) or symmetrically. The extra right padding is what makes
an encoder's output length ``ceil(t / hop_length)`` and lets the decoder rebuild every sample.

Each layer also runs *stateful*: ``stream_step(x, state)`` consumes a chunk and returns the
outputs that are already final, keeping what it still needs (the left context of a conv, the
overlap tail of a transposed conv) in ``state``; ``stream_step(x, state, final=True)`` adds the
end padding and returns the rest. Concatenated chunk outputs equal the offline ``forward``.
"""

# b batch | c channels | t time steps (audio samples or frames)

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

__all__ = [
    "ConvNorm",
    "PadMode",
    "StreamableConv1d",
    "StreamableConvTranspose1d",
    "StreamableLSTM",
    "extra_padding_for_conv1d",
    "pad1d",
]

ConvNorm = Literal["none", "weight_norm", "time_group_norm"]
PadMode = Literal["reflect", "constant", "replicate"]


def extra_padding_for_conv1d(length: int, kernel_size: int, stride: int, padding_total: int) -> int:
    """Right padding that makes the last window of a strided conv full (EnCodec ``pad_for_conv1d``).

    Without it a transposed conv could not rebuild the last few samples of the input.
    """
    n_frames = (length - kernel_size + padding_total) / stride + 1
    ideal_length = (math.ceil(n_frames) - 1) * stride + (kernel_size - padding_total)
    return ideal_length - length


def pad1d(x: Tensor, paddings: tuple[int, int], mode: str = "constant") -> Tensor:
    """``F.pad`` that also reflect-pads inputs shorter than the padding (zeros are added first)."""
    left, right = paddings
    if mode != "reflect":
        return F.pad(x, paddings, mode)
    length = x.shape[-1]
    max_pad = max(left, right)
    extra = 0
    if length <= max_pad:
        extra = max_pad - length + 1
        x = F.pad(x, (0, extra))
    padded = F.pad(x, paddings, "reflect")
    return padded[..., : padded.shape[-1] - extra]


@dataclass
class ConvState:
    """What a streaming conv keeps between chunks."""

    buffer: Tensor | None = None  # padded input not yet consumed by a full window
    started: bool = False  # left padding applied (needs enough samples for reflect)
    length: int = 0  # input samples seen so far (sets the end padding)
    weight: Tensor | None = None  # the weight-normed kernel, computed once per stream


class StreamableConv1d(nn.Module):
    """Conv1d with causal or symmetric "same"-style padding and optional weight / group norm.

    Output length is ``ceil(t / stride)``. Parameters are under ``conv`` (and ``norm`` for
    ``time_group_norm``), so EnCodec checkpoints map onto it by renaming.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        causal: bool = False,
        norm: ConvNorm = "none",
        pad_mode: PadMode = "reflect",
    ):
        super().__init__()
        conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )
        self.conv = weight_norm(conv) if norm == "weight_norm" else conv
        if norm == "time_group_norm":
            if causal:
                raise ValueError(
                    "time_group_norm normalizes over time and cannot be causal; use weight_norm"
                )
            self.norm: nn.Module = nn.GroupNorm(1, out_channels)
        else:
            self.norm = nn.Identity()
        self.causal = causal
        self.pad_mode = pad_mode
        self.stride = stride
        # Effective kernel size with dilation; stride-1 convs keep the length, strided ones divide it.
        self.kernel_size = (kernel_size - 1) * dilation + 1
        self.padding_total = self.kernel_size - stride

    def _paddings(self, length: int) -> tuple[int, int]:
        extra = extra_padding_for_conv1d(length, self.kernel_size, self.stride, self.padding_total)
        if self.causal:
            return self.padding_total, extra
        right = self.padding_total // 2
        return self.padding_total - right, right + extra

    def forward(self, x: Tensor) -> Tensor:
        """``(b, c, t) -> (b, c', ceil(t / stride))``."""
        x = pad1d(x, self._paddings(x.shape[-1]), self.pad_mode)
        return self.norm(self.conv(x))

    # -- streaming ---------------------------------------------------------------------------

    def stream_init(self) -> ConvState:
        if not self.causal:
            raise ValueError("only causal convolutions stream; build the model with causal=True")
        if self.pad_mode == "reflect" and self.kernel_size - self.stride < self.stride - 1:
            # The end reflection needs stride - 1 past samples, more than the kept context.
            raise ValueError(
                f"streaming a reflect-padded conv needs kernel_size >= 2 * stride - 1, got "
                f"kernel_size={self.kernel_size}, stride={self.stride}; use pad_mode='constant'"
            )
        return ConvState()

    def stream_step(self, x: Tensor, state: ConvState, final: bool = False) -> Tensor:
        """Consume a chunk ``(b, c, t)``; return the outputs whose whole window has arrived."""
        state.length += x.shape[-1]
        buffer = x if state.buffer is None else torch.cat([state.buffer, x], dim=-1)
        if not state.started:
            # Reflect padding mirrors samples 1..padding_total, so wait until they exist; a
            # stream shorter than that is just processed offline at the end. Zero or
            # replicate padding can start at once.
            wait = max(self.padding_total, self.stride - 1) if self.pad_mode == "reflect" else 0
            if state.length <= wait:
                if final:
                    state.buffer = None
                    if buffer.shape[-1]:
                        return self.forward(buffer)
                    return buffer.new_empty(buffer.shape[0], self._out_channels, 0)
                state.buffer = buffer
                return buffer.new_empty(buffer.shape[0], self._out_channels, 0)
            buffer = pad1d(buffer, (self.padding_total, 0), self.pad_mode)
            state.started = True
        if final:
            _, extra = self._paddings(state.length)
            buffer = pad1d(buffer, (0, extra), self.pad_mode)
        n_out = (
            (buffer.shape[-1] - self.kernel_size) // self.stride + 1
            if buffer.shape[-1] >= self.kernel_size
            else 0
        )
        if n_out <= 0:
            state.buffer = None if final else buffer
            return buffer.new_empty(buffer.shape[0], self._out_channels, 0)
        used = (n_out - 1) * self.stride + self.kernel_size
        if state.weight is None:
            state.weight = self.conv.weight.detach()
        conv = self.conv
        y = F.conv1d(
            buffer[..., :used], state.weight, conv.bias, self.stride, 0, conv.dilation, conv.groups
        )
        state.buffer = None if final else buffer[..., n_out * self.stride :]
        return y  # causal models use no time norm, so nothing more to apply

    @property
    def _out_channels(self) -> int:
        return self.conv.out_channels


@dataclass
class ConvTransposeState:
    """The not-yet-final overlap tail of a streaming transposed conv."""

    tail: Tensor | None = None
    to_trim_left: int = 0
    weight: Tensor | None = None  # the weight-normed kernel, computed once per stream


class StreamableConvTranspose1d(nn.Module):
    """ConvTranspose1d trimming its fixed padding causally or symmetrically (EnCodec's).

    Output length is ``t * stride``; the extra padding added by the encoder is removed by
    the caller once at the end, as in EnCodec.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        causal: bool = False,
        norm: ConvNorm = "none",
        trim_right_ratio: float = 1.0,
    ):
        super().__init__()
        if not (causal or trim_right_ratio == 1.0):
            raise ValueError("trim_right_ratio != 1.0 only makes sense for causal convolutions")
        if not 0.0 <= trim_right_ratio <= 1.0:
            raise ValueError(f"trim_right_ratio must be in [0, 1], got {trim_right_ratio}")
        conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride)
        self.conv = weight_norm(conv) if norm == "weight_norm" else conv
        if norm == "time_group_norm":
            if causal:
                raise ValueError(
                    "time_group_norm normalizes over time and cannot be causal; use weight_norm"
                )
            self.norm: nn.Module = nn.GroupNorm(1, out_channels)
        else:
            self.norm = nn.Identity()
        self.causal = causal
        self.kernel_size = kernel_size
        self.stride = stride
        padding_total = kernel_size - stride
        if causal:
            self.padding_right = math.ceil(padding_total * trim_right_ratio)
        else:
            self.padding_right = padding_total // 2
        self.padding_left = padding_total - self.padding_right

    def forward(self, x: Tensor) -> Tensor:
        """``(b, c, n) -> (b, c', n * stride)``."""
        y = self.norm(self.conv(x))
        return y[..., self.padding_left : y.shape[-1] - self.padding_right]

    def stream_init(self) -> ConvTransposeState:
        if not self.causal:
            raise ValueError("only causal convolutions stream; build the model with causal=True")
        return ConvTransposeState(to_trim_left=self.padding_left)

    def stream_step(self, x: Tensor, state: ConvTransposeState, final: bool = False) -> Tensor:
        """Consume frames ``(b, c, n)``; return the samples no later frame can change."""
        overlap = self.kernel_size - self.stride
        if x.shape[-1]:
            # Without bias: overlapping windows are summed, the bias must be added once.
            if state.weight is None:
                state.weight = self.conv.weight.detach()
            y = F.conv_transpose1d(x, state.weight, None, self.stride)
            if state.tail is not None:
                y[..., :overlap] += state.tail
            ready = x.shape[-1] * self.stride
            out, state.tail = y[..., :ready], y[..., ready:]
        else:
            out = x.new_empty(x.shape[0], self.conv.out_channels, 0)
        if final and state.tail is not None:
            # The last `padding_right` samples are trimmed offline; the rest of the tail is kept.
            out = torch.cat([out, state.tail[..., : overlap - self.padding_right]], dim=-1)
            state.tail = None
        if self.conv.bias is not None:
            out = out + self.conv.bias[:, None]
        if state.to_trim_left:
            cut = min(state.to_trim_left, out.shape[-1])
            out = out[..., cut:]
            state.to_trim_left -= cut
        return out


@dataclass
class LSTMState:
    hidden: tuple[Tensor, Tensor] | None = field(default=None)


class StreamableLSTM(nn.Module):
    """A skip-connected LSTM over time in conv layout ``(b, c, t) -> (b, c, t)`` (EnCodec's SLSTM)."""

    def __init__(self, dim: int, num_layers: int = 2, skip: bool = True):
        super().__init__()
        self.skip = skip
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: Tensor) -> Tensor:
        h = x.permute(2, 0, 1)  # (t, b, c): nn.LSTM's time-major layout, as the checkpoints use
        y, _ = self.lstm(h)
        if self.skip:
            y = y + h
        return y.permute(1, 2, 0)

    def stream_init(self) -> LSTMState:
        return LSTMState()

    def stream_step(self, x: Tensor, state: LSTMState, final: bool = False) -> Tensor:
        if x.shape[-1] == 0:
            return x
        h = x.permute(2, 0, 1)
        y, state.hidden = self.lstm(h, state.hidden)
        if self.skip:
            y = y + h
        return y.permute(1, 2, 0)


def fold_weight_norm(module: nn.Module) -> int:
    """Replace every weight-normed ``weight`` under ``module`` by its current value, in place.

    Weight norm is a training reparametrisation: each forward recomputes every kernel from
    its direction and norm (about 10% of CPU coding time). Folding computes them once and
    leaves outputs unchanged. Returns the number of folded weights.
    """
    folded = 0
    for sub in module.modules():
        if parametrize.is_parametrized(sub, "weight"):
            parametrize.remove_parametrizations(sub, "weight", leave_parametrized=True)
            folded += 1
    return folded
