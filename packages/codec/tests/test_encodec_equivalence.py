"""Our EnCodec vs transformers.EncodecModel: same weights in every published layout, same outputs."""

import re
import shutil

import pytest
import torch

from cadence.codec.encodec import EnCodec
from cadence.codec.encodec_loading import to_official_state_dict

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.slow

# transformers' convert_encodec_checkpoint_to_pytorch.py maps original -> HF for the 24 kHz
# model; these are its decoder transposed-conv positions (`decoder.model.{i}.convtr.convtr`).
CONVTR_LAYERS = {3, 6, 9, 12}


def hf_to_original(state):
    """The inverse of transformers' conversion script, written independently of our loader."""
    out = {}
    for key, value in state.items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        if match := re.fullmatch(r"quantizer\.layers\.(\d+)\.codebook\.(\w+)", key):
            out[f"quantizer.vq.layers.{match[1]}._codebook.{match[2]}"] = value
            continue
        side, index, rest = re.fullmatch(r"(encoder|decoder)\.layers\.(\d+)\.(.+)", key).groups()
        if rest.startswith("lstm."):
            new = rest
        elif side == "decoder" and int(index) in CONVTR_LAYERS:
            new = rest.replace("conv.", "convtr.convtr.", 1)
        else:
            new = re.sub(r"(^|\.)conv\.", r"\1conv.conv.", rest, count=1)
        out[f"{side}.model.{index}.{new}"] = value
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch.manual_seed(0)
    model = transformers.EncodecModel(transformers.EncodecConfig()).eval()
    with torch.no_grad():
        # An untrained model's codebooks are zeros (they are k-means initialized in training).
        for layer in model.quantizer.layers:
            layer.codebook.embed.normal_()
    root = tmp_path_factory.mktemp("encodec")
    model.save_pretrained(root / "hf")
    # The Hub's facebook/encodec_24khz stores old-style weight_g / weight_v in pytorch_model.bin.
    legacy = root / "hf-legacy"
    legacy.mkdir()
    shutil.copy(root / "hf" / "config.json", legacy / "config.json")
    legacy_state = {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in model.state_dict().items()
    }
    torch.save(legacy_state, legacy / "pytorch_model.bin")
    torch.save(hf_to_original(model.state_dict()), root / "encodec_24khz-test.th")
    return model, root


@pytest.mark.parametrize("source", ["hf", "hf-legacy", "encodec_24khz-test.th"])
def test_identical_codes_and_audio(reference, source):
    hf, root = reference
    ours = EnCodec.from_official(root / source)
    assert ours.config.n_codebooks == 32 and ours.frame_rate == 75.0
    torch.manual_seed(1)
    audio = torch.randn(2, 1, 12000) * 0.2  # 0.5 s
    for bandwidth in (1.5, 6.0, 24.0):
        with torch.inference_mode():
            encoded = hf.encode(audio, bandwidth=bandwidth)
            expected_audio = hf.decode(encoded.audio_codes, encoded.audio_scales).audio_values
        expected_codes = encoded.audio_codes[0].transpose(1, 2)  # (b, q, n) -> (b, n, q)
        codes = ours.encode(audio, bandwidth=bandwidth)
        assert codes.shape == (2, 38, {1.5: 2, 6.0: 8, 24.0: 32}[bandwidth])
        assert torch.equal(codes, expected_codes)
        decoded = ours.decode(codes)
        assert decoded.shape == expected_audio.shape
        assert (decoded - expected_audio).abs().max() <= 1e-5


def test_export_matches_the_original_layout(reference):
    hf, root = reference
    ours = EnCodec.from_official(root / "hf")
    exported = to_official_state_dict(ours, "original")
    original = torch.load(root / "encodec_24khz-test.th", weights_only=True)
    assert exported.keys() == original.keys()
    for key in (
        "encoder.model.1.shortcut.conv.conv.weight_g",
        "decoder.model.3.convtr.convtr.weight_v",
        "encoder.model.13.lstm.weight_hh_l1",
        "quantizer.vq.layers.31._codebook.embed",
    ):
        assert torch.equal(exported[key], original[key])
    hf_keys = to_official_state_dict(ours, "hf", weight_norm_names="parametrizations").keys()
    assert hf_keys == hf.state_dict().keys()
