"""Chunk-by-chunk Mimi: the streaming halves of :class:`~cadence.codec.hf_codecs.MimiCodec`.

Encoding uses transformers' own streaming path (``use_streaming=True`` with its conv padding
cache and the encoder transformer's KV cache), fed whole frames: audio is held until a
frame's ``hop_length`` samples have arrived. transformers has no streaming decoder, so
:class:`MimiStreamingDecoder` runs the decoder's own modules statefully: each causal conv
keeps its left context, each transposed conv its overlap tail, the transformer its KV cache.
Both offer the methods of Cadence's ``StreamingEncoder`` / ``StreamingDecoder``
(``encode_chunk`` / ``decode_chunk`` / ``flush``), so ``encode_chunked``, ``decode_chunked``,
``encode_file`` and ``decode_to_file`` of :mod:`cadence.codec.streaming` work on a Mimi.
"""

# b batch | c channels | t samples | n frames | q quantizer levels | d latent dim

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .hf_codecs import _no_grad

if TYPE_CHECKING:
    from .hf_codecs import MimiCodec

__all__ = ["MimiStreamingDecoder", "MimiStreamingEncoder"]


class MimiStreamingEncoder:
    """Audio chunks of any size -> the ``(b, n_new, q)`` codes of the frames completed so far."""

    def __init__(self, codec: MimiCodec):
        self.codec = codec
        self.pending: Tensor | None = None  # samples of a frame not yet complete
        self.caches: dict[str, Any] = {"encoder_cache": None, "padding_cache": None}
        self.samples_in = 0
        self.frames_out = 0
        self._closed = False

    def _encode(self, audio: Tensor) -> Tensor:
        model: Any = self.codec.model
        out = model.encode(
            audio, num_quantizers=self.codec.num_quantizers, use_streaming=True, **self.caches
        )
        self.caches = {"encoder_cache": out.encoder_cache, "padding_cache": out.padding_cache}
        codes = rearrange(out.audio_codes, "b q n -> b n q")
        self.frames_out += codes.shape[1]
        return codes

    def _empty(self, batch: int, device: torch.device) -> Tensor:
        return torch.zeros(batch, 0, self.codec.num_quantizers, dtype=torch.long, device=device)

    def encode_chunk(self, audio: Tensor) -> Tensor:
        """Audio ``(b, 1, t)``, any ``t >= 1`` -> the ``(b, n_new, q)`` codes now complete."""
        if self._closed:
            raise RuntimeError("this stream was flushed; start a new one for new audio")
        self.codec.check_audio(audio)
        self.samples_in += audio.shape[-1]
        audio = audio.to(self.codec._dtype())
        buffer = audio if self.pending is None else torch.cat([self.pending, audio], dim=-1)
        whole = buffer.shape[-1] // self.codec.hop_length * self.codec.hop_length
        self.pending = buffer[..., whole:]
        if whole == 0:
            return self._empty(buffer.shape[0], buffer.device)
        with _no_grad():
            return self._encode(buffer[..., :whole])

    def flush(self) -> Tensor:
        """End of input: the last frame, zero-padded as :meth:`MimiCodec.encode` pads it."""
        if self.samples_in == 0:
            raise ValueError("no audio was given to this stream; call encode_chunk first")
        self._closed = True
        assert self.pending is not None
        if self.pending.shape[-1] == 0:
            return self._empty(self.pending.shape[0], self.pending.device)
        with _no_grad():
            return self._encode(self.codec.pad_to_frames(self.pending))


@dataclass
class _ConvState:
    context: Tensor | None = None  # the last padding_total inputs (a causal conv's left context)


@dataclass
class _ConvTransposeState:
    tail: Tensor | None = None  # summed outputs later frames still add to
    to_trim_left: int = 0


