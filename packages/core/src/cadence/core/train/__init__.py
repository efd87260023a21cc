"""Training: one accelerate-based loop (``Trainer``) plus the pieces it is built from.

Each Cadence package supplies a train step (``step(model, batch) -> StepOutput``) that owns
its loss; loops that need more (a GAN codec) are built from the same EMA, schedules and
optimizer helpers.
"""

from .ema import EMA
from .history import HISTORY_FILE, append_history, read_history
from .optim import build_optimizer, parameter_groups
from .resume import (
    epoch_batches,
    fold_seed,
    latest_checkpoint,
    load_resume_checkpoint,
    prune_checkpoints,
    reseed,
    save_resume_checkpoint,
)
from .schedules import (
    ScheduleName,
    build_scheduler,
    lr_lambda,
    warmup_constant,
    warmup_cosine,
    warmup_linear,
)
from .trainer import StepOutput, Trainer, TrainerConfig, TrainStep

__all__ = [
    "EMA",
    "HISTORY_FILE",
    "ScheduleName",
    "StepOutput",
    "TrainStep",
    "Trainer",
    "TrainerConfig",
    "append_history",
    "build_optimizer",
    "build_scheduler",
    "epoch_batches",
    "fold_seed",
    "latest_checkpoint",
    "load_resume_checkpoint",
    "lr_lambda",
    "parameter_groups",
    "prune_checkpoints",
    "read_history",
    "reseed",
    "save_resume_checkpoint",
    "warmup_constant",
    "warmup_cosine",
    "warmup_linear",
]
