"""Gaussian diffusion over latents with x0 prediction: schedule, losses' noising, samplers.

NaturalSpeech 2 (sec. 3.2) trains the denoiser to predict the clean latent ``x0`` rather
than the noise. Three samplers share one ``denoise(x_t, t) -> x0`` callable:

* ``"ddpm"``: ancestral sampling through every training step (Ho et al. 2020), the
  reference, ``num_steps`` network evaluations.
* ``"ddim"``: DDIM (Song et al. 2021) on any sub-sequence of steps; ``eta = 0`` is
  deterministic, ``eta = 1`` on the full schedule is exactly DDPM's posterior (same mean and
  variance), which the tests check.
* ``"dpm++"``: DPM-Solver++(2M) (Lu et al. 2022), a second-order multistep solver of the
  probability-flow ODE in data prediction, one network evaluation per step; good at 16-64
  steps. The last step jumps to the predicted ``x0``.
"""

# b batch | n latent frames | d latent dim

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

__all__ = ["Sampler", "alphas_cumprod", "q_sample", "sample", "timesteps_for"]

Sampler = Literal["ddpm", "ddim", "dpm++"]
Denoiser = Callable[[Tensor, Tensor], Tensor]  # (x_t (b, n, d), t (b,) long) -> x0 (b, n, d)


def alphas_cumprod(num_steps: int, schedule: Literal["cosine", "linear"] = "cosine") -> Tensor:
    """``(num_steps,)`` float64 cumulative signal fractions ``abar_t``, t = 0 .. num_steps-1."""
    if schedule == "linear":
        betas = torch.linspace(
            1e-4 * 1000 / num_steps, 0.02 * 1000 / num_steps, num_steps, dtype=torch.float64
        )
    elif schedule == "cosine":  # Nichol & Dhariwal 2021
        s = 0.008
        x = torch.linspace(0, num_steps, num_steps + 1, dtype=torch.float64)
        f = torch.cos((x / num_steps + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    else:
        raise ValueError(f"unknown noise schedule {schedule!r}; use 'cosine' or 'linear'")
    return torch.cumprod(1 - betas, 0)


def q_sample(x0: Tensor, t: Tensor, noise: Tensor, abar: Tensor) -> Tensor:
    """Noise clean ``x0`` ``(b, n, d)`` to step ``t`` ``(b,)``: ``sqrt(abar) x0 + sqrt(1-abar) eps``."""
    a = abar.to(x0.device)[t].to(x0.dtype)[:, None, None]
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def timesteps_for(num_train_steps: int, steps: int) -> list[int]:
    """``steps`` evenly spaced training steps, from the noisiest down (``num_train_steps - 1``)."""
    if not 1 <= steps <= num_train_steps:
        raise ValueError(f"steps must be in 1..{num_train_steps}, got {steps}")
    grid = torch.linspace(num_train_steps - 1, 0, steps).round().long().tolist()
    return list(dict.fromkeys(grid))  # dedupe, keep order


@torch.inference_mode()
def sample(
    denoise: Denoiser,
    shape: tuple[int, int, int],
    abar: Tensor,
    *,
    sampler: Sampler = "dpm++",
    steps: int | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Draw latents ``(b, n, d)`` from noise with the chosen sampler.

    Args:
        denoise: ``(x_t, t) -> x0`` (guidance already applied).
        shape: ``(b, n, d)``.
        abar: the training schedule's ``alphas_cumprod``.
        sampler: ``"ddpm"`` (always every step), ``"ddim"`` or ``"dpm++"``.
        steps: network evaluations for ``ddim`` / ``dpm++`` (default: 32).
        eta: DDIM stochasticity (0 deterministic, 1 = DDPM's variance).
        generator: for the initial noise and the per-step noise.
    """
    total = len(abar)
    abar = abar.to(device)
    noise = lambda: torch.randn(shape, generator=generator, device=device, dtype=dtype)  # noqa: E731
    x = noise()
    b = shape[0]

    def at(t: int) -> Tensor:
        return abar[t] if t >= 0 else abar.new_tensor(1.0)

    if sampler == "ddpm":
        for t in range(total - 1, -1, -1):
            x0 = denoise(x, torch.full((b,), t, device=device, dtype=torch.long))
            a_t, a_prev = at(t), at(t - 1)
            beta = 1 - a_t / a_prev
            mean = (a_prev.sqrt() * beta / (1 - a_t)) * x0 + (
                (1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)
            ) * x
            if t > 0:
                var = beta * (1 - a_prev) / (1 - a_t)
                x = (mean + var.sqrt() * noise()).to(dtype)
            else:
                x = mean.to(dtype)
        return x
    grid = timesteps_for(total, 32 if steps is None else steps)
    pairs = list(zip(grid, [*grid[1:], -1]))
    if sampler == "ddim":
        for t, s in pairs:
            x0 = denoise(x, torch.full((b,), t, device=device, dtype=torch.long))
            a_t, a_s = at(t), at(s)
            eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
            sigma = eta * ((1 - a_s) / (1 - a_t)).sqrt() * (1 - a_t / a_s).sqrt()
            x = a_s.sqrt() * x0 + (1 - a_s - sigma**2).clamp(min=0).sqrt() * eps
            if s >= 0:
                x = x + sigma * noise()
            x = x.to(dtype)
        return x
    if sampler == "dpm++":
        previous: tuple[Tensor, Tensor] | None = None  # (x0, h) of the last step
        for _i, (t, s) in enumerate(pairs):
            x0 = denoise(x, torch.full((b,), t, device=device, dtype=torch.long))
            if s < 0:  # sigma_s = 0: the ODE's end point is the data prediction itself
                return x0.to(dtype)
            a_t, a_s = at(t), at(s)
            alpha_t, sigma_t, alpha_s, sigma_s = (
                a_t.sqrt(),
                (1 - a_t).sqrt(),
                a_s.sqrt(),
                (1 - a_s).sqrt(),
            )
            h = (alpha_s / sigma_s).log() - (alpha_t / sigma_t).log()
            if previous is None:
                d = x0  # first step: DPM-Solver++ 1 (= DDIM)
            else:
                r = previous[1] / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous[0]
            x = ((sigma_s / sigma_t) * x - alpha_s * torch.expm1(-h) * d).to(dtype)
            previous = (x0, h)
        return x
    raise ValueError(f"unknown sampler {sampler!r}; use 'ddpm', 'ddim' or 'dpm++'")
