"""Shared fixtures: (semantic token, code) shards computed from the committed toy corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cadence.core.audio import load
from cadence.core.data import ShardReader, ShardWriter, write_manifest
from cadence.core.features import log_mel_spectrogram
from cadence.core.nn import BackboneConfig
from cadence.core.testing import FakeSemanticTokenizer, toy_corpus_dir
from cadence.soundstorm import SoundStormConfig

# b batch | t samples | n frames | q levels

CODEC_HOP = 320  # 50 Hz codes at 16 kHz
SEMANTIC_HOP = 640  # 25 Hz semantic tokens: the model has to map rates (SoundStorm's own setup)
CODEBOOK = 16
LEVELS = 2
SEMANTIC_VOCAB = 32


class EnvelopeCodec:
    """A residual scalar quantizer of each frame's log-mel energy (test-only "codec").

    Why not ``cadence.core.testing.FakeCodec``: its codes quantize a random projection of the
    raw waveform, whose sign and value depend on the phase of the frame; on the toy corpus
    its level-1 unigram accuracy is 31% and the best per-semantic-token guess only 35%, so no
    model can beat the unigram baseline by a margin a test could rely on. Frame energies are
    smooth in time and follow the phonetic content, so a working SoundStorm must do much
    better than the unigram guess here, and a broken one cannot.
    """

    sample_rate = 16000
    hop_length = CODEC_HOP
    frame_rate = 16000 / CODEC_HOP
    num_quantizers = LEVELS
    codebook_size = CODEBOOK

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        n = audio.shape[-1] // CODEC_HOP
        mel = log_mel_spectrogram(
            audio[:, 0], self.sample_rate, n_fft=1024, hop_length=CODEC_HOP, n_mels=16
        )
        energy = mel.mean(1)[:, :n]  # (b, n), log scale, about -11.5 (silence) .. 0
        residual = torch.tanh((energy + 6.0) / 4.0)
        codes = []
        for level in range(LEVELS):
            scale = (1.0 / CODEBOOK) ** level
            index = ((residual / scale + 1.0) / 2.0 * CODEBOOK).floor().clamp(0, CODEBOOK - 1)
            codes.append(index.long())
            residual = residual - ((index + 0.5) * 2.0 / CODEBOOK - 1.0) * scale
        return torch.stack(codes, -1)


def write_toy_shards(directory: Path, split: str, limit: int | None = None) -> Path:
    corpus = toy_corpus_dir()
    items = [
        json.loads(line) for line in (corpus / f"{split}.jsonl").read_text().splitlines() if line
    ]
    codec = EnvelopeCodec()
    tokenizer = FakeSemanticTokenizer(hop_length=SEMANTIC_HOP, codebook_size=SEMANTIC_VOCAB)
    metadata = {
        "frame_rate": codec.frame_rate,
        "codebook_size": CODEBOOK,
        "num_quantizers": LEVELS,
        "tokenizer_codebook_size": SEMANTIC_VOCAB,
        "tokenizer_frame_rate": tokenizer.frame_rate,
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see one_thread()
    try:
        with ShardWriter(directory, metadata=metadata, max_items_per_shard=64) as writer:
            for item in items[:limit]:
                audio, _ = load(corpus / item["path"], sample_rate=16000, channels=1)
                audio = audio[None]
                writer.add(
                    item["id"], codes=codec.encode(audio)[0], tokens=tokenizer.tokenize(audio)[0]
                )
    finally:
        torch.set_num_threads(threads)
    write_manifest(directory)
    return directory


@pytest.fixture(autouse=True)
def one_thread():
    """The tensors here are tiny: a second thread buys nothing, and on a loaded machine the
    OpenMP threads of a 2-thread pool spin against each other (measured: 25x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def toy_shards(tmp_path_factory) -> dict[str, ShardReader]:
    root = tmp_path_factory.mktemp("soundstorm-shards")
    return {
        split: ShardReader(write_toy_shards(root / split, split)) for split in ("train", "valid")
    }


@pytest.fixture
def toy_config():
    """A factory of tiny configs matching the toy shards (2 levels of 16 codes, 25 Hz tokens)."""

    def make(**changes) -> SoundStormConfig:
        return SoundStormConfig.tiny(
            num_quantizers=LEVELS,
            codebook_size=CODEBOOK,
            semantic_codebook_size=SEMANTIC_VOCAB,
            frame_rate=50.0,
            semantic_frame_rate=25.0,
            backbone=BackboneConfig(
                kind="conformer", dim=64, depth=2, heads=4, ff_mult=2.0, conv_kernel_size=5
            ),
        ).replace(**changes)

    return make
