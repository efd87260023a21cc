"""Reading a lhotse ``CutSet`` manifest (``cuts.jsonl.gz``): the interoperable path to any corpus.

lhotse's recipes (``lhotse prepare librispeech ...``, some 80 corpora) end in recordings and
supervisions that ``CutSet.from_manifests(...).to_file("cuts.jsonl.gz")`` joins into one
file. Its format is plain JSON lines (one cut per line), so it is read here with ``gzip`` and
``json`` and lhotse need not be installed; the test writes a manifest with lhotse itself
where it is installed. A Cadence manifest names whole files, so a cut must cover its whole
recording (``cuts.save_audios(DIR)`` in lhotse writes one file per cut when it does not).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from .layouts import Found
from .manifest import CorpusLayoutError, Utterance

__all__ = ["read_cuts"]

_TOLERANCE = 0.01  # seconds: lhotse rounds durations


def _lines(path: Path) -> list[str]:
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return [line for line in f if line.strip()]
    except (OSError, EOFError) as err:
        raise CorpusLayoutError(f"{path} is not a (gzipped) JSON-lines CutSet: {err}") from err


def _source(cut: dict[str, Any], path: Path, where: str) -> Path:
    recording = cut.get("recording")
    if not isinstance(recording, dict) or not recording.get("sources"):
        raise CorpusLayoutError(f"{where}: a cut needs a recording with sources (a lhotse MonoCut)")
    source = recording["sources"][0]
    if source.get("type") != "file":
        raise CorpusLayoutError(
            f"{where}: recording source of type {source.get('type')!r}; only 'file' sources "
            "can be listed (save the audio to files with cuts.save_audios(DIR) first)"
        )
    start, duration = float(cut.get("start", 0.0)), float(cut["duration"])
    if start > _TOLERANCE or abs(duration - float(recording["duration"])) > _TOLERANCE:
        raise CorpusLayoutError(
            f"{where}: cut {cut.get('id')} is a segment ({start:.2f}+{duration:.2f} s) of a "
            f"{float(recording['duration']):.2f} s recording; Cadence manifests name whole files: "
            "write one file per cut with cuts.save_audios(DIR) and its manifest"
        )
    audio = Path(source["source"])
    return audio if audio.is_absolute() else (path.parent / audio).resolve()


def read_cuts(path: Path) -> Found:
    """The utterances of a lhotse CutSet file (``.jsonl`` or ``.jsonl.gz``)."""
    if not path.is_file():
        raise CorpusLayoutError(f"{path} is not a file (expected a lhotse cuts.jsonl.gz)")
    found, missing = [], []
    for number, line in enumerate(_lines(path), 1):
        where = f"{path}:{number}"
        try:
            cut = json.loads(line)
        except json.JSONDecodeError as err:
            raise CorpusLayoutError(
                f"{where}: not JSON ({err}); expected one cut per line"
            ) from err
        supervisions = cut.get("supervisions") or []
        if not supervisions:
            raise CorpusLayoutError(f"{where}: cut {cut.get('id')} has no supervision (no text)")
        audio = _source(cut, path, where)
        if not audio.is_file():
            missing.append(audio)
        text = " ".join(str(s.get("text") or "").strip() for s in supervisions).strip()
        speaker = supervisions[0].get("speaker") or cut["recording"]["id"]
        found.append(Utterance(str(cut["id"]), audio, text, str(speaker)))
    if missing:
        raise CorpusLayoutError(
            f"{path}: {len(missing)} audio files are missing, e.g. {missing[:3]}"
        )
    if not found:
        raise CorpusLayoutError(f"{path} holds no cuts")
    return Found(found)
