"""Miniature copies of the real corpus layouts, for tests and runnable docs.

:func:`write_miniature` lays out a dozen short clips exactly as LibriSpeech, LibriTTS, LJSpeech
or VCTK name them on disk (same folders, file names, transcript formats and sample rates), so
that readers and recipes run end to end without the real download. The audio is a voiced
tone per speaker plus noise: enough to exercise every stage, not to learn speech from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["MINIATURES", "write_miniature"]

_WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "bright",
    "stars",
    "shine",
]


def _clip(path: Path, sample_rate: int, seed: int, seconds: float) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 100 + 15 * (seed % 7)
    audio = 0.3 * np.sin(2 * math.pi * pitch * t) * (0.6 + 0.4 * np.sin(2 * math.pi * 3 * t))
    audio += 0.02 * rng.standard_normal(t.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio.astype(np.float32), sample_rate)


def _text(i: int) -> str:
    return " ".join(_WORDS[(i + k) % len(_WORDS)] for k in range(4)).capitalize() + "."


def _librispeech(root: Path, seconds: float) -> None:
    i = 0
    for speaker in ("19", "26", "103"):
        for chapter in ("198", "495"):
            folder = root / "train-clean-100" / speaker / chapter
            lines = []
            for n in range(2):
                uid = f"{speaker}-{chapter}-{n:04d}"
                _clip(folder / f"{uid}.flac", 16000, i, seconds)
                lines.append(f"{uid} {_text(i).upper().rstrip('.')}")
                i += 1
            (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")


def _libritts(root: Path, seconds: float) -> None:
    i = 0
    for speaker in ("19", "26", "103"):
        for chapter in ("198", "495"):
            folder = root / "train-clean-100" / speaker / chapter
            for n in range(2):
                uid = f"{speaker}_{chapter}_{i:06d}_{n:06d}"
                _clip(folder / f"{uid}.wav", 24000, i, seconds)
                (folder / f"{uid}.normalized.txt").write_text(_text(i))
                (folder / f"{uid}.original.txt").write_text(_text(i).upper())
                i += 1


def _ljspeech(root: Path, seconds: float) -> None:
    lines = []
    for i in range(12):
        uid = f"LJ001-{i + 1:04d}"
        _clip(root / "wavs" / f"{uid}.wav", 22050, i, seconds)
        lines.append(f'{uid}|"{_text(i)}" No. {i}|"{_text(i)}" number {i}')
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")


def _vctk(root: Path, seconds: float) -> None:
    i = 0
    for speaker in ("p225", "p226", "p227", "p228"):
        for n in range(1, 4):
            uid = f"{speaker}_{n:03d}"
            (root / "txt" / speaker).mkdir(parents=True, exist_ok=True)
            (root / "txt" / speaker / f"{uid}.txt").write_text(_text(i) + "\n")
            for mic in ("mic1", "mic2"):
                path = root / "wav48_silence_trimmed" / speaker / f"{uid}_{mic}.flac"
                _clip(path, 48000, i, seconds)
            i += 1
    # VCTK 0.92 has transcripts without audio: the reader skips them
    (root / "txt" / "p225" / "p225_999.txt").write_text("No audio for this one.\n")


def _folder(root: Path, seconds: float) -> None:
    for i in range(12):
        path = root / f"spk{i % 4}" / f"utt{i:02d}.wav"
        _clip(path, 16000, i, seconds)
        path.with_suffix(".txt").write_text(_text(i))


MINIATURES: dict[str, Callable[[Path, float], None]] = {
    "librispeech": _librispeech,
    "libritts": _libritts,
    "ljspeech": _ljspeech,
    "vctk": _vctk,
    "folder": _folder,
}


def write_miniature(layout: str, root: str | Path, *, seconds: float = 0.5) -> Path:
    """Lay out 12 utterances (3 or 4 speakers; LJSpeech has one) at ``root`` as ``layout`` names them."""
    if layout not in MINIATURES:
        raise ValueError(f"no miniature for {layout!r}; choices: {', '.join(MINIATURES)}")
    root = Path(root)
    MINIATURES[layout](root, seconds)
    return root
