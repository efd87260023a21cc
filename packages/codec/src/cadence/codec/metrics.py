"""Objective codec quality metrics, computed on ``(b, c, t)`` audio.

- :func:`si_snr`: scale-invariant signal-to-noise ratio in dB (Le Roux et al. 2019).
- :func:`mel_distance`: mean absolute difference of log-mel spectrograms.
- :func:`stft_distance`: multi-resolution STFT distance, spectral convergence + log
  magnitude (Yamamoto et al. 2020, Parallel WaveGAN), averaged over resolutions.
- :func:`pesq` and :func:`stoi`: wrappers of the ``pesq`` and ``pystoi`` packages, imported
  only when called (``pip install "cadence-codec[metrics]"``).

:func:`codec_metrics` computes them all for a batch.
"""

# b batch | c channels | t samples

from __future__ import annotations

import torch
from torch import Tensor

from cadence.core.audio import resample
from cadence.core.features import log_mel_spectrogram, spectrogram

__all__ = ["codec_metrics", "mel_distance", "pesq", "si_snr", "stft_distance", "stoi"]


def _pair(estimate: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
    if estimate.shape != reference.shape:
        raise ValueError(
            f"estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)} must have "
            "the same shape; trim the decoded audio to the reference length"
        )
    if estimate.ndim != 3:
        raise ValueError(f"metrics take (b, c, t) audio, got {tuple(estimate.shape)}")
    return estimate.float(), reference.float()


def si_snr(estimate: Tensor, reference: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale-invariant SNR in dB per item ``(b,)``, channels flattened together."""
    est, ref = _pair(estimate, reference)
    est = est.flatten(1) - est.flatten(1).mean(-1, keepdim=True)
    ref = ref.flatten(1) - ref.flatten(1).mean(-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def mel_distance(
    estimate: Tensor,
    reference: Tensor,
    sample_rate: int,
    *,
    n_fft: int = 1024,
    hop_length: int = 256,
    n_mels: int = 80,
) -> Tensor:
    """Mean ``|log mel(estimate) - log mel(reference)|`` per item ``(b,)``."""
    est, ref = _pair(estimate, reference)
    kw = dict(n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
    diff = log_mel_spectrogram(est, sample_rate, **kw) - log_mel_spectrogram(ref, sample_rate, **kw)
    return diff.abs().flatten(1).mean(-1)


def stft_distance(
    estimate: Tensor,
    reference: Tensor,
    *,
    resolutions: tuple[tuple[int, int], ...] = ((512, 128), (1024, 256), (2048, 512)),
    eps: float = 1e-7,
) -> Tensor:
    """Multi-resolution STFT distance per item ``(b,)``: spectral convergence + log-magnitude L1.

    Args:
        resolutions: ``(n_fft, hop_length)`` pairs (Parallel WaveGAN's, with win = n_fft).
    """
    est, ref = _pair(estimate, reference)
    total = est.new_zeros(est.shape[0])
    for n_fft, hop in resolutions:
        s_est = spectrogram(est, n_fft=n_fft, hop_length=hop).flatten(1)
        s_ref = spectrogram(ref, n_fft=n_fft, hop_length=hop).flatten(1)
        convergence = (s_ref - s_est).norm(dim=-1) / s_ref.norm(dim=-1).clamp(min=eps)
        log_mag = (s_est.clamp(min=eps).log() - s_ref.clamp(min=eps).log()).abs().mean(-1)
        total = total + convergence + log_mag
    return total / len(resolutions)


def _mono_numpy(audio: Tensor, sample_rate: int, target_rate: int):
    mono = audio.float().mean(1)  # (b, t)
    if sample_rate != target_rate:
        mono = resample(mono, sample_rate, target_rate)
    return mono.detach().cpu().double().numpy()


def pesq(estimate: Tensor, reference: Tensor, sample_rate: int) -> Tensor:
    """Wide-band PESQ (ITU-T P.862.2) per item ``(b,)``, on mono audio resampled to 16 kHz.

    Raises:
        ImportError: the ``pesq`` package is missing (install ``cadence-codec[metrics]``).
    """
    try:
        from pesq import pesq as _pesq
    except ImportError as err:
        raise ImportError(
            "PESQ needs the `pesq` package: pip install 'cadence-codec[metrics]'"
        ) from err
    est, ref = _pair(estimate, reference)
    est_np, ref_np = _mono_numpy(est, sample_rate, 16000), _mono_numpy(ref, sample_rate, 16000)
    scores = [_pesq(16000, r, e, "wb") for r, e in zip(ref_np, est_np)]
    return torch.tensor(scores, dtype=torch.float32)


def stoi(
    estimate: Tensor, reference: Tensor, sample_rate: int, *, extended: bool = False
) -> Tensor:
    """STOI (Taal et al. 2011; ESTOI with ``extended``) per item ``(b,)``, on mono audio.

    Raises:
        ImportError: the ``pystoi`` package is missing (install ``cadence-codec[metrics]``).
    """
    try:
        from pystoi import stoi as _stoi
    except ImportError as err:
        raise ImportError(
            "STOI needs the `pystoi` package: pip install 'cadence-codec[metrics]'"
        ) from err
    est, ref = _pair(estimate, reference)
    est_np, ref_np = (
        _mono_numpy(est, sample_rate, sample_rate),
        _mono_numpy(ref, sample_rate, sample_rate),
    )
    scores = [_stoi(r, e, sample_rate, extended=extended) for r, e in zip(ref_np, est_np)]
    return torch.tensor(scores, dtype=torch.float32)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def codec_metrics(
    estimate: Tensor,
    reference: Tensor,
    sample_rate: int,
    *,
    perceptual: bool | None = None,
) -> dict[str, float]:
    """Batch means of every metric: ``si_snr``, ``mel_distance``, ``stft_distance``, and
    ``pesq`` / ``stoi``.

    Args:
        perceptual: compute PESQ and STOI; ``None`` computes each when its package is
            importable, ``True`` requires them (ImportError otherwise), ``False`` skips them.
    """
    out = {
        "si_snr": float(si_snr(estimate, reference).mean()),
        "mel_distance": float(mel_distance(estimate, reference, sample_rate).mean()),
        "stft_distance": float(stft_distance(estimate, reference).mean()),
    }
    if perceptual or (perceptual is None and _importable("pesq")):
        out["pesq"] = float(pesq(estimate, reference, sample_rate).mean())
    if perceptual or (perceptual is None and _importable("pystoi")):
        out["stoi"] = float(stoi(estimate, reference, sample_rate).mean())
    return out
