"""Batching variable-length items: pad, and say with a mask which positions are real.

Masks are bool with True = keep (a real sample or frame, not padding), as everywhere in
Cadence.
"""

# b batch | c channels | t samples | n frames

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["collate_audio", "collate_sequences", "lengths_to_mask", "pad_sequences"]


_NUMBER = (bool, int, float)


def lengths_to_mask(lengths: Tensor, max_length: int | None = None) -> Tensor:
    """``(b,)`` lengths -> ``(b, max_length)`` bool mask, True on the first ``length`` positions."""
    if max_length is None:
        max_length = int(lengths.max()) if lengths.numel() else 0
    return torch.arange(max_length, device=lengths.device) < lengths[:, None]


def pad_sequences(sequences: Sequence[Tensor], pad_value: float = 0) -> tuple[Tensor, Tensor]:
    """Pad ``(n_i, ...)`` tensors along their first axis into one batch.

    Args:
        sequences: tensors with the same trailing shape and dtype; ``n_i`` may be 0.
        pad_value: value written into the padding.

    Returns:
        ``(padded, mask)``: padded ``(b, n_max, ...)`` and mask ``(b, n_max)`` bool, True = keep.
    """
    if len(sequences) == 0:
        raise ValueError("pad_sequences needs at least one sequence")
    first = sequences[0]
    for i, seq in enumerate(sequences):
        if seq.ndim == 0:
            raise ValueError(f"sequence {i} is a scalar; sequences must be (n, ...)")
        if seq.shape[1:] != first.shape[1:] or seq.dtype != first.dtype:
            raise ValueError(
                f"sequence {i} has trailing shape {tuple(seq.shape[1:])} and dtype {seq.dtype}, "
                f"but sequence 0 has {tuple(first.shape[1:])} and {first.dtype}; they must agree"
            )
    lengths = torch.tensor([len(seq) for seq in sequences], dtype=torch.long)
    n_max = int(lengths.max())
    padded = first.new_full((len(sequences), n_max, *first.shape[1:]), pad_value)
    for i, seq in enumerate(sequences):
        padded[i, : len(seq)] = seq
    return padded, lengths_to_mask(lengths, n_max).to(first.device)


def _collate_rest(items: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """Numbers become a ``(b,)`` tensor, same-shape tensors are stacked, the rest stay lists."""
    out: dict[str, Any] = {}
    for key in keys:
        values = [item[key] for item in items]
        if all(isinstance(v, _NUMBER) for v in values):
            out[key] = torch.tensor(values)
        elif all(isinstance(v, Tensor) for v in values) and len({v.shape for v in values}) == 1:
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out


def _check_same_keys(items: Sequence[Mapping[str, Any]]) -> list[str]:
    if len(items) == 0:
        raise ValueError("cannot collate an empty list of items")
    keys = list(items[0])
    for i, item in enumerate(items):
        if set(item) != set(keys):
            raise KeyError(
                f"item {i} has keys {sorted(item)} but item 0 has {sorted(keys)}; "
                "items in one batch must have the same fields"
            )
    return keys


def collate_audio(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch :class:`~cadence.core.data.AudioDataset` items (a ``DataLoader`` ``collate_fn``).

    Args:
        items: dicts with ``"audio"`` ``(c, t_i)`` and optionally ``"length"`` (valid samples,
            default ``t_i``); any other fields.

    Returns:
        ``"audio"`` ``(b, c, t_max)`` zero-padded, ``"lengths"`` ``(b,)`` long, ``"mask"``
        ``(b, t_max)`` bool (True = real sample); other fields: numbers as a ``(b,)`` tensor,
        equal-shape tensors stacked, everything else (paths, text, lists) as a list.
    """
    keys = _check_same_keys(items)
    if "audio" not in keys:
        raise KeyError(f"collate_audio needs an 'audio' field; items have {sorted(keys)}")
    # (t, c) so that the padded axis comes first for pad_sequences
    audio, _ = pad_sequences([item["audio"].transpose(0, 1) for item in items])
    audio = audio.transpose(1, 2).contiguous()  # (b, t, c) -> (b, c, t)
    lengths = torch.tensor(
        [int(item.get("length", item["audio"].shape[-1])) for item in items], dtype=torch.long
    )
    batch = {
        "audio": audio,
        "lengths": lengths,
        "mask": lengths_to_mask(lengths, audio.shape[-1]),
    }
    batch.update(_collate_rest(items, [k for k in keys if k not in ("audio", "length")]))
    return batch


def collate_sequences(
    items: Sequence[Mapping[str, Any]],
    keys: Sequence[str] | None = None,
    *,
    pad_value: float | Mapping[str, float] = 0,
    shared_mask: bool = False,
) -> dict[str, Any]:
    """Batch token / code / latent items such as :class:`~cadence.core.data.ShardReader` gives.

    Args:
        items: dicts holding ``(n_i, ...)`` tensors (e.g. ``"codes"`` ``(n, q)``, ``"tokens"``
            ``(n,)``, ``"latents"`` ``(n, d)``) and other fields (``"id"``).
        keys: the fields to pad; default every tensor field with at least one axis.
        pad_value: one value for all padded fields, or a mapping ``field -> value``.
        shared_mask: when the padded fields have the same length in every item (codes and
            latents of one codec), give one ``"mask"`` ``(b, n_max)`` and ``"lengths"``
            ``(b,)`` instead of one per field; raises if the lengths differ.

    Returns:
        Each padded field ``(b, n_max, ...)``; per field ``"<key>_mask"`` ``(b, n_max)`` bool and
        ``"<key>_lengths"`` ``(b,)`` (or the shared ``"mask"`` / ``"lengths"``); other fields
        collated as in :func:`collate_audio` (ids stay a list).
    """
    all_keys = _check_same_keys(items)
    if keys is None:
        keys = [k for k in all_keys if isinstance(items[0][k], Tensor) and items[0][k].ndim >= 1]
    if not keys:
        raise ValueError(f"no sequence fields to pad among {sorted(all_keys)}")
    missing = [k for k in keys if k not in all_keys]
    if missing:
        raise KeyError(f"fields {missing} not in the items (they have {sorted(all_keys)})")

    batch: dict[str, Any] = {}
    lengths: dict[str, Tensor] = {}
    for key in keys:
        value = pad_value[key] if isinstance(pad_value, Mapping) else pad_value
        padded, mask = pad_sequences([item[key] for item in items], value)
        batch[key] = padded
        lengths[key] = mask.sum(1)
        if not shared_mask:
            batch[f"{key}_mask"] = mask
            batch[f"{key}_lengths"] = lengths[key]
    if shared_mask:
        first = keys[0]
        for key in keys[1:]:
            if not torch.equal(lengths[key], lengths[first]):
                raise ValueError(
                    f"shared_mask=True but '{key}' and '{first}' differ in length "
                    f"({lengths[key].tolist()} vs {lengths[first].tolist()}); use per-field masks"
                )
        batch["lengths"] = lengths[first]
        batch["mask"] = lengths_to_mask(lengths[first], batch[first].shape[1])
    batch.update(_collate_rest(items, [k for k in all_keys if k not in keys]))
    return batch
