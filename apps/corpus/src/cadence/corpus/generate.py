"""Generate a small multi-speaker speech corpus offline with espeak-ng.

A *speaker* is an espeak-ng voice plus a variant (``"en-us+f3"``) with its own speaking
rate, pitch and pitch range drawn from the seed; every utterance jitters those a little.
Audio is resampled to ``sample_rate``, trimmed to a fixed margin of silence, peak
normalized and written as 16-bit FLAC next to JSON-lines manifests with the text and
timed IPA phonemes. The train/valid split is by speaker.

Layout of ``out_dir``::

    audio/<speaker>/<id>.flac
    train.jsonl, valid.jsonl    one JSON object per utterance (see ``MANIFEST_FIELDS``)
    corpus.json                 generator version, seed, parameters, counts, speakers
    README.md                   provenance and the command that regenerates the corpus

Given the seed, the output is byte-identical from run to run on the same machine (same
libespeak-ng, libsndfile and soxr).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import itertools
import json
import math
import shlex
import shutil
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from cadence.core import audio as audio_io
from cadence.core.io import write_text
from cadence.corpus.templates import template_sentences
from cadence.corpus.texts import SENTENCES
from cadence.naturalspeech2.espeak import Synthesis, espeak_info, synthesize

__all__ = [
    "DEFAULT_VARIANTS",
    "DEFAULT_VOICES",
    "GENERATOR_VERSION",
    "MANIFEST_FIELDS",
    "SPLITS",
    "CorpusSummary",
    "SpeakerStyle",
    "generate_corpus",
    "read_manifest",
    "regenerate_command",
    "speaker_styles",
    "summarize_corpus",
]

#: Bump when the output for a given seed and parameters changes.
GENERATOR_VERSION = "1"

#: English voices present in espeak-ng 1.51 (Debian/Ubuntu) and 1.52 (espeakng-loader).
DEFAULT_VOICES: tuple[str, ...] = (
    "en-us",
    "en",  # British English
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-029",  # Caribbean
)
#: Voice variants (``espeak-ng --voices=variant``): formant and pitch presets.
DEFAULT_VARIANTS: tuple[str, ...] = ("m1", "m3", "f1", "f3")

#: The manifests, one per split; the split is by speaker.
SPLITS: tuple[str, ...] = ("train", "valid")

#: Keys of every manifest line, in the order they are written.
MANIFEST_FIELDS: tuple[str, ...] = (
    "id",
    "path",
    "text",
    "phonemes",
    "phoneme_starts",
    "speaker",
    "voice",
    "duration",
    "num_samples",
    "sample_rate",
)

# Speaker styles: rate in words per minute, pitch and range on espeak's 0..99 scale.
_RATE_RANGE = (150, 205)
_PITCH_RANGE = (35, 65)
_PITCH_RANGE_RANGE = (35, 75)
# Per-utterance jitter around the speaker's style (uniform, +-).
_RATE_JITTER = 0.06  # relative
_PITCH_JITTER = 4
# Every utterance starts and ends with exactly this much silence (seconds).
_MARGIN = 0.1
# Samples quieter than this, relative to the utterance peak, count as silence when trimming.
_SILENCE_DB = -45.0
# Peak level after normalization: below full scale so resampling and FLAC quantization
# cannot clip.
_PEAK_DBFS = -3.0


@dataclass(frozen=True)
class SpeakerStyle:
    """One synthetic speaker.

    Attributes:
        name: ``"<voice>+<variant>"`` (or just the voice without a variant).
        voice: espeak-ng voice, e.g. ``"en-gb-x-rp"``.
        variant: espeak-ng variant, e.g. ``"f3"``, or None.
        rate: speaking rate in words per minute.
        pitch: base pitch, 0..99.
        pitch_range: pitch range, 0..99.
    """

    name: str
    voice: str
    variant: str | None
    rate: int
    pitch: int
    pitch_range: int


@dataclass
class CorpusSummary:
    """What is in a corpus directory, as read back from its manifests.

    Attributes:
        out_dir: the corpus directory.
        counts: utterances per split (``"train"``, ``"valid"``).
        seconds: seconds of audio per split.
        speakers: sorted speaker names per split.
        phoneme_inventory: sorted distinct phoneme symbols over both splits.
        audio_bytes: bytes of all audio files.
        total_bytes: bytes of everything in the directory.
    """

    out_dir: Path
    counts: dict[str, int]
    seconds: dict[str, float]
    speakers: dict[str, list[str]]
    phoneme_inventory: list[str]
    audio_bytes: int
    total_bytes: int

    @property
    def num_utterances(self) -> int:
        """Utterances over both splits."""
        return sum(self.counts.values())

    @property
    def total_seconds(self) -> float:
        """Seconds of audio over both splits."""
        return sum(self.seconds.values())

    def format(self) -> str:
        """A few human-readable lines."""
        minutes = self.total_seconds / 60
        split_lines = [
            f"  {split:<5}  {self.counts[split]:>6} utterances  {self.seconds[split] / 60:7.1f} min  "
            f"{len(self.speakers[split]):>3} speakers"
            for split in SPLITS
        ]
        return "\n".join(
            [
                f"corpus:     {self.out_dir}",
                f"utterances: {self.num_utterances} ({minutes:.1f} min = {minutes / 60:.2f} h of audio)",
                *split_lines,
                f"phonemes:   {len(self.phoneme_inventory)} distinct IPA symbols",
                f"on disk:    {_megabytes(self.total_bytes)} ({_megabytes(self.audio_bytes)} of audio)",
            ]
        )


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def read_manifest(path: str | Path) -> list[dict]:
    """The records of one ``.jsonl`` manifest (an empty list if the file is missing)."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def summarize_corpus(corpus_dir: str | Path) -> CorpusSummary:
    """Read an existing corpus directory's manifests and file sizes.

    Args:
        corpus_dir: a directory written by :func:`generate_corpus`.

    Returns:
        Its :class:`CorpusSummary`; print ``summary.format()`` for people.

    Raises:
        FileNotFoundError: the directory has neither ``train.jsonl`` nor ``valid.jsonl``.
    """
    corpus_dir = Path(corpus_dir)
    if not any((corpus_dir / f"{split}.jsonl").exists() for split in SPLITS):
        raise FileNotFoundError(f"{corpus_dir} holds no train.jsonl or valid.jsonl")
    counts, seconds, speakers = {}, {}, {}
    inventory: set[str] = set()
    audio_bytes = 0
    for split in SPLITS:
        records = read_manifest(corpus_dir / f"{split}.jsonl")
        counts[split] = len(records)
        seconds[split] = math.fsum(r["duration"] for r in records)
        speakers[split] = sorted({r["speaker"] for r in records})
        for r in records:
            inventory.update(r["phonemes"])
            audio_file = corpus_dir / r["path"]
            audio_bytes += audio_file.stat().st_size if audio_file.exists() else 0
    total_bytes = sum(f.stat().st_size for f in corpus_dir.rglob("*") if f.is_file())
    return CorpusSummary(
        corpus_dir, counts, seconds, speakers, sorted(inventory), audio_bytes, total_bytes
    )


