"""Resume checkpoints shared by every Cadence training loop (the core Trainer, the codec GAN loop).

A resume checkpoint is ``output_dir/checkpoints/step-XXXXXXXX/``: accelerate's state (models,
optimizers, RNG), the EMA as safetensors, and ``trainer_state.json`` (position in the data,
schedules, loop-specific state). It is written into ``step-XXXXXXXX.tmp`` and renamed, so a
crash never leaves a half-written checkpoint that ``"latest"`` would pick.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from ..io import swap_directory
from .ema import EMA

__all__ = [
    "CHECKPOINTS_DIR",
    "EMA_NAME",
    "STATE_FORMAT_VERSION",
    "TRAINER_STATE_NAME",
    "epoch_batches",
    "fold_seed",
    "latest_checkpoint",
    "load_resume_checkpoint",
    "prune_checkpoints",
    "reseed",
    "save_resume_checkpoint",
]

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
TRAINER_STATE_NAME = "trainer_state.json"
EMA_NAME = "ema.safetensors"
STATE_FORMAT_VERSION = 1
CORE_TRAINER_KIND = "cadence.core.Trainer"  # checkpoints without a "kind" were written by it

_STEP_DIR = re.compile(r"^step-(\d+)$")


def fold_seed(*keys: int) -> int:
    """A 32-bit seed derived from several integers (no collisions between key tuples)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def reseed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete resume checkpoint under ``output_dir/checkpoints``, if any."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _STEP_DIR.match(p.name)) and (p / TRAINER_STATE_NAME).exists()
    ]
    return max(found)[1] if found else None


def prune_checkpoints(checkpoint_dir: Path, keep_last: int | None, keep: Path) -> None:
    """Delete all but the newest ``keep_last`` step directories (never ``keep``)."""
    if keep_last is None:
        return
    found = sorted(
        (int(m.group(1)), p) for p in checkpoint_dir.iterdir() if (m := _STEP_DIR.match(p.name))
    )
    for _, path in found[:-keep_last]:
        if path != keep:
            shutil.rmtree(path, ignore_errors=True)


def save_resume_checkpoint(
    accelerator: Accelerator,
    checkpoint_dir: Path,
    *,
    step: int,
    kind: str,
    state: dict[str, Any],
    ema: EMA | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write ``checkpoint_dir/step-XXXXXXXX`` atomically; call on every process.

    ``state`` is the loop's JSON-able state (step, epoch, schedules, ...); ``kind`` names the
    loop so that a checkpoint is never resumed by another one.
    """
    acc = accelerator
    final = checkpoint_dir / f"step-{step:08d}"
    tmp = final.with_name(final.name + ".tmp")
    if acc.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    acc.wait_for_everyone()
    acc.save_state(str(tmp), safe_serialization=True)
    # Every process writes its own RNG file into tmp; all must be done before the rename.
    acc.wait_for_everyone()
    if acc.is_main_process:
        if ema is not None:
            save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(tmp / EMA_NAME))
        record = {
            "format_version": STATE_FORMAT_VERSION,
            "kind": kind,
            "num_processes": acc.num_processes,
        }
        record |= state
        (tmp / TRAINER_STATE_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        swap_directory(tmp, final)
        prune_checkpoints(checkpoint_dir, keep_last, keep=final)
    acc.wait_for_everyone()
    return final


def load_resume_checkpoint(
    accelerator: Accelerator,
    checkpoint: str | os.PathLike,
    *,
    output_dir: str | os.PathLike,
    kind: str,
    ema: EMA | None = None,
) -> tuple[Path, dict[str, Any], bool] | None:
    """Restore accelerate's state (and the EMA) from a checkpoint or ``"latest"``.

    Returns ``(path, state, ema_loaded)``, or None for ``"latest"`` when ``output_dir`` holds
    no checkpoint yet. The loop restores its own fields from ``state``; when ``ema_loaded`` is
    False (a checkpoint saved without EMA) it should restart its EMA from the loaded weights.
    """
    if str(checkpoint) == "latest":
        path = latest_checkpoint(output_dir)
        if path is None:
            logger.info("no checkpoint under %s; starting from scratch", output_dir)
            return None
    else:
        path = Path(checkpoint)
    state_file = path / TRAINER_STATE_NAME
    if not state_file.exists():
        raise FileNotFoundError(
            f"{path} is not a Cadence trainer checkpoint (no {TRAINER_STATE_NAME})"
        )
    state = json.loads(state_file.read_text())
    written_by = state.get("kind", CORE_TRAINER_KIND)
    if written_by != kind:
        raise ValueError(
            f"{path} was written by {written_by}, not {kind}; resume it with that trainer"
        )
    if state.get("format_version", 0) > STATE_FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer Cadence; upgrade to resume from it")
    if state["num_processes"] != accelerator.num_processes:
        logger.warning(
            "resuming a %d-process run on %d processes: the data order will differ",
            state["num_processes"],
            accelerator.num_processes,
        )
    # weights_only: the optimizer and RNG pickles are rebuilt from tensors and plain
    # containers only (accelerate allow-lists the numpy types its RNG state needs).
    accelerator.load_state(str(path), load_kwargs={"weights_only": True})
    ema_loaded = False
    if ema is not None:
        ema_file = path / EMA_NAME
        if ema_file.exists():
            ema.load_state_dict(load_file(str(ema_file)))
            ema_loaded = True
        else:
            logger.warning("%s holds no EMA; starting the EMA from the loaded weights", path)
    return path, state, ema_loaded


def epoch_batches(
    accelerator: Accelerator, loader: Any, *, seed: int, epoch: int, batch_in_epoch: int
) -> tuple[Iterable[Any], int, int]:
    """The batches of the epoch a run is in, continuing where ``batch_in_epoch`` left off.

    Returns ``(batches, epoch, batch_in_epoch)``: a run saved on the last batch of an epoch
    continues with the first batch of the next one. The data order and crops are functions
    of ``(seed, epoch)`` only, which is what makes resume exact.
    """
    length = len(loader) if hasattr(loader, "__len__") else None
    if length is not None and batch_in_epoch >= length:
        epoch, batch_in_epoch = epoch + 1, 0
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    # accelerate forwards the epoch to the dataset only for some sampler layouts (not
    # with multi-process sharding); per-epoch crops (AudioDataset) need it always.
    dataset: Any = getattr(loader, "dataset", None)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    # Building the iterator may draw from the global RNG (worker seeds): make that draw
    # depend on the epoch only.
    reseed(fold_seed(seed, accelerator.process_index, epoch, 0))
    if batch_in_epoch > 0:
        return accelerator.skip_first_batches(loader, batch_in_epoch), epoch, batch_in_epoch
    return loader, epoch, batch_in_epoch
