"""The CTC phonetic encoder: config checks, shapes, layers, padding, the train step, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from cadence.core.config import ConfigError
from cadence.core.nn import BackboneConfig, MelFrontendConfig
from cadence.core.testing import toy_corpus_dir
from cadence.core.train import TrainerConfig
from cadence.semantic import (
    PhoneticDataset,
    PhoneticEncoder,
    PhoneticEncoderConfig,
    collate_phonetic,
    corpus_phonemes,
    phonetic_ctc_step,
    train_phonetic_encoder,
)

# b batch | t samples | n frames | d width | v blank + phonemes


@pytest.fixture(scope="module")
def corpus():
    return toy_corpus_dir()


@pytest.fixture(scope="module")
def vocabulary(corpus):
    return corpus_phonemes([corpus / "train.jsonl", corpus / "valid.jsonl"])


@pytest.fixture
def encoder(vocabulary):
    torch.manual_seed(0)
    return PhoneticEncoder(PhoneticEncoderConfig.tiny(vocabulary)).eval()


def test_config_from_corpus_and_checks(corpus, vocabulary):
    assert list(vocabulary) == sorted(vocabulary) and "æ" in vocabulary and "ˈæ" not in vocabulary
    config = PhoneticEncoderConfig.from_corpus(corpus / "train.jsonl")
    assert set(config.phonemes) <= set(vocabulary) and config.vocab_size == len(config.phonemes) + 1
    assert PhoneticEncoderConfig.from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match="stress"):
        PhoneticEncoderConfig(phonemes=("ˈæ",))
    with pytest.raises(ConfigError, match="more than once"):
        PhoneticEncoderConfig(phonemes=("a", "a"))
    with pytest.raises(ConfigError, match="empty"):
        PhoneticEncoderConfig(phonemes=())
    with pytest.raises(ConfigError, match=r"frontend\.dim"):
        PhoneticEncoderConfig(phonemes=("a",), frontend=MelFrontendConfig(dim=32))
    with pytest.raises(ConfigError, match="uconformer"):
        PhoneticEncoderConfig.tiny(
            ("a",), backbone=BackboneConfig(kind="uconformer", dim=64, depth=2, heads=4)
        )


def test_shapes_layers_and_the_ctc_step(encoder, corpus):
    dataset = PhoneticDataset(corpus / "valid.jsonl", encoder.config, limit=3)
    batch = collate_phonetic([dataset[i] for i in range(3)])
    out = encoder(batch["audio"], batch["lengths"])
    t = batch["audio"].shape[-1]
    assert out.log_probs.shape == (3, (t // 160 + 1) // 2, encoder.config.vocab_size)
    assert torch.equal(out.frame_lengths, (batch["lengths"] // 160 + 1) // 2)
    assert torch.equal(out.mask.sum(1), out.frame_lengths)
    torch.testing.assert_close(out.log_probs.exp().sum(-1), torch.ones(3, out.log_probs.shape[1]))
    for layer in range(encoder.config.depth + 1):
        hidden, n = encoder.hidden_states(batch["audio"], batch["lengths"], layer=layer)
        assert hidden.shape == (3, out.log_probs.shape[1], 64) and torch.equal(n, out.frame_lengths)
        assert not hidden[~out.mask].any()
    # the last layer through the backbone's final norm and the head is what forward scores
    last = encoder.head(encoder.backbone.final_norm(hidden)).log_softmax(-1)
    torch.testing.assert_close(last[out.mask], out.log_probs[out.mask], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="layer"):
        encoder.hidden_states(batch["audio"], layer=4)
    loss = phonetic_ctc_step(encoder, batch).loss
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    assert encoder.encode_phonemes(["ˈæ"]) == [encoder.config.phonemes.index("æ") + 1]
    with pytest.raises(ValueError, match="not in the encoder's vocabulary"):
        encoder.encode_phonemes(["ʘ"])


def test_hidden_states_do_not_depend_on_padding(encoder):
    torch.manual_seed(1)
    short, long = 0.3 * torch.randn(1, 1, 9_000), 0.3 * torch.randn(1, 1, 20_000)
    batch = torch.full((2, 1, 20_000), 0.5)  # garbage past the short item's end
    batch[0, :, :9_000], batch[1] = short[0], long[0]
    lengths = torch.tensor([9_000, 20_000])
    both, n = encoder.hidden_states(batch, lengths, layer=2)
    alone, m = encoder.hidden_states(short, layer=2)
    torch.testing.assert_close(both[0, : int(m[0])], alone[0], atol=1e-5, rtol=1e-5)
    assert not both[0, int(n[0]) :].any()
    assert encoder.transcribe(batch, lengths)[0] == encoder.transcribe(short)[0]


def test_save_load_round_trip(encoder, tmp_path):
    encoder.save_pretrained(tmp_path / "encoder")
    loaded = PhoneticEncoder.load_pretrained(tmp_path / "encoder").eval()
    assert loaded.config == encoder.config
    audio = 0.3 * torch.randn(1, 1, 12_000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(loaded(audio).log_probs, encoder(audio).log_probs)


def test_dataset_rejects_unknown_phonemes(tmp_path, corpus):
    entry = json.loads((corpus / "valid.jsonl").read_text().splitlines()[0])
    entry["path"] = str(corpus / entry["path"])
    entry["phonemes"] = ["k", "ʘ"]
    manifest = tmp_path / "odd.jsonl"
    manifest.write_text(json.dumps(entry) + "\n")
    with pytest.raises(ValueError, match="ʘ"):
        PhoneticDataset(manifest, PhoneticEncoderConfig(phonemes=("k",)))


def test_train_phonetic_encoder_end_to_end(corpus, vocabulary, tmp_path):
    result = train_phonetic_encoder(
        corpus,
        tmp_path,
        TrainerConfig(max_steps=2, batch_size=4, ema_decay=0.9, save_every=None, eval_every=2),
        config=PhoneticEncoderConfig.tiny(vocabulary),
        eval_utterances=4,
    )
    assert isinstance(result.model, PhoneticEncoder) and not result.model.training
    assert set(result.metrics) == {"train_loss", "train_per", "valid_per"}
    assert all(value >= 0.0 for value in result.metrics.values())
    assert [row["step"] for row in result.history] == [1, 2]
    assert "eval/valid_per" in result.history[-1]
    assert (tmp_path / "run" / "checkpoints").is_dir()
