"""Resemblyzer's pretrained GE2E voice encoder, loaded safely (imported only on demand).

Importing this module imports Resemblyzer (and through it librosa, scipy and webrtcvad), so
:mod:`cadence.evaluation.speaker` imports it lazily, inside :class:`SpeakerEncoder`.
"""

# t samples | d embedding width (256)

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

with warnings.catch_warnings():
    # Resemblyzer 0.1.4 (its latest release) imports `scipy.ndimage.morphology`, deprecated
    # since SciPy 1.8: a warning about its code, not the caller's, muted for this import only.
    warnings.filterwarnings(
        "ignore", message=".*scipy.ndimage.morphology", category=DeprecationWarning
    )
    import resemblyzer
    from resemblyzer import VoiceEncoder, hparams, normalize_volume, trim_long_silences

__all__ = ["WEIGHTS", "BundledVoiceEncoder", "preprocess"]

# The weights ship inside Resemblyzer's wheel (17 MB): nothing is ever downloaded.
WEIGHTS = Path(resemblyzer.__file__).parent / "pretrained.pt"

# The GE2E loss's learned scale and offset (Wan et al. 2018, eq. 5) are saved with the
# encoder but are no part of it; Resemblyzer drops them with a non-strict load.
_LOSS_KEYS = ("similarity_weight", "similarity_bias")


class BundledVoiceEncoder(VoiceEncoder):
    """Resemblyzer's :class:`VoiceEncoder` with its bundled weights, loaded as tensors only.

    ``VoiceEncoder.__init__`` calls ``torch.load`` with the default unpickler settings of the
    installed torch (arbitrary code before torch 2.6); this builds the same three layers and
    loads the file with ``weights_only=True`` and strict keys instead. Everything else
    (``forward``, ``embed_utterance``) is Resemblyzer's.
    """

    def __init__(self, device: torch.device, weights: Path = WEIGHTS):
        nn.Module.__init__(self)  # not VoiceEncoder.__init__: it would unpickle the file itself
        self.lstm = nn.LSTM(
            hparams.mel_n_channels,
            hparams.model_hidden_size,
            hparams.model_num_layers,
            batch_first=True,
        )
        self.linear = nn.Linear(hparams.model_hidden_size, hparams.model_embedding_size)
        self.relu = nn.ReLU()
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
        state = {k: v for k, v in checkpoint["model_state"].items() if k not in _LOSS_KEYS}
        self.load_state_dict(state, strict=True)
        self.device = device
        self.to(device).eval()


def preprocess(wav: np.ndarray) -> np.ndarray:
    """Resemblyzer's ``preprocess_wav`` of a 16 kHz mono ``(t,)`` float array, made total.

    The same two steps with the same settings: raise the level to -30 dBFS RMS (never lower
    it), then shorten silences with WebRTC's VAD (30 ms windows, aggressiveness 3). Two cases
    ``preprocess_wav`` does not survive are kept whole instead: digital silence (its dBFS is
    -inf, the gain infinite) and a clip in which the VAD hears no voice at all (nothing
    would be left to embed).
    """
    if np.any(wav):
        wav = normalize_volume(wav, hparams.audio_norm_target_dBFS, increase_only=True)
    trimmed = trim_long_silences(wav)
    return trimmed if trimmed.size else wav
