"""Fixtures: a log-mel "latent codec" and shards of the committed toy corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from cadence.core.data import AudioDataset, ShardReader, precompute
from cadence.core.features import log_mel_spectrogram
from cadence.core.testing import FakeSemanticTokenizer, toy_corpus_dir

# b batch | c channels | t samples | n frames | d latent dim


class LogMelLatents:
    """Log-mel frames as continuous "latents" (encode only), 50 Hz at 16 kHz.

    FakeCodec's latents are random projections of raw waveform frames: their sign depends
    on the phase, which no semantic token can predict, so the best a sampler can do on them
    in squared error is worse than the mean. Log-mel frames are what a real codec's latents
    carry that tokens do predict (the spectral envelope), so the learning test uses them.
    """

    def __init__(self, *, sample_rate: int = 16000, hop_length: int = 320, latent_dim: int = 8):
        self.sample_rate = sample_rate
        self.channels = 1
        self.hop_length = hop_length
        self.frame_rate = sample_rate / hop_length
        self.latent_dim = latent_dim
        self.num_quantizers = 1
        self.codebook_size = 2

    def encode_latents(self, audio: Tensor) -> Tensor:
        n = audio.shape[-1] // self.hop_length
        mel = log_mel_spectrogram(
            audio.mean(1),
            self.sample_rate,
            n_fft=1024,
            hop_length=self.hop_length,
            n_mels=self.latent_dim,
            floor=1e-4,
        )
        return mel.transpose(1, 2)[:, :n]

    def decode_latents(self, latents: Tensor) -> Tensor:
        raise NotImplementedError("LogMelLatents is an encode-only test stand-in")

    def codes_to_latents(self, codes: Tensor) -> Tensor:
        raise NotImplementedError("LogMelLatents is an encode-only test stand-in")

    def encode(self, audio: Tensor) -> Tensor:
        raise NotImplementedError("LogMelLatents is an encode-only test stand-in")

    def decode(self, codes: Tensor) -> Tensor:
        raise NotImplementedError("LogMelLatents is an encode-only test stand-in")


def tokenizer() -> FakeSemanticTokenizer:
    # 25 Hz tokens against 50 Hz latents, so the frame-rate conversion is exercised
    return FakeSemanticTokenizer(hop_length=640, codebook_size=32)


def make_shards(root: Path, codec=None) -> tuple[ShardReader, ShardReader]:
    """Tokens + latents of the toy corpus's train and valid (held-out speakers) splits."""
    codec = codec if codec is not None else LogMelLatents()
    corpus = toy_corpus_dir()
    out = []
    for split in ("train", "valid"):
        dataset = AudioDataset(corpus / f"{split}.jsonl", sample_rate=16000, crop_seconds=None)
        precompute(
            dataset,
            root / split,
            tokenizer=tokenizer(),
            latent_codec=codec,
            batch_size=16,
            progress=False,
        )
        out.append(ShardReader(root / split))
    return out[0], out[1]


@pytest.fixture(scope="session")
def toy_shards(tmp_path_factory) -> tuple[ShardReader, ShardReader]:
    """(train, valid) shards: 25 Hz fake semantic tokens, 50 Hz 8-dim log-mel latents."""
    return make_shards(tmp_path_factory.mktemp("flow-shards"))


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models gain nothing from a second thread, and on a machine shared with other jobs
    # two OpenMP threads per process were measured 20x slower than one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
