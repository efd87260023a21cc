"""ConditionalFlowMatcher: SpeechGPT-Gen's perceptual model, semantic embeddings -> latents.

A vector-field network ``v(x_t, t | s, context)`` is trained with optimal-transport
conditional flow matching (Lipman et al. 2023) and sampled by integrating the ODE
``dx/dt = v`` from the prior to the data with a fixed number of steps.

* **Prior** (SpeechGPT-Gen sec. 3.3, "chain-of-information"): ``"gaussian"`` starts from
  noise; ``"semantic"`` starts from ``x0 = W s + prior_std * noise``, the semantic
  embedding projected into latent space. ``W`` is trained by its own regression loss
  ``||W s - x1||^2`` on every real frame (the train step's ``prior_loss_weight``) and
  enters the flow loss with its gradient stopped: if the flow loss could move ``W`` it could also move the
  prior to where the flow target is easiest rather than towards the data, and the prior
  would drift while the flow is learning it. So the prior is the per-frame regression
  estimate of the latent, and the flow only has to correct it.
* **Conditions**, concatenated per frame before the input projection: the semantic
  embedding ``s`` (frame-aligned with the latents), the acoustic context (the given target
  latents, zero elsewhere) and a 0/1 flag marking the given frames. The flow time enters
  every backbone block through adaptive LayerNorm.
* **Infilling** (Voicebox, Le et al. 2023): during training the latents outside one
  contiguous span are given as context and the loss is computed on the span only; at
  sampling time the given frames are copied into the output exactly.
* **Classifier-free guidance**: with probability ``cond_drop_prob`` (a training setting) a
  sample loses both the semantic condition (replaced by a learned null embedding) and the
  context; sampling mixes ``v_uncond + w (v_cond - v_uncond)``. The prior is not a condition and is
  kept in both branches.

``forward`` makes the predictions of one training problem whose random parts (times,
noise, contexts, dropped conditions) the train step draws
(:class:`~cadence.flowmatching.FlowMatchingTrainStep`, which also owns the losses).
Latents are standardized per dimension with ``latent_mean`` / ``latent_std`` buffers (set
them from the training data with :func:`cadence.flowmatching.fit_latent_statistics`);
inputs and outputs of the public methods are raw codec latents.
"""

# b batch | n latent frames | d latent dim | e semantic dim (the backbone's widths are named
# where used)

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from einops import repeat
from torch import Tensor, nn

from cadence.core.checkpoint import PretrainedMixin
from cadence.core.nn import build_backbone
from cadence.core.sampling import classifier_free_guidance

from .config import FlowMatcherConfig
from .paths import ot_interpolate
from .solvers import ODEMethod, check_steps, solve_ode

__all__ = [
    "ConditionalFlowMatcher",
    "FlowMatchingDraw",
    "FlowPrediction",
    "SinusoidalTimeEmbedding",
]


@dataclass(frozen=True)
class FlowMatchingDraw:
    """The random parts of one training problem, drawn by the train step.

    Attributes:
        t: ``(b,)`` flow times in ``[0, 1)``.
        noise: ``(b, n, d)`` standard normal noise of the prior sample ``x0``.
        context_mask: ``(b, n)`` frames given as acoustic context (none on dropped samples).
        drop: ``(b,)`` bool, samples trained with no semantic condition and no context.
        sigma_min: spread of the OT path at ``t = 1`` (the train config's, carried with the
            draw so that forward and the loss use the same path).
    """

    t: Tensor
    noise: Tensor
    context_mask: Tensor
    drop: Tensor
    sigma_min: float


@dataclass(frozen=True)
class FlowPrediction:
    """What a training forward returns: the velocity and the path it was predicted on.

    All in normalized latent units.

    Attributes:
        velocity: ``(b, n, d)`` the predicted vector field at ``x_t``, 0 at padded frames.
        x0: ``(b, n, d)`` the prior sample the path starts from (no gradient to the prior).
        x1: ``(b, n, d)`` the data, 0 at padded frames.
        prior_mean: ``(b, n, d)`` the semantic prior's mean ``W s`` (with its gradient), or
            None for the Gaussian prior.
        mask: ``(b, n)`` real frames.
        context_mask: ``(b, n)`` frames given as context (real, of samples not dropped).
    """

    velocity: Tensor
    x0: Tensor
    x1: Tensor
    prior_mean: Tensor | None
    mask: Tensor
    context_mask: Tensor


