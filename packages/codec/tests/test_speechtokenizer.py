"""SpeechTokenizer: shapes, RVQ-1 as a semantic tokenizer, and safe loading of official files.

``data/speechtokenizer_tiny`` was written by the reference ``speechtokenizer`` package
(``make_fixture.py`` there): the official file layout and the reference's outputs, so the
loader and the outputs are checked on every run, without the package.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from cadence.codec import EnCodec, EnCodecConfig, SpeechTokenizer, SpeechTokenizerConfig
from cadence.codec.encodec_loading import to_official_state_dict as encodec_official
from cadence.codec.speechtokenizer_loading import to_official_state_dict
from cadence.core.checkpoint import CheckpointError, load_pretrained
from cadence.core.interfaces import Codec, LatentCodec, SemanticTokenizer

FIXTURE = Path(__file__).parent / "data" / "speechtokenizer_tiny"


@pytest.fixture
def tiny():
    return SpeechTokenizer(SpeechTokenizerConfig.tiny()).eval()


@pytest.fixture
def official_copy(tmp_path):
    target = tmp_path / "speechtokenizer_hubert_avg"
    shutil.copytree(FIXTURE, target)
    return target


def test_shapes_and_protocols(tiny):
    audio = torch.randn(2, 1, 1000) * 0.1
    codes = tiny.encode(audio)
    assert isinstance(tiny, Codec) and isinstance(tiny, LatentCodec)
    assert codes.shape == (2, 25, 4) and codes.dtype == torch.long
    assert tiny.decode(codes).shape == (2, 1, 1000)
    assert tiny.encode_latents(audio).shape == (2, 25, 16)
    assert tiny.semantic_features(audio).shape == (2, 25, 8)
    assert tiny.frame_rate == 400.0 and tiny.num_frames(1001) == 26


def test_rvq1_is_the_semantic_tokenizer(tiny):
    audio = torch.randn(3, 1, 800) * 0.1
    semantic = tiny.semantic_tokenizer()
    assert isinstance(semantic, SemanticTokenizer)
    tokens = semantic.tokenize(audio)
    assert torch.equal(tokens, tiny.encode(audio)[..., 0])
    assert semantic.frame_rate == tiny.frame_rate and semantic.codebook_size == 64


def test_decoding_from_a_later_level_sums_only_those_codebooks(tiny):
    codes = tiny.encode(torch.randn(1, 1, 400) * 0.1)
    full = tiny.codes_to_latents(codes)
    first = tiny.codes_to_latents(codes[..., :1])
    rest = tiny.codes_to_latents(codes[..., 1:], first_level=1)
    torch.testing.assert_close(first + rest, full)
    with pytest.raises(ValueError, match="levels"):
        tiny.codes_to_latents(codes, first_level=1)  # 4 codes from level 1: one too many


def test_save_and_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "st")
    loaded = load_pretrained(tmp_path / "st")
    audio = torch.randn(1, 1, 400) * 0.1
    assert isinstance(loaded, SpeechTokenizer)
    assert torch.equal(loaded.encode(audio), tiny.encode(audio))


def test_official_files_load_and_give_the_reference_outputs(official_copy):
    reference = torch.load(FIXTURE / "reference.pt", weights_only=True)
    for path in (official_copy, official_copy / "SpeechTokenizer.pt"):
        model = SpeechTokenizer.from_official(path)
        assert model.num_quantizers == 3 and model.codebook_size == 16 and model.hop_length == 8
        codes = model.encode(reference["audio"])
        assert torch.equal(codes, reference["codes"].permute(1, 2, 0))  # reference: (q, b, n)
        torch.testing.assert_close(model.decode(codes), reference["audio_out"], atol=1e-5, rtol=0)
        torch.testing.assert_close(
            model.decode(codes[..., 1:], first_level=1),
            reference["acoustic_out"],
            atol=1e-5,
            rtol=0,
        )
        torch.testing.assert_close(
            model.semantic_features(reference["audio"]), reference["features"], atol=1e-5, rtol=0
        )


def test_export_to_the_official_layout_is_the_inverse_of_loading(official_copy):
    model = SpeechTokenizer.from_official(official_copy)
    official = torch.load(official_copy / "SpeechTokenizer.pt", weights_only=True)
    exported = to_official_state_dict(model)
    assert set(exported) == set(official)
    for key in official:
        if not key.endswith(("inited", "cluster_size", "embed_avg")):
            assert torch.equal(exported[key], official[key]), key


def test_a_checkpoint_that_needs_code_is_refused_without_running_it(official_copy, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save(
        {"encoder.model.0.conv.conv.bias": torch.zeros(2), "x": Payload()},
        official_copy / "SpeechTokenizer.pt",
    )
    with pytest.raises(CheckpointError, match="holds Python code"):
        SpeechTokenizer.from_official(official_copy)
    assert not marker.exists()


def test_a_wrong_checkpoint_names_what_it_is(official_copy, tmp_path):
    checkpoint = official_copy / "SpeechTokenizer.pt"
    # An EnCodec state dict in the same audiocraft layout, under a SpeechTokenizer config
    torch.save(encodec_official(EnCodec(EnCodecConfig.tiny())), checkpoint)
    with pytest.raises(CheckpointError, match="looks like an EnCodec checkpoint"):
        SpeechTokenizer.from_official(official_copy)
    # An AcademiCodec training checkpoint (sub-dicts per network)
    torch.save({"generator": {}, "encoder": {}, "quantizer": {}}, checkpoint)
    with pytest.raises(CheckpointError, match="HiFi-Codec"):
        SpeechTokenizer.from_official(official_copy)
    # Some other model's tensors
    torch.save({"linear.weight": torch.zeros(2, 2)}, checkpoint)
    with pytest.raises(
        CheckpointError, match=r"not a SpeechTokenizer checkpoint: it holds 1 tensors"
    ):
        SpeechTokenizer.from_official(official_copy)
    # Not a checkpoint at all
    checkpoint.write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        SpeechTokenizer.from_official(official_copy)


def test_a_wrong_config_names_what_it_is(official_copy, tmp_path):
    config = official_copy / "config.json"
    config.write_text(json.dumps({"model_type": "hubert", "hidden_size": 768}))
    with pytest.raises(CheckpointError, match="Hugging Face 'hubert' model"):
        SpeechTokenizer.from_official(official_copy)
    config.write_text(json.dumps({"learning_rate": 1e-4}))
    with pytest.raises(CheckpointError, match="lacks"):
        SpeechTokenizer.from_official(official_copy)
    # A config whose sizes differ from the weights: the mismatch is listed
    data = json.loads((FIXTURE / "config.json").read_text())
    config.write_text(json.dumps({**data, "codebook_size": 32}))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        SpeechTokenizer.from_official(official_copy)
    (official_copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config file"):
        SpeechTokenizer.from_official(official_copy)


def test_a_cadence_checkpoint_directory_is_pointed_to_load_pretrained(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "ours")
    with pytest.raises(CheckpointError, match="load_pretrained"):
        SpeechTokenizer.from_official(tmp_path / "ours")
