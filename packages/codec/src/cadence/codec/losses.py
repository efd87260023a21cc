"""Codec training losses: reconstruction, adversarial, feature matching.

- :class:`MultiScaleMelLoss`: EnCodec's reconstruction term (Defossez et al. 2022, eq. 1):
  for windows ``2**i``, i in ``[range_start, range_end)``, with hop ``2**i / 4``, the L1
  distance of mel spectrograms plus ``sqrt(2**i - 1)`` times the L2 distance of log-mels.
- :func:`waveform_l1_loss`: the time-domain L1 term.
- :func:`feature_matching_loss`: L1 between the discriminators' hidden activations on real
  and generated audio, each divided by the mean magnitude of the real one (EnCodec eq. 3).
- :func:`generator_adversarial_loss` / :func:`discriminator_adversarial_loss`: hinge
  (EnCodec, MelGAN) or least squares (LSGAN, HiFi-GAN), averaged over sub-discriminators.

The commitment loss comes from the quantizer (:class:`~cadence.codec.quantizer.QuantizedResult`).
"""

# b batch | c audio channels | t samples | f mel bins | n frames

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cadence.core.features import MelSpectrogram

__all__ = [
    "AdversarialLoss",
    "MultiScaleMelLoss",
    "discriminator_adversarial_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "waveform_l1_loss",
]

AdversarialLoss = Literal["hinge", "lsgan"]


class MultiScaleMelLoss(nn.Module):
    """EnCodec's multi-scale mel reconstruction loss over ``(b, c, t)`` audio.

    Args:
        sample_rate: of the audio.
        range_start, range_end: window sizes ``2**i`` for i in ``[range_start, range_end)``;
            the default, 64 to 1024 samples, is audiocraft's ``MultiScaleMelSpectrogramLoss``.
        n_mels: mel bins per scale.
        floor: clamp before the log.
        alphas: weight the log-mel L2 term by ``sqrt(2**i - 1)`` (EnCodec); False weights 1.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        range_start: int = 6,
        range_end: int = 11,
        n_mels: int = 64,
        floor: float = 1e-5,
        alphas: bool = True,
    ):
        super().__init__()
        if not 1 <= range_start < range_end:
            raise ValueError(f"need 1 <= range_start < range_end, got {range_start}, {range_end}")
        self.floor = floor
        self.mels = nn.ModuleList(
            MelSpectrogram(
                sample_rate, n_fft=2**i, hop_length=2**i // 4, n_mels=n_mels, log=False, power=1.0
            )
            for i in range(range_start, range_end)
        )
        self.alphas = [
            math.sqrt(2**i - 1) if alphas else 1.0 for i in range(range_start, range_end)
        ]

    def forward(self, estimate: Tensor, target: Tensor) -> Tensor:
        """Scalar loss between ``estimate`` and ``target`` of equal shape ``(b, c, t)``."""
        if estimate.shape != target.shape:
            raise ValueError(
                f"estimate {tuple(estimate.shape)} and target {tuple(target.shape)} must have "
                "the same shape (trim the decoded audio to the input length first)"
            )
        loss = estimate.new_zeros(())
        for mel, alpha in zip(self.mels, self.alphas):
            m_est, m_ref = mel(estimate), mel(target)
            loss = loss + F.l1_loss(m_est, m_ref)
            log_est = m_est.clamp(min=self.floor).log()
            log_ref = m_ref.clamp(min=self.floor).log()
            loss = loss + alpha * F.mse_loss(log_est, log_ref)
        return loss


def waveform_l1_loss(estimate: Tensor, target: Tensor) -> Tensor:
    """Mean absolute sample difference."""
    return F.l1_loss(estimate, target)


def feature_matching_loss(
    fmaps_fake: list[list[Tensor]], fmaps_real: list[list[Tensor]], *, relative: bool = True
) -> Tensor:
    """Mean over every layer of every sub-discriminator of ``|D(x_hat) - D(x)|_1``.

    With ``relative`` each layer's distance is divided by the mean magnitude of its real
    activation (EnCodec eq. 3), so wide and narrow layers count alike. Real activations
    are detached: feature matching trains the generator only.
    """
    if len(fmaps_fake) != len(fmaps_real):
        raise ValueError("feature maps of real and fake audio come from different discriminators")
    total, count = None, 0
    for fake_layers, real_layers in zip(fmaps_fake, fmaps_real):
        for fake, real in zip(fake_layers, real_layers):
            real = real.detach()
            dist = F.l1_loss(fake, real)
            if relative:
                dist = dist / real.abs().mean().clamp(min=1e-8)
            total = dist if total is None else total + dist
            count += 1
    if total is None:
        raise ValueError("no feature maps to match")
    return total / count


def generator_adversarial_loss(
    logits_fake: list[Tensor], kind: AdversarialLoss = "hinge"
) -> Tensor:
    """The generator's adversarial loss, averaged over sub-discriminators.

    hinge: ``mean(relu(1 - D(x_hat)))`` (EnCodec eq. 2); lsgan: ``mean((1 - D(x_hat))^2)``.
    """
    losses = []
    for logit in logits_fake:
        if kind == "hinge":
            losses.append(F.relu(1 - logit).mean())
        elif kind == "lsgan":
            losses.append((1 - logit).pow(2).mean())
        else:
            raise ValueError(f"unknown adversarial loss {kind!r}; use 'hinge' or 'lsgan'")
    return torch.stack(losses).mean()


def discriminator_adversarial_loss(
    logits_real: list[Tensor], logits_fake: list[Tensor], kind: AdversarialLoss = "hinge"
) -> Tensor:
    """The discriminators' loss, averaged over sub-discriminators.

    hinge: ``mean(relu(1 - D(x))) + mean(relu(1 + D(x_hat)))``;
    lsgan: ``mean((1 - D(x))^2) + mean(D(x_hat)^2)``. Pass ``x_hat`` detached.
    """
    losses = []
    for real, fake in zip(logits_real, logits_fake):
        if kind == "hinge":
            losses.append(F.relu(1 - real).mean() + F.relu(1 + fake).mean())
        elif kind == "lsgan":
            losses.append((1 - real).pow(2).mean() + fake.pow(2).mean())
        else:
            raise ValueError(f"unknown adversarial loss {kind!r}; use 'hinge' or 'lsgan'")
    return torch.stack(losses).mean()
