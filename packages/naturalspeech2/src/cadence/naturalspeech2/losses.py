"""The training losses of NaturalSpeech 2, each a masked mean over the frames or phonemes that count.

The train step (:class:`~cadence.naturalspeech2.train.NaturalSpeech2TrainStep`) weights and
sums them; they are plain functions of predictions and targets.
"""

# b batch | l phonemes | n latent frames | d latent dim | q quantizer levels | v codebook entries

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

__all__ = ["ce_rvq_loss", "diffusion_loss", "duration_loss", "masked_mean", "pitch_losses"]


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` is True (0 when nothing counts)."""
    weight = mask.float()
    return (values * weight).sum() / weight.sum().clamp(min=1)


def diffusion_loss(x0_hat: Tensor, x0: Tensor, mask: Tensor) -> Tensor:
    """MSE of the ``(b, n, d)`` x0 prediction (normalised latents) over the ``(b, n)`` frames that count."""
    return masked_mean((x0_hat - x0).pow(2).mean(-1), mask)


def duration_loss(log_durations: Tensor, durations: Tensor, phoneme_mask: Tensor) -> Tensor:
    """MSE of ``(b, l)`` predicted ``log(1 + frames)`` over the real phonemes (FastSpeech 2 style)."""
    return masked_mean((log_durations - durations.float().log1p()).pow(2), phoneme_mask)


def pitch_losses(
    log_f0: Tensor, voiced_logits: Tensor, target_log_f0: Tensor, voiced: Tensor, frame_mask: Tensor
) -> tuple[Tensor, Tensor]:
    """``(f0, voiced)``: L1 of normalised log-F0 on voiced frames and BCE of the voiced flag on real frames.

    Args:
        log_f0, voiced_logits: ``(b, n)`` predictions.
        target_log_f0: ``(b, n)`` normalised log-F0 targets.
        voiced: ``(b, n)`` bool, voiced real frames; ``frame_mask`` ``(b, n)`` real frames.
    """
    f0 = masked_mean((log_f0 - target_log_f0).abs(), voiced)
    flag = F.binary_cross_entropy_with_logits(voiced_logits, voiced.float(), reduction="none")
    return f0, masked_mean(flag, frame_mask)


def ce_rvq_loss(latents: Tensor, codes: Tensor, codebooks: Tensor, mask: Tensor) -> Tensor:
    """CE-RVQ (NaturalSpeech 2 sec. 3.2): per level, cross-entropy of the residual's codes.

    Level ``k``'s logits are the negative squared distances from the residual (predicted latent
    minus the ground-truth quantized levels before ``k``) to level ``k``'s codebook vectors.

    Args:
        latents: ``(b, n, d)`` predicted latents at the codec's scale.
        codes: ``(b, n, q)`` ground-truth codes.
        codebooks: ``(q, v, d)`` each level's codebook vectors in latent space.
        mask: ``(b, n)`` frames that count.
    """
    residual = latents
    total = latents.new_zeros(())
    count = mask.sum().clamp(min=1)
    for level in range(codebooks.shape[0]):
        book = codebooks[level].to(latents)
        dist = residual.pow(2).sum(-1, keepdim=True) - 2 * residual @ book.T + book.pow(2).sum(-1)
        ce = F.cross_entropy(
            rearrange(-dist, "b n v -> b v n"), codes[..., level], reduction="none"
        )
        total = total + (ce * mask).sum() / count
        residual = residual - book[codes[..., level]]
    return total
