"""The train step of NaturalSpeech 2 for core's ``Trainer``: the draws, the five losses and their weights.

:class:`NaturalSpeech2TrainStep` draws each item's prompt segment, diffusion step, noise and
condition dropout (:func:`draw_training`), calls the model for its predictions and returns

    diffusion + duration_loss_weight * duration + pitch_loss_weight * (f0 + voiced)
    + lambda_ce_rvq * CE-RVQ

with every part logged as a metric. Randomness comes from the global RNGs, which the Trainer
reseeds before every micro-batch, so a resumed run draws exactly what an unbroken one does.
Batches come from :func:`cadence.naturalspeech2.data.collate_ns2`.
"""

# b batch | l phonemes | n latent frames | d latent dim | q quantizer levels | v codebook entries

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from cadence.core.checkpoint import unwrap_model
from cadence.core.config import Config, ConfigError
from cadence.core.train import StepOutput

from .losses import ce_rvq_loss, diffusion_loss, duration_loss, pitch_losses
from .model import NaturalSpeech2, NaturalSpeech2Predictions, TrainingDraw

__all__ = ["NaturalSpeech2TrainConfig", "NaturalSpeech2TrainStep", "draw_training"]


@dataclass(frozen=True, kw_only=True)
class NaturalSpeech2TrainConfig(Config):
    """How NaturalSpeech 2 is trained (what a checkpoint does not need to run).

    Attributes:
        cond_drop_prob: probability that an item's prompt and frame condition are replaced by
            the learned null inputs together (classifier-free guidance).
        prompt_fraction: ``(lo, hi)``: each item's prompt is a random segment of a uniform
            ``lo``-``hi`` fraction of its frames, skipped by the diffusion loss (sec. 3.4).
        lambda_ce_rvq: weight of the CE-RVQ loss (0.1, NaturalSpeech 2 sec. 3.2).
        duration_loss_weight, pitch_loss_weight: weights of the predictor losses.
    """

    cond_drop_prob: float = 0.1
    prompt_fraction: tuple[float, float] = (0.25, 0.5)
    lambda_ce_rvq: float = 0.1
    duration_loss_weight: float = 1.0
    pitch_loss_weight: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise ConfigError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")
        lo, hi = self.prompt_fraction
        if not 0.0 < lo <= hi < 1.0:
            raise ConfigError(
                f"prompt_fraction must satisfy 0 < lo <= hi < 1, got {self.prompt_fraction}"
            )
        for name in ("lambda_ce_rvq", "duration_loss_weight", "pitch_loss_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")


def draw_training(
    latents: Tensor,
    frame_mask: Tensor,
    *,
    diffusion_steps: int,
    config: NaturalSpeech2TrainConfig,
    cond_dropout: bool = True,
) -> TrainingDraw:
    """The random inputs of one training forward pass, from the global RNGs.

    Args:
        latents: ``(b, n, d)``; the noise takes its shape, dtype and device.
        frame_mask: ``(b, n)`` bool, real frames (every item has at least one).
        diffusion_steps: the model's number of training steps.
        config: the prompt fraction and condition dropout probability.
        cond_dropout: draw the condition dropout (in training); False keeps every condition.
    """
    b, device = latents.shape[0], latents.device
    lengths = frame_mask.sum(-1)
    lo, hi = config.prompt_fraction
    fraction = lo + (hi - lo) * torch.rand(b, device=device)
    prompt_lengths = (fraction * lengths).long().clamp(min=1)
    prompt_start = (torch.rand(b, device=device) * (lengths - prompt_lengths + 1).float()).long()
    if cond_dropout:
        cond_drop = torch.rand(b, device=device) < config.cond_drop_prob
    else:
        cond_drop = torch.zeros(b, dtype=torch.bool, device=device)
    step = torch.randint(0, diffusion_steps, (b,), device=device)
    return TrainingDraw(
        prompt_start=prompt_start,
        prompt_lengths=prompt_lengths,
        step=step,
        noise=torch.randn_like(latents),
        cond_drop=cond_drop,
    )


class NaturalSpeech2TrainStep:
    """``step(model, batch) -> StepOutput`` for :class:`cadence.core.train.Trainer`.

    Args:
        config: the training settings (default :class:`NaturalSpeech2TrainConfig`).
        codebooks: ``(q, v, d)`` codec codebooks for the CE-RVQ loss (see
            :func:`~cadence.naturalspeech2.data.codebooks_from_codec`); None, or a batch
            without ``codes``, leaves CE-RVQ out.
    """

    def __init__(
        self, config: NaturalSpeech2TrainConfig | None = None, codebooks: Tensor | None = None
    ):
        if config is not None and not isinstance(config, NaturalSpeech2TrainConfig):
            raise TypeError(
                f"config must be a NaturalSpeech2TrainConfig, got {type(config).__name__}; "
                "pass codebooks by keyword: NaturalSpeech2TrainStep(codebooks=codebooks_from_codec(codec))"
            )
        self.config = NaturalSpeech2TrainConfig() if config is None else config
        self.codebooks = codebooks

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> StepOutput:
        # for its config and scalings; the pass goes through `model`
        ns2 = cast(NaturalSpeech2, unwrap_model(model))
        latents, frame_mask = batch["latents"], batch["frame_mask"].bool()
        # condition dropout only while training, as in every classifier-free guidance recipe
        draw = draw_training(
            latents,
            frame_mask,
            diffusion_steps=ns2.config.diffusion_steps,
            config=self.config,
            cond_dropout=model.training,
        )
        predictions = model(
            batch["phonemes"],
            batch["phoneme_mask"],
            batch["durations"],
            latents,
            frame_mask,
            batch["log_f0"],
            batch["voiced"],
            draw,
        )
        parts = self.losses(ns2, predictions, batch)
        return StepOutput(
            loss=self.total(parts),
            metrics={k: v.detach() for k, v in parts.items()},
            num_items=int(batch["phonemes"].shape[0]),
        )

    def losses(
        self,
        model: NaturalSpeech2,
        predictions: NaturalSpeech2Predictions,
        batch: Mapping[str, Any],
    ) -> dict[str, Tensor]:
        """The unweighted parts: ``diffusion``, ``duration``, ``pitch`` (= ``f0`` + ``voiced``), ``ce_rvq``."""
        p = predictions
        x0 = model.normalize(batch["latents"]) * p.frame_mask[..., None]
        f0, voiced = pitch_losses(
            p.log_f0,
            p.voiced_logits,
            model.normalize_log_f0(batch["log_f0"]),
            p.voiced,
            p.frame_mask,
        )
        parts = {
            "diffusion": diffusion_loss(p.x0, x0, p.target_mask),
            "duration": duration_loss(p.log_durations, batch["durations"], p.phoneme_mask),
            "pitch": f0 + voiced,
            "f0": f0,
            "voiced": voiced,
        }
        codes = batch.get("codes")
        if codes is not None and self.codebooks is not None:
            books = self.codebooks.to(p.x0.device)
            parts["ce_rvq"] = ce_rvq_loss(model.denormalize(p.x0), codes, books, p.target_mask)
        return parts

    def total(self, parts: Mapping[str, Tensor]) -> Tensor:
        """The weighted sum of :meth:`losses`' parts (``f0`` and ``voiced`` count through ``pitch``)."""
        c = self.config
        total = (
            parts["diffusion"]
            + c.duration_loss_weight * parts["duration"]
            + c.pitch_loss_weight * parts["pitch"]
        )
        if "ce_rvq" in parts:
            total = total + c.lambda_ce_rvq * parts["ce_rvq"]
        return total
