"""DAC and Mimi adapters over transformers: the same numbers as the models, Cadence's shapes and rules.

Models are built offline from small configs with random weights (``DacCodec.tiny()``,
``MimiCodec.tiny()``); the official folders load the same way (``from_pretrained`` of a
saved model).
"""

import pytest
import torch

from cadence.codec import DacCodec, MimiCodec, SoundStream, SoundStreamConfig
from cadence.codec.streaming import decode_chunked, decode_to_file, encode_chunked, encode_file
from cadence.core.checkpoint import CheckpointError

pytest.importorskip("transformers")

CODECS = [pytest.param(DacCodec.tiny, id="DAC"), pytest.param(MimiCodec.tiny, id="Mimi")]


def _audio(samples: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, 1, samples, generator=torch.Generator().manual_seed(seed))


def _reference_codes(codec, audio):
    """The transformers model's own ``encode`` on the same zero-padded audio, as ``(b, n, q)``."""
    padded = codec.pad_to_frames(audio)
    with torch.no_grad():
        if isinstance(codec, DacCodec):
            codes = codec.model.encode(padded, n_quantizers=codec.num_quantizers).audio_codes
        else:
            codes = codec.model.encode(padded, num_quantizers=codec.num_quantizers).audio_codes
    return codes.transpose(1, 2)


def _reference_audio(codec, codes):
    with torch.no_grad():
        if isinstance(codec, DacCodec):
            return codec.model.decode(audio_codes=codes.transpose(1, 2)).audio_values[:, None]
        return codec.model.decode(codes.transpose(1, 2)).audio_values


@pytest.mark.parametrize("make", CODECS)
@pytest.mark.parametrize("samples", [160, 163])
def test_codes_and_audio_equal_the_transformers_model(make, samples):
    codec = make()
    audio = _audio(samples)
    codes = codec.encode(audio)
    assert codes.shape == (2, codec.num_frames(samples), codec.num_quantizers)
    assert codes.shape[1] == -(-samples // codec.hop_length)
    assert len(codes.unique()) > 4
    assert torch.equal(codes, _reference_codes(codec, audio))
    decoded = codec.decode(codes)
    assert decoded.shape == (2, 1, codes.shape[1] * codec.hop_length)
    torch.testing.assert_close(decoded, _reference_audio(codec, codes), atol=1e-6, rtol=0)


@pytest.mark.parametrize("make", CODECS)
def test_fewer_levels_are_the_models_own_fewer_levels(make):
    codec = make()
    few = type(codec)(codec.model, num_quantizers=2)
    audio = _audio(320)
    codes = few.encode(audio)
    assert codes.shape[-1] == 2
    assert torch.equal(codes, _reference_codes(few, audio))
    assert torch.equal(codes, codec.encode(audio)[..., :2])  # residual levels are a prefix


@pytest.mark.parametrize("make", CODECS)
def test_latents_are_the_encoders_output_and_decode(make):
    codec = make()
    audio = _audio(320)
    latents = codec.encode_latents(audio)
    with torch.no_grad():
        if isinstance(codec, DacCodec):
            expected = codec.model.encoder(audio)
        else:
            expected = codec.model.encoder(audio).latents
    torch.testing.assert_close(latents, expected.transpose(1, 2))
    codes = codec.encode(audio)
    assert codec.codes_to_latents(codes).shape == latents.shape
    assert codec.decode_latents(latents).shape == (2, 1, latents.shape[1] * codec.hop_length)
    # quantized latents decode to what the codes decode to
    torch.testing.assert_close(
        codec.decode_latents(codec.codes_to_latents(codes)), codec.decode(codes), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("make", CODECS)
def test_padding_does_not_leak_into_a_batch(make):
    codec = make()
    audio = _audio(400, batch=3)
    lengths = torch.tensor([400, 250, 97])
    codes = codec.encode(audio, lengths)
    for i, n in enumerate(lengths.tolist()):
        frames = codec.num_frames(n)
        assert torch.equal(codes[i, :frames], codec.encode(audio[i : i + 1, :, :n])[0])
        assert not codes[i, frames:].any()


@pytest.mark.parametrize("make", CODECS)
def test_official_folders_load_from_a_local_path(make, tmp_path):
    codec = make()
    codec.model.save_pretrained(tmp_path / "hf")
    loaded = type(codec).from_pretrained(tmp_path / "hf")
    audio = _audio(320)
    assert torch.equal(loaded.encode(audio), codec.encode(audio))
    torch.testing.assert_close(
        loaded.decode(codec.encode(audio)), codec.decode(codec.encode(audio))
    )


def test_a_wrong_folder_names_what_it_is(tmp_path):
    MimiCodec.tiny().model.save_pretrained(tmp_path / "mimi")
    with pytest.raises(CheckpointError, match="holds a Hugging Face 'mimi' model, not 'dac'"):
        DacCodec.from_pretrained(tmp_path / "mimi")
    SoundStream(SoundStreamConfig.tiny()).save_pretrained(tmp_path / "ours")
    with pytest.raises(CheckpointError, match=r"Cadence checkpoint of .*load_pretrained"):
        MimiCodec.from_pretrained(tmp_path / "ours")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        DacCodec.from_pretrained(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="not a directory"):
        DacCodec.from_pretrained(tmp_path / "missing")


@pytest.mark.parametrize("chunk", [1, 15, 16, 17, 100])
def test_mimi_streamed_encoding_equals_one_shot(chunk):
    codec = MimiCodec.tiny()
    audio = _audio(16 * 30 + 5)  # longer than the attention window (5 steps)
    assert torch.equal(encode_chunked(codec, audio, chunk_samples=chunk), codec.encode(audio))


@pytest.mark.parametrize("chunk", [1, 2, 7, 40])
def test_mimi_streamed_decoding_equals_one_shot(chunk):
    codec = MimiCodec.tiny()
    codes = codec.encode(_audio(16 * 31))
    one_shot = codec.decode(codes)
    streamed = decode_chunked(codec, codes, chunk_frames=chunk)
    assert streamed.shape == one_shot.shape
    torch.testing.assert_close(streamed, one_shot, atol=1e-5, rtol=0)


def test_mimi_streams_files_and_empty_chunks(tmp_path):
    import soundfile as sf

    codec = MimiCodec.tiny()
    audio = _audio(16 * 20 + 3, batch=1)
    sf.write(tmp_path / "in.wav", audio[0, 0].numpy(), codec.sample_rate, subtype="FLOAT")
    codes = encode_file(codec, tmp_path / "in.wav", chunk_seconds=0.01, progress=False)
    assert torch.equal(codes, codec.encode(audio))
    out = decode_to_file(codec, codes, tmp_path / "out.wav", subtype="FLOAT", progress=False)
    wave, _ = sf.read(out, dtype="float32")
    torch.testing.assert_close(torch.from_numpy(wave), codec.decode(codes)[0, 0], atol=1e-5, rtol=0)
    stream = codec.stream_decoder()
    assert stream.decode_chunk(codes[:, :0]).shape == (1, 1, 0)
    with pytest.raises(ValueError, match="no audio"):
        codec.stream_encoder().flush()


def test_dac_does_not_claim_to_stream():
    assert not hasattr(DacCodec.tiny(), "stream_encoder")
