"""Phoneme symbols of a corpus manifest: stress stripped, a sorted vocabulary.

Symbols are IPA strings as espeak-ng writes them, stress marks attached to vowels (``"ˈæ"``);
the phonetic encoder and the token metrics strip the marks, so that ``"ˈæ"`` and ``"æ"`` are
one phoneme and the vocabulary stays small.
"""

# l phonemes

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from cadence.core.phonemes import STRESS_MARKS, strip_stress

__all__ = ["STRESS_MARKS", "corpus_phonemes", "read_manifest", "strip_stress"]


def read_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The entries of a JSONL manifest (one JSON object per line)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def corpus_phonemes(manifests: str | os.PathLike | Iterable[str | os.PathLike]) -> tuple[str, ...]:
    """Every stress-stripped phoneme of the manifests' ``"phonemes"`` fields, sorted.

    Raises:
        ValueError: a line has no ``"phonemes"``, or the manifests hold none.
    """
    if isinstance(manifests, (str, os.PathLike)):
        manifests = [manifests]
    symbols: set[str] = set()
    for path in manifests:
        for number, entry in enumerate(read_manifest(path), start=1):
            if "phonemes" not in entry:
                raise ValueError(f"{path}:{number}: no 'phonemes' field")
            symbols.update(strip_stress(entry["phonemes"]))
    if not symbols:
        raise ValueError("the manifests hold no phonemes")
    return tuple(sorted(symbols))
