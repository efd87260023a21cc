"""Stateful chunk-by-chunk encoding and decoding for causal SEANet codecs.

Any causal :class:`~cadence.codec.seanet.SEANetEncoder` / ``SEANetDecoder`` streams: each
conv keeps its left context, the LSTM its ``(h, c)``, each transposed conv its overlap tail.
Feeding audio in chunks of any size and concatenating the outputs gives the offline result
(within float rounding), so a 10-minute file is coded in bounded memory::

    stream = model.stream_encoder()
    codes = torch.cat([stream.encode_chunk(chunk) for chunk in chunks] + [stream.flush()], dim=1)

A model opts in by offering ``stream_encoder()`` / ``stream_decoder()`` (EnCodec does; a causal
SoundStream can build them from ``StreamingEncoder(encoder, quantize)``), and then works with
:func:`encode_chunked`, :func:`decode_chunked`, :func:`encode_file` and :func:`decode_to_file`.
"""

# b batch | c audio channels | t samples | n frames | q quantizers | d latent dim

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from einops import rearrange
from torch import Tensor

from cadence.core.audio import SampleRateMismatchError
from cadence.core.io import atomic_file

from .seanet import SEANetDecoder, SEANetEncoder, stream_init, stream_step

__all__ = [
    "StreamableCodec",
    "StreamingDecoder",
    "StreamingEncoder",
    "decode_chunked",
    "decode_to_file",
    "encode_chunked",
    "encode_file",
    "state_numel",
]


class StreamingEncoder:
    """Audio chunks -> codes (or latents) of the frames completed so far.

    Args:
        encoder: a causal SEANet encoder.
        quantize: latents ``(b, n, d)`` -> codes ``(b, n, q)``; ``None`` returns latents.
        check: validates each chunk ``(b, c, t)`` (e.g. the model's channel check).
    """

    def __init__(
        self,
        encoder: SEANetEncoder,
        quantize: Callable[[Tensor], Tensor] | None = None,
        *,
        check: Callable[[Tensor], Any] | None = None,
    ):
        if not encoder.causal:
            raise ValueError(
                "streaming needs a causal encoder (its output must not depend on future audio); "
                "build the model with causal=True or encode offline"
            )
        self.encoder = encoder
        self.quantize = quantize
        self.check = check
        self.state = stream_init(encoder)
        self.samples_in = 0
        self.frames_out = 0
        self._batch = 0
        self._closed = False

    def _run(self, audio: Tensor, final: bool) -> Tensor:
        if self._closed:
            raise RuntimeError("this stream was flushed; start a new one for new audio")
        with torch.inference_mode():
            latents = stream_step(self.encoder, audio, self.state, final)
            latents = rearrange(latents, "b d n -> b n d")
            self.frames_out += latents.shape[1]
            return self.quantize(latents) if self.quantize is not None else latents

    def encode_chunk(self, audio: Tensor) -> Tensor:
        """Audio ``(b, c, t)``, any ``t >= 1`` -> the ``(b, n_new, q)`` codes now complete."""
        if self.check is not None:
            self.check(audio)
        self.samples_in += audio.shape[-1]
        self._batch = audio.shape[0]
        param = next(self.encoder.parameters())
        return self._run(audio.to(param.dtype), final=False)

    def flush(self) -> Tensor:
        """End of input: the last codes (the last frame is padded as offline encoding does)."""
        if self.samples_in == 0:
            raise ValueError("no audio was given to this stream; call encode_chunk first")
        param = next(self.encoder.parameters())
        empty = torch.zeros(
            self._batch, self.encoder.channels, 0, dtype=param.dtype, device=param.device
        )
        out = self._run(empty, final=True)
        self._closed = True
        return out


