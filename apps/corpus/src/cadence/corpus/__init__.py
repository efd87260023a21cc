"""Offline toy speech corpus: espeak-ng synthesis with timed IPA phonemes.

- :func:`synthesize`: a ctypes binding to libespeak-ng (text -> int16 audio + phonemes).
- :func:`generate_corpus`: a deterministic multi-speaker corpus (FLAC + JSON-lines).
- :func:`summarize_corpus`: read back what a corpus directory holds.
- :data:`SENTENCES`: the built-in English sentences.

The command line is ``cadence-toy-corpus`` (or ``python -m cadence.corpus``).
Synthesis needs libespeak-ng: ``pip install "cadence-corpus"`` or
``apt-get install espeak-ng``; reading an existing corpus needs neither.
"""

from __future__ import annotations

from cadence.corpus.generate import (
    DEFAULT_VARIANTS,
    DEFAULT_VOICES,
    GENERATOR_VERSION,
    MANIFEST_FIELDS,
    SPLITS,
    CorpusSummary,
    SpeakerStyle,
    generate_corpus,
    read_manifest,
    regenerate_command,
    speaker_styles,
    summarize_corpus,
)
from cadence.corpus.texts import SENTENCES
from cadence.naturalspeech2.espeak import (
    NATIVE_SAMPLE_RATE,
    EspeakError,
    EspeakLibrary,
    EspeakNotFoundError,
    Phoneme,
    Synthesis,
    espeak_available,
    espeak_info,
    find_espeak,
    synthesize,
)

__all__ = [
    "DEFAULT_VARIANTS",
    "DEFAULT_VOICES",
    "GENERATOR_VERSION",
    "MANIFEST_FIELDS",
    "NATIVE_SAMPLE_RATE",
    "SENTENCES",
    "SPLITS",
    "CorpusSummary",
    "EspeakError",
    "EspeakLibrary",
    "EspeakNotFoundError",
    "Phoneme",
    "SpeakerStyle",
    "Synthesis",
    "espeak_available",
    "espeak_info",
    "find_espeak",
    "generate_corpus",
    "read_manifest",
    "regenerate_command",
    "speaker_styles",
    "summarize_corpus",
    "synthesize",
]
