"""Adversarial training of a codec: a short GAN loop built from cadence-core pieces.

Each step (EnCodec's recipe, Defossez et al. 2022, sec. 3.4):

1. the generator (codec) reconstructs a batch; its quantizer updates its EMA codebooks;
2. from ``discriminator_start_step`` on, the discriminators take one step on real vs
   (detached) reconstructed audio with the hinge or least-squares loss;
3. the generator takes one step on multi-scale mel + L1 reconstruction, and from
   ``adversarial_start_step`` on also on the adversarial and feature-matching losses. With the
   balancer on (default), each loss weight is the share of the gradient it sends into the
   decoder output (:class:`~cadence.codec.balancer.Balancer`); the commitment loss is added
   unbalanced, since it does not depend on the decoder output.

Around it: AdamW and warmup schedules from ``cadence.core.train`` for both networks, an EMA of
the generator's weights (used for evaluation and release), a tqdm progress bar, periodic
evaluation (:func:`~cadence.codec.metrics.codec_metrics` on a held-out set), and resume
checkpoints (``output_dir/checkpoints/step-XXXXXXXX``, found by
``cadence.core.train.latest_checkpoint``). Resume is exact, as in core's ``Trainer``: the
data order is a function of ``(seed, epoch)``, the global RNGs are reseeded before every batch
from ``(seed, rank, epoch, batch)``, and the balancer's and schedules' states are saved.

The loop runs one micro-batch per step in float32 on one process; see docs/packages/codec.md.
"""

# b batch | c channels | t samples

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from cadence.core.checkpoint import save_pretrained, unwrap_model
from cadence.core.config import Config, ConfigError
from cadence.core.data import collate_audio
from cadence.core.train import (
    EMA,
    build_optimizer,
    build_scheduler,
    epoch_batches,
    fold_seed,
    load_resume_checkpoint,
    reseed,
    save_resume_checkpoint,
)
from cadence.core.train.history import HISTORY_FILE, append_history
from cadence.core.train.resume import CHECKPOINTS_DIR

from .balancer import Balancer
from .discriminators import CodecDiscriminator, DiscriminatorConfig
from .losses import (
    AdversarialLoss,
    MultiScaleMelLoss,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    waveform_l1_loss,
)
from .metrics import codec_metrics

__all__ = ["CodecTrainer", "CodecTrainerConfig"]

logger = logging.getLogger(__name__)

TRAINER_KIND = (
    "cadence.codec.CodecTrainer"  # written in each checkpoint: resume with this loop only
)


@dataclass(frozen=True, kw_only=True)
class CodecTrainerConfig(Config):
    """The GAN loop's settings; loss weights are EnCodec's (audiocraft ``compression`` solver).

    A step is one generator update (and one discriminator update once it has started).
    ``None`` turns a periodic action off (a checkpoint and an evaluation still happen at the end).
    """

    max_steps: int = 100_000
    batch_size: int = 8
    generator_lr: float = 3e-4
    discriminator_lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Literal["cosine", "linear", "constant"] = "constant"
    min_lr_ratio: float = 0.1
    max_grad_norm: float | None = None  # clip both networks' gradients; None: no clipping
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    adversarial_loss: AdversarialLoss = "hinge"
    discriminator_start_step: int = 0  # the discriminators train from this step on
    adversarial_start_step: int = 0  # the generator sees adversarial + feature losses from here
    mel_weight: float = 2.0
    l1_weight: float = 0.1
    adversarial_weight: float = 4.0
    feature_weight: float = 4.0
    balancer: bool = True
    balancer_total_norm: float = 1.0
    balancer_ema_decay: float = 0.999
    mel_range: tuple[int, int] = (6, 11)  # windows 2**6 .. 2**10
    mel_bins: int = 64
    ema_decay: float | None = 0.999  # None: no generator EMA
    eval_every: int | None = None
    eval_batch_size: int = 8
    eval_perceptual: bool | None = False  # PESQ/STOI: None = when installed
    save_every: int | None = 1000
    keep_last_checkpoints: int | None = 3
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    # Submodules of the codec (``named_modules`` names) held fixed: no gradients, not in the
    # optimizer, and kept in eval mode, so EMA codebooks and k-means do not move either. With
    # the encoder side frozen (ISTFTCodec: ``("mel", "encoder", "to_latent", "quantizer")``)
    # a run started from a trained codec retrains only its decoder: every code stays what it
    # was, so the models trained on those codes stay valid.
    frozen_modules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "eval_batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"CodecTrainerConfig.{name} must be >= 1, got {getattr(self, name)}"
                )
        for name in ("eval_every", "save_every", "keep_last_checkpoints"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"CodecTrainerConfig.{name} must be >= 1 or None, got {value}")
        if self.adversarial_start_step < self.discriminator_start_step:
            raise ConfigError(
                "CodecTrainerConfig: adversarial_start_step must be >= discriminator_start_step "
                "(the generator cannot learn from a discriminator that has not started)"
            )
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(
                f"CodecTrainerConfig.ema_decay must be in (0, 1) or None, got {self.ema_decay}"
            )
        weights = (self.mel_weight, self.l1_weight, self.adversarial_weight, self.feature_weight)
        if any(w < 0 for w in weights):
            raise ConfigError("CodecTrainerConfig: loss weights must be >= 0")

    def loss_weights(self, adversarial: bool) -> dict[str, float]:
        """The weighted generator losses (zero weights are left out)."""
        weights = {"mel": self.mel_weight, "l1": self.l1_weight}
        if adversarial:
            weights.update(adv=self.adversarial_weight, feat=self.feature_weight)
        return {k: w for k, w in weights.items() if w > 0}


