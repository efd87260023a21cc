"""Data preparation for NaturalSpeech 2: corpus + codec -> shards, batches, codebooks.

:func:`preprocess_corpus` turns a corpus (``train.jsonl`` with phonemes; durations from
espeak's phoneme timings, as the toy corpus has them, or from a trained aligner) and a
``LatentCodec`` into shards holding, per utterance, ``phonemes`` ``(l,)``, ``durations``
``(l,)``, ``latents`` ``(n, d)``, ``codes`` ``(n, q)``, ``log_f0`` ``(n,)`` and ``voiced``
``(n,)``. The codec never runs inside the training loop.
"""

# b batch | l phonemes | n latent frames | d latent dim | q quantizer levels | v codebook entries

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from cadence.core.audio import load
from cadence.core.data import ShardReader, ShardWriter, pad_sequences, write_manifest
from cadence.core.features import log_mel_spectrogram
from cadence.core.interfaces import LatentCodec

from .aligner import Aligner
from .model import NaturalSpeech2Config
from .pitch import extract_pitch
from .text import SILENCE, PhonemeVocabulary, durations_from_starts

__all__ = [
    "codebooks_from_codec",
    "collate_ns2",
    "config_from_shards",
    "mel_features",
    "preprocess_corpus",
]

DurationSource = Literal["espeak", "aligner"]


def codebooks_from_codec(codec: LatentCodec) -> Tensor:
    """Each level's codebook vectors in latent space, ``(q, v, d)``, for the CE-RVQ loss.

    A codec that exposes ``codebooks`` (a ``(q, v, d)`` tensor, or a method returning one) is
    used directly. Otherwise the vectors are measured through ``codes_to_latents``: level
    ``k``'s entry ``i`` is ``codes_to_latents([0]*k + [i]) - codes_to_latents([0]*k)``, exact for
    any additive residual VQ. (For a codec whose levels do not add up linearly, such as
    ``cadence.core.testing.FakeCodec``'s tanh-domain scalar quantizer, it is the local
    linearisation around code 0.)
    """
    books = getattr(codec, "codebooks", None)
    if callable(books):
        books = books()
    if isinstance(books, Tensor):
        if books.ndim != 3 or books.shape[0] != codec.num_quantizers:
            raise ValueError(f"codec.codebooks must be (q, v, d), got {tuple(books.shape)}")
        return books.detach().float().cpu()
    q, v, d = codec.num_quantizers, codec.codebook_size, codec.latent_dim

    def to_latents(codes: Tensor) -> Tensor:
        out = codec.codes_to_latents(codes).float()
        if out.shape[-1] != d:
            raise ValueError(
                f"codec.codes_to_latents must return (b, n, latent_dim={d}), got {tuple(out.shape)}"
            )
        return out[0]  # (v, d)

    levels = []
    with torch.no_grad():
        for level in range(q):
            codes = torch.zeros(1, v, level + 1, dtype=torch.long)
            codes[0, :, level] = torch.arange(v)
            base = to_latents(torch.zeros(1, 1, level, dtype=torch.long)) if level else 0.0
            levels.append(to_latents(codes) - base)
    return torch.stack(levels).cpu()


def mel_features(
    audio: Tensor, sample_rate: int, hop_length: int, num_frames: int, n_mels: int = 80
) -> Tensor:
    """``(t,)`` audio -> ``(num_frames, n_mels)`` log-mel at the codec frame rate (aligner input)."""
    mel = log_mel_spectrogram(
        audio, sample_rate, n_fft=max(1024, 2 * hop_length), hop_length=hop_length, n_mels=n_mels
    )
    mel = mel.T[:num_frames]
    if len(mel) < num_frames:
        mel = torch.cat([mel, mel[-1:].expand(num_frames - len(mel), -1)])
    return mel


