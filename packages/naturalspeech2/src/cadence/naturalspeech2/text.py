"""Text front end: IPA phonemes from libespeak-ng, a phoneme vocabulary, duration targets.

G2P goes through this package's ctypes binding to libespeak-ng
(:mod:`cadence.naturalspeech2.espeak`): the phonemes are espeak-ng's own IPA phoneme
events, exactly the symbols the toy corpus stores in ``train.jsonl``, so what the model
reads at synthesis time matches what it was trained on. A silence symbol opens every
sequence because espeak-ng starts every utterance with ~0.1 s of silence that must belong
to some phoneme when durations are counted.
"""

# l phonemes

from __future__ import annotations

import itertools
import json
import os
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .espeak import synthesize

__all__ = [
    "PAD",
    "SILENCE",
    "SPECIAL_SYMBOLS",
    "UNK",
    "WORD_BOUNDARY",
    "PhonemeVocabulary",
    "UnreadableTextWarning",
    "durations_from_starts",
    "phonemize",
    "read_corpus_phonemes",
    "unreadable_characters",
]

PAD = "<pad>"
UNK = "<unk>"
#: Reserved for front ends that mark word boundaries; espeak-ng's phoneme events carry none.
WORD_BOUNDARY = "|"
#: Leading silence (espeak-ng starts every utterance with ~0.1 s of it).
SILENCE = "_"
SPECIAL_SYMBOLS = (PAD, UNK, WORD_BOUNDARY, SILENCE)

# The scripts (a word of the Unicode character name) an espeak-ng language reads. A letter
# of another script is spelled out by name ("Chinese letter", "Japanese letter") or guessed
# at, which a model trained on one language then says. Latin is read by every voice.
_LATIN_LANGUAGES = [
    "af",
    "cs",
    "cy",
    "da",
    "de",
    "en",
    "eo",
    "es",
    "et",
    "eu",
    "fi",
    "fr",
    "ga",
    "hr",
    "hu",
    "id",
    "is",
    "it",
    "lt",
    "lv",
    "ms",
    "mt",
    "nb",
    "nl",
    "pl",
    "pt",
    "ro",
    "sk",
    "sl",
    "sq",
    "sv",
    "sw",
    "tr",
    "vi",
]
_SCRIPTS: dict[str, tuple[str, ...]] = {
    **{language: () for language in _LATIN_LANGUAGES},
    **{language: ("CYRILLIC",) for language in ("ru", "uk", "be", "bg", "mk", "sr", "kk")},
    "el": ("GREEK",),
    "ja": ("HIRAGANA", "KATAKANA", "CJK"),
    "cmn": ("CJK",),
    "yue": ("CJK",),
    "zh": ("CJK",),
    "ko": ("HANGUL",),
    **{language: ("ARABIC",) for language in ("ar", "fa", "ur")},
    "he": ("HEBREW",),
    **{language: ("DEVANAGARI",) for language in ("hi", "mr", "ne")},
}


class UnreadableTextWarning(UserWarning):
    """The text holds letters the G2P of the model's language cannot read."""


def unreadable_characters(text: str, voice: str = "en-us") -> list[str]:
    """The letters of ``text`` that espeak-ng's ``voice`` cannot read, in order of appearance.

    A letter is readable when it belongs to a script of the voice's language (Latin always
    is). Digits, punctuation, symbols and spaces are never flagged; a language this module
    has no table for flags nothing.
    """
    language = voice.lower().split("-")[0].split("_")[0]
    scripts = _SCRIPTS.get(language)
    if scripts is None:
        return []
    allowed = {"LATIN", *scripts}
    bad: dict[str, None] = {}
    for char in text:
        if unicodedata.category(char) in ("Lu", "Ll", "Lt", "Lo"):
            words = unicodedata.name(char, "").split()
            if not allowed.intersection(words):
                bad[char] = None
    return list(bad)


