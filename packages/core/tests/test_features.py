import math

import librosa
import numpy as np
import pytest
import torch

from cadence.core import features


@pytest.mark.parametrize(
    ("sample_rate", "n_fft", "n_mels"), [(16000, 1024, 80), (24000, 2048, 128), (16000, 400, 40)]
)
def test_filterbank_matches_librosa(sample_rate, n_fft, n_mels):
    ours = features.mel_filterbank(n_fft, n_mels, sample_rate).T.numpy()
    ref = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)


def test_htk_filterbank_matches_librosa():
    ours = features.mel_filterbank(
        512, 40, 16000, scale="htk", norm=None, f_min=20, f_max=7600
    ).T.numpy()
    ref = librosa.filters.mel(
        sr=16000, n_fft=512, n_mels=40, htk=True, norm=None, fmin=20, fmax=7600
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)


def test_mel_spectrogram_matches_librosa():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000).astype(np.float32) * 0.1
    ours = features.mel_spectrogram(
        torch.from_numpy(x),
        16000,
        n_fft=1024,
        hop_length=256,
        n_mels=80,
        power=2.0,
        pad_mode="reflect",
    )
    ref = librosa.feature.melspectrogram(
        y=x, sr=16000, n_fft=1024, hop_length=256, n_mels=80, power=2.0, pad_mode="reflect"
    )
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-3, atol=1e-5)


def test_mfcc_matches_librosa():
    t = np.arange(16000) / 16000
    x = (
        0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(1).standard_normal(16000)
    ).astype(np.float32)
    ours = features.mfcc(
        torch.from_numpy(x), 16000, n_mfcc=13, n_mels=40, n_fft=400, hop_length=160
    )
    ref = librosa.feature.mfcc(
        y=x, sr=16000, n_mfcc=13, n_mels=40, n_fft=400, hop_length=160, pad_mode="reflect"
    )
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-3, atol=1e-2)


def test_sine_peaks_in_its_mel_band():
    sr = 16000
    t = torch.arange(sr) / sr
    fb = features.mel_filterbank(1024, 80, sr)
    for freq in (300.0, 1000.0, 4000.0):
        mel = features.mel_spectrogram(torch.sin(2 * math.pi * freq * t), sr)
        band = mel.mean(-1).argmax().item()
        assert fb[round(freq / (sr / 1024)), band] > 0, f"{freq} Hz peaked in band {band}"


def test_module_equals_function_and_is_differentiable():
    x = torch.randn(2, 1, 8000, requires_grad=True)
    module = features.MelSpectrogram(16000, n_fft=512, hop_length=128, n_mels=40)
    out = module(x)
    assert out.shape == (2, 1, 40, 8000 // 128 + 1)
    torch.testing.assert_close(
        out, features.log_mel_spectrogram(x, 16000, n_fft=512, hop_length=128, n_mels=40)
    )
    out.mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert "filterbank" not in module.state_dict()  # derived buffers stay out of checkpoints


def test_too_short_input_is_explained():
    with pytest.raises(ValueError, match="too short"):
        features.mel_spectrogram(torch.zeros(100), 16000, n_fft=1024)
