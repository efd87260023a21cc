"""Exponential moving average of a model's weights, for evaluation and release.

The EMA keeps a shadow copy of the parameters (averaged) and of the persistent buffers
(copied, so e.g. BatchNorm statistics match the live model), and never wraps the model: hand it the
unwrapped module (``unwrap_model``) under DDP, whose parameters are the very tensors the
optimizer updates.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(2, 2)
    >>> ema = EMA(model, decay=0.9)
    >>> ema.update()  # after each optimizer step
    >>> with ema.average_parameters():
    ...     y = model(torch.zeros(1, 2))  # evaluated with the averaged weights
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["EMA"]

_PARAM = "params."
_BUFFER = "buffers."


def _persistent_buffers(model: nn.Module) -> dict[str, Tensor]:
    # Non-persistent buffers (windows, filterbanks) are constants derived from the config:
    # nothing to average or checkpoint.
    keys = model.state_dict(keep_vars=True).keys()
    return {n: b for n, b in model.named_buffers() if n in keys}


def _shadow_dtype(t: Tensor) -> torch.dtype:
    # Averaging in half precision loses the small (1 - decay) increments entirely, so the
    # shadow of a low-precision float parameter is kept in float32.
    if t.is_floating_point() and t.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return t.dtype


class EMA:
    """Shadow weights ``ema = decay * ema + (1 - decay) * param``, updated after optimizer steps.

    Args:
        model: the (unwrapped) module to average; the EMA reads its parameters by name at
            every update, so it follows the module across ``.to(device)``.
        decay: the decay per averaging update (the largest it gets with warmup).
        update_after_step: for the first this many ``update()`` calls the shadow simply
            copies the model (early weights are not worth remembering).
        update_every: average on every n-th call only (saves time on big models); the decay
            is per averaging update, not per call.
        warmup: ``"none"`` uses ``decay`` from the start; ``"power"`` ramps it as
            ``1 - (1 + t / inv_gamma) ** -power`` over averaging updates t, capped at
            ``decay`` (Karras et al. 2023 / ema-pytorch), so a young EMA is not dominated by
            the random initialisation.
        inv_gamma: warmup time scale (``"power"`` only).
        power: warmup exponent (``"power"`` only; 2/3 suits runs of ~1e5 steps, 3/4 ~1e6).
        min_decay: the smallest decay the warmup may give.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        decay: float = 0.999,
        update_after_step: int = 0,
        update_every: int = 1,
        warmup: Literal["none", "power"] = "none",
        inv_gamma: float = 1.0,
        power: float = 2 / 3,
        min_decay: float = 0.0,
    ):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        if update_after_step < 0 or update_every < 1:
            raise ValueError("update_after_step must be >= 0 and update_every >= 1")
        if warmup not in ("none", "power"):
            raise ValueError(f"warmup must be 'none' or 'power', got {warmup!r}")
        if not 0.0 <= min_decay <= decay:
            raise ValueError(f"min_decay must be in [0, decay], got {min_decay}")
        self.model = model
        self.decay = decay
        self.update_after_step = update_after_step
        self.update_every = update_every
        self.warmup = warmup
        self.inv_gamma = inv_gamma
        self.power = power
        self.min_decay = min_decay
        # update() calls so far, and the averaging updates among them.
        self.step = 0
        self.num_updates = 0
        with torch.no_grad():
            self.shadow_params = {
                n: p.detach().clone().to(_shadow_dtype(p)) for n, p in model.named_parameters()
            }
            self.shadow_buffers = {
                n: b.detach().clone() for n, b in _persistent_buffers(model).items()
            }

    def current_decay(self) -> float:
        """The decay the next averaging update uses."""
        if self.warmup == "none":
            return self.decay
        value = 1.0 - (1.0 + self.num_updates / self.inv_gamma) ** -self.power
        return min(self.decay, max(self.min_decay, value))

    def _named(self, model: nn.Module | None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        model = self.model if model is None else model
        params: dict[str, Tensor] = dict(model.named_parameters())
        buffers = _persistent_buffers(model)
        if (
            params.keys() != self.shadow_params.keys()
            or buffers.keys() != self.shadow_buffers.keys()
        ):
            raise ValueError(
                f"{type(model).__name__} does not have the parameters/buffers this EMA was built "
                "from (pass the unwrapped module the EMA was created with)"
            )
        return params, buffers

    @torch.no_grad()
    def update(self) -> None:
        """Fold the model's current weights into the average; call after each optimizer step."""
        params, buffers = self._named(None)
        self.step += 1
        if self.step <= self.update_after_step:
            self._copy(params, self.shadow_params)
        elif (self.step - self.update_after_step) % self.update_every == 0:
            weight = 1.0 - self.current_decay()
            shadows = list(self.shadow_params.values())
            news = [params[n].detach().to(s.device, s.dtype) for n, s in self.shadow_params.items()]
            floats = [(s, p) for s, p in zip(shadows, news) if s.is_floating_point()]
            if floats:
                s_list, p_list = map(list, zip(*floats))
                torch._foreach_lerp_(s_list, p_list, weight)
            for s, p in zip(shadows, news):
                if not s.is_floating_point():
                    s.copy_(p)
            self.num_updates += 1
        else:
            return
        self._copy(buffers, self.shadow_buffers)

    @staticmethod
    def _copy(source: dict[str, Tensor], target: dict[str, Tensor]) -> None:
        for name, t in target.items():
            t.copy_(source[name].detach())

    @torch.no_grad()
    def copy_to(self, model: nn.Module | None = None) -> None:
        """Overwrite the weights of ``model`` (default: the tracked model) with the EMA."""
        params, buffers = self._named(model)
        for name, s in self.shadow_params.items():
            params[name].copy_(s)
        for name, s in self.shadow_buffers.items():
            buffers[name].copy_(s)

    @contextmanager
    def average_parameters(self, model: nn.Module | None = None) -> Iterator[nn.Module]:
        """Run the block with the EMA weights in ``model``; its own weights come back after.

        Yields the model. The swap is in place (no second copy of the module), so the
        block must not step an optimizer on it.
        """
        target = self.model if model is None else model
        params, buffers = self._named(target)
        with torch.no_grad():
            backup = {n: t.detach().clone() for n, t in (*params.items(), *buffers.items())}
        self.copy_to(target)
        try:
            yield target
        finally:
            with torch.no_grad():
                for name, t in (*params.items(), *buffers.items()):
                    t.copy_(backup[name])

    def swap(self, model: nn.Module | None = None) -> AbstractContextManager[nn.Module]:
        """Alias of :meth:`average_parameters`."""
        return self.average_parameters(model)

    def state_dict(self) -> dict[str, Tensor]:
        """A flat dict of tensors only (safetensors-able, loadable with ``weights_only``)."""
        state: dict[str, Tensor] = {
            "step": torch.tensor(self.step, dtype=torch.int64),
            "num_updates": torch.tensor(self.num_updates, dtype=torch.int64),
        }
        state.update({_PARAM + n: t for n, t in self.shadow_params.items()})
        state.update({_BUFFER + n: t for n, t in self.shadow_buffers.items()})
        return state

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore from :meth:`state_dict`; keys and shapes must match exactly."""
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise KeyError(
                f"EMA state does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        for name, t in expected.items():
            if name in ("step", "num_updates"):
                continue
            if t.shape != state[name].shape:
                raise ValueError(
                    f"EMA state {name}: shape {tuple(state[name].shape)} != {tuple(t.shape)}"
                )
            t.copy_(state[name])
        self.step = int(state["step"])
        self.num_updates = int(state["num_updates"])

    def to(self, device: torch.device | str) -> EMA:
        """Move the shadow weights (e.g. to the CPU to spare accelerator memory)."""
        self.shadow_params = {n: t.to(device) for n, t in self.shadow_params.items()}
        self.shadow_buffers = {n: t.to(device) for n, t in self.shadow_buffers.items()}
        return self
