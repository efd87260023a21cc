"""Training the three stages on precomputed token shards with core's :class:`Trainer`.

Tokens and codes are computed once (``cadence.core.data.precompute``); the training loop
never runs a codec or a tokenizer. :class:`StageDataset` cuts each utterance to a window
that fits the stage's context (a random crop, seeded by ``(seed, epoch, index)`` so exact
resume holds), :func:`collate_stage` pads a batch, and :class:`StageTrainStep` is the train
step: it owns the next-token cross-entropy (with the EOS targets), the accuracy metric and
condition dropout, configured by :class:`AudioLMTrainConfig`; the stages' ``forward`` only
predicts. ``stage_step`` is the step with the default config::

    from cadence.core.data import ShardReader
    from cadence.core.train import Trainer, TrainerConfig

    model = CoarseTransformer(CoarseTransformerConfig(...))
    data = StageDataset(ShardReader("shards/train"), model.config)
    step = StageTrainStep(AudioLMTrainConfig(cond_drop_prob=0.1))
    trainer = Trainer(model, step, data, TrainerConfig(ema_decay=0.999, ...),
                      output_dir="runs/coarse", collate_fn=collate_stage)
    trainer.train(resume_from="latest")
    trainer.save_pretrained("runs/coarse/release")   # EMA weights
"""

# b batch | s semantic frames | n acoustic frames | q levels | m condition length | v vocabulary

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from cadence.core.config import Config, ConfigError
from cadence.core.data import ShardMismatchError, ShardReader, collate_sequences
from cadence.core.train import StepOutput

from .coarse import CoarseTransformerConfig
from .fine import FineTransformerConfig
from .semantic import SemanticTransformerConfig
from .transformer import StageOutput

__all__ = [
    "AudioLMTrainConfig",
    "StageDataset",
    "StageTrainStep",
    "collate_stage",
    "next_token_loss",
    "stage_step",
]

StageConfigs = SemanticTransformerConfig | CoarseTransformerConfig | FineTransformerConfig


