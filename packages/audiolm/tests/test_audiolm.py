"""The AudioLM composite end to end with the core fakes, its fit checks, and text conditioning."""

from __future__ import annotations

import pytest
import torch

from cadence.audiolm import (
    AudioLM,
    CoarseTransformer,
    CoarseTransformerConfig,
    FineTransformer,
    FineTransformerConfig,
    SamplingOptions,
    SemanticTransformer,
    SemanticTransformerConfig,
    T5TextEncoder,
    TextEncoder,
)
from cadence.core.audio import load
from cadence.core.config import ConfigError
from cadence.core.testing import FakeCodec, FakeSemanticTokenizer, toy_corpus_dir


def parts(cond_dim: int | None = None, **overrides):
    torch.manual_seed(0)
    cond = {} if cond_dim is None else {"cond_dim": cond_dim, "cond_mode": "cross"}
    # short contexts, so that a 1.2 s request needs the sliding windows of every stage
    semantic = SemanticTransformerConfig.tiny(max_seq_len=40, **cond)
    coarse = CoarseTransformerConfig.tiny(max_seq_len=64, **cond)
    fine = FineTransformerConfig.tiny(max_seq_len=64, **cond)
    semantic = semantic.replace(**overrides.get("semantic", {}))
    coarse = coarse.replace(**overrides.get("coarse", {}))
    fine = fine.replace(**overrides.get("fine", {}))
    return dict(
        tokenizer=FakeSemanticTokenizer(codebook_size=32),
        codec=FakeCodec(num_quantizers=4, codebook_size=64),
        semantic=SemanticTransformer(semantic).eval(),
        coarse=CoarseTransformer(coarse).eval(),
        fine=FineTransformer(fine).eval(),
    )


def prompt_audio(seconds: float = 0.4) -> torch.Tensor:
    path = sorted((toy_corpus_dir() / "audio").rglob("*.flac"))[0]
    audio, _ = load(path, sample_rate=16000, channels=1)
    start = 1600  # skip the leading silence
    return audio[None, :, start : start + int(seconds * 16000)]


@pytest.mark.slow
def test_continue_prompt_audio_end_to_end():
    model = AudioLM(**parts())
    audio = prompt_audio().repeat(2, 1, 1)
    out = model.generate(audio, seconds=1.2, generator=torch.Generator().manual_seed(0))
    codec, tok = model.codec, model.tokenizer
    assert out.audio.shape[:2] == (2, 1) and out.audio.shape[-1] <= int(1.2 * 16000)
    assert out.codes.shape[-1] == codec.num_quantizers
    assert (out.lengths == out.frames * 320).all()
    assert (out.frames > 20).all(), "the continuation goes beyond the prompt"
    # the prompt's semantic tokens and coarse codes start the output
    prompt_tokens = tok.tokenize(audio)
    prompt_codes = codec.encode(audio)
    assert torch.equal(out.semantic[:, : prompt_tokens.shape[1]], prompt_tokens)
    assert torch.equal(out.codes[:, : prompt_codes.shape[1], :2], prompt_codes[..., :2])
    assert out.codes.max() < codec.codebook_size and out.semantic.max() < tok.codebook_size
    assert torch.isfinite(out.audio).all()
    for i in range(2):
        assert (out.audio[i, :, out.lengths[i] :] == 0).all()


def test_generate_from_nothing_without_fine_stage():
    model = AudioLM(**{**parts(), "fine": None})
    out = model.generate(
        batch_size=2,
        seconds=0.3,
        sampling=SamplingOptions(),
        generator=torch.Generator().manual_seed(1),
    )
    assert out.codes.shape[0] == 2 and out.codes.shape[-1] == 2
    assert out.audio.shape[:2] == (2, 1)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"semantic": {"codebook_size": 40}}, "SemanticTransformerConfig\\(codebook_size=32\\)"),
        ({"coarse": {"semantic_codebook_size": 16}}, "semantic_codebook_size=32"),
        ({"coarse": {"codebook_size": 128}}, "CoarseTransformerConfig\\(codebook_size=64\\)"),
        ({"fine": {"num_fine_quantizers": 3}}, "set num_fine_quantizers=2"),
        (
            {"fine": {"num_coarse_quantizers": 1, "num_fine_quantizers": 3}},
            "num_coarse_quantizers must agree",
        ),
        ({"coarse": {"frame_rate": 75.0}}, "codec runs at 50.0"),
        ({"semantic": {"frame_rate": 25.0}}, "semantic frame rates differ"),
    ],
)
def test_mismatched_parts_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        AudioLM(**parts(**override))


def test_not_a_codec_is_refused():
    bad = {**parts(), "codec": object()}
    with pytest.raises(TypeError, match="Codec"):
        AudioLM(**bad)


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    directory = tmp_path_factory.mktemp("t5")
    words = ["<pad>", "<unk>", "</s>", "a", "cat", "dog", "speaks", "softly", "loudly", "hello"]
    vocab = {w: i for i, w in enumerate(words)}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="</s>"
    )
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = transformers.T5Config(
        vocab_size=len(words), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2
    )
    transformers.T5EncoderModel(config).save_pretrained(directory)
    return directory


@pytest.mark.slow  # importing transformers takes seconds
def test_t5_text_encoder_conditions_the_pipeline(tiny_t5):
    encoder = T5TextEncoder(tiny_t5)
    assert isinstance(encoder, TextEncoder) and encoder.dim == 16
    emb, mask = encoder.encode(["a cat speaks softly", "hello"])
    assert emb.shape[:2] == mask.shape and emb.shape[-1] == 16
    assert mask[0].sum() > mask[1].sum()
    model = AudioLM(**{**parts(cond_dim=16), "fine": None}, text_encoder=encoder)
    out = model.generate(
        texts=["a dog speaks loudly", "hello"],
        seconds=0.2,
        sampling=SamplingOptions(guidance_scale=2.0),
        generator=torch.Generator().manual_seed(0),
    )
    assert out.codes.shape[0] == 2
    with pytest.raises(ConfigError, match="cond_dim=24"):
        AudioLM(**parts(cond_dim=24), text_encoder=encoder)


def test_t5_missing_directory(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        T5TextEncoder(tmp_path / "nope")


def test_sampling_options_per_stage():
    model = AudioLM(**{**parts(), "fine": None})
    greedy = SamplingOptions(temperature=0)
    a = model.generate(batch_size=2, seconds=0.3, sampling=(greedy, greedy, greedy))
    b = model.generate(batch_size=2, seconds=0.3, sampling=greedy)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.semantic, b.semantic)
    with pytest.raises(TypeError, match="three"):
        model.generate(batch_size=1, seconds=0.1, sampling=(greedy, greedy))