def _rng(seed: int, *keys: str) -> np.random.Generator:
    # A stable hash (not hash(), which is salted per process) of the keys, so adding a
    # speaker or an utterance does not reshuffle the draws of the others.
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def speaker_styles(
    voices: Sequence[str], variants: Sequence[str | None], seed: int
) -> list[SpeakerStyle]:
    """All voice x variant speakers with their seeded rate, pitch and pitch range.

    Args:
        voices: espeak-ng voice names.
        variants: variant names; an empty sequence means the plain voices.
        seed: the corpus seed.

    Returns:
        One :class:`SpeakerStyle` per combination, voices outer, variants inner.
    """
    styles = []
    for voice in voices:
        for variant in variants or [None]:
            name = f"{voice}+{variant}" if variant else voice
            rng = _rng(seed, "speaker", name)
            styles.append(
                SpeakerStyle(
                    name=name,
                    voice=voice,
                    variant=variant,
                    rate=int(rng.integers(_RATE_RANGE[0], _RATE_RANGE[1] + 1)),
                    pitch=int(rng.integers(_PITCH_RANGE[0], _PITCH_RANGE[1] + 1)),
                    pitch_range=int(rng.integers(_PITCH_RANGE_RANGE[0], _PITCH_RANGE_RANGE[1] + 1)),
                )
            )
    return styles


