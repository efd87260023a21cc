"""Loading the checkpoints a pipeline is made of, with errors a user can act on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import torch

from cadence.core.checkpoint import CheckpointError, load_pretrained, read_checkpoint_config

T = TypeVar("T")


class PipelineError(ValueError):
    """A pipeline, one of its checkpoints or one of its inputs is unusable (the message says how to fix it)."""


def load_component(
    directory: str | os.PathLike,
    role: str,
    expected: type[T] | tuple[type, ...] | None = None,
    *,
    device: str | torch.device = "cpu",
) -> Any:
    """Load the Cadence checkpoint in ``directory`` for ``role`` (e.g. "codec"), in eval mode.

    ``expected`` is the class (or classes) the role needs; a checkpoint of another model is
    refused with a message naming both, before any weights are read.
    """
    directory = Path(directory)
    try:
        header = read_checkpoint_config(directory)
    except CheckpointError as err:
        raise PipelineError(f"{role}: {err}") from err
    classes = expected if isinstance(expected, tuple) else (expected,) if expected else ()
    saved = header["class"]
    try:
        model = load_pretrained(directory, device=device)
    except CheckpointError as err:
        raise PipelineError(f"{role}: {err}") from err
    if classes and not isinstance(model, classes):
        names = " or ".join(c.__name__ for c in classes)
        raise PipelineError(
            f"{role}: {directory} holds a {saved}, but the {role} must be a {names}; "
            "point the pipeline at the right checkpoint directory"
        )
    return model.eval()
