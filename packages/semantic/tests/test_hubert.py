"""Hubert equals transformers.HubertModel and fairseq; checkpoints of every format load, safely."""

import argparse
import dataclasses
import datetime
import json
import sys
import types
import typing
from collections import defaultdict

import pytest
import torch

from cadence.core.checkpoint import CheckpointError
from cadence.semantic import Hubert, HubertConfig, UnsafeCheckpointError, load_hubert

transformers = pytest.importorskip("transformers")

SMALL = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
VARIANTS = {
    # base: group norm on the first conv, post-LN blocks, no conv bias
    "base": dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False),
    # large: layer norm on every conv, pre-LN blocks, conv bias
    "large": dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
}


def reference_model(variant: str, seed: int = 0):
    torch.manual_seed(seed)
    model = transformers.HubertModel(transformers.HubertConfig(**SMALL, **VARIANTS[variant])).eval()
    with torch.no_grad():  # move every weight off its init so that a mis-mapped one shows
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def speech(batch: int, samples: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    tone = torch.sin(2 * torch.pi * (110 + 50 * torch.rand(batch, 1, generator=gen)) * t)
    return 0.3 * tone + 0.05 * torch.randn(batch, samples, generator=gen)


def hf_to_fairseq(state: dict, variant: str) -> dict:
    """The inverse of the loader's mapping, written out independently."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if key == "masked_spec_embed":
            out["mask_emb"] = value
        elif key.startswith("feature_extractor.conv_layers."):
            i, module, name = parts[2], parts[3], parts[4]
            if module == "conv":
                out[f"feature_extractor.conv_layers.{i}.0.{name}"] = value
            elif variant == "base":
                out[f"feature_extractor.conv_layers.{i}.2.{name}"] = value
            else:
                out[f"feature_extractor.conv_layers.{i}.2.1.{name}"] = value
        elif key.startswith("feature_projection.layer_norm."):
            out[f"layer_norm.{parts[-1]}"] = value
        elif key.startswith("feature_projection.projection."):
            out[f"post_extract_proj.{parts[-1]}"] = value
        elif key.startswith("encoder.pos_conv_embed.conv."):
            name = {"original0": "weight_g", "original1": "weight_v"}.get(parts[-1], parts[-1])
            out[f"encoder.pos_conv.0.{name}"] = value
        elif key.startswith("encoder.layer_norm."):
            out[key] = value
        elif key.startswith("encoder.layers."):
            n, rest = parts[2], ".".join(parts[3:])
            rest = (
                rest.replace("attention.", "self_attn.")
                .replace("feed_forward.intermediate_dense", "fc1")
                .replace("feed_forward.output_dense", "fc2")
            )
            if rest.startswith("layer_norm."):
                rest = "self_attn_layer_norm." + rest.split(".")[-1]
            out[f"encoder.layers.{n}.{rest}"] = value
        else:
            raise KeyError(key)
    # pre-training heads a real checkpoint carries, which the loader must drop
    out["label_embs_concat"] = torch.randn(504, 8)
    out["final_proj.weight"] = torch.randn(8, 32)
    out["final_proj.bias"] = torch.randn(8)
    return out


def fairseq_cfg(variant: str) -> tuple[dict, dict]:
    model = {
        "_name": "hubert",
        "extractor_mode": "default" if variant == "base" else "layer_norm",
        "encoder_layers": 3,
        "encoder_embed_dim": 32,
        "encoder_ffn_embed_dim": 64,
        "encoder_attention_heads": 4,
        "activation_fn": "gelu",
        "layer_norm_first": variant == "large",
        "conv_feature_layers": "[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2",
        "conv_bias": variant == "large",
        "conv_pos": 16,
        "conv_pos_groups": 4,
        "dropout": 0.1,
        "label_rate": 50.0,
    }
    task = {
        "_name": "hubert_pretraining",
        "normalize": False,
        "sample_rate": 16000,
        "labels": ["km"],
    }
    return model, task


# -- a stand-in for omegaconf, so the test writes the pickles fairseq writes without it --


@dataclasses.dataclass
class Metadata:
    ref_type: typing.Any
    object_type: typing.Any
    optional: bool
    key: typing.Any
    flags: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ContainerMetadata(Metadata):
    resolver_cache: dict = dataclasses.field(default_factory=lambda: defaultdict(dict))
    key_type: typing.Any = None
    element_type: typing.Any = None


class AnyNode:
    def __init__(self, value, key, parent):
        self.__dict__.update(
            _val=value, _parent=parent, _metadata=Metadata(typing.Any, None, True, key)
        )


class DictConfig:
    def __init__(self, content: dict, key=None, parent=None):
        self.__dict__["_metadata"] = ContainerMetadata(
            typing.Any, dict, True, key, key_type=typing.Any, element_type=typing.Any
        )
        self.__dict__["_parent"] = parent
        self.__dict__["_content"] = {
            k: DictConfig(v, k, self) if isinstance(v, dict) else AnyNode(v, k, self)
            for k, v in content.items()
        }

    def __getstate__(self):  # as omegaconf's Container does
        return {k: v for k, v in self.__dict__.items()}

    def __setstate__(self, state):
        self.__dict__.update(state)


@pytest.fixture
def fake_omegaconf(monkeypatch):
    modules = {
        name: types.ModuleType(name)
        for name in ("omegaconf", "omegaconf.base", "omegaconf.nodes", "omegaconf.dictconfig")
    }
    for cls, module in (
        (Metadata, "omegaconf.base"),
        (ContainerMetadata, "omegaconf.base"),
        (AnyNode, "omegaconf.nodes"),
        (DictConfig, "omegaconf.dictconfig"),
    ):
        monkeypatch.setattr(cls, "__module__", module)
        setattr(modules[module], cls.__name__, cls)
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return DictConfig


def write_fairseq(
    path, variant: str, *, cfg_kind: str, make_dictconfig=None, zip_format: bool = True
):
    ref = reference_model(variant)
    model_cfg, task_cfg = fairseq_cfg(variant)
    state = hf_to_fairseq(ref.state_dict(), variant)
    if cfg_kind == "namespace":  # fairseq < 0.10: flat argparse args
        ckpt = {
            "args": argparse.Namespace(
                arch="hubert",
                **{k: v for k, v in {**model_cfg, **task_cfg}.items() if k != "_name"},
            ),
            "model": state,
        }
    else:  # fairseq >= 0.10: an omegaconf DictConfig
        ckpt = {
            "cfg": make_dictconfig({"model": model_cfg, "task": task_cfg, "common": {"seed": 1}}),
            "model": state,
            "args": None,
        }
    torch.save(ckpt, path, _use_new_zipfile_serialization=zip_format)
    return ref


@pytest.mark.parametrize("variant", ["base", "large"])
@pytest.mark.slow  # the first test to touch transformers pays its import (~5-30 s)
def test_matches_transformers_every_layer(variant):
    ref = reference_model(variant)
    from cadence.semantic.loading import hf_config, hf_to_cadence_state

    ours = Hubert(hf_config(ref.config.to_dict(), output_layer=None)).eval()
    ours.load_state_dict(hf_to_cadence_state(ref.state_dict()))
    audio = speech(2, 16000)
    with torch.no_grad():
        hidden = ref(audio, output_hidden_states=True).hidden_states
        for layer in range(len(hidden)):
            # transformers 5 hidden_states[L] is block L's raw output, as fairseq output_layer=L
            torch.testing.assert_close(
                ours(audio, output_layer=layer).features, hidden[layer], atol=1e-5, rtol=0
            )
        torch.testing.assert_close(
            ours(audio, output_layer=None).features, ref(audio).last_hidden_state, atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("variant", ["base", "large"])
def test_padded_batch_equals_items_alone(variant):
    ref = reference_model(variant)
    from cadence.semantic.loading import hf_config, hf_to_cadence_state

    ours = Hubert(hf_config(ref.config.to_dict(), output_layer=2)).eval()
    ours.load_state_dict(hf_to_cadence_state(ref.state_dict()))
    lengths = torch.tensor([16000, 9000, 1000, 300])
    audio = speech(4, 16000) * (torch.arange(16000) < lengths[:, None])
    with torch.no_grad():
        out = ours(audio, lengths)
        assert out.lengths.tolist() == [49, 27, 2, 0]
        for i, n in enumerate(out.lengths.tolist()):
            assert out.mask[i].sum() == n and not out.features[i, n:].any()
            if n:
                alone = ref(
                    audio[i : i + 1, : lengths[i]], output_hidden_states=True
                ).hidden_states[2]
                torch.testing.assert_close(out.features[i : i + 1, :n], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("variant", "cfg_kind", "zip_format"),
    [
        ("base", "namespace", True),
        ("base", "dictconfig", True),
        ("large", "dictconfig", True),
        ("base", "dictconfig", False),
    ],
)
def test_fairseq_checkpoint_loads_and_matches(
    tmp_path, fake_omegaconf, monkeypatch, variant, cfg_kind, zip_format
):
    path = tmp_path / "hubert.pt"
    ref = write_fairseq(
        path, variant, cfg_kind=cfg_kind, make_dictconfig=fake_omegaconf, zip_format=zip_format
    )
    for name in [m for m in sys.modules if m.split(".")[0] == "omegaconf"]:
        monkeypatch.delitem(sys.modules, name)  # loading must not need omegaconf
    model = load_hubert(path, output_layer=2)
    assert model.config.layer_norm_first == (variant == "large")
    assert model.config.conv_layers[0] == (16, 10, 5) and model.config.depth == 3
    audio = speech(1, 12345)
    with torch.no_grad():
        expected = ref(audio, output_hidden_states=True).hidden_states[2]
        torch.testing.assert_close(model(audio).features, expected, atol=1e-5, rtol=0)


def test_real_fairseq_reference(tmp_path):
    """Only where fairseq (e.g. the ``fairseq-fixed`` fork) imports: its own model is the reference."""
    pytest.importorskip("fairseq")
    from fairseq.data import Dictionary
    from fairseq.models.hubert.hubert import HubertConfig as FairseqHubertConfig
    from fairseq.models.hubert.hubert import HubertModel
    from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig

    model_cfg, _ = fairseq_cfg("base")
    fields = {f.name for f in dataclasses.fields(FairseqHubertConfig)}
    cfg = FairseqHubertConfig(**{k: v for k, v in model_cfg.items() if k in fields})
    task = HubertPretrainingConfig(data=str(tmp_path), labels=["km"], normalize=False)
    dictionary = Dictionary()
    for i in range(8):
        dictionary.add_symbol(str(i))
    torch.manual_seed(0)
    ref = HubertModel(cfg, task, [dictionary]).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
    from omegaconf import OmegaConf  # a fairseq dependency

    # the config as a DictConfig, as in the 2021 releases (enums as strings: fairseq's dynamic
    # ChoiceEnum classes cannot be pickled)
    plain = {
        name: OmegaConf.to_container(OmegaConf.structured(part), enum_to_str=True)
        for name, part in (("model", cfg), ("task", task))
    }
    full_cfg = OmegaConf.create(plain)
    torch.save({"args": None, "cfg": full_cfg, "model": ref.state_dict()}, tmp_path / "fs.pt")
    ours = load_hubert(tmp_path / "fs.pt", output_layer=2)  # safe path: stand-ins, not omegaconf
    audio = speech(1, 16000)
    with torch.no_grad():
        expected, _ = ref.extract_features(audio, padding_mask=None, mask=False, output_layer=2)
        torch.testing.assert_close(ours(audio).features, expected, atol=1e-5, rtol=0)


def test_unsafe_pickle_is_refused_without_the_flag(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    torch.save({"model": {}, "cfg": Payload()}, evil)
    with pytest.raises(UnsafeCheckpointError, match=r"system.*allow_unsafe_pickle=True"):
        load_hubert(evil)
    assert not marker.exists()


def test_unknown_global_needs_the_flag_and_loads_with_it(tmp_path):
    path = tmp_path / "hubert.pt"
    ref = write_fairseq(path, "base", cfg_kind="namespace")
    ckpt = torch.load(path, weights_only=False)
    ckpt["args"].created = datetime.date(2021, 6, 1)  # a harmless class outside the allowlist
    torch.save(ckpt, path)
    with pytest.raises(UnsafeCheckpointError, match=r"datetime\.date.*allow_unsafe_pickle=True"):
        load_hubert(path)
    model = load_hubert(path, output_layer=3, allow_unsafe_pickle=True)
    audio = speech(1, 8000)
    with torch.no_grad():
        torch.testing.assert_close(
            model(audio).features,
            ref(audio, output_hidden_states=True).hidden_states[3],
            atol=1e-5,
            rtol=0,
        )


@pytest.mark.parametrize("weights", ["safetensors", "bin"])
def test_hugging_face_directory_round_trip(tmp_path, weights):
    ref = reference_model("base")
    directory = tmp_path / "hf"
    if weights == "safetensors":
        ref.save_pretrained(directory)
    else:
        directory.mkdir()
        ref.config.to_json_file(directory / "config.json")
        torch.save(ref.state_dict(), directory / "pytorch_model.bin")
    model = load_hubert(directory, output_layer=3)
    audio = speech(2, 20000)
    with torch.no_grad():
        torch.testing.assert_close(
            model(audio).features,
            ref(audio, output_hidden_states=True).hidden_states[3],
            atol=1e-5,
            rtol=0,
        )
    # and Cadence's own format keeps the weights exactly
    model.save_pretrained(tmp_path / "cadence")
    again = load_hubert(tmp_path / "cadence", output_layer=3)
    with torch.no_grad():
        assert torch.equal(again(audio).features, model(audio).features)


def test_not_hubert_checkpoints_are_named(tmp_path):
    wav2vec2 = tmp_path / "w2v"
    transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**SMALL)).save_pretrained(wav2vec2)
    with pytest.raises(CheckpointError, match="'wav2vec2' model, not HuBERT"):
        load_hubert(wav2vec2)
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a fairseq checkpoint"):
        load_hubert(tmp_path / "other.pt")
    torch.save(
        {
            "model": {"decoder.embed_tokens.weight": torch.zeros(2, 2)},
            "cfg": {"model": {"_name": "transformer_lm"}},
        },
        tmp_path / "lm.pt",
    )
    with pytest.raises(CheckpointError, match="text/translation model"):
        load_hubert(tmp_path / "lm.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_hubert(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        load_hubert(tmp_path / "missing.pt")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        load_hubert(tmp_path / "empty_dir")
    (tmp_path / "bad_json").mkdir()
    (tmp_path / "bad_json" / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    with pytest.raises(CheckpointError, match=r"no model\.safetensors"):
        load_hubert(tmp_path / "bad_json")


def test_config_checks_and_tiny_shapes():
    config = HubertConfig.tiny()
    assert config.hop_length == 320 and config.receptive_field == 400 and config.frame_rate == 50.0
    with pytest.raises(ValueError, match="output_layer"):
        HubertConfig(output_layer=13)
    assert HubertConfig.from_json(HubertConfig.large().to_json()) == HubertConfig.large()
    model = Hubert(config).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 1, 16000), lengths=torch.tensor([16000, 8000]))
    assert out.features.shape == (2, 49, 32) and out.lengths.tolist() == [49, 24]
