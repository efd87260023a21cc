"""Learning-rate schedules as multipliers of the base LR, for ``torch.optim.lr_scheduler.LambdaLR``.

Every schedule is a pure function of ``step``, the number of optimizer updates already
taken: the value at ``step`` scales the LR of update ``step + 1``. Warmup is linear and
reaches the full LR on the last warmup update (the first update is not wasted at LR 0);
the decay then runs from ``warmup_steps`` to ``total_steps`` and stays at ``min_lr_ratio``
afterwards.

Example:
    >>> warmup_cosine(0, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    0.1
    >>> round(warmup_cosine(60, warmup_steps=10, total_steps=110, min_lr_ratio=0.1), 6)
    0.55
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = [
    "ScheduleName",
    "build_scheduler",
    "lr_lambda",
    "warmup_constant",
    "warmup_cosine",
    "warmup_linear",
]

ScheduleName = Literal["cosine", "linear", "constant"]


def _check(step: int, warmup_steps: int, total_steps: int | None, min_lr_ratio: float) -> None:
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if total_steps is not None and total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")


def _warmup(step: int, warmup_steps: int) -> float | None:
    """The warmup multiplier, or None once warmup is over."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return None


def _progress(step: int, warmup_steps: int, total_steps: int) -> float:
    """Fraction of the decay phase done, in [0, 1]."""
    return min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))


def warmup_cosine(
    step: int, *, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> float:
    """Linear warmup, then a half cosine from 1 down to ``min_lr_ratio`` at ``total_steps``.

    Args:
        step: optimizer updates already taken.
        warmup_steps: updates of linear warmup (0 = none).
        total_steps: the update at which the decay reaches ``min_lr_ratio``.
        min_lr_ratio: the final LR as a fraction of the base LR.
    """
    _check(step, warmup_steps, total_steps, min_lr_ratio)
    warm = _warmup(step, warmup_steps)
    if warm is not None:
        return warm
    cosine = 0.5 * (1.0 + math.cos(math.pi * _progress(step, warmup_steps, total_steps)))
    return min_lr_ratio + (1.0 - min_lr_ratio) * cosine


def warmup_linear(
    step: int, *, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> float:
    """Linear warmup, then a straight line from 1 down to ``min_lr_ratio`` at ``total_steps``.

    Args: as :func:`warmup_cosine`.
    """
    _check(step, warmup_steps, total_steps, min_lr_ratio)
    warm = _warmup(step, warmup_steps)
    if warm is not None:
        return warm
    return 1.0 - (1.0 - min_lr_ratio) * _progress(step, warmup_steps, total_steps)


def warmup_constant(step: int, *, warmup_steps: int) -> float:
    """Linear warmup, then the base LR for good."""
    _check(step, warmup_steps, None, 0.0)
    warm = _warmup(step, warmup_steps)
    return 1.0 if warm is None else warm


def lr_lambda(
    schedule: ScheduleName, *, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> Callable[[int], float]:
    """The multiplier function of a named schedule, ready for ``LambdaLR``.

    Raises:
        ValueError: for an unknown schedule name or invalid arguments.
    """
    _check(0, warmup_steps, total_steps, min_lr_ratio)

    # Plain nested functions, not partials or callable objects: LambdaLR.state_dict() skips
    # them, so a scheduler's state stays plain numbers (JSON-able, no pickled code).
    if schedule == "cosine":

        def fn(step: int) -> float:
            return warmup_cosine(
                step, warmup_steps=warmup_steps, total_steps=total_steps, min_lr_ratio=min_lr_ratio
            )

    elif schedule == "linear":

        def fn(step: int) -> float:
            return warmup_linear(
                step, warmup_steps=warmup_steps, total_steps=total_steps, min_lr_ratio=min_lr_ratio
            )

    elif schedule == "constant":

        def fn(step: int) -> float:
            return warmup_constant(step, warmup_steps=warmup_steps)

    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose 'cosine', 'linear' or 'constant'")
    return fn


def build_scheduler(
    optimizer: Optimizer,
    schedule: ScheduleName,
    *,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """A ``LambdaLR`` applying the named schedule to every param group of ``optimizer``."""
    fn = lr_lambda(
        schedule, warmup_steps=warmup_steps, total_steps=total_steps, min_lr_ratio=min_lr_ratio
    )
    return LambdaLR(optimizer, fn)
