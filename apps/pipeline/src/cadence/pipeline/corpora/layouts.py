"""Readers for the corpus layouts people have on disk: each finds utterances (audio + text + speaker).

Written by hand rather than through lhotse's recipes (see :mod:`.lhotse_cuts` for a CutSet
reader): each layout is a few lines of path rules, and lhotse would add some 40 packages to
every install for them. Every reader raises :class:`CorpusLayoutError` naming the layout it
expected when a directory does not hold it. Audio that a layout lists but that is missing is
an error (a broken download) except in VCTK, where known gaps are skipped and counted.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .manifest import CorpusLayoutError, Utterance

__all__ = ["LAYOUTS", "Found", "read_layout"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class Found:
    """What a reader found: the utterances, and ``path -> reason`` for anything it skipped."""

    utterances: list[Utterance]
    skipped: dict[str, str] = field(default_factory=dict)


def _directory(root: Path, layout: str) -> Path:
    if not root.is_dir():
        raise CorpusLayoutError(f"{root} is not a directory (expected a {layout} corpus)")
    return root


def _missing(root: Path, layout: str, expected: str, missing: list[Path]) -> None:
    if missing:
        raise CorpusLayoutError(
            f"{root} ({layout}): {len(missing)} listed audio files are missing, e.g. "
            f"{[str(p) for p in missing[:3]]}; expected {expected}. Is the download complete?"
        )


def read_librispeech(root: Path) -> Found:
    """``[SUBSET/]SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt`` (``ID TEXT`` lines) + ``ID.flac``."""
    expected = "SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt beside SPEAKER-CHAPTER-NNNN.flac"
    transcripts = sorted(_directory(root, "LibriSpeech").rglob("*.trans.txt"))
    if not transcripts:
        raise CorpusLayoutError(f"no *.trans.txt under {root}: a LibriSpeech corpus has {expected}")
    found, missing = [], []
    for transcript in transcripts:
        for number, line in enumerate(transcript.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            uid, _, text = line.strip().partition(" ")
            if not text:
                raise CorpusLayoutError(f"{transcript}:{number}: expected 'ID TEXT', got {line!r}")
            audio = transcript.parent / f"{uid}.flac"
            if not audio.is_file():
                missing.append(audio)
            found.append(Utterance(uid, audio, text.strip(), uid.split("-")[0]))
    _missing(root, "LibriSpeech", expected, missing)
    return Found(found)


def read_libritts(root: Path) -> Found:
    """``[SUBSET/]SPEAKER/CHAPTER/ID.wav`` + ``ID.normalized.txt`` (LibriTTS and LibriTTS-R)."""
    expected = "SPEAKER/CHAPTER/SPEAKER_CHAPTER_X_Y.wav with SPEAKER_CHAPTER_X_Y.normalized.txt"
    texts = sorted(_directory(root, "LibriTTS").rglob("*.normalized.txt"))
    if not texts:
        raise CorpusLayoutError(
            f"no *.normalized.txt under {root}: a LibriTTS corpus has {expected}"
        )
    found, missing = [], []
    for text_file in texts:
        uid = text_file.name.removesuffix(".normalized.txt")
        audio = text_file.with_name(f"{uid}.wav")
        if not audio.is_file():
            missing.append(audio)
        text = text_file.read_text(encoding="utf-8").strip()
        found.append(Utterance(uid, audio, text, uid.split("_")[0]))
    _missing(root, "LibriTTS", expected, missing)
    return Found(found)


def read_ljspeech(root: Path) -> Found:
    """``metadata.csv`` (``ID|text|normalized text``) + ``wavs/ID.wav``; one speaker, ``LJ``."""
    metadata = _directory(root, "LJSpeech") / "metadata.csv"
    if not metadata.is_file():
        raise CorpusLayoutError(
            f"{metadata} not found: an LJSpeech corpus has metadata.csv (ID|text|normalized) and wavs/ID.wav"
        )
    found, missing = [], []
    # split on "|" by hand: the texts hold quotes that a CSV reader would take as quoting
    for number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) < 2:
            raise CorpusLayoutError(
                f"{metadata}:{number}: expected 'ID|text|normalized', got {line!r}"
            )
        text = parts[2] if len(parts) > 2 and parts[2].strip() else parts[1]
        audio = root / "wavs" / f"{parts[0]}.wav"
        if not audio.is_file():
            missing.append(audio)
        found.append(Utterance(parts[0], audio, text.strip(), "LJ"))
    _missing(root, "LJSpeech", "wavs/ID.wav for every metadata.csv line", missing)
    return Found(found)


def _vctk_audio(root: Path, mic: str) -> Callable[[str, str], Path]:
    if (root / "wav48_silence_trimmed").is_dir():  # VCTK 0.92
        return lambda spk, uid: root / "wav48_silence_trimmed" / spk / f"{uid}_{mic}.flac"
    if (root / "wav48").is_dir():  # VCTK 0.80
        return lambda spk, uid: root / "wav48" / spk / f"{uid}.wav"
    raise CorpusLayoutError(
        f"{root} has neither wav48_silence_trimmed/ (VCTK 0.92) nor wav48/ (VCTK 0.80) beside txt/"
    )


def read_vctk(root: Path, *, mic: str = "mic1") -> Found:
    """``txt/SPK/SPK_NNN.txt`` + ``wav48_silence_trimmed/SPK/SPK_NNN_mic1.flac`` (0.92) or ``wav48/SPK/SPK_NNN.wav`` (0.80).

    A transcript without audio (VCTK has a few) is skipped and listed.
    """
    if mic not in ("mic1", "mic2"):
        raise CorpusLayoutError(f"VCTK has microphones mic1 and mic2, not {mic!r}")
    texts = _directory(root, "VCTK") / "txt"
    if not texts.is_dir():
        raise CorpusLayoutError(f"{texts} not found: a VCTK corpus has txt/SPK/SPK_NNN.txt")
    audio_of = _vctk_audio(root, mic)
    found, skipped = [], {}
    for text_file in sorted(texts.glob("*/*.txt")):
        speaker, uid = text_file.parent.name, text_file.stem
        audio = audio_of(speaker, uid)
        if not audio.is_file():
            skipped[str(text_file)] = f"no audio {audio}"
            continue
        found.append(Utterance(uid, audio, text_file.read_text(encoding="utf-8").strip(), speaker))
    if not found:
        raise CorpusLayoutError(f"{root}: no txt/SPK/*.txt has its audio (VCTK layout, {mic})")
    return Found(found, skipped)


def _transcript(audio: Path) -> Path | None:
    for suffix in (".txt", ".lab", ".normalized.txt"):
        candidate = audio.with_name(audio.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def _audio_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
            yield path


def read_folder(root: Path) -> Found:
    """Any folder: each audio file with a transcript beside it (same name, ``.txt`` or ``.lab``).

    The speaker is the first folder under ``root`` (``root/SPEAKER/.../a.wav``), or the
    file's own name when it lies in ``root`` itself. The id is the path without suffix.
    """
    found, skipped = [], {}
    for audio in _audio_files(_directory(root, "folder")):
        transcript = _transcript(audio)
        if transcript is None:
            skipped[str(audio)] = "no transcript (same name, .txt or .lab) beside it"
            continue
        relative = audio.relative_to(root).with_suffix("")
        speaker = relative.parts[0] if len(relative.parts) > 1 else relative.name
        text = transcript.read_text(encoding="utf-8").strip()
        found.append(Utterance(relative.as_posix(), audio, text, speaker))
    if not found:
        raise CorpusLayoutError(
            f"{root}: no audio file ({', '.join(AUDIO_SUFFIXES)}) has a transcript beside it "
            "(a.wav + a.txt); a folder corpus needs them"
        )
    return Found(found, skipped)


def _manifest_rows(path: Path) -> list[dict[str, str]]:
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise CorpusLayoutError(f"{path}:{number}: not JSON ({err})") from err
        return rows
    if path.suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))
    raise CorpusLayoutError(f"{path}: a manifest is a .jsonl, .csv or .tsv file")


def read_manifest(path: Path) -> Found:
    """A ``.jsonl`` / ``.csv`` / ``.tsv`` with ``path`` and ``text`` (optional ``speaker``, ``id``).

    Paths are relative to the manifest file. Without a ``speaker`` column, the speaker is the
    audio file's folder name.
    """
    if not path.is_file():
        raise CorpusLayoutError(f"{path} is not a file (expected a .jsonl/.csv/.tsv manifest)")
    found, missing = [], []
    for number, row in enumerate(_manifest_rows(path), 1):
        if not isinstance(row, dict) or not row.get("path") or row.get("text") is None:
            raise CorpusLayoutError(
                f"{path}: row {number} needs 'path' and 'text' (optional 'speaker', 'id'), got {row!r}"
            )
        audio = (path.parent / str(row["path"])).resolve()
        if not audio.is_file():
            missing.append(audio)
        uid = str(row.get("id") or Path(str(row["path"])).with_suffix("").as_posix())
        speaker = str(row.get("speaker") or audio.parent.name)
        found.append(Utterance(uid, audio, str(row["text"]).strip(), speaker))
    _missing(path, "manifest", "audio at each row's path, relative to the manifest", missing)
    if not found:
        raise CorpusLayoutError(f"{path} lists no utterances")
    return Found(found)


def _read_lhotse(path: Path) -> Found:
    from .lhotse_cuts import read_cuts

    return read_cuts(path)


LAYOUTS: dict[str, Callable[[Path], Found]] = {
    "librispeech": read_librispeech,
    "libritts": read_libritts,
    "libritts_r": read_libritts,
    "ljspeech": read_ljspeech,
    "vctk": read_vctk,
    "folder": read_folder,
    "manifest": read_manifest,
    "lhotse": _read_lhotse,
}


def read_layout(layout: str, root: str | Path) -> Found:
    """The utterances of the corpus at ``root``, laid out as ``layout`` (a key of :data:`LAYOUTS`)."""
    if layout not in LAYOUTS:
        raise CorpusLayoutError(f"unknown corpus layout {layout!r}; known: {', '.join(LAYOUTS)}")
    return LAYOUTS[layout](Path(root))
