"""Spectrogram pictures of what the pipelines generate (PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from cadence.core.features import log_mel_spectrogram
from cadence.core.plots import pyplot, save_figure

__all__ = ["save_spectrogram_png"]


def save_spectrogram_png(
    audio: Tensor,
    sample_rate: int,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    n_mels: int = 80,
    hop_length: int = 256,
    sections: Sequence[tuple[str, float]] = (),
) -> Path:
    """Write the log-mel spectrogram of ``(t,)``, ``(c, t)`` or ``(1, c, t)`` audio as a PNG.

    ``sections``: ``(label, start_seconds)`` pairs in time order, e.g.
    ``[("prompt", 0.0), ("generated", 2.0)]``; each later start is marked with a dashed line
    and each label is written over its section.
    """
    plt = pyplot()
    mono = audio.detach().float().cpu().reshape(-1, audio.shape[-1]).mean(0)
    mel = log_mel_spectrogram(mono, sample_rate, n_mels=n_mels, hop_length=hop_length)
    seconds = mono.shape[-1] / sample_rate
    fig, ax = plt.subplots(figsize=(max(4.0, min(16.0, 2.0 * seconds)), 3.0), dpi=100)
    image = ax.imshow(
        mel.numpy(), origin="lower", aspect="auto", extent=(0, seconds, 0, n_mels), cmap="magma"
    )
    ends = [start for _, start in sections[1:]] + [seconds]
    for (label, start), end in zip(sections, ends):
        if start > 0:
            ax.axvline(start, color="white", linestyle="--", linewidth=1.5)
        ax.text((start + end) / 2, n_mels * 0.92, label, color="white", ha="center")
    ax.set_xlabel("seconds")
    ax.set_ylabel("mel band")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, label="log magnitude")
    return save_figure(fig, path)
