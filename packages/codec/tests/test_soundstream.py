import pytest
import torch

from cadence.codec import CodeRangeError, SoundStream, SoundStreamConfig
from cadence.core.audio import (
    ChannelMismatchError,
    EmptyAudioError,
    NonFiniteAudioError,
    SampleRateMismatchError,
)
from cadence.core.checkpoint import CheckpointError
from cadence.core.config import ConfigError
from cadence.core.interfaces import Codec, LatentCodec
from cadence.core.testing import TinyModel, TinyModelConfig


def speechlike(batch: int, samples: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """A modulated tone plus a little noise, in [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    f0 = 120 + 40 * torch.rand(batch, 1, 1, generator=gen)
    tone = torch.sin(2 * torch.pi * f0 * t) * (0.5 + 0.5 * torch.sin(2 * torch.pi * 3 * t))
    return (0.3 * tone + 0.01 * torch.randn(batch, channels, samples, generator=gen)).clamp(-1, 1)


KINDS = [
    pytest.param({}, id="rvq"),
    pytest.param({"kind": "grouped_rvq", "groups": 2}, id="grouped_rvq"),
    pytest.param({"kind": "fsq", "fsq_levels": (4, 4, 4)}, id="fsq"),
]


def tiny(causal: bool = False, **quantizer) -> SoundStream:
    """A tiny model whose codebooks went through their k-means initialisation."""
    torch.manual_seed(0)
    config = SoundStreamConfig.tiny(
        seanet={"causal": causal}, quantizer={"quantize_dropout": False, **quantizer}
    )
    model = SoundStream(config).train()
    model(speechlike(4, 16000, seed=1))
    return model.eval()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("causal", [False, True], ids=["noncausal", "causal"])
def test_shapes_and_code_range(kind, causal):
    model = tiny(causal=causal, **kind)
    assert isinstance(model, Codec) and isinstance(model, LatentCodec)
    assert model.frame_rate == 50.0 and model.hop_length == 320
    audio = speechlike(2, 16000)
    codes = model.encode(audio)
    q = model.num_quantizers
    assert codes.shape == (2, 50, q) and codes.dtype == torch.long
    assert codes.min() >= 0 and codes.max() < model.codebook_size
    decoded = model.decode(codes)
    assert decoded.shape == (2, 1, 16000)
    # every prefix of whole levels decodes to the same length (bitrate scalability)
    step = model.quantizer.groups
    for k in range(step, q + 1, step):
        assert model.decode(codes[..., :k]).shape == decoded.shape
    latents = model.encode_latents(audio)
    assert latents.shape == (2, 50, model.latent_dim)
    quantized = model.codes_to_latents(codes)
    assert quantized.shape == latents.shape
    torch.testing.assert_close(model.decode_latents(quantized), decoded)
    # a partial last frame is padded to a whole one: ceil(t / hop) frames
    assert model.encode(audio[..., :1000]).shape == (2, 4, q)


def test_fewer_levels_are_coarser_and_prefixes_agree():
    model = tiny(num_quantizers=4)
    audio = speechlike(2, 8000)
    codes = model.encode(audio)
    torch.testing.assert_close(model.encode(audio, num_quantizers=2), codes[..., :2])
    latents = model.encode_latents(audio)
    errors = [
        (model.codes_to_latents(codes[..., :k]) - latents).pow(2).mean().item() for k in (1, 2, 4)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert model.bandwidth() == pytest.approx(4 * 6 * 50)


def test_causal_encoder_ignores_the_future():
    model = tiny(causal=True)
    audio = speechlike(1, 6400)
    changed = audio.clone()
    changed[..., 3200:] = torch.randn(1, 1, 3200) * 0.3
    a, b = model.encode_latents(audio), model.encode_latents(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10])  # frames 0..9 end at sample 3200
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_training_forward_updates_codebooks_and_drops_levels():
    torch.manual_seed(0)
    model = SoundStream(SoundStreamConfig.tiny(quantizer={"num_quantizers": 4})).train()
    audio = speechlike(4, 8000)
    before = model.quantizer.quantizer.layers[0]._codebook.embed.clone()
    seen_dropped = False
    for _ in range(8):
        out = model(audio)
        assert out.audio.shape == audio.shape and out.latents.shape == (4, 25, 16)
        assert out.commit_loss.ndim == 0 and out.commit_loss.requires_grad
        seen_dropped |= bool((out.codes == -1).any())
    assert seen_dropped, "quantizer dropout never removed a level in 8 training steps"
    after = model.quantizer.quantizer.layers[0]._codebook.embed
    assert not torch.equal(before, after)
    # encode() never moves the codebooks, even on a model in training mode
    frozen = after.clone()
    model.encode(audio)
    assert torch.equal(frozen, model.quantizer.quantizer.layers[0]._codebook.embed)
    assert model.training


def test_save_load_round_trip(tmp_path):
    model = tiny(kind="grouped_rvq", groups=2)  # k-means init and EMA buffers round-trip too
    model.save_pretrained(tmp_path / "ss")
    loaded = SoundStream.load_pretrained(tmp_path / "ss").eval()
    assert loaded.config == model.config
    audio = speechlike(1, 8000)
    codes = model.encode(audio)
    assert torch.equal(loaded.encode(audio), codes)
    torch.testing.assert_close(loaded.decode(codes), model.decode(codes), rtol=0, atol=0)


def test_config_strides_and_rates():
    assert SoundStreamConfig.speech_16khz().hop_length == 320
    model = SoundStream(SoundStreamConfig.tiny(sample_rate=24000))
    assert model.frame_rate == 75.0
    assert (
        SoundStream(
            SoundStreamConfig.tiny(seanet={"strides": (2, 4, 5, 6)}, sample_rate=24000)
        ).frame_rate
        == 100.0
    )
    with pytest.raises(ConfigError, match="causal"):
        SoundStreamConfig.tiny(seanet={"causal": True, "norm": "time_group_norm"})
    with pytest.raises(ConfigError, match="grouped_rvq"):
        SoundStreamConfig.tiny(quantizer={"groups": 2})
    with pytest.raises(ConfigError, match=r"quantizer.*'lfq'|kind.*'lfq'"):
        SoundStreamConfig.from_dict({"quantizer": {"kind": "lfq"}})
    with pytest.raises(ConfigError, match="must divide"):
        SoundStreamConfig.tiny(quantizer={"kind": "grouped_rvq", "groups": 3})
    with pytest.raises(ConfigError, match="no field"):
        SoundStreamConfig.tiny(seanet={"dimension": 8})


def test_bad_audio_is_refused_with_a_fix():
    model = tiny()
    with pytest.raises(SampleRateMismatchError, match="resample"):
        model.encode(speechlike(1, 8000), sample_rate=24000)
    with pytest.raises(ChannelMismatchError, match="convert_channels"):
        model.encode(speechlike(1, 8000, channels=2))
    with pytest.raises(EmptyAudioError):
        model.encode(torch.zeros(1, 1, 0))
    nan = speechlike(1, 8000)
    nan[..., 10] = float("nan")
    with pytest.raises(NonFiniteAudioError):
        model.encode(nan)
    with pytest.raises(NonFiniteAudioError):
        model(nan)
    with pytest.raises(ValueError, match=r"\(b, c, t\)"):
        model.encode(torch.zeros(8000))


def test_bad_codes_are_refused():
    model = tiny(num_quantizers=4, codebook_size=64)
    codes = model.encode(speechlike(1, 3200))
    with pytest.raises(CodeRangeError, match=r"\[0, 64\)"):
        model.decode(codes + 64)
    with pytest.raises(CodeRangeError, match=r"\[0, 64\)"):
        model.decode(codes - 100)
    with pytest.raises(CodeRangeError, match="has 4"):
        model.decode(torch.cat([codes, codes], dim=-1))
    with pytest.raises(CodeRangeError, match="has 4"):
        model.encode(speechlike(1, 3200), num_quantizers=5)
    with pytest.raises(CodeRangeError, match="integers"):
        model.decode(codes.float())
    with pytest.raises(CodeRangeError, match=r"\(b, n, q\)"):
        model.decode(codes[0])
    grouped = tiny(kind="grouped_rvq", groups=2)
    with pytest.raises(CodeRangeError, match="multiple of 2"):
        grouped.decode(grouped.encode(speechlike(1, 3200))[..., :3])


def test_loading_another_models_checkpoint_names_both(tmp_path):
    TinyModel(TinyModelConfig()).save_pretrained(tmp_path / "other")
    with pytest.raises(CheckpointError, match=r"TinyModel.*not a cadence\.codec\.SoundStream"):
        SoundStream.load_pretrained(tmp_path / "other")
    # same class, other config: a clear key/shape report, not a silent partial load
    tiny().save_pretrained(tmp_path / "a")
    import json

    header = json.loads((tmp_path / "a" / "config.json").read_text())
    header["config"]["seanet"]["n_filters"] = 8
    (tmp_path / "a" / "config.json").write_text(json.dumps(header))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        SoundStream.load_pretrained(tmp_path / "a")


@pytest.mark.parametrize("chunk", [1, 317, 3200])
def test_causal_model_streams_like_offline(chunk):
    from cadence.codec.streaming import decode_chunked, encode_chunked

    model = tiny(causal=True)
    audio = speechlike(1, 1000 if chunk == 1 else 8000)  # sample by sample: keep it short
    codes = model.encode(audio)
    torch.testing.assert_close(encode_chunked(model, audio, chunk_samples=chunk), codes)
    frames = max(chunk // model.hop_length, 1)
    streamed = decode_chunked(model, codes, chunk_frames=frames)
    torch.testing.assert_close(streamed, model.decode(codes), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="causal"):
        tiny().stream_encoder()


def test_folding_weight_norm_keeps_outputs_and_refuses_to_save(tmp_path):
    model = tiny(causal=True)
    audio = speechlike(1, 4000)
    codes, decoded = model.encode(audio), model.decode(model.encode(audio))
    model.fold_weight_norm()
    assert torch.equal(model.encode(audio), codes)
    torch.testing.assert_close(model.decode(codes), decoded, rtol=0, atol=1e-6)
    with pytest.raises(CheckpointError, match="save the model before folding"):
        model.save_pretrained(tmp_path / "folded")


@pytest.mark.parametrize("causal", [False, True], ids=["noncausal", "causal"])
def test_a_padded_batch_gives_each_item_what_it_gets_alone(causal):
    model = tiny(causal=causal)
    lengths = torch.tensor([8000, 3333, 8000, 321])
    audio = speechlike(4, 8000)
    audio[1, :, 3333:] = 0.7  # padding that would leak into the last frames if it were read
    frames = torch.tensor([model.num_frames(int(n)) for n in lengths])
    assert frames.tolist() == [25, 11, 25, 2]
    latents = model.encode_latents(audio, lengths)
    codes = model.encode(audio, lengths)
    assert latents.shape == (4, 25, model.latent_dim) and codes.shape == (
        4,
        25,
        model.num_quantizers,
    )
    for i, n in enumerate(lengths.tolist()):
        alone = audio[i : i + 1, :, :n]
        torch.testing.assert_close(latents[i, : frames[i]], model.encode_latents(alone)[0])
        assert torch.equal(codes[i, : frames[i]], model.encode(alone)[0])
        assert not latents[i, frames[i] :].any() and not codes[i, frames[i] :].any()
    decoded = model.decode_latents(latents, frames, quantize=True)
    assert decoded.shape == (4, 1, 25 * 320)
    for i, n in enumerate(frames.tolist()):
        alone = model.decode_latents(latents[i : i + 1, :n], quantize=True)[0]
        torch.testing.assert_close(decoded[i, :, : n * 320], alone)
        assert not decoded[i, :, n * 320 :].any()


def test_full_lengths_are_one_batched_call_with_the_same_result():
    model = tiny()
    audio = speechlike(2, 4000)
    full = torch.tensor([4000, 4000])
    assert torch.equal(model.encode(audio, full), model.encode(audio))
    codes = model.encode(audio)
    assert torch.equal(model.decode(codes, torch.tensor([13, 13])), model.decode(codes))


def test_padding_frames_of_codes_are_never_read_or_checked():
    model = tiny(num_quantizers=4, codebook_size=64)
    codes = model.encode(speechlike(2, 3200))
    padded = codes.clone()
    padded[1, 6:] = -1  # not a code: only allowed past the item's length
    decoded = model.decode(padded, torch.tensor([10, 6]))
    torch.testing.assert_close(decoded[1, :, : 6 * 320], model.decode(codes[1:, :6])[0])
    with pytest.raises(CodeRangeError, match=r"\[0, 64\)"):
        model.decode(padded, torch.tensor([10, 7]))
    with pytest.raises(ValueError, match="lengths"):
        model.decode(codes, torch.tensor([10, 11]))  # more frames than the codes have
    with pytest.raises(ValueError, match="lengths"):
        model.encode(speechlike(2, 3200), torch.tensor([3200]))  # one length per item


def test_a_format_1_flat_config_is_nested_on_load():
    flat = {
        "sample_rate": 16000,
        "strides": [2, 4, 5, 8],
        "latent_dim": 16,
        "n_filters": 4,
        "lstm": 0,
        "causal": True,
        "quantizer": "grouped_rvq",
        "groups": 2,
        "num_quantizers": 4,
        "codebook_size": 64,
    }
    from cadence.core.config import upgrade_config_dict

    config = SoundStreamConfig.from_dict(upgrade_config_dict(SoundStreamConfig, flat, 1))
    assert config == SoundStreamConfig.tiny(
        seanet={"causal": True}, quantizer={"kind": "grouped_rvq", "groups": 2}
    )
    with pytest.raises(ConfigError, match="unknown key"):
        SoundStreamConfig.from_dict(flat)  # a current config has no flat keys
