"""The flow-matching train step: draws the training problem, turns predictions into losses.

Per sample (:meth:`FlowMatchingTrainStep.draw`, from the global RNGs, which core's Trainer
reseeds per micro-batch for exact resume):

1. an acoustic context, with probability ``context_prob``: every real frame but one
   contiguous span covering a fraction in ``[min_generate_fraction, 1]`` of them (Voicebox);
2. a condition drop, with probability ``cond_drop_prob``: no semantic condition and no
   context (the unconditional model of classifier-free guidance);
3. the prior noise and a flow time ``t ~ U[0, 1)``.

The loss (:meth:`FlowMatchingTrainStep.loss`) is the squared error of the velocity against
the OT target ``x1 - (1 - sigma_min) x0`` on the frames to generate, plus
``prior_loss_weight`` times the semantic prior's regression error on every real frame.
"""

# b batch | s semantic frames | n latent frames | d latent dim

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cadence.core.data import lengths_to_mask
from cadence.core.train import StepOutput

from .config import FlowMatchingTrainConfig
from .model import FlowMatchingDraw, FlowPrediction
from .paths import ot_velocity

__all__ = ["FlowMatchingLoss", "FlowMatchingTrainStep"]


@dataclass(frozen=True)
class FlowMatchingLoss:
    """The losses of one batch.

    Attributes:
        loss: the total to minimize, ``flow_loss + prior_loss_weight * prior_loss``.
        flow_loss: mean squared error of the velocity on the generated frames.
        prior_loss: mean squared error of the semantic prior projection (0 for a Gaussian prior).
        num_frames: generated frames the flow loss was averaged over.
    """

    loss: Tensor
    flow_loss: Tensor
    prior_loss: Tensor
    num_frames: int


class FlowMatchingTrainStep:
    """``step(model, batch) -> StepOutput`` for :class:`cadence.core.train.Trainer`.

    ``model`` is a :class:`~cadence.flowmatching.HierarchicalConditionalFlowMatcher` (it may
    be wrapped); batches come from :func:`~cadence.flowmatching.collate_flow_batch`. For a
    bare :class:`~cadence.flowmatching.ConditionalFlowMatcher`, call :meth:`draw`, the model
    and :meth:`loss` yourself.

    Args:
        config: the training settings (default ``FlowMatchingTrainConfig()``).
    """

    def __init__(self, config: FlowMatchingTrainConfig | None = None):
        self.config = config if config is not None else FlowMatchingTrainConfig()

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> StepOutput:
        latents = batch["latents"].float()
        latents_mask = batch["latents_mask"]
        draw = self.draw(latents, latents_mask)
        prediction = model(
            batch["tokens"].long(),
            latents,
            tokens_mask=batch["tokens_mask"],
            latents_mask=latents_mask,
            draw=draw,
        )
        out = self.loss(prediction, draw)
        return StepOutput(
            loss=out.loss,
            metrics={"flow_loss": out.flow_loss.detach(), "prior_loss": out.prior_loss.detach()},
            num_items=out.num_frames,
        )

    def draw(
        self, latents: Tensor, mask: Tensor | None = None, *, context_mask: Tensor | None = None
    ) -> FlowMatchingDraw:
        """The random parts of a problem on ``latents`` ``(b, n, d)`` with real frames ``mask``.

        Args:
            latents: ``(b, n, d)``; only its shape, dtype and device are used.
            mask: ``(b, n)`` True for real frames (default all).
            context_mask: ``(b, n)`` frames to give as context instead of drawing them.
        """
        cfg = self.config
        b, n, _ = latents.shape
        device = latents.device
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.bool, device=device)
        if context_mask is None:
            context_mask = self.sample_context_mask(mask)
        drop = torch.rand(b, device=device) < cfg.cond_drop_prob
        noise = torch.randn_like(latents)
        t = torch.rand(b, device=device, dtype=latents.dtype)
        return FlowMatchingDraw(
            t=t,
            noise=noise,
            context_mask=context_mask & mask & ~drop[:, None],
            drop=drop,
            sigma_min=cfg.sigma_min,
        )

    def sample_context_mask(self, mask: Tensor) -> Tensor:
        """Training contexts ``(b, n)``: all frames but one contiguous span, or none.

        With probability ``context_prob`` a sample gets a context; its generated span covers
        a fraction in ``[min_generate_fraction, 1]`` of its real frames (at least one frame),
        placed uniformly.
        """
        cfg = self.config
        b, n = mask.shape
        device = mask.device
        lengths = mask.sum(1)
        fraction = cfg.min_generate_fraction + (1 - cfg.min_generate_fraction) * torch.rand(
            b, device=device
        )
        span = (fraction * lengths).ceil().long().clamp(min=1)
        span = torch.minimum(span, lengths.clamp(min=1))
        start = (torch.rand(b, device=device) * (lengths - span + 1)).floor().long()
        generated = lengths_to_mask(start + span, n) & ~lengths_to_mask(start, n)
        use = torch.rand(b, device=device) < cfg.context_prob
        return mask & ~generated & use[:, None]

    def loss(self, prediction: FlowPrediction, draw: FlowMatchingDraw) -> FlowMatchingLoss:
        """The flow loss on the generated frames and the weighted prior loss."""
        p = prediction
        real = p.mask[..., None].to(p.x1.dtype)
        if p.prior_mean is not None:
            prior_loss = ((p.prior_mean - p.x1) ** 2 * real).sum() / (
                real.sum() * p.x1.shape[-1]
            ).clamp(min=1)
        else:
            prior_loss = p.x1.new_zeros(())
        target = ot_velocity(p.x0, p.x1, draw.sigma_min)
        v = p.velocity
        weight = (p.mask & ~p.context_mask)[..., None].to(v.dtype)
        frames = weight.sum()
        flow_loss = (F.mse_loss(v, target, reduction="none") * weight).sum() / (
            frames * v.shape[-1]
        ).clamp(min=1)
        loss = flow_loss + self.config.prior_loss_weight * prior_loss
        return FlowMatchingLoss(
            loss=loss, flow_loss=flow_loss, prior_loss=prior_loss, num_frames=int(frames)
        )
