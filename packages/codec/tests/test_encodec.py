import json

import pytest
import torch
from torch import nn

from cadence.codec.encodec import EnCodec, EnCodecConfig
from cadence.codec.quantizer import CodeRangeError
from cadence.core.audio import (
    ChannelMismatchError,
    EmptyAudioError,
    NonFiniteAudioError,
    SampleRateMismatchError,
)
from cadence.core.checkpoint import CheckpointError
from cadence.core.interfaces import Codec, LatentCodec


def tiny_model(seed=0):
    torch.manual_seed(seed)
    model = EnCodec(EnCodecConfig.tiny()).eval()
    nn.init.normal_(model.quantizer.codebooks)  # untrained codebooks are zeros
    return model


def test_protocols_and_attributes():
    model = tiny_model()
    assert isinstance(model, Codec) and isinstance(model, LatentCodec)
    assert (model.sample_rate, model.channels, model.hop_length) == (8000, 1, 8)
    assert model.frame_rate == 1000.0 and model.latent_dim == 16 and model.codebook_size == 64


@pytest.mark.parametrize(
    ("bandwidth", "levels"), [(1.5, 2), (3.0, 4), (6.0, 8), (12.0, 16), (24.0, 32)]
)
def test_bandwidth_selects_quantizers_24khz(bandwidth, levels):
    config = EnCodecConfig.encodec_24khz(bandwidth=bandwidth)
    assert config.frame_rate == 75.0 and config.hop_length == 320
    assert config.quantizers_for(bandwidth) == levels


