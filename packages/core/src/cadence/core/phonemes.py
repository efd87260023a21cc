"""Phoneme symbols as espeak-ng writes them, shared by the tokenizer and the evaluation.

Symbols are IPA strings with stress marks attached to vowels (``"ˈæ"``). The phonetic
encoder, the token metrics and the phoneme error rate all strip the marks, so that ``"ˈæ"``
and ``"æ"`` are one phoneme; one definition keeps them scoring the same symbols.
"""

# l phonemes

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["STRESS_MARKS", "strip_stress"]

STRESS_MARKS = ("ˈ", "ˌ")


def strip_stress(phonemes: Sequence[str]) -> list[str]:
    """Drop the stress marks ``ˈ`` ``ˌ`` and the symbols left empty: ``"ˈæ"`` -> ``"æ"``."""
    if isinstance(phonemes, str):
        raise TypeError(
            "phonemes must be a sequence of symbols such as ['k', 'ˈæ', 't'], not one string "
            f"({phonemes!r}); multi-character symbols cannot be recovered from a string"
        )
    out = []
    for symbol in phonemes:
        for mark in STRESS_MARKS:
            symbol = symbol.replace(mark, "")
        symbol = symbol.strip()
        if symbol:
            out.append(symbol)
    return out