class StreamingDecoder:
    """Codes (or latents) chunks -> the audio samples that are final so far.

    Args:
        decoder: a causal SEANet decoder.
        dequantize: codes ``(b, n, q)`` -> latents ``(b, n, d)``; ``None`` takes latents.
    """

    def __init__(
        self, decoder: SEANetDecoder, dequantize: Callable[[Tensor], Tensor] | None = None
    ):
        if not decoder.causal:
            raise ValueError("streaming needs a causal decoder; build the model with causal=True")
        self.decoder = decoder
        self.dequantize = dequantize
        self.state = stream_init(decoder)
        self.frames_in = 0
        self._batch: int | None = None
        self._closed = False

    def _run(self, latents: Tensor, final: bool) -> Tensor:
        if self._closed:
            raise RuntimeError("this stream was flushed; start a new one for new codes")
        with torch.inference_mode():
            return stream_step(
                self.decoder, rearrange(latents, "b n d -> b d n"), self.state, final
            )

    def decode_chunk(self, codes: Tensor) -> Tensor:
        """Codes ``(b, n, q)`` (or latents ``(b, n, d)``) -> audio ``(b, c, t_new)``.

        A chunk may hold no frames (an encoder stream emits none until a frame completes).
        """
        if self.dequantize is None:
            latents = codes
        elif codes.ndim == 3 and codes.shape[1] == 0:
            # nothing to dequantize (decoders refuse empty codes); the stream just waits
            param = next(self.decoder.parameters())
            latents = torch.zeros(
                codes.shape[0], 0, self.decoder.latent_dim, dtype=param.dtype, device=codes.device
            )
        else:
            latents = self.dequantize(codes)
        self.frames_in += latents.shape[1]
        self._batch = latents.shape[0]
        self._dtype, self._device = latents.dtype, latents.device
        return self._run(latents, final=False)

    def flush(self) -> Tensor:
        """End of codes: the remaining samples (total ``n * hop_length``, as offline)."""
        if self._batch is None:
            raise ValueError("no codes were given to this stream; call decode_chunk first")
        empty = torch.zeros(
            self._batch, 0, self.decoder.latent_dim, dtype=self._dtype, device=self._device
        )
        out = self._run(empty, final=True)
        self._closed = True
        return out


def _state_tensors(state: Any) -> Iterator[Tensor]:
    if isinstance(state, Tensor):
        yield state
    elif isinstance(state, (list, tuple)):
        for item in state:
            yield from _state_tensors(item)
    elif hasattr(state, "__dict__"):
        for name, item in vars(state).items():
            if name != "weight":  # a cached copy of a parameter, not stream state
                yield from _state_tensors(item)


def state_numel(stream: StreamingEncoder | StreamingDecoder) -> int:
    """Elements held in a stream's state (it stays bounded however long the stream runs)."""
    return sum(t.numel() for t in _state_tensors(stream.state))


class StreamableCodec(Protocol):
    """A codec that offers chunked encoding and decoding (e.g. a causal EnCodec)."""

    sample_rate: int
    channels: int
    hop_length: int

    def stream_encoder(self) -> StreamingEncoder: ...

    def stream_decoder(self) -> StreamingDecoder: ...


def _progress(iterable: Iterable[Any], total: int | None, desc: str, show: bool) -> Iterable[Any]:
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="chunk")


def encode_chunked(
    model: StreamableCodec,
    audio: Tensor,
    *,
    chunk_samples: int | None = None,
    progress: bool = False,
) -> Tensor:
    """Encode ``(b, c, t)`` audio chunk by chunk (default chunks: 10 s); equals ``model.encode``."""
    chunk = chunk_samples or 10 * model.sample_rate
    stream = model.stream_encoder()
    starts = range(0, audio.shape[-1], chunk)
    parts = [
        stream.encode_chunk(audio[..., i : i + chunk])
        for i in _progress(starts, len(starts), "encoding", progress)
    ]
    parts.append(stream.flush())
    return torch.cat(parts, dim=1)


