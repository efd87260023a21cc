"""Our SpeechTokenizer vs the reference ``speechtokenizer`` package (1.0.1) on seeded random weights.

The reference is not a workspace dependency (its package imports its trainer, which needs
torchaudio, matplotlib, lion_pytorch and accelerate's trackers). Install it apart, without
dependencies, and put it on the path to run these tests::

    uv pip install --target /tmp/st --no-deps speechtokenizer==1.0.1
    PYTHONPATH=/tmp/st uv run --no-sync pytest packages/codec/tests/test_speechtokenizer_equivalence.py

Its ``trainer`` subpackage is replaced by an empty module here; the model code (SEANet,
BiLSTM, RVQ) runs unchanged. The model is saved in the official layout (``SpeechTokenizer.pt``
+ ``config.json``) and loaded through :meth:`SpeechTokenizer.from_official`.
"""

import importlib.util
import json
import sys
import types

import pytest
import torch

from cadence.codec import SpeechTokenizer

pytestmark = pytest.mark.slow

if importlib.util.find_spec("speechtokenizer") is None:
    pytest.skip(
        "the reference speechtokenizer package (1.0.1) is not importable; install it apart with "
        "`uv pip install --target DIR --no-deps speechtokenizer==1.0.1` and set PYTHONPATH=DIR",
        allow_module_level=True,
    )

if "speechtokenizer.trainer" not in sys.modules:
    trainer = types.ModuleType("speechtokenizer.trainer")
    trainer.SpeechTokenizerTrainer = None  # type: ignore[attr-defined]
    sys.modules["speechtokenizer.trainer"] = trainer
import speechtokenizer  # noqa: E402

# fnlp/SpeechTokenizer speechtokenizer_hubert_avg/config.json (model keys; training keys omitted)
OFFICIAL = {
    "n_filters": 64,
    "strides": [8, 5, 4, 2],
    "dimension": 1024,
    "semantic_dimension": 768,
    "bidirectional": True,
    "dilation_base": 2,
    "residual_kernel_size": 3,
    "n_residual_layers": 1,
    "lstm_layers": 2,
    "activation": "ELU",
    "sample_rate": 16000,
    "codebook_size": 1024,
    "n_q": 8,
}
SMALL = {
    **OFFICIAL,
    "n_filters": 8,
    "dimension": 64,
    "semantic_dimension": 32,
    "codebook_size": 128,
}


def _init_codebooks_from_data(reference, codebook_size):
    """Untrained codebooks are zeros (training k-means-inits them): fill each level with
    residual frames of other audio, so the codes compared are varied."""
    gen = torch.Generator().manual_seed(2)
    audio = 0.1 * torch.randn(1, 1, 16000, generator=gen)
    with torch.no_grad():
        residual = reference.encoder(audio)  # (1, d, n)
        for layer in reference.quantizer.vq.layers:
            frames = residual[0].t()
            picks = torch.randint(0, frames.shape[0], (codebook_size,), generator=gen)
            noise = 0.01 * frames.std() * torch.randn(codebook_size, frames.shape[1], generator=gen)
            layer._codebook.embed.copy_(frames[picks] + noise)
            layer._codebook.inited.fill_(1)  # else its forward k-means-inits on the input
            residual = residual - layer.decode(layer.encode(residual))


def _reference_and_ours(config, tmp_path):
    assert speechtokenizer.__version__ == "1.0.1"
    torch.manual_seed(0)
    reference = speechtokenizer.SpeechTokenizer(config).eval()
    _init_codebooks_from_data(reference, config["codebook_size"])
    torch.save(reference.state_dict(), tmp_path / "SpeechTokenizer.pt")
    (tmp_path / "config.json").write_text(json.dumps(config))
    return reference, SpeechTokenizer.from_official(tmp_path)


@pytest.mark.parametrize("config", [SMALL, OFFICIAL], ids=["small", "official"])
def test_codes_and_audio_equal_the_reference(config, tmp_path):
    reference, ours = _reference_and_ours(config, tmp_path)
    gen = torch.Generator().manual_seed(1)
    audio = (0.1 * torch.randn(2, 1, 16000 + 123, generator=gen)).clamp(-1, 1)
    with torch.no_grad():
        ref_codes = reference.encode(audio)  # (q, b, n)
        ref_audio = reference.decode(ref_codes)
        ref_acoustic = reference.decode(ref_codes[1:], st=1)
        ref_features = reference(audio)[2]
    codes = ours.encode(audio)
    assert torch.equal(codes, ref_codes.permute(1, 2, 0))
    assert len(codes.unique()) > 10  # the comparison is not between degenerate codes
    torch.testing.assert_close(ours.decode(codes), ref_audio, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        ours.decode(codes[..., 1:], first_level=1), ref_acoustic, atol=1e-5, rtol=0
    )
    torch.testing.assert_close(ours.semantic_features(audio), ref_features, atol=1e-5, rtol=0)
    tokens = ours.semantic_tokenizer().tokenize(audio)
    assert torch.equal(tokens, ref_codes[0])
