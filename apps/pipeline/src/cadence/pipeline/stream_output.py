"""Where ``cadence generate --stream`` puts audio as it is made: a growing WAV, stdout, a speaker.

:class:`GrowingWav` writes 16-bit PCM WAV and rewrites the RIFF header after every chunk, so
the file is a valid WAV of everything written so far at each moment (a player or a reader
polling it sees audio before the end; an interrupted run leaves a valid, shorter file). This
file is deliberately not written atomically: the point is that it is read while it grows.
To stdout (``--out -``, not seekable) the header carries the streaming sizes ``0xFFFFFFFF``,
which sox, ffmpeg and soundfile read as "until the end of the stream".

Written by hand rather than with soundfile because libsndfile only finalises a WAV header on
close (its per-write header update is not exposed by pysoundfile), and the ``wave`` module's
header patching is private.

:class:`Speaker` plays chunks through ``sounddevice`` (the ``play`` extra); nothing here
needs it unless ``--play`` is asked for.
"""

# c channels | t samples

from __future__ import annotations

import struct
from typing import BinaryIO

import numpy as np
from torch import Tensor

from .components import PipelineError

__all__ = ["GrowingWav", "Speaker", "pcm16"]

STREAMING_SIZE = 0xFFFFFFFF


def pcm16(audio: Tensor) -> bytes:
    """``(c, t)`` float audio -> interleaved little-endian 16-bit PCM (clipped to [-1, 1])."""
    samples = audio.detach().float().cpu().clamp(-1.0, 1.0).numpy().T  # (t, c) interleaved
    return (np.round(samples * 32767.0)).astype("<i2").tobytes()


def _header(sample_rate: int, channels: int, data_bytes: int) -> bytes:
    block = channels * 2
    riff = STREAMING_SIZE if data_bytes == STREAMING_SIZE else 36 + data_bytes
    return (
        b"RIFF" + struct.pack("<I", riff) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, 16)
        + b"data" + struct.pack("<I", data_bytes)
    )  # fmt: skip


class GrowingWav:
    """A 16-bit WAV written chunk by chunk, valid after every :meth:`write`.

    Args:
        sink: a file opened ``"wb"`` (seekable: the header is rewritten) or a pipe such as
            ``sys.stdout.buffer`` (not seekable: streaming sizes in the header).
        sample_rate, channels: of the audio.
    """

    def __init__(self, sink: BinaryIO, sample_rate: int, channels: int):
        self.sink, self.sample_rate, self.channels = sink, sample_rate, channels
        try:
            self.seekable = sink.seekable()
        except (AttributeError, OSError):
            self.seekable = False
        self.data_bytes = 0
        size = 0 if self.seekable else STREAMING_SIZE
        sink.write(_header(sample_rate, channels, size))
        sink.flush()

    @property
    def frames(self) -> int:
        """Samples per channel written so far."""
        return self.data_bytes // (2 * self.channels)

    def write(self, audio: Tensor) -> None:
        """Append ``(c, t)`` audio; the file is complete up to here when this returns."""
        if audio.ndim != 2 or audio.shape[0] != self.channels:
            raise ValueError(f"expected ({self.channels}, t) audio, got {tuple(audio.shape)}")
        if audio.shape[-1] == 0:
            return
        data = pcm16(audio)
        self.sink.write(data)
        self.data_bytes += len(data)
        if self.seekable:
            end = self.sink.tell()
            self.sink.seek(0)
            self.sink.write(_header(self.sample_rate, self.channels, self.data_bytes))
            self.sink.seek(end)
        self.sink.flush()


class Speaker:
    """Plays chunks on the default output device as they come (``pip install 'cadence-pipeline[play]'``)."""

    def __init__(self, sample_rate: int, channels: int):
        try:
            import sounddevice
        except (ModuleNotFoundError, OSError) as err:  # OSError: PortAudio itself is missing
            raise PipelineError(
                f"--play needs sounddevice and PortAudio ({err}); install them with "
                "pip install 'cadence-pipeline[play]', or write a file and play that"
            ) from None
        self.stream = sounddevice.OutputStream(
            samplerate=sample_rate, channels=channels, dtype="float32"
        )
        self.stream.start()

    def write(self, audio: Tensor) -> None:
        if audio.shape[-1]:
            self.stream.write(np.ascontiguousarray(audio.detach().float().cpu().numpy().T))

    def close(self) -> None:
        self.stream.stop()
        self.stream.close()


def stream_to(
    chunks,
    *,
    sink: BinaryIO | None,
    sample_rate: int,
    channels: int,
    play: bool = False,
    lead: Tensor | None = None,
    on_chunk=None,
) -> int:
    """Write the audio of ``chunks`` (:class:`~cadence.pipeline.streaming.StreamChunk` s) as
    they come: into ``sink`` as a growing WAV and/or to the speaker.

    Args:
        lead: ``(c, t)`` audio written first (the prompt, for ``--include-prompt``).
        on_chunk: called with the samples per channel written so far after each chunk.

    Returns:
        samples per channel written.
    """
    wav = GrowingWav(sink, sample_rate, channels) if sink is not None else None
    speaker = Speaker(sample_rate, channels) if play else None
    written = 0
    try:
        if lead is not None:
            _emit(lead, wav, speaker)
            written += lead.shape[-1]
        for chunk in chunks:
            _emit(chunk.audio, wav, speaker)
            written += chunk.audio.shape[-1]
            if on_chunk is not None:
                on_chunk(written)
    finally:
        if speaker is not None:
            speaker.close()
    return written


def _emit(audio: Tensor, wav: GrowingWav | None, speaker: Speaker | None) -> None:
    if wav is not None:
        wav.write(audio)
    if speaker is not None:
        speaker.write(audio)
