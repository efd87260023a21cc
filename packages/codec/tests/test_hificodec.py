"""HiFi-Codec: the released parameter layout, the reference's decoding, shapes and safe loading.

``data/hificodec`` was written by AcademiCodec's own modules (``make_fixture.py`` there): the
name and shape of every tensor of the released ``HiFi-Codec-16k-320d`` checkpoint, and a small
generator + quantizer with the reference's audio for given codes.
"""

import json
from pathlib import Path

import pytest
import torch

from cadence.codec import HiFiCodec, HiFiCodecConfig, SpeechTokenizer, SpeechTokenizerConfig
from cadence.codec.hificodec_loading import (
    config_from_official,
    from_official_state_dict,
    to_official_state_dict,
)
from cadence.codec.speechtokenizer_loading import to_official_state_dict as speechtokenizer_official
from cadence.core.checkpoint import CheckpointError, load_pretrained
from cadence.core.interfaces import Codec, LatentCodec

DATA = Path(__file__).parent / "data" / "hificodec"


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return HiFiCodec(HiFiCodecConfig.tiny()).eval()


def test_the_released_16k_layout_maps_onto_the_default_model_tensor_for_tensor():
    published = json.loads((DATA / "layout_16k_320d.json").read_text())
    with torch.device("meta"):  # the released model's size (~60 M parameters), no memory
        ours = to_official_state_dict(HiFiCodec(HiFiCodecConfig()))
    assert set(ours) == set(published)
    for network, tensors in published.items():
        assert set(ours[network]) == set(tensors), network
        for key, shape in tensors.items():
            assert list(ours[network][key].shape) == shape, f"{network}.{key}"


def test_decoding_equals_the_reference_generator_and_quantizer():
    fixture = torch.load(DATA / "decoder.pt", weights_only=True)
    model = HiFiCodec(config_from_official(fixture["config"])).eval()
    state = from_official_state_dict(
        {"generator": fixture["generator"], "quantizer": fixture["quantizer"], "encoder": {}}
    )
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("encoder.") for k in missing)
    torch.testing.assert_close(model.decode(fixture["codes"]), fixture["audio"], atol=1e-5, rtol=0)


def test_shapes_and_protocols(tiny):
    audio = torch.randn(2, 1, 803) * 0.1
    codes = tiny.encode(audio)
    assert isinstance(tiny, Codec) and isinstance(tiny, LatentCodec)
    assert codes.shape == (2, 100, 4) and codes.dtype == torch.long  # floor(803 / 8)
    assert len(codes.unique()) > 4
    wave = tiny.decode(codes)
    assert wave.shape == (2, 1, 800) and wave.abs().max() < 1  # tanh output
    latents = tiny.encode_latents(audio)
    assert latents.shape == (2, 100, 32)
    assert tiny.codes_to_latents(codes).shape == latents.shape
    assert tiny.decode_latents(latents).shape == (2, 1, 800)
    with pytest.raises(ValueError, match="at least one frame"):
        tiny.encode(torch.zeros(1, 1, 7))


def test_a_prefix_of_the_codebooks_decodes_the_rest_as_zero(tiny):
    codes = tiny.encode(torch.randn(1, 1, 160) * 0.1)
    level0 = tiny.codes_to_latents(codes[..., :2])
    level1 = tiny.codes_to_latents(codes) - level0
    torch.testing.assert_close(level0 + level1, tiny.codes_to_latents(codes))
    half = tiny.codes_to_latents(codes[..., :1])
    assert not half[..., 16:].any() and half[..., :16].any()


def test_released_files_load_and_round_trip(tiny, tmp_path):
    torch.save(to_official_state_dict(tiny), tmp_path / "g_00001000")
    config = {
        "resblock": "1",
        "upsample_rates": [4, 2],
        "upsample_kernel_sizes": [8, 4],
        "upsample_initial_channel": 16,
        "resblock_kernel_sizes": [3, 5],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
        "n_code_groups": 2,
        "n_codes": 32,
        "sampling_rate": 16000,
        "learning_rate": 0.0002,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    # the small model's widths differ from AcademiCodec's fixed 32 -> 512; pass them in
    with pytest.raises(CheckpointError, match="shape mismatches"):
        HiFiCodec.from_official(tmp_path / "g_00001000", config=tmp_path / "config.json")
    loaded = HiFiCodec(HiFiCodecConfig.tiny())
    from cadence.codec.hificodec_loading import _check_is_hificodec

    state = _check_is_hificodec(torch.load(tmp_path / "g_00001000", weights_only=True), "g")
    loaded.load_state_dict(from_official_state_dict(state))
    audio = torch.randn(1, 1, 400) * 0.1
    assert torch.equal(loaded.eval().encode(audio), tiny.encode(audio))
    tiny.save_pretrained(tmp_path / "ours")
    assert torch.equal(load_pretrained(tmp_path / "ours").encode(audio), tiny.encode(audio))


def test_a_wrong_checkpoint_names_what_it_is(tmp_path):
    path = tmp_path / "ckpt"
    torch.save({"mpd": {}, "msd": {}, "optim_g": {}, "steps": 5}, path)
    with pytest.raises(CheckpointError, match="discriminator / optimizer checkpoint"):
        HiFiCodec.from_official(path)
    torch.save(speechtokenizer_official(SpeechTokenizer(SpeechTokenizerConfig.tiny())), path)
    with pytest.raises(CheckpointError, match="SEANet codec"):
        HiFiCodec.from_official(path)
    torch.save({"generator": {}}, path)
    with pytest.raises(CheckpointError, match=r"lacks the \['encoder', 'quantizer'\]"):
        HiFiCodec.from_official(path)
    (tmp_path / "bad.json").write_text(json.dumps({"n_filters": 64}))
    with pytest.raises(CheckpointError, match="not a HiFi-Codec config"):
        HiFiCodec.from_official(path, config=tmp_path / "bad.json")


def test_a_checkpoint_that_needs_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"generator": Payload()}, tmp_path / "g_1")
    with pytest.raises(CheckpointError, match="holds Python code"):
        HiFiCodec.from_official(tmp_path / "g_1")
    assert not marker.exists()
