"""Data preparation for NaturalSpeech 2: corpus + codec -> shards, batches, codebooks.

:func:`preprocess_corpus` turns a corpus (``train.jsonl`` with espeak phoneme timings, as
the toy corpus has) and a ``LatentCodec`` into shards holding, per utterance, ``phonemes``
``(l,)``, ``durations`` ``(l,)``, ``latents`` ``(n, d)``, ``codes`` ``(n, q)``, ``log_f0``
``(n,)`` and ``voiced`` ``(n,)``. The codec never runs inside the training loop.
"""

# b batch | l phonemes | n latent frames | d latent dim | q quantizer levels | v codebook entries

from __future__ import annotations

import os
from collections.abc import Sequence
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
from .text import SILENCE, PhonemeVocabulary, durations_from_starts, read_corpus_phonemes

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
) -> ShardReader:
    """Corpus + codec -> NaturalSpeech 2 training shards (see the module docstring).

    Args:
        corpus_dir: a directory with ``<split>.jsonl`` (``id``, ``path``, ``phonemes``,
            ``phoneme_starts``) and the audio.
        codec: gives latents, codes and the frame rate.
        vocabulary: phoneme vocabulary; default built from this split (store it in the
            model config, see :func:`config_from_shards`).
        durations: ``"espeak"`` from the corpus' phoneme timings; ``"aligner"`` from a
            trained :class:`Aligner` on log-mel frames (MAS).
        limit: only the first ``limit`` utterances.

    Returns:
        A :class:`ShardReader` over the written shards; its metadata has the vocabulary,
        frame rate and latent / log-F0 statistics.
    """
    rows = read_corpus_phonemes(corpus_dir, split)[:limit]
    if vocabulary is None:
        vocabulary = PhonemeVocabulary.build([[SILENCE, *r["phonemes"]] for r in rows])
    if durations == "aligner" and aligner is None:
        raise ValueError("durations='aligner' needs a trained Aligner (aligner=...)")
    items = [
        (row["id"], _utterance(Path(corpus_dir), row, codec, vocabulary, durations, aligner))
        for row in tqdm(rows, desc="preprocess", disable=not progress)
    ]
    metadata: dict[str, Any] = {
        "frame_rate": codec.frame_rate,
        "sample_rate": codec.sample_rate,
        "latent_dim": codec.latent_dim,
        "num_quantizers": codec.num_quantizers,
        "codebook_size": codec.codebook_size,
        "phonemes": list(vocabulary.symbols),
        "durations": durations,
        **_statistics([arrays for _, arrays in items]),
    }
    out_dir = Path(out_dir)
    with ShardWriter(out_dir, metadata=metadata, overwrite=True) as writer:
        for item_id, arrays in items:
            writer.add(item_id, **arrays)
    write_manifest(out_dir)
    return ShardReader(out_dir)


def _utterance(
    corpus_dir: Path,
    row: dict[str, Any],
    codec: LatentCodec,
    vocabulary: PhonemeVocabulary,
    durations: DurationSource,
    aligner: Aligner | None,
) -> dict[str, Tensor]:
    """One corpus row -> its shard arrays (phonemes, durations, latents, codes, log_f0, voiced)."""
    audio, _ = load(corpus_dir / row["path"], sample_rate=codec.sample_rate, channels=1)
    hop = round(codec.sample_rate / codec.frame_rate)
    with torch.no_grad():
        latents = codec.encode_latents(audio[None])[0].float()
        codes = codec.encode(audio[None])[0]
    n = latents.shape[0]
    ids = vocabulary.encode([SILENCE, *row["phonemes"]])
    if durations == "espeak":
        starts = row["phoneme_starts"]
        frames = torch.from_numpy(
            durations_from_starts(starts, row["duration"], codec.frame_rate, n)
        )
    else:
        assert aligner is not None
        mel = mel_features(audio[0], codec.sample_rate, hop, n, aligner.config.feature_dim)
        with torch.no_grad():
            out = aligner(
                ids[None],
                torch.ones(1, len(ids), dtype=torch.bool),
                mel[None],
                torch.ones(1, n, dtype=torch.bool),
            )
        frames = out.durations[0].cpu()
    pitch = extract_pitch(
        audio[0].numpy(), sample_rate=codec.sample_rate, hop_length=hop, num_frames=n
    )
    return dict(
        phonemes=ids,
        durations=frames.long(),
        latents=latents,
        codes=codes,
        log_f0=torch.from_numpy(pitch.log_f0),
        voiced=torch.from_numpy(pitch.voiced),
    )


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