class StageDataset(Dataset):
    """Crops of precomputed shards shaped for one stage.

    Items (tensors, before batching):

    - semantic: ``tokens`` ``(n,)``, ``ends`` (the crop reaches the utterance's end);
    - coarse: ``semantic`` ``(s,)`` and ``codes`` ``(n, q_coarse)`` of the same span, ``ends``;
    - fine: ``coarse`` ``(n, q_coarse)``, ``fine`` ``(n, q_fine)``;
    - and ``cond`` ``(m, cond_dim)`` when the shards hold a ``cond`` field (precomputed text
      embeddings, say), passed to the model as its conditioning.

    Args:
        shards: a :class:`ShardReader` with ``tokens`` (semantic, coarse) and/or ``codes``
            (coarse, fine); checked against ``config`` (codebook sizes, levels, frame rates).
        config: the config of the model being trained; its ``max_frames`` bounds a crop.
        max_frames: a shorter crop than the context allows (optional).
        seed: crops depend on ``(seed, epoch, index)`` only.
    """

    def __init__(
        self,
        shards: ShardReader,
        config: StageConfigs,
        *,
        max_frames: int | None = None,
        seed: int = 0,
    ):
        self.shards = shards
        self.config = config
        self.max_frames = min(max_frames or config.max_frames, config.max_frames)
        self.seed = seed
        self.epoch = 0
        self._check()

    def _check(self) -> None:
        cfg, meta, fields = self.config, self.shards.manifest["metadata"], self.shards.fields
        need = (
            {"tokens"}
            if isinstance(cfg, SemanticTransformerConfig)
            else ({"tokens", "codes"} if isinstance(cfg, CoarseTransformerConfig) else {"codes"})
        )
        missing = need - set(fields)
        if missing:
            raise ShardMismatchError(
                f"{type(cfg).__name__} trains on shard fields {sorted(need)} but "
                f"{self.shards.directory} lacks {sorted(missing)}; precompute with "
                f"{'a tokenizer' if 'tokens' in missing else 'a codec'}"
            )
        expected: dict[str, Any] = {}
        if isinstance(cfg, SemanticTransformerConfig):
            expected.update(
                tokenizer_codebook_size=cfg.codebook_size, tokenizer_frame_rate=cfg.frame_rate
            )
        elif isinstance(cfg, CoarseTransformerConfig):
            expected.update(
                tokenizer_codebook_size=cfg.semantic_codebook_size,
                tokenizer_frame_rate=cfg.semantic_frame_rate,
                codebook_size=cfg.codebook_size,
                frame_rate=cfg.frame_rate,
            )
        else:
            expected.update(codebook_size=cfg.codebook_size, frame_rate=cfg.frame_rate)
        self.shards.check_compatible(**{k: v for k, v in expected.items() if k in meta})
        if "codes" in need:
            # only the acoustic stages read codes
            assert not isinstance(cfg, SemanticTransformerConfig)
            levels = fields["codes"].trailing_shape[0]
            want = cfg.num_coarse_quantizers + (
                cfg.num_fine_quantizers if isinstance(cfg, FineTransformerConfig) else 0
            )
            if levels < want:
                raise ShardMismatchError(
                    f"the shards hold {levels} code levels but {type(cfg).__name__} needs {want}; "
                    "precompute with a codec that has enough quantizers, or lower the model's levels"
                )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.shards)

    def _start(self, index: int, length: int, window: int) -> int:
        if length <= window:
            return 0
        gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) % (2**63))
        return int(torch.randint(0, length - window + 1, (1,), generator=gen))

    def __getitem__(self, index: int) -> dict[str, Any]:
        out = self._crop(index)
        item = self.shards[index]
        if "cond" in item:
            # a precomputed conditioning sequence (e.g. T5 embeddings of the transcript), whole
            out["cond"] = item["cond"].float()
        return out

    def _crop(self, index: int) -> dict[str, Any]:
        item = self.shards[index]
        cfg = self.config
        window = self.max_frames
        if isinstance(cfg, SemanticTransformerConfig):
            tokens = item["tokens"]
            a = self._start(index, len(tokens), window)
            crop = tokens[a : a + window]
            return {"tokens": crop, "ends": a + len(crop) >= len(tokens)}
        codes = item["codes"]
        qc = cfg.num_coarse_quantizers
        if isinstance(cfg, FineTransformerConfig):
            a = self._start(index, len(codes), window)
            crop = codes[a : a + window]
            return {"coarse": crop[:, :qc], "fine": crop[:, qc : qc + cfg.num_fine_quantizers]}
        # coarse: an acoustic window and the semantic tokens of the same span
        semantic = item["tokens"]
        ratio = cfg.frames_per_semantic
        frames = min(len(codes), math.floor(len(semantic) * ratio + 1e-6))
        a = self._start(index, frames, window)
        # start on a semantic boundary so both streams cover the same time
        a = math.floor(math.floor(a / ratio + 1e-9) * ratio + 1e-9)
        b = min(a + window, frames)
        s0, s1 = math.floor(a / ratio + 1e-9), min(len(semantic), math.ceil(b / ratio - 1e-9))
        return {"semantic": semantic[s0:s1], "codes": codes[a:b, :qc], "ends": b >= frames}


