import importlib.util

import pytest
import torch

from cadence.codec import codec_metrics, mel_distance, pesq, si_snr, stft_distance, stoi


def tone(b=2, t=16000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    time = torch.arange(t) / 16000
    f0 = 150 + 50 * torch.rand(b, 1, 1, generator=gen)
    return (
        0.3 * torch.sin(2 * torch.pi * f0 * time) * (0.6 + 0.4 * torch.sin(2 * torch.pi * 4 * time))
    )


def test_si_snr_sanity():
    x = tone()
    assert (si_snr(x, x) > 80).all()
    assert (si_snr(3.0 * x, x) > 80).all()  # scale invariant
    noise = torch.randn_like(x, generator=None) * 0.3
    assert (si_snr(noise, x) < -10).all()
    noisy = si_snr(x + 0.03 * torch.randn_like(x), x)
    assert ((noisy > 10) & (noisy < 30)).all()


def test_spectral_distances_order_distortions():
    x = tone()
    mild, strong = x + 0.003 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)
    for metric in (lambda a, b: mel_distance(a, b, 16000), stft_distance):
        assert metric(x, x).abs().max() < 1e-5
        assert (metric(mild, x) < metric(strong, x)).all()
    with pytest.raises(ValueError, match="same shape"):
        mel_distance(x[..., :-1], x, 16000)


@pytest.mark.skipif(
    importlib.util.find_spec("pesq") is None or importlib.util.find_spec("pystoi") is None,
    reason="pesq / pystoi not installed (extra `metrics`)",
)
def test_perceptual_metrics_when_installed():
    x = tone(b=1, t=32000)
    noisy = x + 0.05 * torch.randn_like(x)
    assert pesq(x, x, 16000).item() > 4.0
    assert pesq(noisy, x, 16000).item() < pesq(x, x, 16000).item()
    assert stoi(x, x, 16000).item() == pytest.approx(1.0, abs=1e-3)
    assert pesq(x, x, 24000).shape == (1,)  # resampled to 16 kHz first
    metrics = codec_metrics(noisy, x, 16000)
    assert set(metrics) == {"si_snr", "mel_distance", "stft_distance", "pesq", "stoi"}
    assert set(codec_metrics(noisy, x, 16000, perceptual=False)) == {
        "si_snr",
        "mel_distance",
        "stft_distance",
    }