def preprocess_corpus(
    corpus_dir: str | os.PathLike,
    codec: LatentCodec,
    out_dir: str | os.PathLike,
    *,
    split: str = "train",
    vocabulary: PhonemeVocabulary | None = None,
    durations: DurationSource = "espeak",
    aligner: Aligner | None = None,
    limit: int | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    statistics_items: int = 2000,
) -> ShardReader:
    """Corpus + codec -> NaturalSpeech 2 training shards (see the module docstring).

    The corpus is read and written as a stream: memory holds at most ``statistics_items``
    utterances (the normalisers are measured on them, then they are written and the rest
    follows one by one), so a corpus of any size fits.

    Args:
        corpus_dir: a directory with ``<split>.jsonl`` (``id``, ``path``, ``phonemes``, and
            ``phoneme_starts`` for espeak durations) and the audio.
        codec: gives latents, codes and the frame rate.
        vocabulary: phoneme vocabulary; default built from this split (store it in the
            model config, see :func:`config_from_shards`).
        durations: ``"espeak"`` from the corpus' phoneme timings; ``"aligner"`` from a
            trained :class:`Aligner` on log-mel frames (MAS). With the aligner, utterances
            without phonemes or with fewer frames than phonemes are skipped (listed in the
            manifest's ``skipped``).
        limit: only the first ``limit`` utterances.
        device: where the codec and the aligner run (default: the codec's parameters' device).
        statistics_items: utterances the latent and log-F0 normalisers are measured on
            (all of them when the split is smaller; the count is in the metadata).

    Returns:
        A :class:`ShardReader` over the written shards; its metadata has the vocabulary,
        frame rate and latent / log-F0 statistics.
    """
    if durations == "aligner" and aligner is None:
        raise ValueError("durations='aligner' needs a trained Aligner (aligner=...)")
    if statistics_items < 1:
        raise ValueError(f"statistics_items must be >= 1, got {statistics_items}")
    if vocabulary is None:
        vocabulary = PhonemeVocabulary.build(
            [SILENCE, *r.get("phonemes", [])] for r in _rows(corpus_dir, split, limit)
        )
    run = _Preprocess(Path(corpus_dir), codec, vocabulary, durations, aligner, device)
    buffered: list[tuple[str, dict[str, Tensor]]] = []
    skipped: dict[str, str] = {}
    writer: ShardWriter | None = None
    out_dir = Path(out_dir)
    rows = _rows(corpus_dir, split, limit)
    try:
        for row in tqdm(rows, desc="preprocess", disable=not progress, total=limit):
            arrays = run.utterance(row)
            if isinstance(arrays, str):
                skipped[row["id"]] = arrays
            elif writer is not None:
                writer.add(row["id"], **arrays)
            else:
                buffered.append((row["id"], arrays))
                if len(buffered) >= statistics_items:
                    writer = _open_writer(out_dir, codec, vocabulary, durations, buffered)
                    buffered = []
        if writer is None:
            if not buffered:
                raise ValueError(
                    f"no usable utterance in {Path(corpus_dir) / f'{split}.jsonl'} "
                    f"({len(skipped)} skipped, e.g. {next(iter(skipped.items()), None)})"
                )
            writer = _open_writer(out_dir, codec, vocabulary, durations, buffered)
        for item_id, reason in skipped.items():
            writer.skip(item_id, reason)
    finally:
        if writer is not None:
            writer.close()
    write_manifest(out_dir)
    return ShardReader(out_dir)


def _rows(corpus_dir: str | os.PathLike, split: str, limit: int | None) -> Iterator[dict[str, Any]]:
    """The rows of ``<corpus_dir>/<split>.jsonl`` one at a time (at most ``limit``)."""
    path = Path(corpus_dir) / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no {split}.jsonl in {corpus_dir}")
    with path.open() as f:
        lines = (line for line in f if line.strip())
        for line in itertools.islice(lines, limit):
            yield json.loads(line)


def _open_writer(
    out_dir: Path,
    codec: LatentCodec,
    vocabulary: PhonemeVocabulary,
    durations: DurationSource,
    first: list[tuple[str, dict[str, Tensor]]],
) -> ShardWriter:
    """A shard writer whose metadata has the statistics of ``first``, with ``first`` written."""
    metadata: dict[str, Any] = {
        "frame_rate": codec.frame_rate,
        "sample_rate": codec.sample_rate,
        "latent_dim": codec.latent_dim,
        "num_quantizers": codec.num_quantizers,
        "codebook_size": codec.codebook_size,
        "phonemes": list(vocabulary.symbols),
        "durations": durations,
        "statistics_items": len(first),
        **_statistics([arrays for _, arrays in first]),
    }
    writer = ShardWriter(out_dir, metadata=metadata, overwrite=True)
    for item_id, arrays in first:
        writer.add(item_id, **arrays)
    return writer


