# b batch | n frames | s semantic frames | q levels
"""Training the three stages on precomputed token shards with core's :class:`Trainer`.

Tokens and codes are computed once (``cadence.core.data.precompute``); the training loop
never runs a codec or a tokenizer. :class:`StageDataset` cuts each utterance to a window
that fits the stage's context (a random crop, seeded by ``(seed, epoch, index)`` so exact
resume holds), :func:`collate_stage` pads a batch, and :func:`stage_step` is the train step::

    from cadence.core.data import ShardReader
    from cadence.core.train import Trainer, TrainerConfig

    model = CoarseTransformer(CoarseTransformerConfig(...))
    data = StageDataset(ShardReader("shards/train"), model.config)
    trainer = Trainer(model, stage_step, data, TrainerConfig(ema_decay=0.999, ...),
                      output_dir="runs/coarse", collate_fn=collate_stage)
    trainer.train(resume_from="latest")
    trainer.save_pretrained("runs/coarse/release")   # EMA weights
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from cadence.core.data import ShardMismatchError, ShardReader, collate_sequences
from cadence.core.train import StepOutput

from .coarse import CoarseTransformerConfig
from .fine import FineTransformerConfig
from .semantic import SemanticTransformerConfig

__all__ = ["StageDataset", "collate_stage", "stage_step"]

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

    def __init__(self, shards: ShardReader, config: StageConfigs, *, max_frames: int | None = None, seed: int = 0):
        self.shards = shards
        self.config = config
        self.max_frames = min(max_frames or config.max_frames, config.max_frames)
        self.seed = seed
        self.epoch = 0
        self._check()

    def _check(self) -> None:
        cfg, meta, fields = self.config, self.shards.manifest["metadata"], self.shards.fields
        need = {"tokens"} if isinstance(cfg, SemanticTransformerConfig) else (
            {"tokens", "codes"} if isinstance(cfg, CoarseTransformerConfig) else {"codes"}
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
            expected.update(tokenizer_codebook_size=cfg.codebook_size, tokenizer_frame_rate=cfg.frame_rate)
        elif isinstance(cfg, CoarseTransformerConfig):
            expected.update(
                tokenizer_codebook_size=cfg.semantic_codebook_size, tokenizer_frame_rate=cfg.semantic_frame_rate,
                codebook_size=cfg.codebook_size, frame_rate=cfg.frame_rate,
            )
        else:
            expected.update(codebook_size=cfg.codebook_size, frame_rate=cfg.frame_rate)
        self.shards.check_compatible(**{k: v for k, v in expected.items() if k in meta})
        if "codes" in need:
            levels = fields["codes"].trailing_shape[0]
            want = cfg.num_coarse_quantizers + (cfg.num_fine_quantizers if isinstance(cfg, FineTransformerConfig) else 0)
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
    return collate_sequences(items, [k for k in items[0] if k != "ends"] if "ends" in items[0] else None)


def stage_step(model: nn.Module, batch: Mapping[str, Tensor]) -> StepOutput:
    """The train step of any stage (pick by the batch's fields); logs next-token accuracy.

    ``num_items`` is the number of predicted tokens, so the trainer's items/s is tokens/s.
    """
    ends = batch.get("ends")
    cond = {"cond": batch["cond"], "cond_mask": batch["cond_mask"]} if "cond" in batch else {}
    if "tokens" in batch:
        out = model(batch["tokens"], batch["tokens_lengths"], ends=ends, **cond)
        count = batch["tokens_lengths"].sum()
    elif "semantic" in batch:
        out = model(
            batch["semantic"], batch["codes"], semantic_lengths=batch["semantic_lengths"],
            lengths=batch["codes_lengths"], ends=ends, **cond,
        )
        count = batch["codes_lengths"].sum() * batch["codes"].shape[-1]
    elif "coarse" in batch:
        out = model(batch["coarse"], batch["fine"], lengths=batch["coarse_lengths"], **cond)
        count = batch["coarse_lengths"].sum() * batch["fine"].shape[-1]
    else:
        raise KeyError(f"stage_step: unknown batch fields {sorted(batch)}; use StageDataset + collate_stage")
    return StepOutput(loss=out.loss, metrics={"accuracy": out.accuracy}, num_items=int(count))