class MimiStreamingDecoder:
    """Codes chunks ``(b, n, q)`` -> the audio samples that no later frame can change."""

    def __init__(self, codec: MimiCodec):
        from transformers.models.mimi.modeling_mimi import MimiConv1d, MimiConvTranspose1d

        self.codec = codec
        model: Any = codec.model
        self.decoder = model.decoder  # MimiDecoderModel: upsample, transformer, SEANet decoder
        self._conv, self._conv_transpose = MimiConv1d, MimiConvTranspose1d
        self.states: dict[int, Any] = {}
        self.cache: Any = None
        self.frames_in = 0
        self._batch: int | None = None
        self._closed = False
        for module in self.decoder.modules():
            if isinstance(module, MimiConv1d) and (not module.causal or int(module.stride) != 1):
                raise ValueError("only a causal Mimi decoder with stride-1 convs streams")
            if isinstance(module, MimiConvTranspose1d) and not module.causal:
                raise ValueError("only a causal Mimi decoder streams")

    # -- one module, one chunk ----------------------------------------------------------------

    def _step(self, module: nn.Module, x: Tensor, final: bool) -> Tensor:
        if isinstance(module, self._conv):
            return self._conv_step(module, x)
        if isinstance(module, self._conv_transpose):
            return self._conv_transpose_step(module, x, final)
        if hasattr(module, "block") and hasattr(module, "shortcut"):  # MimiResnetBlock
            block: Any = module
            y = x
            for layer in block.block:
                y = self._step(layer, y, final)
            return self._step(block.shortcut, x, final) + y
        return module(x)  # ELU, Identity: one time step at a time

    def _conv_step(self, layer: Any, x: Tensor) -> Tensor:
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], layer.conv.out_channels, 0)
        state = self.states.setdefault(id(layer), _ConvState())
        pad = int(layer.padding_total)
        if state.context is None:  # the left padding offline decoding adds
            if layer.pad_mode == "replicate":
                state.context = x[..., :1].expand(-1, -1, pad)
            elif layer.pad_mode == "constant":
                state.context = x.new_zeros(x.shape[0], x.shape[1], pad)
            else:
                raise ValueError(f"pad_mode {layer.pad_mode!r} does not stream")
        buffer = torch.cat([state.context, x], dim=-1)
        state.context = buffer[..., buffer.shape[-1] - pad :]
        return layer.conv(buffer)

    def _conv_transpose_step(self, layer: Any, x: Tensor, final: bool) -> Tensor:
        conv = layer.conv
        state = self.states.setdefault(id(layer), _ConvTransposeState(layer.padding_left))
        stride, overlap = conv.stride[0], conv.kernel_size[0] - conv.stride[0]
        if x.shape[-1]:
            # Without bias: overlapping windows are summed, the bias is added once per sample.
            y = F.conv_transpose1d(x, conv.weight, None, stride, groups=conv.groups)
            if state.tail is not None:
                y[..., :overlap] += state.tail
            ready = x.shape[-1] * stride
            out, state.tail = y[..., :ready], y[..., ready:]
        else:
            out = x.new_zeros(x.shape[0], conv.out_channels, 0)
        if final and state.tail is not None:
            # offline trims the last padding_right samples; the rest of the tail is output
            out = torch.cat([out, state.tail[..., : overlap - layer.padding_right]], dim=-1)
            state.tail = None
        if conv.bias is not None:
            out = out + conv.bias[:, None]
        cut = min(state.to_trim_left, out.shape[-1])
        state.to_trim_left -= cut
        return out[..., cut:]

    def _transformer_step(self, hidden: Tensor) -> Tensor:
        if hidden.shape[-1] == 0:
            return hidden
        out = self.decoder.decoder_transformer(
            rearrange(hidden, "b d n -> b n d"), cache=self.cache, use_cache=True
        )
        self.cache = out.cache
        return rearrange(out.last_hidden_state, "b n d -> b d n")

    def _run(self, latents: Tensor, final: bool) -> Tensor:
        if self._closed:
            raise RuntimeError("this stream was flushed; start a new one for new codes")
        with _no_grad():
            x = rearrange(latents, "b n d -> b d n")
            if self.decoder.upsample is not None:
                x = self._step(self.decoder.upsample, x, final)
            x = self._transformer_step(x)
            for layer in self.decoder.decoder_seanet.layers:
                x = self._step(layer, x, final)
            return x

    def decode_chunk(self, codes: Tensor) -> Tensor:
        """Codes ``(b, n, q)`` (``n`` may be 0) -> audio ``(b, 1, t_new)``."""
        self._batch = codes.shape[0]
        self._device = codes.device
        self.frames_in += codes.shape[1]
        if codes.shape[1] == 0:
            latents = torch.zeros(
                codes.shape[0],
                0,
                self.codec.latent_dim,
                dtype=self.codec._dtype(),
                device=codes.device,
            )
        else:
            latents = self.codec.codes_to_latents(codes)
        return self._run(latents, final=False)

    def flush(self) -> Tensor:
        """End of codes: the remaining samples (``n * hop_length`` in all, as offline)."""
        if self._batch is None:
            raise ValueError("no codes were given to this stream; call decode_chunk first")
        empty = torch.zeros(
            self._batch, 0, self.codec.latent_dim, dtype=self.codec._dtype(), device=self._device
        )
        out = self._run(empty, final=True)
        self._closed = True
        return out
