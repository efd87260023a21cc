"""Padded batches of different lengths through a codec, with results independent of the padding.

A codec's convolutions (and, for non-causal models, their look-ahead and the reflect padding
at a clip's end) see the samples past an item's end, so running a padded batch at once would
let the padding leak into the item's last frames. :func:`by_length` runs each group of
equal-length items as one call on exactly their real part, and pads the results with zeros:
item ``i`` gets what it would get alone. A batch whose items are all full (``lengths`` None
or all equal to the padded length) stays one call.
"""

# b batch | c audio channels | t samples | n frames

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from cadence.core.validation import check_lengths

__all__ = ["by_length", "decode_ragged", "encode_ragged"]


def by_length(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    lengths: Tensor | None,
    *,
    axis: int,
    out_axis: int,
    out_length: Callable[[int], int],
) -> Tensor:
    """``fn`` on each group of equal-length items of ``x``, cropped to that length.

    Args:
        fn: a batched function of ``x`` whose output has a time axis ``out_axis``.
        x: ``(b, ...)`` padded inputs whose time axis is ``axis``.
        lengths: ``(b,)`` real steps per item, each in ``[1, x.shape[axis]]`` (None: all full).
        axis: the time axis of ``x``.
        out_axis: the time axis of ``fn``'s output.
        out_length: the output length ``fn`` gives an input of a given length.

    Returns:
        ``fn``'s outputs stacked over the batch, zero past each item's own output; as long
        as ``fn`` of the whole ``x``.
    """
    if lengths is None:
        return fn(x)
    full = x.shape[axis]
    lengths = check_lengths(lengths, x.shape[0], full, min_length=1)
    if bool((lengths == full).all()):
        return fn(x)
    out: Tensor | None = None
    for length in torch.unique(lengths).tolist():
        rows = (lengths == length).nonzero().flatten()
        y = fn(x[rows.to(x.device)].narrow(axis, 0, length))
        if out is None:
            shape = list(y.shape)
            shape[0], shape[out_axis] = x.shape[0], out_length(full)
            out = y.new_zeros(shape)
        out.narrow(out_axis, 0, y.shape[out_axis])[rows.to(out.device)] = y
    assert out is not None  # not every item is full, so there was at least one group
    return out


def encode_ragged(
    fn: Callable[[Tensor], Tensor],
    audio: Tensor,
    lengths: Tensor | None,
    *,
    num_frames: Callable[[int], int],
) -> Tensor:
    """``fn``: ``(b, c, t)`` audio -> ``(b, n, ...)`` frames, each item on its ``lengths[i]`` samples."""
    return by_length(fn, audio, lengths, axis=-1, out_axis=1, out_length=num_frames)


def decode_ragged(
    fn: Callable[[Tensor], Tensor], frames: Tensor, lengths: Tensor | None, *, hop_length: int
) -> Tensor:
    """``fn``: ``(b, n, ...)`` frames -> ``(b, c, n * hop_length)`` audio, each item on its ``lengths[i]`` frames."""
    return by_length(fn, frames, lengths, axis=1, out_axis=-1, out_length=lambda n: n * hop_length)
