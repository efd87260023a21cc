"""Spectral features on ``torch.stft``: spectrogram, mel filterbank, log-mel, MFCC.

No torchaudio (it does not install against current torch, see docs/architecture.md). The
filterbank follows the two common conventions, HTK and Slaney, and matches
``librosa.filters.mel`` for the Slaney one (tested), so mel losses and MFCC tokenizers
behave like the recipes they come from. Everything is differentiable and runs on the
device of its input.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = [
    "MelSpectrogram",
    "dct_matrix",
    "hz_to_mel",
    "log_mel_spectrogram",
    "mel_filterbank",
    "mel_spectrogram",
    "mel_to_hz",
    "mfcc",
    "spectrogram",
]

MelScale = Literal["htk", "slaney"]


def hz_to_mel(freq: Tensor | float, scale: MelScale = "htk") -> Tensor:
    """Hertz -> mel. HTK: 2595 log10(1 + f/700); Slaney: linear below 1 kHz, log above."""
    freq = torch.as_tensor(freq, dtype=torch.float64)
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    linear = freq / f_sp
    log = min_log_mel + torch.log(freq.clamp(min=min_log_hz) / min_log_hz) / logstep
    return torch.where(freq >= min_log_hz, log, linear)


def mel_to_hz(mel: Tensor | float, scale: MelScale = "htk") -> Tensor:
    """Mel -> hertz, the inverse of :func:`hz_to_mel`."""
    mel = torch.as_tensor(mel, dtype=torch.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    linear = f_sp * mel
    log = min_log_hz * torch.exp(logstep * (mel - min_log_mel))
    return torch.where(mel >= min_log_mel, log, linear)


@lru_cache(maxsize=32)
def _mel_filterbank_cached(
    n_fft: int,
    n_mels: int,
    sample_rate: int,
    f_min: float,
    f_max: float,
    scale: MelScale,
    norm: Literal["slaney"] | None,
) -> Tensor:
    n_freqs = n_fft // 2 + 1
    fft_freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)
    mel_points = torch.linspace(
        hz_to_mel(f_min, scale).item(),
        hz_to_mel(f_max, scale).item(),
        n_mels + 2,
        dtype=torch.float64,
    )
    hz_points = mel_to_hz(mel_points, scale)
    # Triangles between consecutive mel points, evaluated on the FFT bin frequencies.
    widths = hz_points.diff()  # (n_mels + 1,)
    ramps = hz_points[:, None] - fft_freqs[None, :]  # (n_mels + 2, n_freqs)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)  # (n_mels, n_freqs)
    if norm == "slaney":
        # Constant energy per channel (librosa / Slaney's Auditory Toolbox).
        weights *= (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]
    return weights.T.float().contiguous()  # (n_freqs, n_mels)


def mel_filterbank(
    n_fft: int,
    n_mels: int,
    sample_rate: int,
    *,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: MelScale = "slaney",
    norm: Literal["slaney"] | None = "slaney",
) -> Tensor:
    """Triangular mel filters ``(n_fft // 2 + 1, n_mels)``; defaults equal librosa's."""
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got {f_min}, {f_max}")
    return _mel_filterbank_cached(
        n_fft, n_mels, sample_rate, float(f_min), float(f_max), scale, norm
    ).clone()


def spectrogram(
    audio: Tensor,
    *,
    n_fft: int = 1024,
    hop_length: int = 256,
    win_length: int | None = None,
    power: float | None = 1.0,
    center: bool = True,
    pad_mode: str = "reflect",
    window: Tensor | None = None,
) -> Tensor:
    """Magnitude (power=1), power (2) or complex (None) STFT of ``(..., t)`` -> ``(..., f, frames)``."""
    win_length = win_length or n_fft
    if window is None:
        window = torch.hann_window(win_length, device=audio.device, dtype=audio.dtype)
    lead = audio.shape[:-1]
    flat = audio.reshape(-1, audio.shape[-1])
    if center and pad_mode == "reflect" and flat.shape[-1] <= n_fft // 2:
        raise ValueError(
            f"audio of {flat.shape[-1]} samples is too short for n_fft={n_fft} with reflect padding"
        )
    spec = torch.stft(
        flat,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=center,
        pad_mode=pad_mode,
        return_complex=True,
    )
    spec = spec.reshape(*lead, *spec.shape[-2:])
    if power is None:
        return spec
    magnitude = spec.abs()
    return magnitude if power == 1.0 else magnitude.pow(power)


def mel_spectrogram(
    audio: Tensor,
    sample_rate: int,
    *,
    n_fft: int = 1024,
    hop_length: int = 256,
    win_length: int | None = None,
    n_mels: int = 80,
    f_min: float = 0.0,
    f_max: float | None = None,
    power: float = 1.0,
    center: bool = True,
    pad_mode: str = "reflect",
    scale: MelScale = "slaney",
    norm: Literal["slaney"] | None = "slaney",
) -> Tensor:
    """Mel spectrogram of ``(..., t)`` audio -> ``(..., n_mels, frames)``.

    Frames are centered with reflect padding (torchaudio's and HiFi-GAN's convention;
    librosa >= 0.10 pads with zeros unless ``pad_mode="reflect"``).
    """
    spec = spectrogram(
        audio,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        power=power,
        center=center,
        pad_mode=pad_mode,
    )
    fb = mel_filterbank(
        n_fft, n_mels, sample_rate, f_min=f_min, f_max=f_max, scale=scale, norm=norm
    )
    return torch.einsum("...ft,fm->...mt", spec, fb.to(spec))


def log_mel_spectrogram(
    audio: Tensor, sample_rate: int, *, floor: float = 1e-5, **kwargs
) -> Tensor:
    """``log(max(mel, floor))`` of ``(..., t)`` audio -> ``(..., n_mels, frames)``."""
    return mel_spectrogram(audio, sample_rate, **kwargs).clamp(min=floor).log()


def dct_matrix(n_out: int, n_in: int) -> Tensor:
    """Orthonormal DCT-II basis ``(n_in, n_out)`` (scipy.fft.dct(type=2, norm="ortho"))."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)
    basis = torch.cos(math.pi / n_in * (n[:, None] + 0.5) * k[None, :])
    basis[:, 0] *= 1.0 / math.sqrt(2.0)
    return (basis * math.sqrt(2.0 / n_in)).float()


def mfcc(
    audio: Tensor,
    sample_rate: int,
    *,
    n_mfcc: int = 13,
    n_mels: int = 40,
    n_fft: int = 400,
    hop_length: int = 160,
    top_db: float | None = 80.0,
    **mel_kwargs,
) -> Tensor:
    """MFCCs of ``(..., t)`` audio -> ``(..., n_mfcc, frames)``.

    Power mel spectrogram in dB (clipped ``top_db`` below the peak of each item), then an
    orthonormal DCT-II, as librosa.feature.mfcc does. Defaults are HuBERT's first-iteration
    targets: 25 ms windows, 10 ms hop at 16 kHz.
    """
    mel = mel_spectrogram(
        audio,
        sample_rate,
        n_fft=n_fft,
        hop_length=hop_length,
        n_mels=n_mels,
        power=2.0,
        **mel_kwargs,
    )
    db = 10.0 * torch.log10(mel.clamp(min=1e-10))
    if top_db is not None:
        peak = db.amax(dim=(-2, -1), keepdim=True)
        db = torch.maximum(db, peak - top_db)
    return torch.einsum("...mt,mk->...kt", db, dct_matrix(n_mfcc, n_mels).to(db))


class MelSpectrogram(nn.Module):
    """Log-mel (or mel) spectrogram as a module, with its window and filterbank as buffers."""

    window: Tensor
    filterbank: Tensor

    def __init__(
        self,
        sample_rate: int,
        *,
        n_fft: int = 1024,
        hop_length: int = 256,
        win_length: int | None = None,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float | None = None,
        power: float = 1.0,
        log: bool = True,
        floor: float = 1e-5,
        center: bool = True,
        scale: MelScale = "slaney",
        norm: Literal["slaney"] | None = "slaney",
    ):
        super().__init__()
        self.sample_rate, self.n_fft, self.hop_length = sample_rate, n_fft, hop_length
        self.win_length = win_length or n_fft
        self.power, self.log, self.floor, self.center = power, log, floor, center
        # Non-persistent: derived from the arguments, so they never enter a checkpoint.
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        fb = mel_filterbank(
            n_fft, n_mels, sample_rate, f_min=f_min, f_max=f_max, scale=scale, norm=norm
        )
        self.register_buffer("filterbank", fb, persistent=False)

    def forward(self, audio: Tensor) -> Tensor:
        """``(..., t)`` -> ``(..., n_mels, frames)``."""
        spec = spectrogram(
            audio,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            power=self.power,
            center=self.center,
            window=self.window.to(audio.dtype),
        )
        mel = torch.einsum("...ft,fm->...mt", spec, self.filterbank.to(spec.dtype))
        return mel.clamp(min=self.floor).log() if self.log else mel
