"""Regenerate this folder from the reference ``speechtokenizer`` package (1.0.1).

A seeded random SpeechTokenizer in the official config layout, saved as the official files
(``SpeechTokenizer.pt``, a plain state dict, and ``config.json``), with an input and the
reference's codes and audio for it (``reference.pt``). Run with the package importable, e.g.::

    uv pip install --target /tmp/st --no-deps speechtokenizer==1.0.1
    PYTHONPATH=/tmp/st uv run --no-sync python packages/codec/tests/data/speechtokenizer_tiny/make_fixture.py

Its ``trainer`` subpackage (torchaudio, matplotlib, lion_pytorch, accelerate trackers) is
replaced by an empty module: the model itself needs only torch, einops and numpy.
"""

import json
import sys
import types
from pathlib import Path

import torch

sys.modules["speechtokenizer.trainer"] = types.ModuleType("speechtokenizer.trainer")
sys.modules["speechtokenizer.trainer"].SpeechTokenizerTrainer = None  # type: ignore[attr-defined]
from speechtokenizer import SpeechTokenizer  # noqa: E402

HERE = Path(__file__).parent
CONFIG = {
    "n_filters": 2,
    "strides": [4, 2],
    "dimension": 8,
    "semantic_dimension": 4,
    "bidirectional": True,
    "dilation_base": 2,
    "residual_kernel_size": 3,
    "n_residual_layers": 1,
    "lstm_layers": 1,
    "activation": "ELU",
    "sample_rate": 16000,
    "sampling_rate": 16000,
    "codebook_size": 16,
    "n_q": 3,
    "learning_rate": 0.0001,
    "segment_size": 48000,
}

torch.manual_seed(0)
model = SpeechTokenizer(CONFIG).eval()
with torch.no_grad():
    for layer in model.quantizer.vq.layers:  # untrained codebooks are zeros (k-means init)
        layer._codebook.embed.normal_()
        layer._codebook.inited.fill_(1)
audio = (0.1 * torch.randn(2, 1, 200, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
with torch.no_grad():
    codes = model.encode(audio)  # (q, b, n)
    decoded = model.decode(codes)
    acoustic = model.decode(codes[1:], st=1)
    features = model(audio)[2]
torch.save(model.state_dict(), HERE / "SpeechTokenizer.pt")
(HERE / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
torch.save(
    {
        "audio": audio,
        "codes": codes,
        "audio_out": decoded,
        "acoustic_out": acoustic,
        "features": features,
    },
    HERE / "reference.pt",
)
print({k: tuple(v.shape) for k, v in model.state_dict().items()}.__len__(), "tensors")