def collate_stage(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pad :class:`StageDataset` items into a batch (``<field>`` and ``<field>_lengths``)."""
    return collate_sequences(
        items, [k for k in items[0] if k != "ends"] if "ends" in items[0] else None
    )


@dataclass(frozen=True, kw_only=True)
class AudioLMTrainConfig(Config):
    """Training settings of the three stages (their model configs say how to build them).

    Attributes:
        cond_drop_prob: probability that a training example's condition is replaced by the
            learned null condition, so that the model also learns the unconditional
            distribution that classifier-free guidance needs. Ignored for batches without a
            ``cond`` field. (Up to checkpoint format 1 this was ``StageConfig.cond_drop_prob``;
            its default is the same.)
    """

    cond_drop_prob: float = 0.1

    def __post_init__(self) -> None:
        p = self.cond_drop_prob
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ConfigError(f"AudioLMTrainConfig.cond_drop_prob must be in [0, 1), got {p!r}")


def next_token_loss(
    out: StageOutput, targets: Tensor, ends: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Cross-entropy and accuracy of a stage's predictions, averaged over predicted tokens.

    Args:
        out: the stage's ``forward``.
        targets: ``(b, n, q)`` the target codes it was given (``(b, s, 1)`` semantic tokens).
        ends: ``(b,)`` bool, whether each row reaches the end of its utterance, so that EOS
            (the last class) is a target after its last frame; default True. Ignored by the
            fine stage (no EOS).

    Returns:
        ``(loss, accuracy)``, scalars.
    """
    logits = out.logits[out.mask].flatten(0, 1)  # (tokens, v)
    labels = targets.to(logits.device).long()[out.mask].flatten()
    if out.eos_logits is not None:
        eos = out.eos_logits
        ends = (
            torch.ones(eos.shape[0], dtype=torch.bool, device=eos.device)
            if ends is None
            else ends.to(eos.device).bool()
        )
        logits = torch.cat([logits, eos[ends]])
        labels = torch.cat([labels, labels.new_full((int(ends.sum()),), eos.shape[-1] - 1)])
    loss = F.cross_entropy(logits, labels)
    accuracy = (logits.argmax(-1) == labels).float().mean()
    return loss, accuracy


def _stage_inputs(batch: Mapping[str, Any]) -> tuple[tuple, dict[str, Any], Tensor, Tensor]:
    """``(args, kwargs, targets, tokens)`` of a stage's forward for a :func:`collate_stage` batch."""
    cond = {"cond": batch["cond"], "cond_mask": batch["cond_mask"]} if "cond" in batch else {}
    if "tokens" in batch:
        lengths = batch["tokens_lengths"]
        return (batch["tokens"], lengths), cond, batch["tokens"][..., None], lengths.sum()
    if "semantic" in batch:
        codes, lengths = batch["codes"], batch["codes_lengths"]
        kwargs = {"semantic_lengths": batch["semantic_lengths"], "lengths": lengths, **cond}
        return (batch["semantic"], codes), kwargs, codes, lengths.sum() * codes.shape[-1]
    if "coarse" in batch:
        fine, lengths = batch["fine"], batch["coarse_lengths"]
        return (
            (batch["coarse"], fine),
            {"lengths": lengths, **cond},
            fine,
            lengths.sum() * fine.shape[-1],
        )
    raise KeyError(
        f"stage_step: unknown batch fields {sorted(batch)}; use StageDataset + collate_stage"
    )


class StageTrainStep:
    """``step(model, batch) -> StepOutput`` of any stage for :class:`cadence.core.train.Trainer`.

    Picks the stage by the batch's fields (:func:`collate_stage` of a :class:`StageDataset`),
    drops conditions with ``config.cond_drop_prob`` while the model trains (from the global
    RNG, which the Trainer reseeds per micro-batch: exact resume), and returns the
    next-token cross-entropy (:func:`next_token_loss`) with the accuracy as a metric.
    ``num_items`` is the number of predicted target tokens, so the trainer's items/s is
    tokens/s.
    """

    def __init__(self, config: AudioLMTrainConfig | None = None):
        self.config = config if config is not None else AudioLMTrainConfig()

    def condition_keep(
        self, model: nn.Module, batch: Mapping[str, Any], targets: Tensor
    ) -> Tensor | None:
        """``(b,)`` bool, False where a training example's condition is dropped; None: keep all."""
        p = self.config.cond_drop_prob
        if "cond" not in batch or not model.training or p <= 0:
            return None
        return torch.rand(targets.shape[0], device=targets.device) >= p

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> StepOutput:
        args, kwargs, targets, count = _stage_inputs(batch)
        keep = self.condition_keep(model, batch, targets)
        out = model(*args, keep=keep, **kwargs)
        loss, accuracy = next_token_loss(out, targets, batch.get("ends"))
        return StepOutput(loss=loss, metrics={"accuracy": accuracy}, num_items=int(count))


stage_step = StageTrainStep()
"""The train step of any stage with the default :class:`AudioLMTrainConfig`."""