@pytest.mark.parametrize("bandwidth", [6.0, 12.0, 24.0])
@pytest.mark.parametrize("length", [1, 8, 100, 803])
def test_shapes_and_ranges(bandwidth, length):
    model = tiny_model()
    codes = model.encode(torch.randn(2, 1, length) * 0.3, bandwidth=bandwidth)
    frames = -(-length // 8)
    assert codes.shape == (2, frames, model.config.quantizers_for(bandwidth))
    assert codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < model.codebook_size
    assert model.decode(codes).shape == (2, 1, frames * 8)
    assert model(torch.randn(2, 1, length)).shape == (2, 1, length)


def test_default_bandwidth_and_set_bandwidth():
    model = tiny_model()
    x = torch.randn(1, 1, 80)
    assert model.encode(x).shape[-1] == model.num_quantizers == 2  # 12 kbps at 1 kHz, 64 entries
    model.set_bandwidth(24.0)
    assert model.num_quantizers == 4 and model.encode(x).shape[-1] == 4
    with pytest.raises(ValueError, match=r"choose one of \[6.0, 12.0, 24.0\]"):
        model.set_bandwidth(7.0)


def test_residual_quantization_improves_with_levels():
    model = tiny_model()
    latents = model.encode_latents(torch.randn(2, 1, 400) * 0.3)
    with torch.no_grad():
        # Codebooks at the latents' scale, shrinking per level, with a zero entry so a level
        # can never add error: the residual error must fall level by level.
        scales = latents.std() * 0.6 ** torch.arange(4.0)
        model.quantizer.codebooks.copy_(torch.randn(4, 64, 16) * scales[:, None, None])
        model.quantizer.codebooks[:, 0] = 0
    codes = model.quantize_latents(latents, bandwidth=24.0)
    errors = [
        (model.codes_to_latents(codes[..., :q]) - latents).pow(2).mean().item() for q in range(1, 5)
    ]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.7 * errors[0]


def test_latent_paths_agree():
    model = tiny_model()
    x = torch.randn(1, 1, 160) * 0.3
    codes = model.encode(x, bandwidth=24.0)
    quantized = model.codes_to_latents(codes)
    assert quantized.shape == (1, 20, 16)
    manual = sum(model.quantizer.codebooks[level][codes[..., level]] for level in range(4))
    torch.testing.assert_close(quantized, manual)
    assert torch.equal(model.decode_latents(quantized), model.decode(codes))
    assert model.encode_latents(x).shape == (1, 20, 16)


def test_save_load_round_trip(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "ckpt")
    loaded = EnCodec.load_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config
    x = torch.randn(1, 1, 120)
    assert torch.equal(loaded.encode(x), model.encode(x))
    codes = model.encode(x)
    assert torch.equal(loaded.decode(codes), model.decode(codes))


def test_bad_audio():
    model = tiny_model()
    with pytest.raises(ChannelMismatchError, match="convert_channels"):
        model.encode(torch.randn(1, 2, 80))
    with pytest.raises(SampleRateMismatchError):
        model.encode(torch.randn(1, 1, 80), sample_rate=16000)
    with pytest.raises(EmptyAudioError):
        model.encode(torch.zeros(1, 1, 0))
    with pytest.raises(NonFiniteAudioError):
        model.encode(torch.full((1, 1, 80), float("nan")))


def test_bad_codes():
    model = tiny_model()
    codes = model.encode(torch.randn(1, 1, 80))
    with pytest.raises(CodeRangeError, match=r"in \[0, 64\)"):
        model.decode(codes + 64)
    with pytest.raises(ValueError, match=r"in \[0, 64\)"):
        model.decode(codes - 100)
    with pytest.raises(ValueError, match=r"only 4; keep the first levels: codes\[\.\.\., :4\]"):
        model.decode(torch.zeros(1, 10, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="0 frames"):
        model.decode(codes[:, :0])
    with pytest.raises(ValueError, match="integers"):
        model.decode(codes.float())
    with pytest.raises(ValueError, match=r"\(b, n, q\)"):
        model.decode(codes[0])
    with pytest.raises(ValueError, match=r"bandwidth 5\.0"):
        model.encode(torch.randn(1, 1, 80), bandwidth=5.0)


def test_from_official_rejects_other_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        EnCodec.from_official(tmp_path / "missing.th")
    torch.save(nn.Linear(3, 4).state_dict(), tmp_path / "linear.th")
    with pytest.raises(CheckpointError, match=r"not an EnCodec checkpoint.*'bias', 'weight'"):
        EnCodec.from_official(tmp_path / "linear.th")
    torch.save(
        {"state": nn.Linear(3, 4).state_dict(), "cfg": object.__new__(Unpicklable)},
        tmp_path / "xp.th",
    )
    with pytest.raises(CheckpointError, match="Python objects besides tensors"):
        EnCodec.from_official(tmp_path / "xp.th")
    (tmp_path / "garbage.th").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        EnCodec.from_official(tmp_path / "garbage.th")
    hubert = tmp_path / "hubert"
    hubert.mkdir()
    (hubert / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    with pytest.raises(CheckpointError, match="'hubert' model, not EnCodec"):
        EnCodec.from_official(hubert)
    big = tmp_path / "encodec48"
    big.mkdir()
    (big / "config.json").write_text(
        json.dumps({"model_type": "encodec", "normalize": True, "chunk_length_s": 1.0})
    )
    with pytest.raises(CheckpointError, match="48 kHz"):
        EnCodec.from_official(big)
    tiny_model().save_pretrained(tmp_path / "ours")
    with pytest.raises(CheckpointError, match=r"EnCodec\.load_pretrained"):
        EnCodec.from_official(tmp_path / "ours")


class Unpicklable:
    """A class that weights_only unpickling refuses (as an experiment config would be)."""


class Malicious:
    """Unpickling this runs a shell command (what a hostile checkpoint does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zipped", [True, False])
def test_from_official_says_a_malicious_file_holds_code_and_runs_none(tmp_path, zipped):
    marker = tmp_path / "ran"
    path = tmp_path / "encodec_24khz-evil.th"
    state = {"encoder.model.0.conv.conv.weight": torch.zeros(1), "x": Malicious(marker)}
    torch.save(state, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(CheckpointError) as info:
        EnCodec.from_official(path)
    message = str(info.value)
    assert "posix.system" in message or "nt.system" in message
    assert "can run code" in message and "refused" in message
    assert "weights_only" not in message and "will likely succeed" not in message
    assert info.value.__cause__ is None  # torch's advice is not chained either
    assert not marker.exists()


def test_folded_weight_norm_keeps_outputs_and_refuses_to_save(tmp_path):
    from cadence.codec.streaming import encode_chunked

    torch.manual_seed(0)
    model = EnCodec(EnCodecConfig.tiny()).eval()
    audio = 0.1 * torch.randn(1, 1, 4 * model.hop_length + 37)
    codes, wave = model.encode(audio), model.decode(model.encode(audio))
    model.fold_weight_norm()
    assert torch.equal(model.encode(audio), codes)
    torch.testing.assert_close(model.decode(codes), wave, atol=1e-6, rtol=1e-5)
    assert torch.equal(encode_chunked(model, audio, chunk_samples=17), codes)
    with pytest.raises(CheckpointError, match="save the model before folding"):
        model.save_pretrained(tmp_path / "folded")


def test_a_padded_batch_gives_each_item_what_it_gets_alone():
    model = tiny_model()
    lengths = torch.tensor([803, 80, 803, 17])
    audio = torch.randn(4, 1, 803) * 0.3
    frames = [model.num_frames(int(n)) for n in lengths]
    assert frames == [101, 10, 101, 3]
    codes = model.encode(audio, lengths, bandwidth=24.0)
    latents = model.encode_latents(audio, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = audio[i : i + 1, :, :n]
        assert torch.equal(codes[i, : frames[i]], model.encode(alone, bandwidth=24.0)[0])
        torch.testing.assert_close(latents[i, : frames[i]], model.encode_latents(alone)[0])
        assert not codes[i, frames[i] :].any() and not latents[i, frames[i] :].any()
    codes = codes.clone()
    codes[1, 10:] = 64  # out of range, but padding: never read
    decoded = model.decode(codes, torch.tensor(frames))
    from_latents = model.decode_latents(latents, torch.tensor(frames))
    for i, n in enumerate(frames):
        torch.testing.assert_close(decoded[i, :, : n * 8], model.decode(codes[i : i + 1, :n])[0])
        torch.testing.assert_close(
            from_latents[i, :, : n * 8], model.decode_latents(latents[i : i + 1, :n])[0]
        )
        assert not decoded[i, :, n * 8 :].any() and not from_latents[i, :, n * 8 :].any()
    with pytest.raises(CodeRangeError, match=r"in \[0, 64\)"):
        model.decode(codes, torch.tensor([101, 11, 101, 3]))


def test_format_1_names_are_nested_and_official_names_stay_in_the_loader():
    from cadence.codec.seanet import SEANetConfig
    from cadence.core.config import ConfigError, upgrade_config_dict

    flat = {
        "sample_rate": 8000,
        "dimension": 16,
        "n_filters": 4,
        "ratios": [4, 2],
        "codebook_size": 64,
        "n_codebooks": 4,
        "target_bandwidths": [6.0, 12.0, 24.0],
        "bandwidth": 12.0,
    }
    assert (
        EnCodecConfig.from_dict(upgrade_config_dict(EnCodecConfig, flat, 1)) == EnCodecConfig.tiny()
    )
    assert EnCodecConfig.tiny().seanet == SEANetConfig(
        causal=True, true_skip=False, latent_dim=16, n_filters=4, strides=(2, 4)
    )
    with pytest.raises(ConfigError, match="unknown key"):
        EnCodecConfig.from_dict({"dimension": 16})
