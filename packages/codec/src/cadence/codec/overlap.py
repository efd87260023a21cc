"""Chunked decoding of any codec, causal or not: overlapping windows with a measured reach.

A causal codec streams exactly with its own stateful decoder (``stream_decoder()``, see
:mod:`cadence.codec.streaming`). A non-causal one (the shipped SoundStream, an ISTFTCodec
with ``causal=False``: centred convolutions and a centred inverse STFT) makes each sample
from codes on both sides of it. :class:`OverlapDecoder` decodes such a codec chunk by chunk
as follows:

- the *reach* of the decoder, in frames on each side, is measured once (:func:`decoder_reach`):
  change the codes of one frame in the middle of a random sequence and see which output
  samples move (exactly: convolutions are local, so outside the receptive field the output
  is bit-for-bit the same). Plus one frame of margin on each side;
- frame ``i``'s samples are emitted once the codes up to frame ``i + right`` have arrived
  (the look-ahead: ``right`` frames of latency), from a decode of the window
  ``[i - left, i + right]``: every code that can touch them is in it, and the edges of the
  window (where padding differs from the one-shot decode) are farther than the reach;
- the first frames see the real start of the sequence and the last (:meth:`flush`) its real
  end, as the one-shot decode does.

So the joined chunks equal ``codec.decode(all codes)`` up to float rounding (convolution
kernels may block the arithmetic differently for different lengths; the tests allow 1e-5),
every sample exactly once, and the decoder holds at most ``left + right + chunk`` frames of
codes. The cost is re-decoding ``left + right`` frames per chunk.
"""

# b batch | n frames | q quantizers | c channels | t samples

from __future__ import annotations

import math

import torch
from torch import Tensor

from cadence.core.interfaces import Codec

__all__ = ["OverlapDecoder", "decoder_reach", "stream_decoder_for"]


def decoder_reach(codec: Codec, *, frames: int = 64, trials: int = 3, limit: int = 2048) -> tuple[int, int]:  # fmt: skip
    """Frames on each side ``(left, right)`` whose codes can change a frame's samples.

    Measured on random codes (a fixed seed): the codes of the middle frame are changed
    ``trials`` times and the span of changed samples is taken. The probe grows until the
    span stays inside it; a decoder whose reach passes ``limit`` frames (a recurrent or
    attention decoder over the whole sequence) raises ``ValueError``.
    """
    hop = round(codec.sample_rate / codec.frame_rate)
    device = _device(codec)
    g = torch.Generator().manual_seed(0)
    while True:
        codes = torch.randint(
            0, codec.codebook_size, (1, frames, codec.num_quantizers), generator=g
        ).to(device)
        with torch.inference_mode():
            base = codec.decode(codes)
        mid = frames // 2
        left = right = 0
        seen = False
        for trial in range(trials):
            changed = codes.clone()
            changed[:, mid] = (codes[:, mid] + 1 + trial) % codec.codebook_size
            with torch.inference_mode():
                moved = (codec.decode(changed) != base).flatten(0, 1).any(0).nonzero()
            if moved.numel() == 0:
                continue
            seen = True
            first, last = int(moved.min()), int(moved.max())
            left = max(left, math.ceil((mid * hop - first) / hop))
            right = max(right, math.ceil((last + 1 - (mid + 1) * hop) / hop))
        if not seen:
            raise ValueError(
                "changing the codes does not change this codec's output (an untrained, "
                "all-zero codebook?), so its reach cannot be measured; give reach explicitly"
            )
        if left < mid - 1 and right < frames - mid - 2:
            return left, right
        if frames >= limit:
            raise ValueError(
                f"this codec's decoder reaches more than {limit // 2} frames to each side (a "
                "recurrent or attention decoder over the whole sequence); it cannot be decoded "
                "in overlapping chunks: use a causal codec with stream_decoder(), or decode offline"
            )
        frames *= 2


def _device(codec: Codec) -> torch.device:
    params = getattr(codec, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


class OverlapDecoder:
    """Codes chunks ``(b, n, q)`` -> the audio ``(b, c, t)`` that is final so far.

    Args:
        codec: any :class:`~cadence.core.interfaces.Codec`.
        reach: ``(left, right)`` frames (default measured by :func:`decoder_reach`, plus one).
    """

    def __init__(self, codec: Codec, reach: tuple[int, int] | None = None):
        if reach is None:
            left, right = decoder_reach(codec)
            reach = (left + 1, right + 1)
        if min(reach) < 0:
            raise ValueError(f"reach must be two frame counts >= 0, got {reach}")
        self.codec = codec
        self.left, self.right = reach
        self.hop = round(codec.sample_rate / codec.frame_rate)
        self.codes: Tensor | None = None  # the frames kept: context + not yet emitted
        self.kept_from = 0  # absolute index of codes[:, 0]
        self.emitted = 0  # frames whose samples are out
        self.received = 0
        self._closed = False

    @property
    def latency_frames(self) -> int:
        """Frames of look-ahead a frame waits for before its samples come out."""
        return self.right

    def decode_chunk(self, codes: Tensor) -> Tensor:
        """Append codes ``(b, n, q)`` (``n`` may be 0); returns the samples now final."""
        if self._closed:
            raise RuntimeError("this stream was flushed; start a new one for new codes")
        if codes.ndim != 3:
            raise ValueError(f"codes must be (b, n, q), got {tuple(codes.shape)}")
        self.codes = codes if self.codes is None else torch.cat([self.codes, codes], dim=1)
        self.received += codes.shape[1]
        return self._emit(self.received - self.right)

    def flush(self) -> Tensor:
        """End of codes: the remaining samples (``n * hop`` in all, as ``decode``)."""
        if self.codes is None:
            raise ValueError("no codes were given to this stream; call decode_chunk first")
        out = self._emit(self.received)
        self._closed = True
        return out

    def _emit(self, upto: int) -> Tensor:
        codes = self.codes
        assert codes is not None
        if upto <= self.emitted:
            return self._empty(codes)
        start = max(0, self.emitted - self.left)  # window, in absolute frames
        stop = min(self.received, upto + self.right)
        window = codes[:, start - self.kept_from : stop - self.kept_from]
        with torch.inference_mode():
            audio = self.codec.decode(window)
        a, z = (self.emitted - start) * self.hop, (upto - start) * self.hop
        out = audio[..., a:z]
        self.emitted = upto
        # keep what the next window needs: `left` frames of context before the next frame
        keep_from = max(0, self.emitted - self.left)
        self.codes = codes[:, keep_from - self.kept_from :]
        self.kept_from = keep_from
        return out

    def _empty(self, codes: Tensor) -> Tensor:
        channels = getattr(self.codec, "channels", 1)
        return torch.zeros(codes.shape[0], channels, 0, device=codes.device)


def stream_decoder_for(codec: Codec):
    """The codec's own exact streaming decoder where it has one (causal models), else an
    :class:`OverlapDecoder`. Both offer ``decode_chunk(codes)`` and ``flush()``."""
    factory = getattr(codec, "stream_decoder", None)
    if callable(factory):
        try:
            return factory()
        except ValueError:  # a non-causal model refuses to stream statefully
            pass
    return OverlapDecoder(codec)