def _trim_and_normalize(
    syn: Synthesis, sample_rate: int
) -> tuple[torch.Tensor, list[str], list[float]]:
    """Resample, cut to ``_MARGIN`` of silence on each side, peak-normalize.

    Returns the ``(1, t)`` float audio, the phoneme symbols and their start times in the
    returned audio (seconds).
    """
    audio = torch.from_numpy(syn.as_float())[None]
    audio = audio_io.resample(audio, syn.sample_rate, sample_rate)
    signal = audio[0].numpy()
    peak = float(np.abs(signal).max()) if signal.size else 0.0
    if peak <= 0:
        raise RuntimeError(f"espeak-ng produced silence for {syn.text!r} ({syn.voice})")
    loud = np.flatnonzero(np.abs(signal) > peak * 10 ** (_SILENCE_DB / 20))
    first, last = int(loud[0]), int(loud[-1]) + 1
    margin = round(_MARGIN * sample_rate)
    # Replace whatever silence espeak left (it varies with voice and punctuation) by
    # exactly ``margin`` zeros on each side, so every file has the same lead-in and tail.
    body = signal[first:last]
    out = np.concatenate([np.zeros(margin, np.float32), body, np.zeros(margin, np.float32)])
    out *= 10 ** (_PEAK_DBFS / 20) / peak
    duration = len(out) / sample_rate
    shift = (margin - first) / sample_rate  # seconds to add to original event times
    symbols, starts = [], []
    for ph in syn.phonemes:
        # An event may sit in the trimmed-off silence just before the first sound (a
        # phoneme starts with its closure); clamp instead of dropping the symbol. The upper
        # bound keeps the rounded time strictly inside the audio.
        start = min(max(ph.start + shift, 0.0), duration - 1.0 / sample_rate)
        symbols.append(ph.symbol)
        starts.append(round(start, 4))
    return torch.from_numpy(out)[None], symbols, starts


def _check_phonemes(syn: Synthesis) -> None:
    starts = [p.start for p in syn.phonemes]
    if not starts:
        raise RuntimeError(f"espeak-ng returned no phoneme events for {syn.text!r} ({syn.voice})")
    if any(b < a for a, b in itertools.pairwise(starts)):
        raise RuntimeError(f"espeak-ng phoneme times go backwards for {syn.text!r}: {starts}")
    if starts[-1] > syn.duration:
        raise RuntimeError(
            f"espeak-ng phoneme at {starts[-1]:.3f}s lies past the audio ({syn.duration:.3f}s)"
        )


def regenerate_command(
    out_dir: str | Path,
    *,
    num_utterances: int,
    voices: Sequence[str],
    variants: Sequence[str],
    seed: int,
    sample_rate: int,
    valid_speakers: int,
    num_sentences: int | None = None,
    held_out_sentences: int = 0,
) -> str:
    """The ``cadence-toy-corpus`` command line that reproduces a corpus."""
    args = [
        "cadence-toy-corpus", Path(out_dir).as_posix(),
        "--num-utterances", str(num_utterances),
        "--seed", str(seed),
        "--voices", ",".join(voices),
        "--variants", ",".join(variants),
        "--valid-speakers", str(valid_speakers),
        "--sample-rate", str(sample_rate),
    ]  # fmt: skip
    if num_sentences is not None:
        args += ["--num-sentences", str(num_sentences)]
    if held_out_sentences:
        args += ["--held-out-sentences", str(held_out_sentences)]
    return shlex.join([*args, "--overwrite"])