@dataclass(frozen=True)
class PhonemeVocabulary:
    """Phoneme symbols <-> ids; id 0 is padding, id 1 is the unknown symbol.

    The symbol list is stored in the model config (``NaturalSpeech2Config.phonemes``), so a
    checkpoint carries its own vocabulary.
    """

    symbols: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.symbols[: len(SPECIAL_SYMBOLS)] != SPECIAL_SYMBOLS:
            raise ValueError(
                f"a phoneme vocabulary starts with {SPECIAL_SYMBOLS}; build one with "
                "PhonemeVocabulary.build(sequences)"
            )
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("phoneme vocabulary has duplicate symbols")

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]]) -> PhonemeVocabulary:
        """The special symbols, then every symbol seen in ``sequences`` in sorted order."""
        seen = {s for seq in sequences for s in seq} - set(SPECIAL_SYMBOLS)
        return cls(SPECIAL_SYMBOLS + tuple(sorted(seen)))

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    def encode(self, phonemes: Sequence[str]) -> Tensor:
        """Symbols -> ``(l,)`` long ids; unseen symbols map to ``<unk>``."""
        index = {s: i for i, s in enumerate(self.symbols)}
        return torch.tensor([index.get(p, self.unk_id) for p in phonemes], dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.symbols[int(i)] for i in ids]


def phonemize(text: str, voice: str = "en-us") -> list[str]:
    """Text -> IPA phonemes with libespeak-ng, led by the silence symbol.

    Args:
        text: the text to speak.
        voice: espeak-ng voice (language) name; the toy corpus uses ``"en-us"`` and ``"en"``.

    Raises:
        cadence.naturalspeech2.espeak.EspeakNotFoundError: no libespeak-ng here; the message
            names the install (``pip install espeakng-loader`` or ``apt-get install espeak-ng``).
        cadence.naturalspeech2.espeak.EspeakError: espeak-ng has no such voice.
        ValueError: empty text.

    Warns:
        UnreadableTextWarning: ``text`` holds letters the voice cannot read (Japanese text for
            an English model), naming them (:func:`unreadable_characters`).
    """
    if not text.strip():
        raise ValueError("cannot phonemize empty text")
    bad = unreadable_characters(text, voice)
    if bad:
        shown = " ".join(bad[:12]) + (f" (and {len(bad) - 12} more)" if len(bad) > 12 else "")
        warnings.warn(
            UnreadableTextWarning(
                f"the {voice} text front end cannot read {shown}: espeak-ng spells such letters "
                f"out by name or guesses; write the text in the model's language ({voice})"
            ),
            stacklevel=2,
        )
    # The binding reports phonemes as synthesis events; synthesizing a sentence costs a few
    # milliseconds, and the events are the same ones the corpus timings come from.
    synthesis = synthesize(text, voice)
    return [SILENCE] + [p.symbol for p in synthesis.phonemes]


def durations_from_starts(
    starts: Sequence[float], total_seconds: float, frame_rate: float, num_frames: int
) -> np.ndarray:
    """espeak-ng phoneme start times -> integer frame counts, silence first.

    Phoneme ``i`` lasts from its start to the next start, the last one to the end of the
    audio, and the leading silence from 0 to the first start. Boundaries are rounded to
    frames (so rounding errors do not accumulate) and the counts sum to ``num_frames``.

    Returns:
        ``(len(starts) + 1,)`` int64 frame counts (the first is the silence).
    """
    if len(starts) == 0:
        raise ValueError("no phoneme start times given")
    if any(b < a for a, b in itertools.pairwise(starts)):
        raise ValueError("phoneme start times must be non-decreasing")
    del total_seconds  # the last phoneme absorbs whatever the codec's frame count leaves
    bounds = np.round(np.asarray(starts, dtype=np.float64) * frame_rate).astype(np.int64)
    bounds = np.clip(bounds, 0, num_frames)
    edges = np.concatenate([[0], bounds, [num_frames]])
    return np.diff(edges)


def read_corpus_phonemes(corpus_dir: str | os.PathLike, split: str = "train") -> list[dict]:
    """The rows of ``<corpus_dir>/<split>.jsonl`` (id, path, phonemes, phoneme_starts, ...)."""
    path = Path(corpus_dir) / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no {split}.jsonl in {corpus_dir}")
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]
