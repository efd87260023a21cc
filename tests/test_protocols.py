"""Every implementation of a core Protocol in this workspace conforms, in signature and behaviour.

Packages register their implementations here as they land (a codec, a tokenizer); the same
behavioural checks then run against each.
"""

import pytest
import torch

from cadence.codec import (
    DacCodec,
    EnCodec,
    EnCodecConfig,
    HiFiCodec,
    HiFiCodecConfig,
    ISTFTCodec,
    ISTFTCodecConfig,
    MimiCodec,
    SoundStream,
    SoundStreamConfig,
    SpeechTokenizer,
    SpeechTokenizerConfig,
)
from cadence.core.interfaces import Codec, LatentCodec, SemanticTokenizer
from cadence.core.testing import FakeCodec, FakeSemanticTokenizer
from cadence.semantic import (
    HubertKMeansTokenizer,
    HubertKMeansTokenizerConfig,
    MFCCKMeansTokenizer,
    MFCCKMeansTokenizerConfig,
    PhoneticKMeansTokenizer,
    PhoneticKMeansTokenizerConfig,
)


def _data_initialized_speechtokenizer() -> SpeechTokenizer:
    """A tiny SpeechTokenizer whose codebooks are residual frames of a test signal.

    Untrained codebooks are zeros (training k-means-inits them), which map every frame to
    one token; frames of the signal as entries make the tokens depend on the audio.
    """
    torch.manual_seed(0)
    model = SpeechTokenizer(SpeechTokenizerConfig.tiny()).eval()
    frames = model.encode_latents(speechlike(2, 0.5, model.sample_rate)).flatten(0, 1)
    picks = torch.randint(0, frames.shape[0], (model.codebook_size,))
    with torch.no_grad():
        model.quantizer.codebooks[0] = frames[picks]  # RVQ-1, the level tokenize reads
    return model


REAL_CODECS = [
    pytest.param(lambda: SoundStream(SoundStreamConfig.tiny()).eval(), id="SoundStream"),
    pytest.param(lambda: EnCodec(EnCodecConfig.tiny()).eval(), id="EnCodec"),
    pytest.param(lambda: ISTFTCodec(ISTFTCodecConfig.tiny()).eval(), id="ISTFTCodec"),
    pytest.param(
        lambda: SpeechTokenizer(SpeechTokenizerConfig.tiny()).eval(), id="SpeechTokenizer"
    ),
    pytest.param(
        lambda: (torch.manual_seed(0), HiFiCodec(HiFiCodecConfig.tiny()).eval())[1], id="HiFiCodec"
    ),
    # adapters over transformers' models (random small configs, built offline)
    pytest.param(lambda: (torch.manual_seed(0), DacCodec.tiny())[1], id="DacCodec"),
    pytest.param(lambda: (torch.manual_seed(0), MimiCodec.tiny())[1], id="MimiCodec"),
]
CODECS = [pytest.param(lambda: FakeCodec(), id="FakeCodec"), *REAL_CODECS]
LATENT_CODECS = [pytest.param(lambda: FakeCodec(latent_dim=8), id="FakeCodec"), *REAL_CODECS]
TOKENIZERS = [
    pytest.param(lambda: FakeSemanticTokenizer(), id="FakeSemanticTokenizer"),
    pytest.param(
        lambda: MFCCKMeansTokenizer(MFCCKMeansTokenizerConfig.tiny()), id="MFCCKMeansTokenizer"
    ),
    # frames="floor": floor(t / 320) tokens, the Protocol's frame count (HuBERT's own is one fewer)
    pytest.param(
        # seeded: a random tiny HuBERT whose init depends on what ran before can map every
        # frame of the test signal to one cluster
        lambda: (
            torch.manual_seed(0),
            HubertKMeansTokenizer(HubertKMeansTokenizerConfig.tiny(frames="floor")),
        )[1],
        id="HubertKMeansTokenizer",
    ),
    pytest.param(
        lambda: (
            torch.manual_seed(0),
            PhoneticKMeansTokenizer(PhoneticKMeansTokenizerConfig.tiny()),
        )[1],
        id="PhoneticKMeansTokenizer",
    ),
    pytest.param(
        lambda: _data_initialized_speechtokenizer().semantic_tokenizer(),
        id="SpeechTokenizerSemantic",
    ),
]


