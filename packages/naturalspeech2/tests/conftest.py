from __future__ import annotations

import pytest
import torch

from cadence.core.testing import FakeCodec, toy_corpus_dir
from cadence.naturalspeech2 import preprocess_corpus


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # These tiny models are dominated by per-op overhead; on a shared machine two threads
    # contend and run 10-50x slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def codec() -> FakeCodec:
    return FakeCodec()


@pytest.fixture(scope="session")
def shards(tmp_path_factory, codec):
    """NaturalSpeech 2 shards of the first 48 toy-corpus training utterances (FakeCodec latents)."""
    torch.manual_seed(0)
    return preprocess_corpus(
        toy_corpus_dir(), codec, tmp_path_factory.mktemp("ns2") / "train", limit=48, progress=False
    )


class MelCodec:
    """A LatentCodec for learning tests: latents are 16-band log-mel frames at 50 Hz, quantized
    by a fixed 2-level residual VQ whose codebooks are exposed (``codebooks``, ``(q, v, d)``).

    Log-mel frames are predictable from phonemes and pitch, so a short training run shows the
    diffusion loss falling well below what an unconditional denoiser can reach; FakeCodec's
    latents (a random projection of raw waveform samples) are mostly unpredictable phase.
    """

    sample_rate = 16000
    channels = 1
    frame_rate = 50.0
    hop_length = 320
    latent_dim = 16
    num_quantizers = 2
    codebook_size = 32

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.codebooks = (
            torch.randn(2, 32, 16, generator=gen) * torch.tensor([2.0, 0.7])[:, None, None]
        )

    def encode_latents(self, audio):
        from cadence.core.features import log_mel_spectrogram

        mel = log_mel_spectrogram(
            audio[:, 0], self.sample_rate, n_fft=1024, hop_length=320, n_mels=16
        )
        n = audio.shape[-1] // self.hop_length
        return (mel.transpose(1, 2)[:, :n] + 5.0) / 2.0

    def encode(self, audio):
        residual = self.encode_latents(audio)
        codes = []
        for book in self.codebooks:
            index = torch.cdist(residual, book[None].expand(len(residual), -1, -1)).argmin(-1)
            codes.append(index)
            residual = residual - book[index]
        return torch.stack(codes, -1)

    def codes_to_latents(self, codes):
        return sum(self.codebooks[level][codes[..., level]] for level in range(codes.shape[-1]))

    def decode_latents(self, latents):
        raise NotImplementedError("MelCodec is for training tests only; it has no decoder")

    def decode(self, codes):
        raise NotImplementedError("MelCodec is for training tests only; it has no decoder")


@pytest.fixture(scope="session")
def mel_codec() -> MelCodec:
    return MelCodec()


@pytest.fixture(scope="session")
def mel_shards(tmp_path_factory, mel_codec):
    torch.manual_seed(0)
    return preprocess_corpus(
        toy_corpus_dir(),
        mel_codec,
        tmp_path_factory.mktemp("ns2mel") / "train",
        limit=32,
        progress=False,
    )
