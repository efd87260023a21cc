"""Utterances found on disk -> the corpus manifests Cadence trains on.

A corpus, for every stage of :mod:`cadence.pipeline.training`, is a directory holding
``train.jsonl`` and ``valid.jsonl`` (one JSON object per utterance: ``id``, ``path`` relative to
the manifest, ``text``, ``speaker``, ``duration``, ``num_samples``, ``sample_rate``) and a
``corpus.json`` summary; the toy corpus (``cadence-toy-corpus``) writes the same keys. The
readers in :mod:`.layouts` and :mod:`.lhotse_cuts` find the utterances; :func:`write_corpus`
splits them and writes the manifests. The audio stays where it is (a real corpus is tens of
gigabytes): the manifests point at it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

from cadence.core.io import write_json, write_text

from ..components import PipelineError

__all__ = ["CorpusLayoutError", "Utterance", "split_by_speaker", "write_corpus"]


class CorpusLayoutError(PipelineError):
    """A directory is not laid out like the corpus it was said to be (the message names what was expected)."""


@dataclass(frozen=True)
class Utterance:
    """One utterance a reader found: its audio file, transcript and speaker."""

    id: str
    path: Path
    text: str
    speaker: str


def _rank(name: str, seed: int) -> str:
    # A hash, not random.shuffle: the split of a speaker does not depend on which other
    # speakers are present, so adding a subset of the corpus never moves a speaker.
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def split_by_speaker(
    utterances: list[Utterance], *, valid_fraction: float = 0.05, min_valid: int = 1, seed: int = 0
) -> tuple[list[Utterance], list[Utterance], str]:
    """Hold out whole speakers (deterministic); returns ``(train, valid, how)``.

    ``round(valid_fraction * speakers)`` speakers (at least ``min_valid``, at most all but one)
    go to ``valid``, chosen by a hash of ``seed`` and the speaker name. A corpus of one speaker
    (LJSpeech) cannot hold a speaker out: its utterances are split the same way instead, and
    ``how`` is ``"utterance"`` rather than ``"speaker"``.
    """
    if not 0 < valid_fraction < 1:
        raise PipelineError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    speakers = sorted({u.speaker for u in utterances})
    if len(speakers) >= 2:
        count = min(max(min_valid, round(valid_fraction * len(speakers))), len(speakers) - 1)
        held = set(sorted(speakers, key=lambda s: _rank(s, seed))[:count])
        train = [u for u in utterances if u.speaker not in held]
        return train, [u for u in utterances if u.speaker in held], "speaker"
    if len(utterances) < 2:
        raise PipelineError(
            f"a corpus needs at least 2 utterances to split, found {len(utterances)}"
        )
    count = min(max(min_valid, round(valid_fraction * len(utterances))), len(utterances) - 1)
    held = set(sorted((u.id for u in utterances), key=lambda i: _rank(i, seed))[:count])
    return (
        [u for u in utterances if u.id not in held],
        [u for u in utterances if u.id in held],
        "utterance",
    )


def _row(utterance: Utterance, root: Path) -> dict[str, Any]:
    try:
        info = sf.info(str(utterance.path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise PipelineError(f"{utterance.path} is not a readable audio file: {err}") from err
    return {
        "id": utterance.id,
        # relative to the manifest, so that the corpus and its manifests can move together
        "path": Path(os.path.relpath(utterance.path, root)).as_posix(),
        "text": utterance.text,
        "speaker": utterance.speaker,
        "duration": round(info.frames / info.samplerate, 4),
        "num_samples": int(info.frames),
        "sample_rate": int(info.samplerate),
    }


def write_corpus(
    out: str | os.PathLike,
    utterances: Iterable[Utterance],
    *,
    source: str,
    layout: str,
    valid_fraction: float = 0.05,
    seed: int = 0,
    skipped: dict[str, str] | None = None,
) -> Path:
    """Write ``out/train.jsonl``, ``out/valid.jsonl`` and ``out/corpus.json``; returns ``out``.

    Ids must be unique (a clear error names a repeated one). Rows are sorted by id, so the
    same files on disk always give the same manifests, byte for byte. ``skipped`` (what a
    reader left out, ``path -> reason``) is counted in ``corpus.json`` with a few examples.
    """
    out = Path(out).resolve()
    found = sorted(utterances, key=lambda u: u.id)
    if not found:
        raise CorpusLayoutError(f"no utterances found in {source} ({layout} layout)")
    repeated = [i for i, n in Counter(u.id for u in found).items() if n > 1]
    if repeated:
        raise CorpusLayoutError(f"{source}: utterance ids occur twice, e.g. {repeated[:3]}")
    train, valid, how = split_by_speaker(found, valid_fraction=valid_fraction, seed=seed)
    summary: dict[str, Any] = {
        "source": str(source),
        "layout": layout,
        "split_by": how,
        "seed": seed,
    }
    skipped = skipped or {}
    summary["skipped"] = {"count": len(skipped), "examples": dict(sorted(skipped.items())[:5])}
    for split, rows in (("train", train), ("valid", valid)):
        records = [_row(u, out) for u in rows]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        write_text(out / f"{split}.jsonl", text)
        summary[split] = {
            "utterances": len(records),
            "hours": round(sum(r["duration"] for r in records) / 3600, 4),
            "speakers": sorted({r["speaker"] for r in records}),
        }
    write_json(out / "corpus.json", summary)
    return out