def sentence_list(num_sentences: int | None, seed: int) -> list[str]:
    """The built-in sentences, then template sentences up to ``num_sentences`` (None: built-ins only)."""
    if num_sentences is None:
        return list(SENTENCES)
    if num_sentences < 1:
        raise ValueError(f"num_sentences must be >= 1, got {num_sentences}")
    extra = template_sentences(max(0, num_sentences - len(SENTENCES)), seed=seed)
    fresh = [s for s in extra if s not in set(SENTENCES)]
    return (list(SENTENCES) + fresh)[:num_sentences]


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out_dir} is not empty; pass overwrite=True (--overwrite) to replace a corpus"
            )
        if not (out_dir / "corpus.json").exists():
            # Only ever delete what this generator wrote.
            raise FileExistsError(
                f"refusing to overwrite {out_dir}: it is not empty and has no corpus.json"
            )
        shutil.rmtree(out_dir / "audio", ignore_errors=True)
        for name in ("train.jsonl", "valid.jsonl", "corpus.json", "README.md"):
            (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def generate_corpus(
    out_dir: str | Path,
    *,
    num_utterances: int,
    voices: Sequence[str] = DEFAULT_VOICES,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    seed: int = 0,
    sample_rate: int = 16000,
    valid_speakers: int | None = None,
    num_sentences: int | None = None,
    held_out_sentences: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> CorpusSummary:
    """Synthesize a toy speech corpus into ``out_dir``.

    Utterances are dealt to speakers in turn (speaker ``k % S`` gets utterance ``k``), so
    every speaker has the same number of utterances give or take one. Sentences come from
    :data:`~cadence.corpus.texts.SENTENCES` in a seeded order, cycling when the corpus
    is larger than the list.

    Args:
        out_dir: the directory to fill (created if missing).
        num_utterances: total utterances over both splits.
        voices: espeak-ng English voices.
        variants: espeak-ng variants combined with every voice.
        seed: seed of every random choice (speaker styles, sentence order, split, jitter).
        sample_rate: output rate in Hz.
        valid_speakers: speakers held out for ``valid.jsonl``; default about 15% (at least 1).
        num_sentences: distinct sentences to draw from: the built-in ones, then seeded
            template sentences (:func:`~cadence.corpus.templates.template_sentences`) up to this
            many; default the built-in ones only.
        held_out_sentences: sentences only the held-out speakers say, so that ``valid.jsonl``
            holds new speakers *and* new sentences; 0 (default) lets both splits share them.
        overwrite: replace an existing corpus in ``out_dir``.
        progress: show a tqdm progress bar.

    Returns:
        The :class:`CorpusSummary` of the written corpus.

    Raises:
        ValueError: bad counts (no utterances, no train speaker left, ...).
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is false.
        EspeakNotFoundError: no libespeak-ng on this machine.
    """
    out_dir = Path(out_dir)
    styles = speaker_styles(voices, variants, seed)
    if num_utterances < 1:
        raise ValueError(f"num_utterances must be >= 1, got {num_utterances}")
    if valid_speakers is None:
        valid_speakers = max(1, round(0.15 * len(styles))) if len(styles) > 1 else 0
    if not 0 <= valid_speakers < len(styles):
        raise ValueError(
            f"valid_speakers must be in 0..{len(styles) - 1} for {len(styles)} speakers, "
            f"got {valid_speakers}"
        )
    if num_utterances < len(styles):
        raise ValueError(
            f"{num_utterances} utterances cannot cover {len(styles)} speakers; "
            "ask for more utterances or fewer voices/variants"
        )
    info = espeak_info()  # fails early, with install instructions, when espeak is missing
    _prepare_out_dir(out_dir, overwrite)

    sentences = sentence_list(num_sentences, seed)
    if not 0 <= held_out_sentences < len(sentences):
        raise ValueError(
            f"held_out_sentences must be in 0..{len(sentences) - 1} for {len(sentences)} sentences, "
            f"got {held_out_sentences}"
        )
    order = _rng(seed, "sentences").permutation(len(sentences))
    held_out = {
        styles[i].name for i in _rng(seed, "split").permutation(len(styles))[:valid_speakers]
    }
    # Held-out speakers say only held-out sentences; each split cycles through its own.
    pools = {
        "train": order[held_out_sentences:],
        "valid": order[:held_out_sentences] if held_out_sentences else order,
    }
    said = {"train": 0, "valid": 0}
    lines: dict[str, list[str]] = {"train": [], "valid": []}
    for k in tqdm(range(num_utterances), desc="synthesizing", unit="utt", disable=not progress):
        style = styles[k % len(styles)]
        split = "valid" if style.name in held_out else "train"
        if held_out_sentences:
            pool = pools[split]
            text = sentences[pool[said[split] % len(pool)]]
            said[split] += 1
        else:  # the original layout: utterance k says sentence k (byte-identical corpora)
            text = sentences[order[k % len(sentences)]]
        utt_id = f"{style.name}-{k:05d}"
        jitter = _rng(seed, "utterance", utt_id)
        rate = round(style.rate * (1 + jitter.uniform(-_RATE_JITTER, _RATE_JITTER)))
        pitch = int(
            np.clip(style.pitch + jitter.integers(-_PITCH_JITTER, _PITCH_JITTER + 1), 0, 99)
        )
        syn = synthesize(
            text,
            style.voice,
            style.variant,
            rate=rate,
            pitch=pitch,
            pitch_range=style.pitch_range,
            seed=int(jitter.integers(0, 2**31 - 1)),
        )
        _check_phonemes(syn)
        audio, symbols, starts = _trim_and_normalize(syn, sample_rate)
        rel = Path("audio", style.name, f"{utt_id}.flac")
        audio_io.save(out_dir / rel, audio, sample_rate, subtype="PCM_16")
        num_samples = audio.shape[-1]
        record = {
            "id": utt_id,
            "path": rel.as_posix(),
            "text": text,
            "phonemes": symbols,
            "phoneme_starts": starts,
            "speaker": style.name,
            "voice": style.voice,
            "duration": round(num_samples / sample_rate, 6),
            "num_samples": num_samples,
            "sample_rate": sample_rate,
        }
        lines[split].append(json.dumps(record, ensure_ascii=False))

    for split, rows in lines.items():
        write_text(out_dir / f"{split}.jsonl", "".join(r + "\n" for r in rows))

    summary = summarize_corpus(out_dir)
    command = regenerate_command(
        out_dir,
        num_utterances=num_utterances,
        voices=voices,
        variants=variants,
        seed=seed,
        sample_rate=sample_rate,
        valid_speakers=valid_speakers,
        num_sentences=num_sentences,
        held_out_sentences=held_out_sentences,
    )
    meta = {
        "generator": "cadence.corpus",
        "generator_version": GENERATOR_VERSION,
        "espeak_ng": _espeak_provenance(info),
        "seed": seed,
        "parameters": {
            "num_utterances": num_utterances,
            "voices": list(voices),
            "variants": list(variants),
            "valid_speakers": valid_speakers,
            "num_sentences": len(sentences),
            "held_out_sentences": held_out_sentences,
            "sample_rate": sample_rate,
            "margin_seconds": _MARGIN,
            "silence_db": _SILENCE_DB,
            "peak_dbfs": _PEAK_DBFS,
            "rate_wpm_range": list(_RATE_RANGE),
            "pitch_range": list(_PITCH_RANGE),
            "pitch_range_range": list(_PITCH_RANGE_RANGE),
            "rate_jitter": _RATE_JITTER,
            "pitch_jitter": _PITCH_JITTER,
        },
        "counts": {split: len(rows) for split, rows in lines.items()},
        "seconds": {
            "train": round(summary.seconds["train"], 3),
            "valid": round(summary.seconds["valid"], 3),
            "total": round(summary.total_seconds, 3),
        },
        "speakers": {
            split: sorted({s.name for s in styles if (s.name in held_out) == (split == "valid")})
            for split in ("train", "valid")
        },
        "speaker_styles": [asdict(s) for s in styles],
        "phoneme_inventory": summary.phoneme_inventory,
        "command": command,
    }
    write_text(out_dir / "corpus.json", json.dumps(meta, ensure_ascii=False, indent=2) + "\n")
    write_text(out_dir / "README.md", _readme(meta, summary))
    return summary


def _espeak_provenance(info: dict) -> dict[str, str]:
    out = {"version": str(info["version"]), "library": str(info["source"])}
    if info["source"] == "espeakng-loader":
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out["espeakng_loader"] = importlib.metadata.version("espeakng-loader")
    return out


def _readme(meta: dict, summary: CorpusSummary) -> str:
    minutes = summary.total_seconds / 60
    speakers = meta["speakers"]
    espeak = meta["espeak_ng"]
    # Pin the wheel that produced the audio: another espeak-ng gives other samples.
    uv_run = (
        f"uv run --with espeakng-loader=={espeak['espeakng_loader']}"
        if "espeakng_loader" in espeak
        else "uv run"
    )
    return f"""# Toy speech corpus (synthetic)

Generated offline by `cadence.corpus` (generator version {meta["generator_version"]})
with [eSpeak NG](https://github.com/espeak-ng/espeak-ng) {espeak["version"]}
(library from: {espeak["library"]}{" " + espeak["espeakng_loader"] if "espeakng_loader" in espeak else ""}). Every utterance is a sentence from
`cadence/corpus/texts.py` (written for this project) spoken by a synthetic speaker, an
espeak-ng voice + variant with its own rate and pitch. It is a test and tutorial fixture:
robotic formant-synthesis speech, not a substitute for recorded speech.

- {summary.num_utterances} utterances, {minutes:.1f} minutes, {meta["parameters"]["sample_rate"]} Hz mono 16-bit FLAC
- {len(speakers["train"])} train speakers, {len(speakers["valid"])} held-out valid speakers (no speaker is in both splits)
- valid speakers: {", ".join(speakers["valid"]) or "none"}
- {len(summary.phoneme_inventory)} distinct IPA phoneme symbols (as espeak-ng writes them, stress marks attached to vowels)

## Files

- `audio/<speaker>/<id>.flac`: {meta["parameters"]["margin_seconds"]} s of silence before and after the speech, peak at {meta["parameters"]["peak_dbfs"]} dBFS
- `train.jsonl`, `valid.jsonl`: one JSON object per line with `id`, `path` (relative to this
  directory), `text`, `phonemes` (IPA strings), `phoneme_starts` (seconds, non-decreasing),
  `speaker`, `voice`, `duration` (seconds), `num_samples`, `sample_rate`
- `corpus.json`: seed, all generation parameters, speaker styles, counts, phoneme inventory

## Regenerate

Needs libespeak-ng: `pip install "cadence-corpus"` (espeakng-loader) or
`apt-get install espeak-ng`. From the repository root:

```sh
{uv_run} {meta["command"]}
```

The output is byte-identical from run to run with the same espeak-ng, libsndfile and soxr;
another espeak-ng version gives slightly different audio and phoneme times. Print the
summary of an existing corpus with `uv run cadence-toy-corpus --summary-only <dir>`.
"""
