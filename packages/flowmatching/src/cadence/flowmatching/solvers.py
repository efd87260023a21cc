"""Fixed-step ODE solvers for sampling a flow: ``steps`` is honoured exactly.

SpeechGPT-Gen's public code passes ``steps`` to ``torch.linspace`` but integrates with
torchdiffeq's fixed ``step_size``, so the number of network evaluations does not follow
``steps``. Here the interval ``[0, 1]`` is cut into ``steps`` equal parts and each part costs
exactly :data:`EVALUATIONS_PER_STEP` ``[method]`` calls of the vector field:

* ``euler``: ``x <- x + h v(x, t)`` (1 evaluation per step, first order);
* ``midpoint``: ``x <- x + h v(x + h/2 v(x, t), t + h/2)`` (2 per step, second order).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

__all__ = ["EVALUATIONS_PER_STEP", "ODEMethod", "VectorField", "check_steps", "solve_ode"]

ODEMethod = Literal["euler", "midpoint"]
EVALUATIONS_PER_STEP: dict[str, int] = {"euler": 1, "midpoint": 2}

# v(x, t): x is the state, t a 0-d tensor (the same time for every batch item)
VectorField = Callable[[Tensor, Tensor], Tensor]


def check_steps(steps: int, method: str) -> None:
    """Raise ``ValueError`` naming the fix when ``steps`` or ``method`` is not usable."""
    if method not in EVALUATIONS_PER_STEP:
        raise ValueError(
            f"unknown ODE method {method!r}; choose one of {sorted(EVALUATIONS_PER_STEP)}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")


def solve_ode(
    field: VectorField,
    x0: Tensor,
    *,
    steps: int,
    method: ODEMethod = "euler",
    t0: float = 0.0,
    t1: float = 1.0,
) -> Tensor:
    """Integrate ``dx/dt = field(x, t)`` from ``t0`` to ``t1`` in ``steps`` equal steps.

    Args:
        field: the vector field ``v(x, t)``; called exactly
            ``steps * EVALUATIONS_PER_STEP[method]`` times.
        x0: the initial state (any shape).
        steps: number of steps (>= 1).
        method: ``"euler"`` or ``"midpoint"``.
        t0, t1: the integration interval.

    Returns:
        The state at ``t1``, shaped like ``x0``.
    """
    check_steps(steps, method)
    # times as exact fractions of the grid, so the last step ends exactly at t1
    grid = torch.linspace(t0, t1, steps + 1, dtype=torch.float64).tolist()
    x = x0
    for k in range(steps):
        t, h = grid[k], grid[k + 1] - grid[k]
        t_now = torch.tensor(t, device=x.device, dtype=x.dtype)
        if method == "euler":
            x = x + h * field(x, t_now)
        else:
            half = x + (h / 2) * field(x, t_now)
            t_mid = torch.tensor(t + h / 2, device=x.device, dtype=x.dtype)
            x = x + h * field(half, t_mid)
    return x
