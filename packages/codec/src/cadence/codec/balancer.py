"""EnCodec's loss balancer: loss weights as fractions of the gradient, not of the loss.

Summing weighted losses makes each weight's effect depend on the scale of its loss's
gradient, which differs by orders of magnitude between a mel loss and a feature-matching
loss and drifts during training. The balancer (Defossez et al. 2022, sec. 3.4; audiocraft's
``Balancer``) instead backpropagates, into the decoder output ``y``,

    g = sum_k  (w_k / sum_j w_j) * total_norm * g_k / <||g_k||>_ema,     g_k = d loss_k / d y

so each loss contributes a share of the gradient proportional to its weight, whatever its
scale. ``<.>_ema`` is a bias-corrected exponential moving average of the gradient norms
(per batch item by default), which keeps one noisy batch from swinging the shares.
"""

# b batch | c channels | t samples

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, autograd

__all__ = ["Balancer"]


class Balancer:
    """Backpropagate several losses through a shared tensor with balanced gradient shares.

    Args:
        weights: loss name -> weight; a loss given to :meth:`backward` must be named here.
        total_norm: the norm the combined gradient targets (EnCodec: 1).
        ema_decay: decay of the gradient-norm average (EnCodec: 0.999).
        per_batch_item: measure norms per batch item and average them (EnCodec), rather
            than one norm over the batch.
        epsilon: guards the division by a gradient norm.
        balance_grads: False turns the balancer into a plain weighted sum (for ablations).

    Example:
        >>> y = torch.randn(2, 1, 8, requires_grad=True)
        >>> balancer = Balancer({"l1": 1.0, "l2": 3.0})
        >>> norms = balancer.backward({"l1": y.abs().mean(), "l2": y.pow(2).mean()}, y)
        >>> sorted(norms)
        ['l1', 'l2']
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        *,
        total_norm: float = 1.0,
        ema_decay: float = 0.999,
        per_batch_item: bool = True,
        epsilon: float = 1e-12,
        balance_grads: bool = True,
    ):
        if not weights:
            raise ValueError("Balancer needs at least one loss weight")
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"loss weights must be >= 0, got {dict(weights)}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.weights = dict(weights)
        self.total_norm = total_norm
        self.ema_decay = ema_decay
        self.per_batch_item = per_batch_item
        self.epsilon = epsilon
        self.balance_grads = balance_grads
        # Bias-corrected EMA (audiocraft's `averager`): total / fix.
        self._total: dict[str, float] = {}
        self._fix: dict[str, float] = {}

    def _average(self, norms: Mapping[str, float], count: int) -> dict[str, float]:
        for key, value in norms.items():
            self._total[key] = self._total.get(key, 0.0) * self.ema_decay + count * value
            self._fix[key] = self._fix.get(key, 0.0) * self.ema_decay + count
        return {key: self._total[key] / self._fix[key] for key in norms}

    def gradient(
        self, losses: Mapping[str, Tensor], output: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """The balanced gradient w.r.t. ``output``, and each loss's averaged gradient norm.

        Updates the norm averages; does not backpropagate.
        """
        unknown = sorted(set(losses) - set(self.weights))
        if unknown:
            raise KeyError(f"losses {unknown} have no weight; known: {sorted(self.weights)}")
        if not losses:
            raise ValueError("no losses to balance")
        grads: dict[str, Tensor] = {}
        norms: dict[str, float] = {}
        for name, loss in losses.items():
            (grad,) = autograd.grad(loss, [output], retain_graph=True, allow_unused=True)
            if grad is None:
                grad = torch.zeros_like(output)
            norm = grad.flatten(1).norm(dim=1).mean() if self.per_batch_item else grad.norm()
            grads[name] = grad
            norms[name] = float(norm)
        count = output.shape[0] if self.per_batch_item else 1
        avg = self._average(norms, count)
        total_weight = sum(self.weights[k] for k in losses)
        out = torch.zeros_like(output)
        for name, grad in grads.items():
            if self.balance_grads:
                scale = (
                    self.weights[name] / total_weight * self.total_norm / (self.epsilon + avg[name])
                )
            else:
                scale = self.weights[name]
            out = out + scale * grad
        return out, avg

    def backward(
        self,
        losses: Mapping[str, Tensor],
        output: Tensor,
        *,
        extra: Tensor | None = None,
    ) -> dict[str, float]:
        """Backpropagate the balanced gradient of ``losses`` through ``output``.

        Args:
            losses: scalar losses, each a function of ``output``.
            output: the tensor the shares are measured at (the decoder output).
            extra: an unbalanced scalar (e.g. the commitment loss, which does not depend on
                ``output``) backpropagated in the same backward pass, as one call keeps DDP
                hooks firing once.

        Returns:
            The averaged gradient norm of each loss (for logging).
        """
        grad, avg = self.gradient(losses, output)
        tensors, grads = [output], [grad]
        if extra is not None and extra.requires_grad:
            tensors.append(extra)
            grads.append(torch.ones_like(extra))
        autograd.backward(tensors, grads)
        return avg

    def state_dict(self) -> dict[str, dict[str, float]]:
        """The gradient-norm averages (plain floats, JSON-able) for exact resume."""
        return {"total": dict(self._total), "fix": dict(self._fix)}

    def load_state_dict(self, state: Mapping[str, Mapping[str, float]]) -> None:
        self._total = {k: float(v) for k, v in state["total"].items()}
        self._fix = {k: float(v) for k, v in state["fix"].items()}
