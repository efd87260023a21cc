"""PNG figures people look at: the trainer's curves, and the two helpers every figure uses.

matplotlib is optional (``pip install "cadence-core[plots]"``) and imported only through
:func:`pyplot`, with the non-interactive Agg backend, so nothing needs a display. Figures are
written atomically (:func:`save_figure`). Spectrogram pictures live with the apps that draw them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from .io import atomic_file

__all__ = ["pyplot", "save_curves_png", "save_figure"]


def pyplot():
    """matplotlib.pyplot on the Agg backend, with an install hint when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            'writing PNG figures needs matplotlib: pip install "cadence-core[plots]"'
        ) from err
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write a matplotlib figure as PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


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
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.5), dpi=100)
    for name, values in curves.items():
        ys = torch.as_tensor(values, dtype=torch.float64).cpu().numpy()
        xs = list(steps)[: len(ys)] if steps is not None else range(1, len(ys) + 1)
        ax.plot(xs, ys, label=name)
    ax.set_xlabel(xlabel)
    if log_y:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
