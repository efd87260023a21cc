"""Phoneme strings and the phoneme error rate (PER), the intelligibility figure of Cadence.

Symbols are IPA strings as espeak-ng writes them (stress marks attached to vowels); scoring
strips the stress marks so that a recognizer's small vocabulary and a transcript agree.
"""

# l phonemes

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from cadence.core.phonemes import STRESS_MARKS, strip_stress

__all__ = [
    "BLANK",
    "STRESS_MARKS",
    "edit_distance",
    "normalize_phonemes",
    "phoneme_error_rate",
    "read_manifest",
]

BLANK = 0
# Scoring strips stress as the phonetic tokenizer does: one definition, in core.
normalize_phonemes = strip_stress


def read_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The entries of a JSONL manifest (one JSON object per line)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def phoneme_error_rate(
    references: Sequence[Sequence[str]], hypotheses: Sequence[Sequence[str]]
) -> float:
    """Total edit distance over total reference length, corpus-level (as WER is computed).

    Both sides are normalized (:func:`normalize_phonemes`), so stress marks never count.
    An empty hypothesis scores 1.0; insertions can push the rate above 1.
    """
    if len(references) != len(hypotheses):
        raise ValueError(
            f"{len(references)} references but {len(hypotheses)} hypotheses; they must pair up"
        )
    edits = total = 0
    for ref, hyp in zip(references, hypotheses):
        ref, hyp = normalize_phonemes(ref), normalize_phonemes(hyp)
        edits += edit_distance(ref, hyp)
        total += len(ref)
    if total == 0:
        raise ValueError("the references hold no phonemes; the error rate is undefined")
    return edits / total
