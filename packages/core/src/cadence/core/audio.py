"""Audio I/O and conversions: soundfile for files, soxr for resampling.

Audio in Cadence is a float tensor ``(c, t)`` for one clip and ``(b, c, t)`` for a batch,
in [-1, 1]. Every failure names the file or the problem and what to do about it, because
the first thing a new user feeds a model is usually a file in the wrong format.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from torch import Tensor

from .io import atomic_file

__all__ = [
    "SUPPORTED_FORMATS",
    "AudioDecodeError",
    "AudioError",
    "AudioNotFoundError",
    "ChannelMismatchError",
    "EmptyAudioError",
    "NonFiniteAudioError",
    "NotAnAudioFileError",
    "SampleRateMismatchError",
    "TruncatedAudioWarning",
    "batch_audio",
    "blocks",
    "check_audio",
    "check_sample_rate",
    "convert_channels",
    "info",
    "load",
    "resample",
    "save",
    "to_mono",
]

# soundfile (libsndfile >= 1.1) reads and writes all of these.
SUPPORTED_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}


class AudioError(ValueError):
    """Base class of every audio problem Cadence reports."""


class AudioNotFoundError(AudioError, FileNotFoundError):
    """The audio file does not exist."""


class NotAnAudioFileError(AudioError):
    """The path exists but is a directory or another non-file (a FIFO, a device)."""


class AudioDecodeError(AudioError):
    """The file exists but cannot be read or decoded as audio (corrupt, unreadable, not audio)."""


class EmptyAudioError(AudioError):
    """The file or tensor holds no samples."""


class NonFiniteAudioError(AudioError):
    """The audio holds NaN or infinite samples."""


class SampleRateMismatchError(AudioError):
    """The audio is at a different sample rate from the one required."""


class ChannelMismatchError(AudioError):
    """The audio has a number of channels the consumer cannot use."""


class TruncatedAudioWarning(UserWarning):
    """The file's header promises more samples than it holds (a cut-off copy or download).

    :func:`load` warns and returns the samples that are there; dataset tools that must not
    train on half a file (``precompute``) turn the warning into a skip.
    """


def _check_finite(audio: Tensor, what: str) -> None:
    if not torch.isfinite(audio).all():
        bad = (~torch.isfinite(audio)).sum().item()
        raise NonFiniteAudioError(
            f"{what} contains {bad} NaN or infinite sample(s); "
            "clean or regenerate it (a NaN usually comes from a diverged model or a broken export)."
        )


def info(path: str | os.PathLike, *, what: str = "audio") -> sf._SoundFileInfo:
    """Header of an audio file (sample rate, channels, frames) without reading samples."""
    path = Path(path)
    _check_path(path, what)
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioDecodeError(f"cannot read audio header of {path}: {err}") from err


def blocks(
    path: str | os.PathLike, *, seconds: float = 0.1, what: str = "audio"
) -> tuple[Iterator[Tensor], int]:
    """Read a file block by block: ``(iterator of (c, t) float32 blocks, sample rate)``.

    The header is checked here (errors as :func:`load`'s); the samples are read lazily, one
    block of ``seconds`` at a time, so a consumer (streaming voice conversion) starts before
    the file is read to the end. Each block is checked for NaN and infinity as it is read.
    """
    header = info(path, what=what)
    if header.frames == 0:
        raise EmptyAudioError(f"{what} {path} holds no samples")
    size = max(1, round(seconds * header.samplerate))

    def read() -> Iterator[Tensor]:
        try:
            for block in sf.blocks(str(path), blocksize=size, dtype="float32", always_2d=True):
                audio = torch.from_numpy(np.ascontiguousarray(block.T))
                _check_finite(audio, f"{what} {path}")
                yield audio
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioDecodeError(f"cannot decode {what} {path}: {err}") from err

    return read(), int(header.samplerate)


def _check_path(path: Path, what: str = "audio") -> None:
    if not path.exists():
        raise AudioNotFoundError(f"{what} file not found: {path}")
    if path.is_dir():
        raise NotAnAudioFileError(
            f"{what} {path} is a directory; give an audio file ({', '.join(SUPPORTED_FORMATS)})"
        )
    if not path.is_file():
        raise NotAnAudioFileError(
            f"{what} {path} is not a regular file; give an audio file ({', '.join(SUPPORTED_FORMATS)})"
        )
    if not os.access(path, os.R_OK):
        raise AudioDecodeError(
            f"cannot read {what} {path}: permission denied; check the file's permissions"
        )


def load(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    channels: int | None = None,
    *,
    offset: int = 0,
    frames: int = -1,
    what: str = "audio",
) -> tuple[Tensor, int]:
    """Read an audio file (wav, flac, ogg, mp3) as float32 ``(c, t)``.

    Args:
        path: the file.
        sample_rate: resample to this rate if given; otherwise keep the file's rate.
        channels: convert to this many channels (1 = mono mixdown, 2 = duplicate mono) if given.
        offset: first frame to read, at the file's own rate.
        frames: number of frames to read at the file's own rate (-1 = to the end).
        what: what the file is, for messages ("prompt file not found: ...").

    Returns:
        ``(audio, sample_rate)`` with audio ``(c, t)`` float32.

    Raises:
        AudioNotFoundError: the path does not exist (also a FileNotFoundError).
        NotAnAudioFileError: the path is a directory or not a regular file.
        AudioDecodeError: the file is unreadable or not decodable audio (corrupt, truncated, not audio).
        EmptyAudioError: the file holds no samples.
        NonFiniteAudioError: the file holds NaN/inf samples (possible in float WAV).

    Warns:
        TruncatedAudioWarning: the header promises more samples than the file holds (checked
            when the whole file is read); the samples present are returned.
    """
    path = Path(path)
    _check_path(path, what)
    try:
        with sf.SoundFile(str(path)) as f:
            file_rate, promised, log = f.samplerate, f.frames, f.extra_info
            if offset:
                f.seek(offset)
            data = f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioDecodeError(
            f"cannot decode {path} as audio ({err}); supported formats: "
            f"{', '.join(SUPPORTED_FORMATS)}. Check the file is not truncated or mislabeled."
        ) from err
    if offset == 0 and frames < 0:
        _warn_if_truncated(path, what, file_rate, promised, data.shape[0], log)
    if data.size == 0:
        raise EmptyAudioError(f"{path} contains no audio samples")
    # numpy, not torch: torch.isfinite on a small tensor costs ~20 ms of thread start-up.
    if not np.isfinite(data).all():
        raise NonFiniteAudioError(
            f"{path} contains {int((~np.isfinite(data)).sum())} NaN or infinite sample(s); "
            "clean or regenerate it (a NaN usually comes from a diverged model or a broken export)."
        )
    audio = torch.from_numpy(np.ascontiguousarray(data.T))
    if channels is not None:
        audio = convert_channels(audio, channels)
    if sample_rate is not None and sample_rate != file_rate:
        audio = resample(audio, file_rate, sample_rate)
        file_rate = sample_rate
    return audio, int(file_rate)


# libsndfile's log of a WAV whose data chunk promises more bytes than the file holds:
# "data : 96000 (should be 47978)".
_SHORT_DATA_CHUNK = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)
# Sizes that streaming writers put in a header they cannot seek back to: not a promise.
_UNKNOWN_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF}


def _warn_if_truncated(
    path: Path, what: str, rate: int, header_frames: int, read_frames: int, log: str
) -> None:
    """Warn when the header promises more audio than the file holds (a cut-off download)."""
    promised = have = None
    match = _SHORT_DATA_CHUNK.search(log or "")
    if match is not None and int(match.group(1)) not in _UNKNOWN_SIZES:
        promised_bytes, have_bytes = int(match.group(1)), int(match.group(2))
        if promised_bytes > have_bytes:
            # libsndfile counts frames from the bytes present; scale to the promise.
            promised = round(read_frames * promised_bytes / max(have_bytes, 1))
            have = read_frames
    elif 0 < read_frames < header_frames:  # e.g. a FLAC whose stream ends early
        promised, have = header_frames, read_frames
    if promised is not None and have is not None:
        warnings.warn(
            TruncatedAudioWarning(
                f"{what} {path} is truncated: its header promises {promised / rate:.2f} s but "
                f"it holds {have / rate:.2f} s; using the {have / rate:.2f} s that are there"
            ),
            stacklevel=3,
        )


def save(
    path: str | os.PathLike,
    audio: Tensor,
    sample_rate: int,
    *,
    subtype: str | None = None,
) -> Path:
    """Write ``(c, t)`` (or ``(t,)``) audio; the format follows the suffix.

    Samples outside [-1, 1] are clipped for integer formats by libsndfile; NaN/inf are refused.
    The file is written to a temporary name and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_FORMATS:
        raise AudioError(
            f"cannot save {path}: unknown audio format {suffix!r}; use one of "
            f"{', '.join(SUPPORTED_FORMATS)}"
        )
    audio = audio.detach().float().cpu()
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise AudioError(f"save expects audio (c, t) or (t,), got shape {tuple(audio.shape)}")
    if audio.shape[-1] == 0:
        raise EmptyAudioError(f"refusing to save empty audio to {path}")
    _check_finite(audio, f"audio to save to {path}")
    with atomic_file(path) as tmp:
        sf.write(
            str(tmp),
            audio.T.numpy(),
            sample_rate,
            format=SUPPORTED_FORMATS[suffix],
            subtype=subtype,
        )
    return path


def resample(audio: Tensor, orig_sr: int, target_sr: int, *, quality: str = "HQ") -> Tensor:
    """Resample ``(..., t)`` audio with soxr (band-limited, phase-linear).

    Gradients do not flow through this (it runs in numpy); it is for data preparation.
    """
    if orig_sr <= 0 or target_sr <= 0:
        raise SampleRateMismatchError(
            f"sample rates must be positive, got {orig_sr} -> {target_sr}"
        )
    if orig_sr == target_sr:
        return audio
    lead, t = audio.shape[:-1], audio.shape[-1]
    flat = audio.detach().reshape(-1, t).float().cpu().numpy()
    # soxr wants (frames, channels)
    out = soxr.resample(np.ascontiguousarray(flat.T), orig_sr, target_sr, quality=quality)
    out = torch.from_numpy(np.ascontiguousarray(out.T if out.ndim == 2 else out[None]))
    return out.reshape(*lead, out.shape[-1]).to(device=audio.device, dtype=audio.dtype)


def to_mono(audio: Tensor) -> Tensor:
    """Average the channel axis (-2) of ``(..., c, t)`` down to one channel."""
    return audio.mean(dim=-2, keepdim=True)


def convert_channels(audio: Tensor, channels: int) -> Tensor:
    """Convert ``(..., c, t)`` to ``channels``: mono mixdown, or mono duplicated to many."""
    have = audio.shape[-2]
    if have == channels:
        return audio
    if channels == 1:
        return to_mono(audio)
    if have == 1:
        return audio.expand(*audio.shape[:-2], channels, audio.shape[-1]).contiguous()
    raise ChannelMismatchError(
        f"cannot convert {have}-channel audio to {channels} channels; "
        "mix down to mono first (convert_channels(audio, 1))"
    )


def check_sample_rate(sample_rate: int, expected: int, *, what: str = "audio") -> None:
    """Raise a clear error when ``sample_rate`` is not the one a model requires."""
    if sample_rate != expected:
        raise SampleRateMismatchError(
            f"{what} is at {sample_rate} Hz but {expected} Hz is required; resample it first, "
            f"e.g. cadence.core.audio.resample(audio, {sample_rate}, {expected}) "
            f"or load(path, sample_rate={expected})"
        )


def check_audio(
    audio: Tensor,
    *,
    channels: int | None = None,
    sample_rate: int | None = None,
    expected_sample_rate: int | None = None,
    min_samples: int = 1,
    what: str = "audio",
) -> Tensor:
    """Validate a model input batch ``(b, c, t)``; returns it unchanged.

    Checks rank, channel count, emptiness, finiteness and (when both are given) that
    ``sample_rate`` equals ``expected_sample_rate``.
    """
    if not isinstance(audio, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor (b, c, t), got {type(audio).__name__}")
    if audio.ndim != 3:
        hint = (
            " (add a batch/channel axis: audio[None] or audio[None, None])"
            if audio.ndim < 3
            else ""
        )
        raise AudioError(f"{what} must have shape (b, c, t), got {tuple(audio.shape)}{hint}")
    if not audio.is_floating_point():
        raise AudioError(f"{what} must be floating point in [-1, 1], got dtype {audio.dtype}")
    if channels is not None and audio.shape[1] != channels:
        raise ChannelMismatchError(
            f"{what} has {audio.shape[1]} channel(s) but {channels} are required; "
            f"use cadence.core.audio.convert_channels(audio, {channels})"
        )
    if audio.shape[-1] < min_samples or audio.shape[0] == 0:
        raise EmptyAudioError(
            f"{what} has shape {tuple(audio.shape)}: at least {min_samples} sample(s) per item needed"
        )
    _check_finite(audio, what)
    if sample_rate is not None and expected_sample_rate is not None:
        check_sample_rate(sample_rate, expected_sample_rate, what=what)
    return audio


def batch_audio(
    items: Tensor | Sequence[Tensor],
    sample_rate: int,
    *,
    target_rate: int | None = None,
    channels: int | None = None,
    min_samples: int = 1,
    what: str = "audio",
) -> tuple[Tensor, Tensor]:
    """The edge of a model pipeline: validate clips once, convert them, pad them once.

    Args:
        items: ``(b, c, t)`` (all items full length), one ``(c, t)`` clip, or a list of
            ``(c, t)`` / ``(t,)`` clips of different lengths.
        sample_rate: the clips' rate.
        target_rate: resample to this rate (each clip alone, so padding never bleeds in).
        channels: convert to this many channels (:func:`convert_channels`).
        min_samples: the fewest samples a clip may have after resampling.
        what: what the clips are, for messages ("prompt").

    Returns:
        ``(audio, lengths)``: ``(b, c, t_max)`` float32, zero past each clip's end, and
        ``(b,)`` long real samples per clip.
    """
    if isinstance(items, Tensor):
        items = list(items) if items.ndim == 3 else [items]
    items = list(items)
    if not items:
        raise EmptyAudioError(f"no {what} given")
    clips = []
    for i, clip in enumerate(items):
        name = what if len(items) == 1 else f"{what} {i}"
        if not isinstance(clip, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor (c, t), got {type(clip).__name__}")
        if clip.ndim == 1:
            clip = clip[None]
        if clip.ndim != 2:
            raise AudioError(f"{name} must be one clip (c, t), got shape {tuple(clip.shape)}")
        check_audio(clip[None], what=name)
        clip = clip.float()
        if channels is not None:
            clip = convert_channels(clip, channels)
        if target_rate is not None and target_rate != sample_rate:
            clip = resample(clip, sample_rate, target_rate)
        if clip.shape[-1] < min_samples:
            rate = target_rate or sample_rate
            raise EmptyAudioError(
                f"{name} is {clip.shape[-1] / rate:.3f} s long; at least {min_samples / rate:.3f} s is needed"
            )
        clips.append(clip)
    lengths = torch.tensor([c.shape[-1] for c in clips], dtype=torch.long)
    audio = clips[0].new_zeros(len(clips), clips[0].shape[0], int(lengths.max()))
    for i, clip in enumerate(clips):
        if clip.shape[0] != audio.shape[1]:
            raise ChannelMismatchError(
                f"{what} {i} has {clip.shape[0]} channel(s), {what} 0 has {audio.shape[1]}; give "
                "channels= to convert them"
            )
        audio[i, :, : clip.shape[-1]] = clip
    return audio, lengths


def duration_to_samples(seconds: float, sample_rate: int) -> int:
    """Whole samples in ``seconds`` at ``sample_rate`` (rounded down)."""
    return math.floor(seconds * sample_rate)
