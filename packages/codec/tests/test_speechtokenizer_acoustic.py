"""SpeechTokenizerAcoustic: RVQ-2..q of a SpeechTokenizer as a codec, and RVQ-1 put back."""

from __future__ import annotations

import pytest
import torch

from cadence.codec import SpeechTokenizer, SpeechTokenizerAcoustic, SpeechTokenizerConfig
from cadence.core.interfaces import Codec, LatentCodec


@pytest.fixture
def codec() -> SpeechTokenizer:
    torch.manual_seed(0)
    model = SpeechTokenizer(SpeechTokenizerConfig.tiny()).eval()
    model.quantizer.codebooks.normal_()  # a fresh model's codebooks are zero
    return model


def test_the_acoustic_levels_with_rvq1_put_back_are_the_codec(codec):
    acoustic = SpeechTokenizerAcoustic(codec)
    assert isinstance(acoustic, Codec) and isinstance(acoustic, LatentCodec)
    assert (acoustic.num_quantizers, acoustic.frame_rate) == (3, codec.frame_rate)
    audio = torch.randn(2, 1, 1600) * 0.1
    codes, tokens = acoustic.encode(audio), codec.semantic_tokenizer().tokenize(audio)
    assert torch.equal(acoustic.compose(tokens, codes), codec.encode(audio))
    full = codec.decode(codec.encode(audio))
    assert torch.allclose(acoustic.decode_with_semantic(tokens, codes), full, atol=1e-6)
    # latents: RVQ-1's vector + the acoustic sum = all levels' sum
    latents = acoustic.encode_latents(audio)
    assert torch.allclose(
        codec.codes_to_latents(tokens[..., None]) + latents,
        codec.codes_to_latents(codec.encode(audio)),
        atol=1e-5,
    )
    assert torch.allclose(acoustic.decode_latents_with_semantic(tokens, latents), full, atol=1e-5)
    # alone, the acoustic levels are not the codec's audio (the content is in RVQ-1)
    assert not torch.allclose(acoustic.decode(codes), full, atol=1e-3)


def test_padding_gives_zero_latents_and_each_item_what_it_gets_alone(codec):
    acoustic = SpeechTokenizerAcoustic(codec)
    audio = torch.randn(2, 1, 1600) * 0.1
    lengths = torch.tensor([1600, 800])
    latents = acoustic.encode_latents(audio, lengths)
    alone = acoustic.encode_latents(audio[1:, :, :800])
    n = codec.num_frames(800)
    assert torch.allclose(latents[1, :n], alone[0], atol=1e-6)
    assert latents[1, n:].abs().max() == 0


def test_mismatched_streams_and_a_one_level_codec_are_refused(codec):
    acoustic = SpeechTokenizerAcoustic(codec)
    with pytest.raises(ValueError, match="must cover the same frames"):
        acoustic.compose(
            torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 4, 3, dtype=torch.long)
        )
    one = SpeechTokenizer(SpeechTokenizerConfig.tiny().replace(num_quantizers=1))
    with pytest.raises(ValueError, match=">= 2 levels"):
        SpeechTokenizerAcoustic(one)