def speechlike(batch: int, seconds: float, sample_rate: int, channels: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 40 * torch.rand(batch, 1, 1, generator=gen)
    tone = torch.sin(2 * torch.pi * f0 * t) * (0.5 + 0.5 * torch.sin(2 * torch.pi * 3 * t))
    return (0.3 * tone + 0.01 * torch.randn(batch, channels, t.numel(), generator=gen)).clamp(-1, 1)


@pytest.mark.parametrize("make", CODECS)
def test_codec_conforms(make):
    codec = make()
    assert isinstance(codec, Codec)
    assert codec.frame_rate == pytest.approx(codec.sample_rate / codec.hop_length)
    audio = speechlike(2, 1.0, codec.sample_rate, codec.channels)
    codes = codec.encode(audio)
    n = round(codec.frame_rate * 1.0)
    assert codes.shape == (2, n, codec.num_quantizers) and codes.dtype == torch.long
    assert codes.min() >= 0 and codes.max() < codec.codebook_size
    decoded = codec.decode(codes)
    assert decoded.shape[:2] == (2, codec.channels)
    assert abs(decoded.shape[-1] - audio.shape[-1]) <= codec.sample_rate / codec.frame_rate
    # fewer levels decode to the same length
    assert codec.decode(codes[..., :1]).shape == decoded.shape


@pytest.mark.parametrize("make", LATENT_CODECS)
def test_latent_codec_conforms(make):
    codec = make()
    assert isinstance(codec, LatentCodec)
    audio = speechlike(2, 0.5, codec.sample_rate, codec.channels)
    latents = codec.encode_latents(audio)
    codes = codec.encode(audio)
    assert latents.shape == (2, codes.shape[1], codec.latent_dim) and latents.is_floating_point()
    assert codec.codes_to_latents(codes).shape == latents.shape
    assert codec.decode_latents(latents).shape[:2] == (2, codec.channels)


@pytest.mark.parametrize("make", TOKENIZERS)
def test_semantic_tokenizer_conforms(make):
    tokenizer = make()
    assert isinstance(tokenizer, SemanticTokenizer)
    audio = speechlike(3, 1.0, tokenizer.sample_rate)
    tokens = tokenizer.tokenize(audio)
    assert tokens.shape == (3, round(tokenizer.frame_rate)) and tokens.dtype == torch.long
    assert tokens.min() >= 0 and tokens.max() < tokenizer.codebook_size
    assert len(tokens.unique()) > 1  # tokens depend on the audio
    assert torch.equal(tokenizer.tokenize(audio), tokens)  # deterministic


def test_non_conforming_objects_are_rejected():
    class HalfCodec:
        sample_rate = 16000

        def encode(self, audio):
            return audio

    assert not isinstance(HalfCodec(), Codec)
    assert not isinstance(FakeSemanticTokenizer(), Codec)
    assert not isinstance(FakeCodec(), SemanticTokenizer)


def _ragged(
    batch_lengths: list[int], sample_rate: int, channels: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of different-length clips (padding filled with noise, which must not leak)."""
    audio = speechlike(len(batch_lengths), max(batch_lengths) / sample_rate, sample_rate, channels)
    lengths = torch.tensor(batch_lengths)
    noise = 0.5 * torch.randn(audio.shape, generator=torch.Generator().manual_seed(1))
    past = torch.arange(audio.shape[-1])[None, None] >= lengths[:, None, None]
    return torch.where(past, noise, audio), lengths


@pytest.mark.parametrize("make", CODECS)
def test_codec_results_do_not_depend_on_padding(make):
    codec = make()
    rate = codec.sample_rate
    audio, lengths = _ragged([rate // 2, rate // 3, rate // 4], rate, codec.channels)
    codes = codec.encode(audio, lengths)
    frames = [codec.num_frames(int(n)) for n in lengths]
    assert codes.shape[1] >= max(frames)
    for i, n in enumerate(lengths):
        alone = codec.encode(audio[i : i + 1, :, : int(n)])
        assert torch.equal(codes[i, : frames[i]], alone[0]), f"item {i}"
        assert not codes[i, frames[i] :].any()
    frame_lengths = torch.tensor(frames)
    decoded = codec.decode(codes, frame_lengths)
    hop = round(rate / codec.frame_rate)
    for i, n in enumerate(frames):
        alone = codec.decode(codes[i : i + 1, :n])
        torch.testing.assert_close(decoded[i, :, : alone.shape[-1]], alone[0], atol=1e-5, rtol=1e-4)
        assert not decoded[i, :, n * hop :].any()


@pytest.mark.parametrize("make", TOKENIZERS)
def test_tokenizer_results_do_not_depend_on_padding(make):
    tokenizer = make()
    rate = tokenizer.sample_rate
    audio, lengths = _ragged([rate // 2, rate // 3, rate // 4], rate)
    tokens = tokenizer.tokenize(audio, lengths)
    for i, n in enumerate(lengths):
        frames = tokenizer.num_frames(int(n))
        alone = tokenizer.tokenize(audio[i : i + 1, :, : int(n)])
        assert alone.shape[1] == frames
        assert torch.equal(tokens[i, :frames], alone[0]), f"item {i}"
        assert not tokens[i, frames:].any()
