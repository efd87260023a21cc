"""One accelerate-based training loop for every Cadence package.

A package supplies a small *train step* that owns its loss; the trainer owns everything
else: data loading, AdamW with a warmup schedule, gradient accumulation and clipping, mixed
precision, EMA, logging, periodic evaluation, checkpoints and exact resume.

Example:
    >>> def step(model, batch):                       # doctest: +SKIP
    ...     x, y = batch
    ...     return StepOutput(loss=F.mse_loss(model(x), y))
    >>> trainer = Trainer(model, step, dataset, TrainerConfig(max_steps=1000),
    ...                   output_dir="runs/exp1")     # doctest: +SKIP
    >>> history = trainer.train(resume_from="latest")  # doctest: +SKIP
    >>> trainer.save_pretrained("runs/exp1/release")   # doctest: +SKIP

Two artifacts, kept apart:

* **Resume state**, ``output_dir/checkpoints/step-XXXXXXXX/``: written by accelerate's
  ``save_state`` (``model.safetensors``; ``optimizer.bin``, ``random_states_<rank>.pkl`` and,
  for fp16, ``scaler.pt``, which are *pickles*) plus our own ``ema.safetensors`` and
  ``trainer_state.json``. It is a trusted artifact of your own run: load it only from runs
  you made. The pickles are nevertheless read with ``torch.load(weights_only=True)`` (only
  tensors and plain containers are rebuilt, no arbitrary code), and the EMA and trainer
  state are deliberately not registered with ``register_for_checkpointing``, whose loader
  always unpickles with ``weights_only=False``.
* **Release weights**, :meth:`Trainer.save_pretrained`: ``config.json`` +
  ``model.safetensors`` of the unwrapped model (EMA weights when EMA is on), no pickle.

Exact resume: a run resumed from a checkpoint takes the same batches in the same order and
computes the same losses as one that never stopped. Three things make that so: the sampler
is reseeded per epoch from (seed, epoch) (accelerate's seedable sampler), the batches of the
current epoch already seen are skipped, and the global RNGs are reseeded before every
micro-batch from (seed, rank, epoch, batch), as fairseq does per update, so dropout and
noise do not depend on what ran before (an eval hook, a data-loader iterator being
rebuilt). Datasets that draw random numbers (crops) should derive them from their own seed
and the item index, as :class:`cadence.core.data.AudioDataset` does.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm.auto import tqdm

from ..checkpoint import save_pretrained, unwrap_model
from ..config import Config, ConfigError
from .ema import EMA
from .history import HISTORY_FILE, append_history
from .optim import build_optimizer
from .resume import (
    CHECKPOINTS_DIR,
    CORE_TRAINER_KIND,
    epoch_batches,
    fold_seed,
    load_resume_checkpoint,
    reseed,
    save_resume_checkpoint,
)
from .schedules import build_scheduler

__all__ = [
    "StepOutput",
    "TrainStep",
    "Trainer",
    "TrainerConfig",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrainerConfig(Config):
    """Everything the training loop needs; the model and its loss are configured elsewhere.

    A *step* is one optimizer update (``gradient_accumulation_steps`` micro-batches).
    Intervals (``eval_every``, ``save_every``, ``log_every``) count steps; ``None`` turns
    the periodic action off (evaluation and a checkpoint still happen at the end).
    """

    max_steps: int = 10_000
    batch_size: int = 16  # per process, per micro-batch
    learning_rate: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.01  # matrices only (see optim.parameter_groups)
    warmup_steps: int = 0
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = 0.1  # final LR / peak LR of the decaying schedules
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0  # None: no clipping
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    ema_decay: float | None = None  # None: no EMA
    ema_update_every: int = 1
    ema_update_after_step: int = 0
    eval_every: int | None = None
    save_every: int | None = 1000
    keep_last_checkpoints: int | None = 3  # None: keep all
    log_every: int = 50
    seed: int = 0
    num_workers: int = 0
    log_with: tuple[str, ...] = ()  # accelerate tracker names: "tensorboard", "wandb", ...
    project_name: str = "cadence"

    def __post_init__(self) -> None:
        positive = {
            "max_steps": self.max_steps,
            "batch_size": self.batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "ema_update_every": self.ema_update_every,
            "log_every": self.log_every,
        }
        for name, value in {
            **positive,
            "eval_every": self.eval_every,
            "save_every": self.save_every,
            "keep_last_checkpoints": self.keep_last_checkpoints,
        }.items():
            if value is not None and value < 1:
                raise ConfigError(
                    f"TrainerConfig.{name} must be >= 1 (or None where allowed), got {value}"
                )
        floats = {
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "min_lr_ratio": self.min_lr_ratio,
        }
        for name, number in floats.items():
            if not math.isfinite(number):
                raise ConfigError(f"TrainerConfig.{name} must be a finite number, got {number}")
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise ConfigError("TrainerConfig: learning_rate must be > 0 and weight_decay >= 0")
        if self.warmup_steps < 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError("TrainerConfig: warmup_steps must be >= 0 and min_lr_ratio in [0, 1]")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(
                f"TrainerConfig.ema_decay must be in (0, 1) or None, got {self.ema_decay}"
            )
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ConfigError("TrainerConfig.max_grad_norm must be > 0 or None")
        if self.seed < 0 or self.num_workers < 0 or self.ema_update_after_step < 0:
            raise ConfigError(
                "TrainerConfig: seed, num_workers and ema_update_after_step must be >= 0"
            )


@dataclass
class StepOutput:
    """What a train step returns.

    Attributes:
        loss: the scalar to minimise (the trainer divides it for gradient accumulation).
        metrics: extra values to log, averaged over the micro-batches of a step.
        num_items: items in the batch (utterances, sequences, tokens...) for the
            throughput figure; ``None`` takes the leading size of the first tensor in it.
    """

    loss: Tensor
    metrics: dict[str, float | Tensor] = field(default_factory=dict)
    num_items: int | None = None


@runtime_checkable
class TrainStep(Protocol):
    """The per-package part of training: a batch in, a loss out.

    ``model`` is the prepared module (DDP-wrapped on several processes): call it, not a
    method of the unwrapped module, so DDP sees the forward pass and syncs gradients.
    """

    def __call__(self, model: nn.Module, batch: Any) -> StepOutput: ...


EvalFn = Callable[["Trainer"], Mapping[str, float | Tensor]]


def _count_items(batch: Any) -> int:
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, Sequence) and not isinstance(batch, str):
        for item in batch:
            if isinstance(item, Tensor) and item.ndim:
                return int(item.shape[0])
    return 0


def _to_float(value: float | Tensor) -> float:
    return float(value.detach().float().mean()) if isinstance(value, Tensor) else float(value)


class _Window:
    """The micro-batches of one optimizer step, kept as tensors until the next log."""

    def __init__(self) -> None:
        self.losses: list[Tensor] = []
        self.metrics: dict[str, list[float | Tensor]] = {}
        self.items = 0

    def add(self, out: StepOutput, batch: Any) -> None:
        self.losses.append(out.loss.detach())
        for key, value in out.metrics.items():
            self.metrics.setdefault(key, []).append(
                value.detach() if isinstance(value, Tensor) else value
            )
        self.items += out.num_items if out.num_items is not None else _count_items(batch)

    def finish(self, step: int, lr: float, grad_norm: Tensor | None) -> dict[str, Any]:
        return {
            "step": step,
            "loss": torch.stack([loss.float() for loss in self.losses]).mean(),
            "lr": lr,
            "grad_norm": grad_norm,
            "items": self.items,
            "metrics": self.metrics,
        }


def _materialise(record: dict[str, Any]) -> dict[str, float]:
    """A step record with tensors turned into floats (one host sync per value)."""
    out: dict[str, float] = {"step": record["step"], "loss": _to_float(record["loss"])}
    out["lr"] = record["lr"]
    if record["grad_norm"] is not None:
        out["grad_norm"] = _to_float(record["grad_norm"])
    for key, values in record["metrics"].items():
        out[key] = sum(_to_float(v) for v in values) / len(values)
    out["items"] = record["items"]
    return out


class Trainer:
    """Train a model with accelerate on one or many processes; see the module docstring.

    Args:
        model: the module to train (not yet prepared); its initialisation is the caller's.
        step: the train step, ``step(model, batch) -> StepOutput``.
        train_data: a map-style Dataset (batched here with ``batch_size``, shuffled,
            ``drop_last``) or a ready DataLoader (use ``shuffle=True`` rather than a custom
            sampler if you want exact resume).
        config: the TrainerConfig.
        output_dir: where checkpoints (``checkpoints/step-XXXXXXXX``) and tracker logs go.
        collate_fn: batches items of a Dataset.
        eval_dataset: evaluated every ``eval_every`` steps, by ``eval_fn`` if given, else as
            the mean train-step loss over it (``eval/loss``).
        eval_fn: ``eval_fn(trainer) -> metrics``, called on every process every
            ``eval_every`` steps and at the end, with the model in eval mode, under
            ``torch.no_grad()`` and with the EMA weights when EMA is on.
        optimizer_groups: explicit AdamW param groups, replacing the default split of
            decayed / undecayed parameters.
        accelerator: an Accelerator to use instead of one built from the config (its
            gradient accumulation must match the config's; give it
            ``DataLoaderConfiguration(use_seedable_sampler=True)`` to keep exact resume on
            several processes).
    """

    def __init__(
        self,
        model: nn.Module,
        step: TrainStep,
        train_data: Dataset | DataLoader,
        config: TrainerConfig,
        *,
        output_dir: str | os.PathLike,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        eval_dataset: Dataset | None = None,
        eval_fn: EvalFn | None = None,
        optimizer_groups: Iterable[dict[str, Any]] | None = None,
        accelerator: Accelerator | None = None,
    ):
        self.config = config
        self.output_dir = Path(output_dir)
        self.step_fn = step
        self.eval_fn = eval_fn
        self.accelerator = accelerator if accelerator is not None else self._build_accelerator()
        if self.accelerator.gradient_accumulation_steps != config.gradient_accumulation_steps:
            raise ValueError(
                f"the accelerator accumulates {self.accelerator.gradient_accumulation_steps} "
                f"micro-batches, the config {config.gradient_accumulation_steps}"
            )
        set_seed(config.seed)

        train_loader = self._as_loader(train_data, collate_fn, shuffle=True)
        eval_loader = (
            None
            if eval_dataset is None
            else self._as_loader(eval_dataset, collate_fn, shuffle=False)
        )
        optimizer = build_optimizer(
            model if optimizer_groups is None else optimizer_groups,
            learning_rate=config.learning_rate,
            betas=config.betas,
            weight_decay=config.weight_decay,
        )
        # The scheduler is not handed to accelerate.prepare: AcceleratedScheduler steps it
        # num_processes times per update, which would make warmup_steps and max_steps mean
        # different things on 1 and 8 GPUs. We step it once per real update and keep its
        # (plain-number) state in trainer_state.json.
        self.scheduler = build_scheduler(
            optimizer,
            config.schedule,
            warmup_steps=config.warmup_steps,
            total_steps=config.max_steps,
            min_lr_ratio=config.min_lr_ratio,
        )
        self.model, self.optimizer, self.train_dataloader = self.accelerator.prepare(
            model, optimizer, train_loader
        )
        self.eval_dataloader = (
            None if eval_loader is None else self.accelerator.prepare(eval_loader)
        )
        self.ema = self._new_ema() if config.ema_decay is not None else None

        self.global_step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[dict[str, float]] = []
        self._pending: list[dict[str, Any]] = []
        self._interval: list[dict[str, float]] = []
        self._last_saved_step = -1
        self._last_eval_step = -1
        self._trackers_started = False

    # -- construction -------------------------------------------------------------------

    def _build_accelerator(self) -> Accelerator:
        cfg = self.config
        return Accelerator(
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            mixed_precision=cfg.mixed_precision,
            log_with=list(cfg.log_with) or None,
            project_dir=str(self.output_dir),
            # Replaces a shuffling RandomSampler by one reseeded from (data_seed + epoch) at
            # every epoch, identically on every process: the data order is a function of
            # the epoch alone, which exact resume needs.
            dataloader_config=DataLoaderConfiguration(
                use_seedable_sampler=True, data_seed=cfg.seed
            ),
        )

    def _as_loader(
        self, data: Dataset | DataLoader, collate_fn: Callable | None, *, shuffle: bool
    ) -> DataLoader:
        if isinstance(data, DataLoader):
            return data
        return DataLoader(
            data,
            batch_size=self.config.batch_size,
            # an IterableDataset orders (and shuffles) itself
            shuffle=shuffle and not isinstance(data, IterableDataset),
            drop_last=shuffle,  # equal-sized training batches; keep every eval item
            num_workers=self.config.num_workers,
            collate_fn=collate_fn,
            pin_memory=self.accelerator.device.type == "cuda",
        )

    def _new_ema(self) -> EMA:
        return EMA(
            self.unwrapped_model,
            decay=float(self.config.ema_decay),  # type: ignore[arg-type]
            update_every=self.config.ema_update_every,
            update_after_step=self.config.ema_update_after_step,
        )

    @property
    def unwrapped_model(self) -> nn.Module:
        """The bare module (no DDP / compile wrapper): the one to save and to evaluate."""
        return unwrap_model(self.accelerator.unwrap_model(self.model))

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / CHECKPOINTS_DIR

    @property
    def lr(self) -> float:
        """The learning rate of the next update (first param group)."""
        return float(self.scheduler.get_last_lr()[0])

    # -- the loop ---------------------------------------------------------------------------

    def train(self, resume_from: str | os.PathLike | None = None) -> list[dict[str, float]]:
        """Train until ``config.max_steps``; return this call's per-step history.

        Args:
            resume_from: ``None`` to start fresh, ``"latest"`` for the newest checkpoint in
                ``output_dir`` (starting fresh when there is none, so a preempted job can
                always be relaunched with the same command), or a checkpoint directory.

        Returns:
            One dict per step run here: ``step``, ``loss`` (mean over the step's
            micro-batches, this process), ``lr`` (used by that update), ``grad_norm`` (before
            clipping, when clipping is on), ``items``, the step's metrics, and ``eval/...``
            entries on steps where evaluation ran.
        """
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        cfg, acc = self.config, self.accelerator
        self._start_trackers()
        history_start = len(self.history)
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.global_step,
            desc="train",
            disable=not acc.is_local_main_process,
            dynamic_ncols=True,
        )
        self._log_clock = time.perf_counter()
        self.model.train()
        window = _Window()
        while self.global_step < cfg.max_steps:
            loader = self._epoch_loader()
            seen_any = False
            for batch in loader:
                seen_any = True
                self.batch_in_epoch += 1
                reseed(fold_seed(cfg.seed, acc.process_index, self.epoch, self.batch_in_epoch))
                with acc.accumulate(self.model):
                    out = self.step_fn(self.model, batch)
                    acc.backward(out.loss)
                    window.add(out, batch)
                    if acc.sync_gradients:
                        grad_norm = None
                        if cfg.max_grad_norm is not None:
                            grad_norm = acc.clip_grad_norm_(
                                self.model.parameters(), cfg.max_grad_norm
                            )
                        lr = self.lr
                        self.optimizer.step()
                        # A skipped update (fp16 overflow) must not advance the schedule or EMA.
                        if not self.optimizer.step_was_skipped:
                            self.scheduler.step()
                            if self.ema is not None:
                                self.ema.update()
                        self.optimizer.zero_grad(set_to_none=True)
                if not acc.sync_gradients:
                    continue
                self.global_step += 1
                self._pending.append(window.finish(self.global_step, lr, grad_norm))
                window = _Window()
                bar.update(1)
                self._after_step(bar)
                if self.global_step >= cfg.max_steps:
                    break
            else:
                if not seen_any and self.batch_in_epoch == 0:
                    raise RuntimeError(
                        "the training data yields no batches (fewer items than batch_size "
                        "with drop_last?)"
                    )
                self.epoch += 1
                self.batch_in_epoch = 0
                continue
            # Left mid-epoch: tell accelerate this loader is no longer being iterated, so
            # its end-of-data flag cannot leak into a later loop's gradient sync.
            if hasattr(loader, "end"):
                loader.end()
        self._flush()
        self._log(bar)
        if self._has_eval and self._last_eval_step != self.global_step:
            self._attach_eval()
        if self._last_saved_step != self.global_step:
            self.save_checkpoint()
        bar.close()
        if self._trackers_started:
            acc.end_training()
            self._trackers_started = False
        return self.history[history_start:]

    def _epoch_loader(self) -> Iterable[Any]:
        batches, self.epoch, self.batch_in_epoch = epoch_batches(
            self.accelerator,
            self.train_dataloader,
            seed=self.config.seed,
            epoch=self.epoch,
            batch_in_epoch=self.batch_in_epoch,
        )
        return batches

    @property
    def _has_eval(self) -> bool:
        return self.eval_fn is not None or self.eval_dataloader is not None

    def _after_step(self, bar: tqdm) -> None:
        cfg, step = self.config, self.global_step
        if step % cfg.log_every == 0:
            self._flush()
            self._log(bar)
        if cfg.eval_every is not None and step % cfg.eval_every == 0 and self._has_eval:
            self._attach_eval()
        if cfg.save_every is not None and step % cfg.save_every == 0:
            self.save_checkpoint()

    # -- logging ------------------------------------------------------------------------

    def _start_trackers(self) -> None:
        # The accelerator's trackers: those named in the config, or those of an
        # accelerator handed in (custom GeneralTracker instances included).
        if self.accelerator.log_with and not self._trackers_started:
            # Trackers' hparam tables take scalars only.
            flat = {
                k: v if isinstance(v, (int, float, str, bool)) else str(v)
                for k, v in self.config.to_dict().items()
            }
            self.accelerator.init_trackers(self.config.project_name, config=flat)
            self._trackers_started = True

    def _flush(self) -> None:
        """Turn pending step records into floats (the only host syncs of the loop)."""
        for record in self._pending:
            row = _materialise(record)
            self.history.append(row)
            self._interval.append(row)
        self._pending.clear()

    def _log(self, bar: tqdm) -> None:
        rows, self._interval = self._interval, []
        if not rows:
            return
        acc = self.accelerator
        now = time.perf_counter()
        elapsed, self._log_clock = max(now - self._log_clock, 1e-9), now
        loss = torch.tensor(sum(r["loss"] for r in rows) / len(rows), device=acc.device)
        if acc.num_processes > 1:
            loss = acc.reduce(loss, reduction="mean")
        items_per_s = sum(r["items"] for r in rows) * acc.num_processes / elapsed
        values = {
            "train/loss": float(loss),
            "train/lr": rows[-1]["lr"],
            "train/items_per_s": items_per_s,
        }
        for key in rows[-1]:
            if key not in ("step", "loss", "lr", "items") and not key.startswith("eval/"):
                present = [r[key] for r in rows if key in r]
                values[f"train/{key}"] = sum(present) / len(present)
        bar.set_postfix(
            loss=f"{values['train/loss']:.4g}",
            lr=f"{values['train/lr']:.3g}",
            items_s=f"{items_per_s:.1f}",
        )
        if self._trackers_started:
            acc.log(values, step=self.global_step)
        if acc.is_main_process:
            logger.debug("step %d: %s", self.global_step, values)
            append_history(self.output_dir / HISTORY_FILE, self.global_step, values)

    # -- evaluation -----------------------------------------------------------------------

    def _attach_eval(self) -> None:
        self._flush()
        metrics = {f"eval/{k}": v for k, v in self.evaluate().items()}
        if self.history and self.history[-1]["step"] == self.global_step:
            self.history[-1].update(metrics)
        if self.accelerator.is_main_process:
            append_history(self.output_dir / HISTORY_FILE, self.global_step, metrics)
        if self._trackers_started:
            self.accelerator.log(metrics, step=self.global_step)
        self._last_eval_step = self.global_step

    def evaluate(self) -> dict[str, float]:
        """Run ``eval_fn`` (or the mean eval-set loss) with EMA weights when EMA is on.

        Runs on every process; returns plain floats.
        """
        model = self.model
        was_training = model.training
        model.eval()
        swap = (
            self.ema.average_parameters(self.unwrapped_model)
            if self.ema is not None
            else nullcontext()
        )
        try:
            with swap, torch.no_grad():
                metrics = self.eval_fn(self) if self.eval_fn is not None else self._eval_loss()
        finally:
            model.train(was_training)
        return {k: _to_float(v) for k, v in metrics.items()}

    def _eval_loss(self) -> dict[str, Tensor]:
        if self.eval_dataloader is None:
            return {}
        acc = self.accelerator
        total = torch.zeros((), device=acc.device)
        count = torch.zeros((), device=acc.device)
        for batch in self.eval_dataloader:
            out = self.step_fn(self.model, batch)
            n = out.num_items if out.num_items is not None else _count_items(batch)
            n = max(n, 1)
            total += out.loss.detach().float() * n
            count += n
        total, count = acc.reduce(total, reduction="sum"), acc.reduce(count, reduction="sum")
        return {"loss": total / count.clamp_min(1)}

    # -- checkpoints --------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Save the resume state of this step to ``checkpoints/step-XXXXXXXX`` (all processes).

        Written into a temporary directory and renamed, so a crash never leaves a
        half-written checkpoint that ``"latest"`` would pick; older checkpoints beyond
        ``keep_last_checkpoints`` are removed.
        """
        final = save_resume_checkpoint(
            self.accelerator,
            self.checkpoint_dir,
            step=self.global_step,
            kind=CORE_TRAINER_KIND,
            state={
                "step": self.global_step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "scheduler": self.scheduler.state_dict(),
                "config": self.config.to_dict(),
            },
            ema=self.ema,
            keep_last=self.config.keep_last_checkpoints,
        )
        self._last_saved_step = self.global_step
        return final

    def load_checkpoint(self, checkpoint: str | os.PathLike) -> Path | None:
        """Restore model, optimizer, schedule, EMA and position in the data from a checkpoint.

        Args:
            checkpoint: a ``step-XXXXXXXX`` directory, or ``"latest"`` (returns None and
                changes nothing when ``output_dir`` holds no checkpoint yet).
        """
        loaded = load_resume_checkpoint(
            self.accelerator,
            checkpoint,
            output_dir=self.output_dir,
            kind=CORE_TRAINER_KIND,
            ema=self.ema,
        )
        if loaded is None:
            return None
        path, state, ema_loaded = loaded
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and not ema_loaded:
            self.ema = self._new_ema()
        self.global_step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self._last_saved_step = self.global_step
        return path

    # -- release ---------------------------------------------------------------------------

    def save_pretrained(
        self, directory: str | os.PathLike, *, metadata: dict[str, Any] | None = None
    ) -> Path:
        """Write the release model (EMA weights when EMA is on) with ``cadence.core.checkpoint``.

        ``config.json`` + ``model.safetensors`` of the unwrapped model; call on every process
        (the main one writes).
        """
        acc = self.accelerator
        acc.wait_for_everyone()
        directory = Path(directory)
        if acc.is_main_process:
            model = self.unwrapped_model
            meta = {"step": self.global_step, "ema": self.ema is not None, **(metadata or {})}
            swap = self.ema.average_parameters(model) if self.ema is not None else nullcontext()
            with swap:
                save_pretrained(model, directory, metadata=meta)
        acc.wait_for_everyone()
        return directory

    def plot_losses(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the train-loss curve of ``self.history`` as a PNG (main process only).

        Needs matplotlib (``cadence-core[plots]``). The x axis is the global step, so a
        resumed run's curve starts where it resumed.
        """
        if not self.accelerator.is_main_process or not self.history:
            return None
        from ..plots import save_curves_png  # matplotlib is optional: import on use

        losses = [row["loss"] for row in self.history]
        positive = all(math.isfinite(v) and v > 0 for v in losses)
        return save_curves_png(
            {"train loss": losses},
            path or self.output_dir / "loss.png",
            steps=[int(row["step"]) for row in self.history],
            log_y=positive,
        )
