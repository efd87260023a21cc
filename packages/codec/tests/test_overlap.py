"""OverlapDecoder: chunked decoding of non-causal codecs equals the one-shot decode."""

from __future__ import annotations

import pytest
import torch

from cadence.codec import ISTFTCodec, ISTFTCodecConfig, SoundStream, SoundStreamConfig
from cadence.codec.overlap import OverlapDecoder, decoder_reach, stream_decoder_for
from cadence.codec.streaming import StreamingDecoder


def codecs():
    torch.manual_seed(0)
    out = {}
    for name, codec in (
        ("soundstream", SoundStream(SoundStreamConfig.tiny())),
        ("istft", ISTFTCodec(ISTFTCodecConfig.tiny())),
    ):
        codec(torch.randn(4, 1, 3200) * 0.1)  # a training forward fills the codebooks (k-means)
        out[name] = codec.eval()
    return out


CODECS = codecs()


@pytest.mark.parametrize("name", list(CODECS))
@pytest.mark.parametrize("chunk", [1, 3, 7, 40])
def test_chunks_joined_equal_the_one_shot_decode(name, chunk):
    codec = CODECS[name]
    codes = torch.randint(
        0,
        codec.codebook_size,
        (2, 40, codec.num_quantizers),
        generator=torch.Generator().manual_seed(1),
    )
    whole = codec.decode(codes)
    stream = OverlapDecoder(codec)
    parts = [stream.decode_chunk(codes[:, i : i + chunk]) for i in range(0, 40, chunk)]
    parts.append(stream.flush())
    joined = torch.cat(parts, dim=-1)
    assert joined.shape == whole.shape  # no sample repeated or dropped
    assert torch.allclose(joined, whole, atol=1e-5)
    # bounded: it keeps the context and the frames still waiting for their look-ahead
    assert stream.codes.shape[1] <= stream.left + stream.right + chunk


@pytest.mark.parametrize("name", list(CODECS))
def test_the_reach_is_what_the_decoder_sees_and_too_little_context_shows(name):
    codec = CODECS[name]
    left, right = decoder_reach(codec)
    assert left >= 1 and right >= 1  # both are non-causal
    codes = torch.randint(
        0,
        codec.codebook_size,
        (1, 40, codec.num_quantizers),
        generator=torch.Generator().manual_seed(2),
    )
    whole = codec.decode(codes)
    stream = OverlapDecoder(codec, reach=(0, 0))  # no overlap at all: the seams differ
    joined = torch.cat(
        [stream.decode_chunk(codes[:, i : i + 5]) for i in range(0, 40, 5)] + [stream.flush()], -1
    )
    assert joined.shape == whole.shape
    assert not torch.allclose(joined, whole, atol=1e-5)


def test_a_causal_codec_streams_with_its_own_decoder_and_a_global_one_is_refused():
    torch.manual_seed(0)
    causal = SoundStream(SoundStreamConfig.tiny(seanet={"causal": True})).eval()
    assert isinstance(stream_decoder_for(causal), StreamingDecoder)
    assert isinstance(stream_decoder_for(CODECS["istft"]), OverlapDecoder)

    class Global:  # every sample depends on every code (a running sum over time)
        sample_rate, frame_rate, num_quantizers, codebook_size, channels = 100, 10.0, 1, 4, 1

        def decode(self, codes):
            return codes.float().cumsum(1).repeat_interleave(10, dim=1).transpose(1, 2)

    with pytest.raises(ValueError, match="cannot be decoded in overlapping chunks"):
        decoder_reach(Global(), limit=256)

    class Deaf(Global):  # codes change nothing (an untrained, all-zero codebook)
        def decode(self, codes):
            return torch.zeros(codes.shape[0], 1, codes.shape[1] * 10)

    with pytest.raises(ValueError, match="give reach explicitly"):
        decoder_reach(Deaf())
