"""Checks of discrete ids and lengths, with errors that name the problem and the fix.

Every model that takes tokens, codes or phonemes checks them the same way, here: integer
dtype, the expected rank, and values inside the vocabulary on the real (unpadded) positions.
Padding may hold anything. A value outside the vocabulary almost always means the ids were
made by another tokenizer or codec than the model was trained on, so the message says that.
"""

# b batch | n positions

from __future__ import annotations

import torch
from torch import Tensor

from .data.collate import lengths_to_mask

__all__ = ["IdRangeError", "check_ids", "check_lengths"]


class IdRangeError(ValueError):
    """Token, code or phoneme ids that are not integers inside the model's vocabulary."""


def check_ids(
    ids: Tensor,
    vocab_size: int,
    *,
    name: str,
    ndim: int | None = None,
    mask: Tensor | None = None,
    lengths: Tensor | None = None,
    hint: str = "were they made with another tokenizer or codec than the one this model was trained for?",
    error: type[ValueError] = IdRangeError,
) -> Tensor:
    """Refuse ids that are not integers in ``[0, vocab_size)``; returns them as ``torch.long``.

    Args:
        ids: ``(b, n, ...)`` integer tensor.
        vocab_size: the vocabulary size; valid ids are ``0 .. vocab_size - 1``.
        name: what the ids are, for the message ("semantic tokens", "prompt_codes").
        ndim: the rank required, if any.
        mask: ``(b, n)`` bool, True at real positions; only those are range-checked.
        lengths: ``(b,)`` real positions per row (an alternative to ``mask``).
        hint: the likely cause and fix, appended to a range error.
        error: the exception class raised (a ValueError subclass).
    """
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer ids, got {type(ids).__name__}")
    if ndim is not None and ids.ndim != ndim:
        axes = {1: "(n,)", 2: "(b, n)", 3: "(b, n, q)"}.get(ndim, f"{ndim} axes")
        extra = f"; add a batch axis: {name}[None]" if ids.ndim == ndim - 1 else ""
        raise error(f"{name} must be {axes}, got shape {tuple(ids.shape)}{extra}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise error(f"{name} must hold integer ids, got dtype {ids.dtype}; use .long()")
    if lengths is not None:
        mask = lengths_to_mask(lengths.to(ids.device), ids.shape[1])
    real = ids if mask is None else ids[mask.to(ids.device)]
    if real.numel():
        lo, hi = int(real.min()), int(real.max())
        if lo < 0 or hi >= vocab_size:
            raise error(
                f"{name} hold values in [{lo}, {hi}] but the vocabulary is [0, {vocab_size}); {hint}"
            )
    return ids.long()


def check_lengths(
    lengths: Tensor | None,
    batch: int,
    max_length: int,
    *,
    name: str = "lengths",
    min_length: int = 0,
    device: torch.device | str | None = "cpu",
) -> Tensor:
    """``(b,)`` lengths in ``[min_length, max_length]``; None means every row is full.

    Returns them as ``torch.long`` on ``device`` (the host by default, so that callers can
    read them without a device sync).
    """
    if lengths is None:
        return torch.full((batch,), max_length, dtype=torch.long, device=device)
    lengths = torch.as_tensor(lengths).detach().to(device=device, dtype=torch.long)
    if lengths.shape != (batch,):
        raise ValueError(f"{name} must be (b,) = ({batch},), got shape {tuple(lengths.shape)}")
    if batch and (int(lengths.min()) < min_length or int(lengths.max()) > max_length):
        raise ValueError(f"{name} must lie in [{min_length}, {max_length}], got {lengths.tolist()}")
    return lengths
