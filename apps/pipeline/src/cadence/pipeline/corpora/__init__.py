"""Real corpora on disk -> Cadence corpus manifests (``train.jsonl`` / ``valid.jsonl``).

``cadence corpus prepare LAYOUT SOURCE --out DIR`` (or :func:`prepare_corpus`) reads
LibriSpeech, LibriTTS / LibriTTS-R, LJSpeech, VCTK, any folder of audio + transcripts, a
path/text manifest or a lhotse CutSet, holds whole speakers out (deterministically), and
writes the manifests every training stage reads. See docs/real_recipe.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from .layouts import LAYOUTS, Found, read_layout
from .lhotse_cuts import read_cuts
from .manifest import CorpusLayoutError, Utterance, split_by_speaker, write_corpus

__all__ = [
    "LAYOUTS",
    "CorpusLayoutError",
    "Found",
    "Utterance",
    "prepare_corpus",
    "read_cuts",
    "read_layout",
    "split_by_speaker",
    "write_corpus",
]


def prepare_corpus(
    layout: str,
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    valid_fraction: float = 0.05,
    seed: int = 0,
) -> Path:
    """Read the corpus at ``source`` (laid out as ``layout``) and write its manifests to ``out``."""
    found = read_layout(layout, Path(source))
    return write_corpus(
        out,
        found.utterances,
        source=str(source),
        layout=layout,
        valid_fraction=valid_fraction,
        seed=seed,
        skipped=found.skipped,
    )
