"""PNG figures people look at: spectrograms and training curves.

matplotlib is optional (``pip install "cadence-core[plots]"``) and imported only here,
with the non-interactive Agg backend, so nothing needs a display.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from .features import log_mel_spectrogram

__all__ = ["save_curves_png", "save_spectrogram_png"]


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            'writing PNG figures needs matplotlib: pip install "cadence-core[plots]"'
        ) from err
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | os.PathLike) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


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
    plt = _pyplot()
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
    return _save(plt, fig, path)


def save_curves_png(
    curves: Mapping[str, Sequence[float] | Tensor],
    path: str | os.PathLike,
    *,
    steps: Sequence[int] | None = None,
    xlabel: str = "step",
    title: str | None = None,
    log_y: bool = False,
) -> Path:
    """Write named curves (e.g. ``{"train loss": [...], "valid loss": [...]}``) as a PNG.

    ``steps`` gives the x value of each point (shared by all curves); by default 1, 2, ...
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.5), dpi=100)
    for name, values in curves.items():
        values = torch.as_tensor(values, dtype=torch.float64).cpu().numpy()
        xs = list(steps)[: len(values)] if steps is not None else range(1, len(values) + 1)
        ax.plot(xs, values, label=name)
    ax.set_xlabel(xlabel)
    if log_y:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)
