"""Semantic tokens chunk by chunk: the tokens of ``generate_long``, as they are sampled.

:func:`stream_tokens` runs the windows :func:`~cadence.audiolm.long_form.slide_windows`
would run for one row (a window continues the last ``keep`` tokens once the first is full)
with the same :class:`~cadence.audiolm.sampling_loop.SamplingLoop`, the same prompts and the
same random draws, and yields the new tokens as soon as ``chunk_frames`` of them exist. So
``torch.cat(list(stream_tokens(...)), 1)`` equals ``generate_long(...)``'s continuation, and
``generate``'s where everything fits in one window, token for token, for the same generator.
The stream holds at most one window of tokens, however long it runs.
"""

# b batch (1) | s semantic frames

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from cadence.core.validation import check_lengths

from .long_form import check_window
from .sampling import SamplingOptions

if TYPE_CHECKING:
    from .semantic import SemanticTransformer

__all__ = ["stream_tokens"]


def stream_tokens(
    model: SemanticTransformer,
    prompt: Tensor,
    *,
    new_frames: int,
    chunk_frames: int,
    window_frames: int | None = None,
    keep_frames: int | None = None,
    cond: Tensor | None = None,
    cond_mask: Tensor | None = None,
    sampling: SamplingOptions | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[Tensor]:
    """Yield ``(1, n)`` chunks of the ``new_frames`` tokens that continue ``prompt`` ``(1, p)``.

    Every chunk but the last holds ``chunk_frames`` tokens; with ``sampling.allow_eos`` the
    stream ends early where the LM ends the utterance. ``window_frames`` / ``keep_frames``:
    as in ``generate_long`` (default the model's context and half of it).
    """
    prompt = model._tokens(prompt, "prompt")
    if prompt.shape[0] != 1:
        raise ValueError(
            f"stream_tokens continues one prompt, shape (1, p); got {tuple(prompt.shape)}"
        )
    for name, value in (("new_frames", new_frames), ("chunk_frames", chunk_frames)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    window = window_frames or model.config.max_frames
    keep = keep_frames if keep_frames is not None else window // 2
    check_window(window, keep)
    sampling = sampling if sampling is not None else SamplingOptions()
    device = prompt.device
    model.check_condition(cond, cond_mask, 1)
    history = prompt  # the last `window` tokens at most
    offset = 0  # tokens before history[0]
    length, total = prompt.shape[1], prompt.shape[1] + new_frames
    pending: list[Tensor] = []
    ready = 0
    was_training = model.training
    model.eval()
    try:
        while length < total:
            start = 0 if length < window else length - keep
            end = min(start + window, total)
            window_prompt = history[:, start - offset : length - offset]
            prefix, prefix_lengths = model._prefix(1, device)
            p = window_prompt.shape[1]
            loop = model.sampling_loop(
                prefix, prefix_lengths, window_prompt[..., None],
                check_lengths(None, 1, p, name="prompt_lengths", device=device),
                torch.tensor([end - start], device=device),
                cond=cond, cond_mask=cond_mask, sampling=sampling, generator=generator,
            )  # fmt: skip
            taken = 0
            while not loop.done:
                loop.run(frames=chunk_frames - ready)
                real = int(loop.frames_so_far()[0])  # frames before an EOS, if one came
                new = loop.tokens[:, taken:real]
                taken = real
                pending.append(new)
                ready += new.shape[1]
                if ready >= chunk_frames:
                    yield torch.cat(pending, dim=1)
                    pending, ready = [], 0
            history = torch.cat([history[:, start - offset : length - offset], loop.tokens[:, :taken]], 1)  # fmt: skip
            offset, length = start, length + taken
            if start + p + taken < end:  # the LM ended the utterance
                break
        if ready:
            yield torch.cat(pending, dim=1)
    finally:
        model.train(was_training)