def _audio_of(batch: Any) -> Tensor:
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, Mapping) and "audio" in batch:
        return batch["audio"]
    raise TypeError(
        "a codec training batch must be a (b, c, t) tensor or a dict with 'audio' "
        f"(as collate_audio makes), got {type(batch).__name__}"
    )


def _freeze(model: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    """Turn off the gradients of ``model``'s submodules ``names``; returns those modules."""
    modules = dict(model.named_modules())
    unknown = [name for name in names if name not in modules or not name]
    if unknown:
        top = ", ".join(name for name, _ in model.named_children())
        raise ValueError(
            f"CodecTrainerConfig.frozen_modules: {type(model).__name__} has no submodule "
            f"{', '.join(map(repr, unknown))}; its top-level submodules are: {top}"
        )
    frozen = [modules[name] for name in names]
    for module in frozen:
        module.requires_grad_(False)
    return frozen


@contextmanager
def _no_param_grads(module: nn.Module) -> Iterator[None]:
    # The generator's adversarial losses need gradients w.r.t. the audio, not the
    # discriminators' weights: skip computing (and accumulating) those.
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class CodecTrainer:
    """Train a codec (SoundStream, or any module whose ``forward(audio)`` returns an object
    with ``audio`` and ``commit_loss``) against discriminators.

    Args:
        generator: the codec, not yet prepared.
        train_data: a Dataset of items with ``"audio"`` ``(c, t)`` (e.g. an
            ``AudioDataset`` with ``crop_seconds``) or a DataLoader.
        config: the :class:`CodecTrainerConfig`.
        output_dir: checkpoints go to ``output_dir/checkpoints``.
        eval_data: held-out items, evaluated every ``eval_every`` steps and at the end.
        collate_fn: batches items (default ``collate_audio``).
        accelerator: an Accelerator to use instead of a fresh one.
    """

    def __init__(
        self,
        generator: nn.Module,
        train_data: Dataset | DataLoader,
        config: CodecTrainerConfig,
        *,
        output_dir: str | os.PathLike,
        eval_data: Dataset | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = collate_audio,
        accelerator: Accelerator | None = None,
    ):
        self.config = cfg = config
        self.output_dir = Path(output_dir)
        sample_rate = getattr(generator, "sample_rate", None)
        channels = getattr(generator, "channels", None)
        if sample_rate is None or channels is None:
            raise TypeError(
                f"{type(generator).__name__} needs `sample_rate` and `channels` attributes"
            )
        if cfg.discriminator.channels != channels:
            raise ValueError(
                f"the discriminators take {cfg.discriminator.channels}-channel audio but the codec "
                f"makes {channels}; set CodecTrainerConfig(discriminator=DiscriminatorConfig(channels={channels}))"
            )
        self.sample_rate = int(sample_rate)
        self.accelerator = accelerator or Accelerator(
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed)
        )
        set_seed(cfg.seed)
        self._frozen = _freeze(generator, cfg.frozen_modules)
        discriminator = CodecDiscriminator(cfg.discriminator)
        opt_g = build_optimizer(
            generator,
            learning_rate=cfg.generator_lr,
            betas=cfg.betas,
            weight_decay=cfg.weight_decay,
        )
        opt_d = build_optimizer(
            discriminator,
            learning_rate=cfg.discriminator_lr,
            betas=cfg.betas,
            weight_decay=cfg.weight_decay,
        )
        # Stepped by us once per update (not through accelerate), as core's Trainer does.
        schedule: dict[str, Any] = dict(
            warmup_steps=cfg.warmup_steps, total_steps=cfg.max_steps, min_lr_ratio=cfg.min_lr_ratio
        )
        self.scheduler_g = build_scheduler(opt_g, cfg.schedule, **schedule)
        self.scheduler_d = build_scheduler(opt_d, cfg.schedule, **schedule)
        loader = (
            train_data
            if isinstance(train_data, DataLoader)
            else DataLoader(
                train_data,
                batch_size=cfg.batch_size,
                shuffle=True,
                drop_last=True,
                num_workers=cfg.num_workers,
                collate_fn=collate_fn,
            )
        )
        acc = self.accelerator
        self.generator, self.discriminator, self.opt_g, self.opt_d, self.train_dataloader = (
            acc.prepare(generator, discriminator, opt_g, opt_d, loader)
        )
        self.eval_dataloader = (
            None
            if eval_data is None
            else DataLoader(
                eval_data, batch_size=cfg.eval_batch_size, shuffle=False, collate_fn=collate_fn
            )
        )
        self.mel_loss = MultiScaleMelLoss(
            self.sample_rate,
            range_start=cfg.mel_range[0],
            range_end=cfg.mel_range[1],
            n_mels=cfg.mel_bins,
        ).to(acc.device)
        self.ema = self._new_ema() if cfg.ema_decay is not None else None
        self.balancers = {
            adversarial: Balancer(
                cfg.loss_weights(adversarial),
                total_norm=cfg.balancer_total_norm,
                ema_decay=cfg.balancer_ema_decay,
            )
            for adversarial in (False, True)
        }
        self.global_step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[dict[str, float]] = []
        self._last_saved_step = -1
        self._last_eval_step = -1

    def _train_mode(self) -> None:
        self.generator.train()
        for module in self._frozen:
            module.eval()

    def _new_ema(self) -> EMA:
        return EMA(self.unwrapped_generator, decay=float(self.config.ema_decay))  # type: ignore[arg-type]

    @property
    def unwrapped_generator(self) -> nn.Module:
        return unwrap_model(self.accelerator.unwrap_model(self.generator))

    @property
    def unwrapped_discriminator(self) -> nn.Module:
        return unwrap_model(self.accelerator.unwrap_model(self.discriminator))

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / CHECKPOINTS_DIR

    # -- the loop ---------------------------------------------------------------------------

    def train(self, resume_from: str | os.PathLike | None = None) -> list[dict[str, float]]:
        """Train to ``max_steps``; returns this call's per-step history (floats).

        Args:
            resume_from: None, ``"latest"`` (fresh start when there is no checkpoint) or a
                ``step-XXXXXXXX`` directory.
        """
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        cfg, acc = self.config, self.accelerator
        start = len(self.history)
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.global_step,
            desc="codec",
            disable=not acc.is_local_main_process,
            dynamic_ncols=True,
        )
        clock = time.perf_counter()
        self._train_mode()
        self.discriminator.train()
        while self.global_step < cfg.max_steps:
            loader = self._epoch_loader()
            for batch in loader:
                self.batch_in_epoch += 1
                reseed(fold_seed(cfg.seed, acc.process_index, self.epoch, self.batch_in_epoch))
                row = self._step(_audio_of(batch))
                self.global_step += 1
                row["step"] = self.global_step
                self.history.append(row)
                bar.update(1)
                if self.global_step % cfg.log_every == 0:
                    if acc.is_main_process:
                        self._log_interval(self.history[-cfg.log_every :])
                    now = time.perf_counter()
                    bar.set_postfix(
                        mel=f"{row['mel']:.3g}",
                        d=f"{row.get('d_loss', 0.0):.3g}",
                        steps_s=f"{cfg.log_every / max(now - clock, 1e-9):.2f}",
                    )
                    clock = now
                if cfg.eval_every is not None and self.global_step % cfg.eval_every == 0:
                    self._attach_eval()
                if cfg.save_every is not None and self.global_step % cfg.save_every == 0:
                    self.save_checkpoint()
                if self.global_step >= cfg.max_steps:
                    break
            else:
                if self.batch_in_epoch == 0:
                    raise RuntimeError(
                        "the training data yields no batches (fewer items than batch_size?)"
                    )
                self.epoch += 1
                self.batch_in_epoch = 0
                continue
            if hasattr(loader, "end"):
                loader.end()
        if self.eval_dataloader is not None and self._last_eval_step != self.global_step:
            self._attach_eval()
        if self._last_saved_step != self.global_step:
            self.save_checkpoint()
        bar.close()
        return self.history[start:]

    def _log_interval(self, rows: list[dict[str, float]]) -> None:
        """Append the means of the interval's train values to ``history.jsonl``."""
        sums: dict[str, list[float]] = {}
        for row in rows:
            for key, value in row.items():
                if key != "step" and not key.startswith("eval/"):
                    sums.setdefault(f"train/{key}", []).append(value)
        means = {key: sum(values) / len(values) for key, values in sums.items()}
        append_history(self.output_dir / HISTORY_FILE, self.global_step, means)

    def _epoch_loader(self) -> Iterable[Any]:
        batches, self.epoch, self.batch_in_epoch = epoch_batches(
            self.accelerator,
            self.train_dataloader,
            seed=self.config.seed,
            epoch=self.epoch,
            batch_in_epoch=self.batch_in_epoch,
        )
        return batches

    def _step(self, audio: Tensor) -> dict[str, float]:
        cfg, acc = self.config, self.accelerator
        step = self.global_step  # updates taken so far
        train_d = step >= cfg.discriminator_start_step
        adversarial = step >= cfg.adversarial_start_step
        row: dict[str, float] = {"lr": float(self.scheduler_g.get_last_lr()[0])}

        out = self.generator(audio)
        estimate = out.audio

        if train_d:
            logits_real, _ = self.discriminator(audio)
            logits_fake, _ = self.discriminator(estimate.detach())
            d_loss = discriminator_adversarial_loss(logits_real, logits_fake, cfg.adversarial_loss)
            self.opt_d.zero_grad(set_to_none=True)
            acc.backward(d_loss)
            if cfg.max_grad_norm is not None:
                acc.clip_grad_norm_(self.discriminator.parameters(), cfg.max_grad_norm)
            self.opt_d.step()
            self.scheduler_d.step()
            row["d_loss"] = float(d_loss.detach())

        losses = {"mel": self.mel_loss(estimate, audio), "l1": waveform_l1_loss(estimate, audio)}
        if adversarial:
            disc = self.unwrapped_discriminator
            with _no_param_grads(disc):
                logits_fake, fmaps_fake = disc(estimate)
                with torch.no_grad():
                    _, fmaps_real = disc(audio)
            losses["adv"] = generator_adversarial_loss(logits_fake, cfg.adversarial_loss)
            losses["feat"] = feature_matching_loss(fmaps_fake, fmaps_real)
        weights = cfg.loss_weights(adversarial)
        self.opt_g.zero_grad(set_to_none=True)
        commit = out.commit_loss
        if cfg.balancer:
            balanced = {k: v for k, v in losses.items() if k in weights}
            norms = self.balancers[adversarial].backward(balanced, estimate, extra=commit)
            row.update({f"grad_norm/{k}": v for k, v in norms.items()})
        else:
            total = sum(weights[k] * losses[k] for k in weights) + commit
            acc.backward(total)
        if cfg.max_grad_norm is not None:
            row["g_grad_norm"] = float(
                acc.clip_grad_norm_(self.generator.parameters(), cfg.max_grad_norm)
            )
        self.opt_g.step()
        self.scheduler_g.step()
        if self.ema is not None:
            self.ema.update()
        row.update({k: float(v.detach()) for k, v in losses.items()})
        row["commit"] = float(commit.detach())
        return row

    # -- evaluation -----------------------------------------------------------------------

    def _attach_eval(self) -> None:
        metrics = {f"eval/{k}": v for k, v in self.evaluate().items()}
        if self.history and self.history[-1].get("step") == self.global_step:
            self.history[-1].update(metrics)
        else:
            self.history.append({"step": self.global_step, **metrics})
        if self.accelerator.is_main_process:
            append_history(self.output_dir / HISTORY_FILE, self.global_step, metrics)
        self._last_eval_step = self.global_step

    def evaluate(self, data: Dataset | DataLoader | None = None) -> dict[str, float]:
        """Codec metrics on held-out audio (EMA weights when EMA is on), item-weighted means.

        Reconstruction uses every quantizer level, in eval mode (no codebook updates).
        """
        loader = self.eval_dataloader if data is None else data
        if loader is None:
            raise ValueError("no evaluation data: pass eval_data to CodecTrainer or data here")
        if not isinstance(loader, DataLoader):
            loader = DataLoader(
                loader, batch_size=self.config.eval_batch_size, collate_fn=collate_audio
            )
        model = self.unwrapped_generator
        was_training = model.training
        model.eval()
        swap = self.ema.average_parameters(model) if self.ema is not None else nullcontext()
        sums: dict[str, float] = {}
        count = 0
        try:
            with swap, torch.no_grad():
                for batch in loader:
                    audio = _audio_of(batch).to(self.accelerator.device)
                    estimate = model(audio).audio
                    metrics = codec_metrics(
                        estimate, audio, self.sample_rate, perceptual=self.config.eval_perceptual
                    )
                    for k, v in metrics.items():
                        sums[k] = sums.get(k, 0.0) + v * audio.shape[0]
                    count += audio.shape[0]
        finally:
            if was_training:
                self._train_mode()
        return {k: v / max(count, 1) for k, v in sums.items()}

    # -- checkpoints --------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Resume state of this step in ``checkpoints/step-XXXXXXXX`` (written aside, renamed)."""
        final = save_resume_checkpoint(
            self.accelerator,
            self.checkpoint_dir,
            step=self.global_step,
            kind=TRAINER_KIND,
            state={
                "step": self.global_step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "scheduler_g": self.scheduler_g.state_dict(),
                "scheduler_d": self.scheduler_d.state_dict(),
                "balancers": {str(k): b.state_dict() for k, b in self.balancers.items()},
                "config": self.config.to_dict(),
            },
            ema=self.ema,
            keep_last=self.config.keep_last_checkpoints,
        )
        self._last_saved_step = self.global_step
        return final

    def load_checkpoint(self, checkpoint: str | os.PathLike) -> Path | None:
        """Restore both networks, optimizers, schedules, EMA, balancers and data position."""
        loaded = load_resume_checkpoint(
            self.accelerator,
            checkpoint,
            output_dir=self.output_dir,
            kind=TRAINER_KIND,
            ema=self.ema,
        )
        if loaded is None:
            return None
        path, state, ema_loaded = loaded
        self.scheduler_g.load_state_dict(state["scheduler_g"])
        self.scheduler_d.load_state_dict(state["scheduler_d"])
        for key, balancer in self.balancers.items():
            balancer.load_state_dict(state["balancers"][str(key)])
        if self.ema is not None and not ema_loaded:
            self.ema = self._new_ema()
        self.global_step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self._last_saved_step = self.global_step
        return path

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """The release codec (EMA weights when EMA is on): ``config.json`` + ``model.safetensors``."""
        model = self.unwrapped_generator
        swap = self.ema.average_parameters(model) if self.ema is not None else nullcontext()
        with swap:
            return save_pretrained(
                model, directory, metadata={"step": self.global_step, "ema": self.ema is not None}
            )
