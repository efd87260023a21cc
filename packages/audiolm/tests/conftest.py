"""Shared fixtures: token shards made from the committed toy speech corpus.

Semantic tokens: k-means (32 clusters) over normalised log-mel frames at 50 Hz, the offline
stand-in for HuBERT + k-means. Acoustic codes: a 4-level residual k-means quantizer (64
entries per level) over the same frames, the stand-in for a codec's residual codes.
(``FakeSemanticTokenizer`` / ``FakeCodec`` tokens are nearly unpredictable beyond their
unigram statistics: their fine levels quantize noise, so they cannot show that a model learns.
They are used in the end-to-end tests instead.) Everything is seeded and computed once per
session from the real audio.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from cadence.core.audio import load
from cadence.core.data import ShardReader, ShardWriter, write_manifest
from cadence.core.features import log_mel_spectrogram
from cadence.core.testing import toy_corpus_dir

SAMPLE_RATE = 16000
HOP = 320  # 50 frames per second
SEMANTIC_CODEBOOK = 32
CODEBOOK = 16
LEVELS = 4
NUM_TRAIN = 60  # of 170 training utterances: enough to learn, quick to prepare


def _features(paths: list[Path]) -> list[torch.Tensor]:
    out = []
    for path in paths:
        audio, _ = load(path, sample_rate=SAMPLE_RATE, channels=1)
        mel = log_mel_spectrogram(audio[0], SAMPLE_RATE, n_fft=1024, hop_length=HOP, n_mels=32)
        n = audio.shape[-1] // HOP
        out.append(mel[:, :n].T)  # (n, 32)
    return out


def _kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    centers = x[torch.randperm(len(x), generator=gen)[:k]].clone()
    for _ in range(iters):
        assign = torch.cdist(x, centers).argmin(1)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).float()[:, None]
        centers = torch.where(counts > 0, sums / counts.clamp(min=1), centers)
    return centers


def _quantize(x: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, centers).argmin(1)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # Tiny models decode one token at a time: a second thread only adds synchronisation, and
    # on a loaded machine it makes every op wait for a busy core. One thread keeps the
    # package's tests fast and their timings independent of the machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def toy_shards(tmp_path_factory) -> dict[str, ShardReader]:
    torch.manual_seed(0)
    root = toy_corpus_dir()
    splits = {}
    for split in ("train", "valid"):
        rows = [
            json.loads(line) for line in (root / f"{split}.jsonl").read_text().splitlines() if line
        ]
        if split == "train":
            rows = rows[:: math.ceil(len(rows) / NUM_TRAIN)][:NUM_TRAIN]
        splits[split] = (rows, _features([root / r["path"] for r in rows]))
    train_frames = torch.cat(splits["train"][1])
    mean, std = train_frames.mean(0), train_frames.std(0) + 1e-5
    normalise = lambda f: (f - mean) / std  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    x = normalise(train_frames)
    semantic_centers = _kmeans(x, SEMANTIC_CODEBOOK, 15, gen)
    level_centers, residual = [], x
    for _ in range(LEVELS):
        centers = _kmeans(residual, CODEBOOK, 10, gen)
        level_centers.append(centers)
        residual = residual - centers[_quantize(residual, centers)]

    out_root = tmp_path_factory.mktemp("audiolm_shards")
    readers = {}
    for split, (rows, feats) in splits.items():
        meta = {
            "sample_rate": SAMPLE_RATE,
            "frame_rate": 50.0,
            "num_quantizers": LEVELS,
            "codebook_size": CODEBOOK,
            "tokenizer_codebook_size": SEMANTIC_CODEBOOK,
            "tokenizer_frame_rate": 50.0,
        }
        with ShardWriter(out_root / split, metadata=meta, max_items_per_shard=64) as writer:
            for row, feat in zip(rows, feats):
                f = normalise(feat)
                tokens = _quantize(f, semantic_centers)
                codes, residual = [], f
                for centers in level_centers:
                    index = _quantize(residual, centers)
                    codes.append(index)
                    residual = residual - centers[index]
                writer.add(row["id"], tokens=tokens, codes=torch.stack(codes, -1))
        write_manifest(out_root / split)
        readers[split] = ShardReader(out_root / split)
    return readers
