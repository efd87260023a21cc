"""AdamW with weight decay only where it regularises: matrices and kernels.

Decaying biases, normalisation gains and embeddings towards zero does not regularise the
function the network computes (norm gains and biases set scales and offsets; embeddings are
lookup tables whose rows are updated sparsely), so they go in a group with no decay, as in
nanoGPT (``configure_optimizers``) and most transformer trainers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["build_optimizer", "parameter_groups"]

# Module types whose every parameter is kept out of weight decay.
_NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.Embedding,
    nn.EmbeddingBag,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.batchnorm._NormBase,
)
if hasattr(nn, "RMSNorm"):
    _NO_DECAY_MODULES += (nn.RMSNorm,)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split the trainable parameters of ``model`` into a decayed and an undecayed group.

    Undecayed: every parameter with fewer than 2 dims (biases, norm gains, scalars) and every
    parameter of an embedding or normalisation layer. Frozen parameters are left out.
    """
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, _NO_DECAY_MODULES):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay: list[nn.Parameter] = []
    keep: list[nn.Parameter] = []
    for p in model.parameters():  # shared parameters come once
        if not p.requires_grad:
            continue
        (keep if p.ndim < 2 or id(p) in no_decay else decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if keep:
        groups.append({"params": keep, "weight_decay": 0.0})
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    return groups


def build_optimizer(
    params: nn.Module | Iterable[dict[str, Any]],
    *,
    learning_rate: float,
    betas: tuple[float, float] = (0.9, 0.99),
    weight_decay: float = 0.0,
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW over a model (grouped by :func:`parameter_groups`) or explicit param groups.

    Explicit groups keep any per-group ``lr`` / ``weight_decay`` they set; the rest default
    to the arguments here.
    """
    groups = (
        parameter_groups(params, weight_decay) if isinstance(params, nn.Module) else list(params)
    )
    return torch.optim.AdamW(
        groups, lr=learning_rate, betas=betas, weight_decay=weight_decay, eps=eps
    )
