"""The optimal-transport conditional probability path of flow matching (Lipman et al. 2023).

Given a prior sample ``x0`` and a data sample ``x1``, the OT path is the straight line

    x_t = (1 - (1 - sigma_min) t) x0 + t x1,           t in [0, 1]

whose (constant) velocity is the regression target of the vector-field network:

    u_t = d x_t / dt = x1 - (1 - sigma_min) x0.

With ``x0 ~ N(mu0, s^2 I)`` this is the path ``p_t(x | x1) = N(t x1 + (1 - (1 - sigma_min) t) mu0,
(1 - (1 - sigma_min) t)^2 s^2 I)`` (Lipman et al. eq. 20-22 with a shifted prior mean): it ends
at ``x1`` with the small spread ``sigma_min s``. ``sigma_min = 0`` is rectified flow.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["ot_interpolate", "ot_velocity"]

# b batch | n frames | d latent dim


def _times(t: Tensor | float, like: Tensor) -> Tensor | float:
    """``(b,)`` times -> ``(b, 1, ..., 1)`` broadcastable against ``like``."""
    if isinstance(t, Tensor) and t.ndim == 1:
        return t.reshape(-1, *([1] * (like.ndim - 1))).to(like)
    return t


def ot_interpolate(x0: Tensor, x1: Tensor, t: Tensor | float, sigma_min: float) -> Tensor:
    """``x_t`` on the OT path from ``x0`` (``t = 0``) to ``x1 + sigma_min x0`` (``t = 1``).

    Args:
        x0: ``(b, n, d)`` prior sample.
        x1: ``(b, n, d)`` data.
        t: a float, or ``(b,)`` one time per batch item.
        sigma_min: the path's spread at ``t = 1`` relative to the prior's.
    """
    t = _times(t, x1)
    return (1 - (1 - sigma_min) * t) * x0 + t * x1


def ot_velocity(x0: Tensor, x1: Tensor, sigma_min: float) -> Tensor:
    """The target ``u = x1 - (1 - sigma_min) x0``: ``d/dt`` of :func:`ot_interpolate`."""
    return x1 - (1 - sigma_min) * x0