class SinusoidalTimeEmbedding(nn.Module):
    """``(b,)`` times in [0, 1] -> ``(b, dim)`` sines and cosines (transformer positions)."""

    freqs: Tensor

    def __init__(self, dim: int, scale: float = 1000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"the time embedding width must be even, got {dim}")
        half = dim // 2
        # scaled so that t in [0, 1] spans the frequencies positions 0..1000 would
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / half) * scale
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        args = t.float()[:, None] * self.freqs[None]
        return torch.cat([args.sin(), args.cos()], dim=-1)


def _check_mask(mask: Tensor | None, b: int, n: int, device: torch.device, what: str) -> Tensor:
    if mask is None:
        return torch.ones(b, n, dtype=torch.bool, device=device)
    if mask.shape != (b, n):
        raise ValueError(f"{what} must be (b, n) = {(b, n)}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"{what} must be a bool tensor (True = real frame), got {mask.dtype}")
    return mask


class ConditionalFlowMatcher(PretrainedMixin, nn.Module):
    """Conditional flow matching from frame-aligned semantic embeddings to codec latents.

    Args:
        config: the :class:`FlowMatcherConfig`.

    Example:
        >>> model = ConditionalFlowMatcher(FlowMatcherConfig.tiny())      # doctest: +SKIP
        >>> step = FlowMatchingTrainStep()                                 # doctest: +SKIP
        >>> draw = step.draw(latents, mask)                                # doctest: +SKIP
        >>> loss = step.loss(model(latents, semantic, mask, draw=draw), draw).loss  # doctest: +SKIP
        >>> out = model.sample(semantic, mask=mask, steps=8)               # doctest: +SKIP
    """

    config_class = FlowMatcherConfig
    latent_mean: Tensor
    latent_std: Tensor

    def __init__(self, config: FlowMatcherConfig):
        super().__init__()
        self.config = config
        d, e = config.latent_dim, config.semantic_dim
        width, time_width = config.backbone.dim, config.backbone.cond_dim
        # per frame: x_t (d), context latents (d), context flag (1), semantic embedding (e)
        self.input_proj = nn.Linear(2 * d + 1 + e, width)
        self.time_embedding = nn.Sequential(
            SinusoidalTimeEmbedding(width),
            nn.Linear(width, time_width),
            nn.SiLU(),
            nn.Linear(time_width, time_width),
        )
        self.backbone = build_backbone(config.backbone)
        self.output_proj = nn.Linear(width, d)
        # a zero velocity at initialisation: the untrained sampler returns its prior
        nn.init.zeros_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)
        self.null_semantic = nn.Parameter(torch.zeros(e))
        self.prior_proj = nn.Linear(e, d) if config.prior == "semantic" else None
        self.register_buffer("latent_mean", torch.zeros(d))
        self.register_buffer("latent_std", torch.ones(d))

    # -- normalization ----------------------------------------------------------------

    def set_latent_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Standardize latents with these per-dimension statistics from now on."""
        d = self.config.latent_dim
        if mean.shape != (d,) or std.shape != (d,):
            raise ValueError(
                f"mean and std must be ({d},), got {tuple(mean.shape)}, {tuple(std.shape)}"
            )
        if not bool((std > 0).all()):
            raise ValueError("latent std must be > 0 in every dimension")
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std)

    def normalize(self, latents: Tensor) -> Tensor:
        return (latents - self.latent_mean) / self.latent_std

    def denormalize(self, x: Tensor) -> Tensor:
        return x * self.latent_std + self.latent_mean

    # -- the network --------------------------------------------------------------------

    def prior_mean(self, semantic: Tensor) -> Tensor:
        """``(b, n, e)`` -> ``(b, n, d)`` mean of the prior, in normalized latent units."""
        if self.prior_proj is None:
            return semantic.new_zeros(*semantic.shape[:2], self.config.latent_dim)
        return self.prior_proj(semantic)

    def condition_features(
        self,
        semantic: Tensor,
        context: Tensor | None,
        context_mask: Tensor,
        drop: Tensor | None = None,
    ) -> Tensor:
        """Per-frame conditions ``(b, n, d + 1 + e)``; ``drop`` ``(b,)`` removes them all.

        Args:
            semantic: ``(b, n, e)`` semantic embeddings.
            context: ``(b, n, d)`` normalized latents, read where ``context_mask`` is True.
            context_mask: ``(b, n)`` True where a frame is given.
            drop: ``(b,)`` bool, True to give this sample no semantic condition and no context.
        """
        if drop is not None:
            semantic = torch.where(drop[:, None, None], self.null_semantic.to(semantic), semantic)
            context_mask = context_mask & ~drop[:, None]
        flag = context_mask[..., None].to(semantic.dtype)
        if context is None:
            context = semantic.new_zeros(*semantic.shape[:2], self.config.latent_dim)
        return torch.cat([context * flag, flag, semantic], dim=-1)

    def velocity(self, x: Tensor, t: Tensor, features: Tensor, mask: Tensor) -> Tensor:
        """The vector field ``(b, n, d)`` at state ``x`` ``(b, n, d)`` and times ``t`` ``(b,)``."""
        h = self.input_proj(torch.cat([x, features], dim=-1))
        h = h * mask[..., None]
        h = self.backbone(h, mask=mask, cond=self.time_embedding(t))
        return self.output_proj(h) * mask[..., None]

    # -- training -----------------------------------------------------------------------

    def forward(
        self,
        latents: Tensor,
        semantic: Tensor,
        mask: Tensor | None = None,
        *,
        draw: FlowMatchingDraw,
    ) -> FlowPrediction:
        """The velocity on the OT path from the prior to ``latents``, at the drawn times.

        Args:
            latents: ``(b, n, d)`` raw codec latents (the data ``x1``).
            semantic: ``(b, n, e)`` semantic embeddings aligned with the latent frames.
            mask: ``(b, n)`` True for real frames.
            draw: times, noise, contexts and dropped conditions
                (:meth:`FlowMatchingTrainStep.draw <cadence.flowmatching.FlowMatchingTrainStep.draw>`).
        """
        self._check_inputs(latents, semantic)
        b, n, _ = latents.shape
        mask = _check_mask(mask, b, n, latents.device, "mask")
        context_mask = _check_mask(draw.context_mask, b, n, latents.device, "context_mask")
        context_mask = context_mask & mask & ~draw.drop[:, None]

        real = mask[..., None].to(latents.dtype)
        x1 = self.normalize(latents) * real
        prior_mean = self.prior_mean(semantic) * real
        # the prior is fitted by its own loss only (see the module docstring)
        x0 = (prior_mean.detach() + self.config.prior_std * draw.noise) * real
        x_t = ot_interpolate(x0, x1, draw.t, draw.sigma_min)
        features = self.condition_features(semantic, x1, context_mask, draw.drop)
        return FlowPrediction(
            velocity=self.velocity(x_t, draw.t, features, mask),
            x0=x0,
            x1=x1,
            prior_mean=prior_mean if self.prior_proj is not None else None,
            mask=mask,
            context_mask=context_mask,
        )

    # -- sampling ----------------------------------------------------------------------

    @torch.inference_mode()
    def sample(
        self,
        semantic: Tensor,
        *,
        mask: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        steps: int = 8,
        method: ODEMethod = "euler",
        guidance_scale: float = 1.0,
        temperature: float = 1.0,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Generate latents for every frame, copying the given context frames exactly.

        The network is evaluated exactly ``steps * EVALUATIONS_PER_STEP[method]`` times
        (Euler 1, midpoint 2 per step). With ``guidance_scale != 1`` each evaluation runs the
        conditional and unconditional inputs as one batch of ``2b``; with
        ``guidance_scale == 1`` the unconditional branch is skipped, so the result is the
        plain conditional sample.

        Args:
            semantic: ``(b, n, e)`` semantic embeddings aligned with the output frames.
            mask: ``(b, n)`` True for real frames (batches of different lengths); padded
                output frames are 0.
            context: ``(b, n, d)`` raw latents, read where ``context_mask`` is True.
            context_mask: ``(b, n)`` frames given by ``context`` (default: all when
                ``context`` is given).
            steps: ODE steps.
            method: ``"euler"`` or ``"midpoint"``.
            guidance_scale: classifier-free guidance weight ``w``; 1 = conditional.
            temperature: scales the prior noise (1 = the trained prior).
            noise: ``(b, n, d)`` standard normal prior noise to use (for reproducibility).
            generator: draws the noise when ``noise`` is not given.

        Returns:
            ``(b, n, d)`` raw latents.
        """
        check_steps(steps, method)
        self._check_inputs(None, semantic)
        b, n, _ = semantic.shape
        d = self.config.latent_dim
        device = semantic.device
        mask = _check_mask(mask, b, n, device, "mask")
        if context is None:
            if context_mask is not None:
                raise ValueError("context_mask was given without context; pass context=")
            context_mask = torch.zeros(b, n, dtype=torch.bool, device=device)
        else:
            if context.shape != (b, n, d):
                raise ValueError(
                    f"context must be (b, n, d) = {(b, n, d)} like the output, got {tuple(context.shape)}"
                )
            context_mask = _check_mask(context_mask, b, n, device, "context_mask")
        context_mask = context_mask & mask
        if noise is None:
            noise = torch.randn(b, n, d, device=device, dtype=semantic.dtype, generator=generator)
        elif noise.shape != (b, n, d):
            raise ValueError(f"noise must be {(b, n, d)}, got {tuple(noise.shape)}")

        real = mask[..., None].to(semantic.dtype)
        x0 = (self.prior_mean(semantic) + self.config.prior_std * temperature * noise) * real
        context_norm = None if context is None else self.normalize(context) * real
        features = self.condition_features(semantic, context_norm, context_mask)
        guided = guidance_scale != 1.0
        if guided:
            drop = torch.arange(2 * b, device=device) >= b
            features = self.condition_features(
                torch.cat([semantic, semantic]),
                None if context_norm is None else torch.cat([context_norm, context_norm]),
                torch.cat([context_mask, context_mask]),
                drop,
            )
            mask2 = torch.cat([mask, mask])

        def field(x: Tensor, t: Tensor) -> Tensor:
            if not guided:
                return self.velocity(x, repeat(t, " -> b", b=b), features, mask)
            both = self.velocity(torch.cat([x, x]), repeat(t, " -> b", b=2 * b), features, mask2)
            cond, uncond = both.chunk(2)
            return classifier_free_guidance(cond, uncond, guidance_scale)

        with self._eval_mode():
            x1 = solve_ode(field, x0, steps=steps, method=method)
        out = self.denormalize(x1)
        if context is not None:
            out = torch.where(context_mask[..., None], context.to(out), out)
        return out * real

    # -- helpers -----------------------------------------------------------------------

    @contextmanager
    def _eval_mode(self) -> Iterator[None]:
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def _check_inputs(self, latents: Tensor | None, semantic: Tensor) -> None:
        cfg = self.config
        if semantic.ndim != 3 or semantic.shape[-1] != cfg.semantic_dim:
            raise ValueError(
                f"semantic must be (b, n, semantic_dim={cfg.semantic_dim}) float, got "
                f"{tuple(semantic.shape)}; embed tokens first (HierarchicalConditionalFlowMatcher "
                "takes tokens)"
            )
        if not semantic.is_floating_point():
            raise ValueError(f"semantic must be a float tensor, got {semantic.dtype}")
        if latents is not None:
            if latents.ndim != 3 or latents.shape[-1] != cfg.latent_dim:
                raise ValueError(
                    f"latents must be (b, n, latent_dim={cfg.latent_dim}), got "
                    f"{tuple(latents.shape)}; is the codec's latent_dim {cfg.latent_dim}?"
                )
            if latents.shape[:2] != semantic.shape[:2]:
                raise ValueError(
                    f"latents {tuple(latents.shape[:2])} and semantic {tuple(semantic.shape[:2])} "
                    "must have the same (b, n): align the semantic frames to the latent frames"
                )
