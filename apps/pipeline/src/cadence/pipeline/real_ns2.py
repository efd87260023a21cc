"""The real recipes' ``durations`` step: NaturalSpeech 2's shards, durations from the aligner.

After the ``aligner`` stage, each split of the phonemized corpus goes once through the codec
(latents and codes), the aligner (MAS durations over log-mel frames at the codec's frame rate)
and the pitch tracker, into ``OUT/ns2_shards/{train,valid}``
(:func:`cadence.naturalspeech2.preprocess_corpus`, which streams the corpus); the
``naturalspeech2`` stage reads them, so no training process redoes it. A split whose
``manifest.json`` exists is done; an interrupted split is redone from its start.
"""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console

from cadence.core.checkpoint import CONFIG_NAME
from cadence.core.data import ShardReader
from cadence.core.interfaces import LatentCodec

from .components import PipelineError, load_component

__all__ = ["write_ns2_shards"]


def write_ns2_shards(pipeline: Path, shards: Path, corpus: Path, console: Console) -> Path:
    """``shards/train`` and ``shards/valid`` from ``corpus`` with ``pipeline/{codec,aligner}``."""
    from cadence.naturalspeech2 import Aligner, PhonemeVocabulary, preprocess_corpus

    if all((shards / split / "manifest.json").is_file() for split in ("train", "valid")):
        return shards
    for needed in ("codec", "aligner"):
        if not (pipeline / needed / CONFIG_NAME).is_file():
            raise PipelineError(
                f"durations: no {pipeline / needed}; run the `{needed}` step first "
                f"(cadence recipe ... --only {needed})"
            )
    # one GPU when there is one: EnCodec and MAS over a corpus of hundreds of hours
    device = "cuda" if torch.cuda.is_available() else "cpu"
    codec = load_component(pipeline / "codec", "codec", LatentCodec, device=device)
    aligner = load_component(pipeline / "aligner", "aligner", Aligner, device=device)
    vocabulary = None
    for split in ("train", "valid"):
        target = shards / split
        if not (target / "manifest.json").is_file():
            console.print(f"[bold]durations[/] {split}: EnCodec latents, aligner durations, F0")
            preprocess_corpus(corpus, codec, target, split=split, vocabulary=vocabulary,
                              durations="aligner", aligner=aligner, device=device)  # fmt: skip
        # valid is encoded with train's vocabulary (the model's)
        vocabulary = PhonemeVocabulary(tuple(ShardReader(shards / "train").metadata["phonemes"]))
    return shards