class _Preprocess:
    """One corpus row -> its shard arrays (phonemes, durations, latents, codes, log_f0, voiced)."""

    def __init__(
        self,
        corpus_dir: Path,
        codec: LatentCodec,
        vocabulary: PhonemeVocabulary,
        durations: DurationSource,
        aligner: Aligner | None,
        device: str | torch.device | None,
    ):
        self.corpus_dir, self.codec, self.vocabulary = corpus_dir, codec, vocabulary
        self.durations, self.aligner = durations, aligner
        self.device = torch.device(device) if device is not None else _device_of(codec)
        self.hop = round(codec.sample_rate / codec.frame_rate)
        # an aligner trained with its own vocabulary reads the symbols with it
        symbols = aligner.config.phonemes if aligner is not None else ()
        self.aligner_vocabulary = PhonemeVocabulary(symbols) if symbols else vocabulary

    def utterance(self, row: dict[str, Any]) -> dict[str, Tensor] | str:
        """The arrays of ``row``, or why it is skipped (aligner durations only)."""
        codec = self.codec
        symbols = [SILENCE, *row.get("phonemes", [])]
        if self.durations == "aligner" and len(symbols) == 1:
            return "no phonemes"
        audio, _ = load(self.corpus_dir / row["path"], sample_rate=codec.sample_rate, channels=1)
        with torch.no_grad():
            latents = codec.encode_latents(audio[None].to(self.device))[0].float().cpu()
            codes = codec.encode(audio[None].to(self.device))[0].cpu()
        n = latents.shape[0]
        ids = self.vocabulary.encode(symbols)
        if self.durations == "espeak":
            starts = row["phoneme_starts"]
            frames = torch.from_numpy(
                durations_from_starts(starts, row["duration"], codec.frame_rate, n)
            )
        elif n < len(ids):
            return f"{n} frames for {len(ids)} phonemes (every phoneme needs a frame)"
        else:
            frames = self._aligned(audio[0], symbols, n)
        pitch = extract_pitch(
            audio[0].numpy(), sample_rate=codec.sample_rate, hop_length=self.hop, num_frames=n
        )
        return dict(
            phonemes=ids,
            durations=frames.long(),
            latents=latents,
            codes=codes,
            log_f0=torch.from_numpy(pitch.log_f0),
            voiced=torch.from_numpy(pitch.voiced),
        )

    def _aligned(self, audio: Tensor, symbols: list[str], n: int) -> Tensor:
        """``(l,)`` frames per phoneme from the aligner's MAS over ``n`` log-mel frames."""
        aligner = self.aligner
        assert aligner is not None
        device = _device_of(aligner)
        ids = self.aligner_vocabulary.encode(symbols).to(device)
        mel = mel_features(audio, self.codec.sample_rate, self.hop, n, aligner.config.feature_dim)
        with torch.no_grad():
            out = aligner(
                ids[None],
                torch.ones(1, len(ids), dtype=torch.bool, device=device),
                mel[None].to(device),
                torch.ones(1, n, dtype=torch.bool, device=device),
            )
        return out.durations[0].cpu()


def _device_of(module: Any) -> torch.device:
    """The device of a module's first parameter (the CPU for anything else)."""
    if isinstance(module, torch.nn.Module):
        for parameter in module.parameters():
            return parameter.device
    return torch.device("cpu")


def _statistics(items: Sequence[dict[str, Tensor]]) -> dict[str, float]:
    """Latent mean / std over every value, log-F0 mean / std over voiced frames (the config's normalisers)."""
    latent_sum = latent_sq = count = 0.0
    for arrays in items:
        latents = arrays["latents"]
        latent_sum += float(latents.sum())
        latent_sq += float(latents.pow(2).sum())
        count += latents.numel()
    mean = latent_sum / count
    voiced = [a["log_f0"].numpy()[a["voiced"].numpy()] for a in items]
    f0 = np.concatenate(voiced) if voiced else np.zeros(0)
    return {
        "latent_mean": mean,
        "latent_std": float(np.sqrt(max(latent_sq / count - mean**2, 1e-12))),
        "log_f0_mean": float(f0.mean()) if len(f0) else 5.0,
        "log_f0_std": float(f0.std()) if len(f0) > 1 else 0.3,
    }


def config_from_shards(reader: ShardReader, **overrides: Any) -> NaturalSpeech2Config:
    """A config whose vocabulary, latent size and statistics come from the shards' metadata.

    ``tiny=True`` starts from :meth:`NaturalSpeech2Config.tiny`; other keywords override fields.
    """
    meta = reader.metadata
    base: dict[str, Any] = dict(
        phonemes=tuple(meta["phonemes"]),
        latent_dim=int(meta["latent_dim"]),
        frame_rate=float(meta["frame_rate"]),
        latent_mean=float(meta["latent_mean"]),
        latent_std=float(meta["latent_std"]),
        log_f0_mean=float(meta["log_f0_mean"]),
        log_f0_std=float(meta["log_f0_std"]),
    )
    tiny = overrides.pop("tiny", False)
    base.update(overrides)
    return NaturalSpeech2Config.tiny(**base) if tiny else NaturalSpeech2Config(**base)


def collate_ns2(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch shard items: pads phoneme-level and frame-level fields, with their masks."""
    phonemes, phoneme_mask = pad_sequences([it["phonemes"] for it in items])
    durations, _ = pad_sequences([it["durations"] for it in items])
    latents, frame_mask = pad_sequences([it["latents"].float() for it in items])
    log_f0, _ = pad_sequences([it["log_f0"].float() for it in items])
    voiced, _ = pad_sequences([it["voiced"].bool() for it in items])
    batch = dict(
        phonemes=phonemes,
        phoneme_mask=phoneme_mask,
        durations=durations,
        latents=latents,
        frame_mask=frame_mask,
        log_f0=log_f0,
        voiced=voiced,
        ids=[it["id"] for it in items],
    )
    if "codes" in items[0]:
        batch["codes"], _ = pad_sequences([it["codes"] for it in items])
    return batch
