"""Chunked, stateful encoding/decoding equals offline processing for any chunk size."""

import random

import pytest
import soundfile as sf
import torch
from torch import nn

from cadence.codec.encodec import EnCodec, EnCodecConfig
from cadence.codec.seanet import SEANetConfig, SEANetDecoder, SEANetEncoder
from cadence.codec.streaming import (
    StreamingDecoder,
    StreamingEncoder,
    decode_chunked,
    decode_to_file,
    encode_chunked,
    encode_file,
    state_numel,
)
from cadence.core.audio import SampleRateMismatchError


def tiny_model(**changes):
    torch.manual_seed(0)
    config = EnCodecConfig.tiny()
    model = EnCodec(config.replace(seanet=config.seanet.replace(**changes))).eval()
    nn.init.normal_(model.quantizer.codebooks, std=0.3)
    return model


def chunk_sizes(seed, hop):
    rng = random.Random(seed)
    # 1 sample, around the hop, non-multiples of it, and larger than the input.
    return [1, hop - 1, hop + 1, 2 * hop, *rng.sample(range(2, 300), 4), 10_000]


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
@pytest.mark.parametrize("length", [3, 203, 601])
def test_chunked_encode_decode_equals_offline(pad_mode, length):
    model = tiny_model(pad_mode=pad_mode)
    torch.manual_seed(length)
    audio = torch.randn(2, 1, length) * 0.3
    codes = model.encode(audio)
    expected = model.decode(codes)
    for size in chunk_sizes(length, model.hop_length):
        assert torch.equal(encode_chunked(model, audio, chunk_samples=size), codes), size
    for frames in (1, 2, 7, 1000):
        decoded = decode_chunked(model, codes, chunk_frames=frames)
        assert decoded.shape == expected.shape
        assert (decoded - expected).abs().max() <= 1e-5, frames


def test_irregular_chunks_and_latents():
    # Generic over SEANet: latents (no quantizer) of a causal encoder with conv shortcuts,
    # deeper residual stacks and a non-trivial trim ratio.
    torch.manual_seed(0)
    config = SEANetConfig(
        n_filters=4,
        latent_dim=8,
        strides=(3, 5),
        causal=True,
        n_residual_layers=2,
        true_skip=False,
        trim_right_ratio=0.5,
    )
    encoder = SEANetEncoder(config).eval()
    decoder = SEANetDecoder(config).eval()
    audio = torch.randn(1, 1, 500)
    with torch.no_grad():
        latents = encoder(audio)
        expected = decoder(latents)
    stream = StreamingEncoder(encoder)
    sizes, start, parts = [1, 14, 15, 16, 2, 100, 352], 0, []
    for size in sizes:
        parts.append(stream.encode_chunk(audio[..., start : start + size]))
        start += size
    parts.append(stream.flush())
    streamed = torch.cat(parts, dim=1)
    assert streamed.shape == (1, latents.shape[-1], 8)
    assert (streamed - latents.transpose(1, 2)).abs().max() <= 1e-5
    dstream = StreamingDecoder(decoder)
    parts = [
        dstream.decode_chunk(latents.transpose(1, 2)[:, i : i + 3])
        for i in range(0, latents.shape[-1], 3)
    ]
    parts.append(dstream.flush())
    assert (torch.cat(parts, dim=-1) - expected).abs().max() <= 1e-5


def test_state_stays_bounded():
    model = tiny_model()
    encoder, decoder = model.stream_encoder(), model.stream_decoder()
    sizes = []
    for _ in range(40):
        codes = encoder.encode_chunk(torch.randn(1, 1, 97) * 0.3)
        decoder.decode_chunk(codes)
        sizes.append((state_numel(encoder), state_numel(decoder)))
    # The state varies with the chunk's phase against the hop (97 = 12 * 8 + 1: period 8),
    # but it no longer grows with the length of the stream.
    assert max(sizes[20:]) <= max(sizes[:20])
    assert max(s for pair in sizes for s in pair) < 2000


def test_file_round_trip(tmp_path):
    model = tiny_model()
    torch.manual_seed(3)
    audio = torch.randn(1, 1, 4003) * 0.3
    sf.write(tmp_path / "in.wav", audio[0, 0].numpy(), model.sample_rate, subtype="FLOAT")
    codes = encode_file(model, tmp_path / "in.wav", chunk_seconds=0.05, progress=False)
    assert torch.equal(codes, model.encode(audio))
    out = decode_to_file(
        model,
        codes,
        tmp_path / "out.wav",
        num_samples=4003,
        chunk_frames=64,
        subtype="FLOAT",
        progress=False,
    )
    decoded, sr = sf.read(out, dtype="float32")
    assert sr == model.sample_rate and decoded.shape == (4003,)
    expected = model.decode(codes)[0, 0, :4003]
    assert (torch.from_numpy(decoded) - expected).abs().max() <= 1e-5

    sf.write(tmp_path / "16k.wav", audio[0, 0].numpy(), 16000)
    with pytest.raises(SampleRateMismatchError, match="resample"):
        encode_file(model, tmp_path / "16k.wav", progress=False)


def test_misuse():
    with pytest.raises(ValueError, match="causal"):
        tiny_model(causal=False).stream_encoder()
    with pytest.raises(ValueError, match="causal"):
        tiny_model(causal=False).stream_decoder()
    model = tiny_model()
    stream = model.stream_encoder()
    with pytest.raises(ValueError, match="no audio"):
        stream.flush()
    stream.encode_chunk(torch.randn(1, 1, 50))
    stream.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        stream.encode_chunk(torch.randn(1, 1, 50))
    with pytest.raises(Exception, match="channel"):
        model.stream_encoder().encode_chunk(torch.randn(1, 2, 50))


def test_a_chunk_without_frames_decodes_to_no_samples():
    # An encoder stream emits no frame until one is complete; its empty output must feed the
    # decoder stream as it is (the docs' microphone loop does exactly this).
    model = tiny_model()
    audio = torch.randn(1, 1, 203) * 0.3
    encoder, decoder = model.stream_encoder(), model.stream_decoder()
    pieces, empty_chunks = [], 0
    for chunk in audio.split(3, dim=-1):
        codes = encoder.encode_chunk(chunk)
        empty_chunks += codes.shape[1] == 0
        pieces.append(decoder.decode_chunk(codes))
    pieces += [decoder.decode_chunk(encoder.flush()), decoder.flush()]
    assert empty_chunks > 0
    expected = model.decode(model.encode(audio))
    assert (torch.cat(pieces, dim=-1) - expected).abs().max() <= 1e-5