def decode_chunked(
    model: StreamableCodec, codes: Tensor, *, chunk_frames: int = 750, progress: bool = False
) -> Tensor:
    """Decode ``(b, n, q)`` codes chunk by chunk; equals ``model.decode``."""
    stream = model.stream_decoder()
    starts = range(0, codes.shape[1], chunk_frames)
    parts = [
        stream.decode_chunk(codes[:, i : i + chunk_frames])
        for i in _progress(starts, len(starts), "decoding", progress)
    ]
    parts.append(stream.flush())
    return torch.cat(parts, dim=-1)


def encode_file(
    model: StreamableCodec,
    path: str | os.PathLike,
    *,
    chunk_seconds: float = 10.0,
    progress: bool = True,
) -> Tensor:
    """Encode an audio file of any length reading ``chunk_seconds`` at a time.

    Memory stays bounded by the chunk size and the stream state; only the codes grow
    (``n x q`` integers). Returns codes ``(1, n, q)``. The file must already be at the
    model's sample rate and channel count (resample with ``cadence.core.audio.resample``).
    """
    import soundfile as sf

    from cadence.core.audio import info

    meta = info(path)
    if meta.samplerate != model.sample_rate:
        raise SampleRateMismatchError(
            f"{path} is at {meta.samplerate} Hz but the model expects {model.sample_rate} Hz; "
            f"resample it first (cadence.core.audio.resample(audio, {meta.samplerate}, {model.sample_rate}))"
        )
    from cadence.core.audio import ChannelMismatchError

    if meta.channels != model.channels:
        raise ChannelMismatchError(
            f"{path} has {meta.channels} channel(s) but the model expects {model.channels}; "
            f"convert it with cadence.core.audio.convert_channels"
        )
    block = max(1, int(chunk_seconds * model.sample_rate))
    stream = model.stream_encoder()
    parts = []
    with sf.SoundFile(str(path)) as f:
        total = -(-f.frames // block)
        blocks = f.blocks(blocksize=block, dtype="float32", always_2d=True)
        for data in _progress(blocks, total, f"encoding {Path(path).name}", progress):
            parts.append(stream.encode_chunk(rearrange(torch.from_numpy(data), "t c -> 1 c t")))
    parts.append(stream.flush())
    return torch.cat(parts, dim=1)


def decode_to_file(
    model: StreamableCodec,
    codes: Tensor,
    path: str | os.PathLike,
    *,
    num_samples: int | None = None,
    chunk_frames: int = 750,
    subtype: str | None = None,
    progress: bool = True,
) -> Path:
    """Decode codes ``(1, n, q)`` straight into an audio file, chunk by chunk.

    Args:
        num_samples: trim the output to this length (the encoded file's), else ``n * hop_length``.
        subtype: soundfile sample format (default: the format's, e.g. 16-bit PCM for WAV;
            ``"FLOAT"`` keeps float32 exactly).
    """
    import soundfile as sf

    if codes.ndim != 3 or codes.shape[0] != 1:
        raise ValueError(
            f"decode_to_file takes the codes of one file, shape (1, n, q); got {tuple(codes.shape)}"
        )
    path = Path(path)
    limit = num_samples if num_samples is not None else codes.shape[1] * model.hop_length
    written = 0
    stream = model.stream_decoder()
    starts = range(0, codes.shape[1], chunk_frames)
    # Written under a temporary name and renamed when complete: an interrupted decode never
    # leaves a truncated file at `path`.
    with (
        atomic_file(path) as tmp,
        sf.SoundFile(
            str(tmp), "w", samplerate=model.sample_rate, channels=model.channels, subtype=subtype
        ) as f,
    ):

        def write(audio: Tensor) -> None:
            nonlocal written
            audio = audio[0, :, : max(0, limit - written)]
            f.write(rearrange(audio, "c t -> t c").float().cpu().numpy())
            written += audio.shape[-1]

        for i in _progress(starts, len(starts), f"decoding {path.name}", progress):
            write(stream.decode_chunk(codes[:, i : i + chunk_frames]))
        write(stream.flush())
    return path
