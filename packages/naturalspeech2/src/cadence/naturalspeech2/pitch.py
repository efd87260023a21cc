"""Pitch targets: YIN F0 (de Cheveigne & Kawahara 2002) in numpy, log-F0 + voiced mask.

:func:`yin` follows the published algorithm step for step (difference function through an
FFT autocorrelation, cumulative mean normalisation, absolute threshold on troughs, parabolic
refinement) with the same framing as ``librosa.yin``, against which it is tested. It also
returns each frame's aperiodicity (the normalised difference at the chosen lag), which
:func:`extract_pitch` thresholds, together with the frame energy, into a voiced mask.
"""

# t samples | n frames | k lags

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PitchTrack", "extract_pitch", "yin"]


@dataclass(frozen=True)
class PitchTrack:
    """Frame-level pitch.

    Attributes:
        f0: ``(n,)`` Hz, 0 on unvoiced frames.
        log_f0: ``(n,)`` natural log of F0 on voiced frames, 0 elsewhere.
        voiced: ``(n,)`` bool.
    """

    f0: np.ndarray
    log_f0: np.ndarray
    voiced: np.ndarray


def _frames(y: np.ndarray, frame_length: int, hop_length: int, center: bool) -> np.ndarray:
    if center:
        y = np.pad(y, (frame_length // 2, frame_length // 2))
    if len(y) < frame_length:
        y = np.pad(y, (0, frame_length - len(y)))
    count = 1 + (len(y) - frame_length) // hop_length
    index = np.arange(frame_length)[None, :] + hop_length * np.arange(count)[:, None]
    return y[index]  # (n, frame_length)


def _cmnd(frames: np.ndarray, min_period: int, max_period: int) -> np.ndarray:
    """Cumulative mean normalised difference d'(tau) for tau in [min_period, max_period]."""
    n = frames.shape[-1]
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(frames, size, axis=-1)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), size, axis=-1)[:, : max_period + 1]
    energy = np.cumsum(frames**2, axis=-1)
    # d(tau) = sum_j (x_j - x_{j+tau})^2 over the frame, written with the autocorrelation:
    # 2 * (acf(0) - acf(tau)) - sum_{j < tau} x_j^2   (the same identity librosa uses)
    diff = np.zeros((frames.shape[0], max_period + 1))
    lags = np.arange(1, max_period + 1)
    diff[:, 1:] = 2 * (acf[:, :1] - acf[:, lags]) - energy[:, lags - 1]
    mean = np.cumsum(diff[:, 1:], axis=-1) / lags  # mean of d over 1..tau
    tiny = np.finfo(frames.dtype if frames.dtype.kind == "f" else np.float64).tiny
    return diff[:, min_period : max_period + 1] / (mean[:, min_period - 1 : max_period] + tiny)


def yin(
    audio: np.ndarray,
    *,
    sample_rate: int,
    fmin: float = 60.0,
    fmax: float = 500.0,
    frame_length: int = 1024,
    hop_length: int = 256,
    trough_threshold: float = 0.1,
    center: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """YIN fundamental frequency per frame.

    Args:
        audio: ``(t,)`` mono float samples.
        sample_rate: samples per second.
        fmin, fmax: the search range in Hz.
        frame_length: analysis window in samples; must exceed ``sample_rate / fmin``.
        hop_length: samples between frame starts.
        trough_threshold: YIN's absolute threshold on d'.
        center: pad ``frame_length // 2`` zeros on both sides, so frame ``i`` is centred
            on sample ``i * hop_length`` (as ``librosa.yin``).

    Returns:
        ``(f0, aperiodicity)``, both ``(n,)``: F0 in Hz for every frame (YIN always picks
        a lag) and d' at the chosen lag (low = periodic).
    """
    y = np.asarray(audio, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"yin takes mono (t,) audio, got shape {y.shape}")
    if not 0 < fmin < fmax <= sample_rate / 2:
        raise ValueError(f"need 0 < fmin < fmax <= sample_rate / 2, got {fmin}, {fmax}")
    min_period = int(np.floor(sample_rate / fmax))
    max_period = min(int(np.ceil(sample_rate / fmin)), frame_length - 1)
    if max_period <= min_period + 1:
        raise ValueError(
            f"frame_length {frame_length} is too short for fmin {fmin} Hz at {sample_rate} Hz"
        )
    frames = _frames(y, frame_length, hop_length, center)
    d = _cmnd(frames, min_period, max_period)  # (n, k)
    # local minima along the lag axis (the first lag counts when it is below its neighbour)
    trough = np.zeros_like(d, dtype=bool)
    trough[:, 1:-1] = (d[:, 1:-1] < d[:, :-2]) & (d[:, 1:-1] <= d[:, 2:])
    trough[:, 0] = d[:, 0] < d[:, 1]
    below = trough & (d < trough_threshold)
    # the smallest lag with a trough under the threshold, else the global minimum
    chosen = np.where(below.any(-1), below.argmax(-1), d.argmin(-1))
    rows = np.arange(len(d))
    # parabolic interpolation around the chosen lag (no shift at the edges or if it would
    # move by more than one bin)
    left = d[rows, np.clip(chosen - 1, 0, None)]
    mid = d[rows, chosen]
    right = d[rows, np.clip(chosen + 1, None, d.shape[1] - 1)]
    a = right + left - 2 * mid
    b = (right - left) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a)
    shift[(chosen == 0) | (chosen == d.shape[1] - 1)] = 0.0
    period = min_period + chosen + shift
    return sample_rate / period, mid


def extract_pitch(
    audio: np.ndarray,
    *,
    sample_rate: int,
    hop_length: int,
    num_frames: int | None = None,
    fmin: float = 60.0,
    fmax: float = 500.0,
    frame_length: int = 1024,
    voicing_threshold: float = 0.25,
    silence_db: float = -45.0,
) -> PitchTrack:
    """Log-F0 and a voiced mask at a codec's frame rate (one value per ``hop_length``).

    A frame is voiced when YIN's aperiodicity is below ``voicing_threshold`` and its RMS is
    above ``silence_db`` relative to the loudest frame.

    Args:
        audio: ``(t,)`` mono float samples.
        sample_rate: samples per second.
        hop_length: samples per latent frame (``sample_rate / frame_rate``).
        num_frames: trim or zero-pad the track to this many frames (the latent length).
    """
    y = np.asarray(audio, dtype=np.float64)
    f0, aperiodicity = yin(
        y,
        sample_rate=sample_rate,
        fmin=fmin,
        fmax=fmax,
        frame_length=frame_length,
        hop_length=hop_length,
    )
    rms = np.sqrt(np.mean(_frames(y, hop_length * 2, hop_length, True) ** 2, axis=-1))[: len(f0)]
    if len(rms) < len(f0):
        rms = np.pad(rms, (0, len(f0) - len(rms)))
    loud = 20 * np.log10(rms + 1e-9) > 20 * np.log10(rms.max() + 1e-9) + silence_db
    voiced = (aperiodicity < voicing_threshold) & loud & np.isfinite(f0)
    if num_frames is not None:
        f0, voiced = f0[:num_frames], voiced[:num_frames]
        if len(f0) < num_frames:
            pad = num_frames - len(f0)
            f0, voiced = np.pad(f0, (0, pad)), np.pad(voiced, (0, pad))
    f0 = np.where(voiced, f0, 0.0)
    log_f0 = np.where(voiced, np.log(np.maximum(f0, 1e-5)), 0.0)
    return PitchTrack(f0.astype(np.float32), log_f0.astype(np.float32), voiced.astype(bool))
