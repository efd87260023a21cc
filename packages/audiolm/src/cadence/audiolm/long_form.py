"""Long-form generation (AudioLM sec. 4.4): a window slides over the target stream.

Each window is prompted with the last ``keep`` frames generated so far (AudioLM continues
10 s windows by re-prompting the same way) and runs to ``window`` frames or the row's total.
The schedule is per row, so rows with prompts (or inputs) of different lengths share one
batch: row ``i``'s windows depend on its own lengths only, and its result is what it would
be alone. A row that stops before the end of its window emitted an end of sequence: it ends
there, whichever window it was in. Only the rows still running enter the next window.
"""

# b batch | n target frames | q target levels

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from cadence.core.data import lengths_to_mask

from .transformer import GenerateOutput

__all__ = ["check_window", "select_rows", "slide_windows", "take_rows"]

# run(rows, starts, ends, prompt, prompt_lengths) -> the window's GenerateOutput, prompt included:
# rows (b',) the batch rows of this window, starts / ends their window bounds in target
# frames, prompt (b', p, q) the frames of [start, generated so far) of each row.
WindowRunner = Callable[[Tensor, list[int], list[int], Tensor, Tensor], GenerateOutput]


def check_window(window: int, keep: int) -> None:
    if not 0 <= keep < window:
        raise ValueError(f"keep_frames must be in [0, window_frames={window}), got {keep}")


def take_rows(x: Tensor, starts: list[int], lengths: list[int]) -> tuple[Tensor, Tensor]:
    """``x[i, starts[i] : starts[i] + lengths[i]]`` of each row of ``(b, n, ...)``, right-padded.

    Returns:
        ``(slices, lengths)``: ``(b, max(lengths), ...)`` with 0 after each row's end, and
        the lengths as a ``(b,)`` long tensor on ``x``'s device.
    """
    device = x.device
    length = torch.tensor(lengths, dtype=torch.long, device=device)
    width = max(lengths, default=0)
    if width == 0:
        return x[:, :0], length
    index = torch.tensor(starts, dtype=torch.long, device=device)[:, None] + torch.arange(
        width, device=device
    )
    index = index.clamp(max=x.shape[1] - 1)
    valid = lengths_to_mask(length, width)
    trailing = x.shape[2:]
    gathered = x.gather(
        1, index.view(*index.shape, *([1] * len(trailing))).expand(-1, -1, *trailing)
    )
    return gathered.masked_fill(~valid.view(*valid.shape, *([1] * len(trailing))), 0), length


def slide_windows(
    prompt: Tensor,
    prompt_lengths: Tensor,
    totals: list[int],
    *,
    window: int,
    keep: int,
    run: WindowRunner,
) -> GenerateOutput:
    """Generate every row to ``totals[i]`` frames (or its EOS) window by window.

    Args:
        prompt: ``(b, p, q)`` frames to continue, right-padded (``p`` may be 0).
        prompt_lengths: ``(b,)`` real prompt frames per row.
        totals: frames wanted per row, prompt included (a longer prompt is kept whole).
        window: frames per window; keep: frames of the previous window that prompt the next.
        run: generates one window for a subset of rows (see ``WindowRunner``).

    Returns:
        :class:`GenerateOutput` of prompt + continuation, ``codes`` ``(b, n, q)``.
    """
    check_window(window, keep)
    b, _, q = prompt.shape
    lengths = prompt_lengths.tolist()
    width = max([*totals, *lengths], default=0)
    codes = torch.zeros(b, width, q, dtype=torch.long, device=prompt.device)
    codes[:, : prompt.shape[1]] = prompt[:, :width]
    active = [i for i in range(b) if lengths[i] < totals[i]]
    while active:
        # a row still inside its first window keeps its whole past, later ones the last `keep`
        starts = [0 if lengths[i] < window else lengths[i] - keep for i in active]
        ends = [min(start + window, totals[i]) for start, i in zip(starts, active)]
        rows = torch.tensor(active, dtype=torch.long, device=prompt.device)
        window_prompt, window_lengths = take_rows(
            codes[rows], starts, [lengths[i] - s for s, i in zip(starts, active)]
        )
        out = run(rows, starts, ends, window_prompt, window_lengths)
        running = []
        for j, (i, start, end) in enumerate(zip(active, starts, ends)):
            n = int(out.lengths[j])
            codes[i, lengths[i] : start + n] = out.codes[j, lengths[i] - start : n]
            lengths[i] = start + n
            if n == end - start and lengths[i] < totals[i]:  # neither at its EOS nor done
                running.append(i)
        active = running
    length = torch.tensor(lengths, dtype=torch.long, device=prompt.device)
    width = max(lengths, default=0)
    mask = lengths_to_mask(length, width)
    return GenerateOutput(
        codes=codes[:, :width].masked_fill(~mask[..., None], 0), lengths=length, mask=mask
    )


def select_rows(x: Tensor | None, rows: Tensor) -> Tensor | None:
    """``x[rows]``, or None."""
    return None if x is None else x[rows]
