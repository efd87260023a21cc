"""Training the three stages on precomputed token shards with core's :class:`Trainer`.

Tokens and codes are computed once (``cadence.core.data.precompute``); the training loop
never runs a codec or a tokenizer. :class:`StageDataset` cuts each utterance to a window
that fits the stage's context (a random crop, seeded by ``(seed, epoch, index)`` so exact
resume holds), or, given groups of utterances by one speaker, to a window of several of
them back to back (:mod:`cadence.audiolm.chains`: the model learns to continue past an
utterance's end); :func:`collate_stage` pads a batch, and :class:`StageTrainStep` is the
train step: it owns the next-token cross-entropy (with the EOS targets), the accuracy metric
and condition dropout, configured by :class:`AudioLMTrainConfig`; the stages' ``forward``
only predicts. ``stage_step`` is the step with the default config::

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

from .chains import AlignedChain, TokenChain
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

    Chains (``groups``): an item of a group is, with probability ``chain_prob``, the start of
    a chain: the utterance followed by the next ones of its group, in an order of the group
    drawn per epoch (cyclic, each utterance at most once), until a window starting at any
    frame of the item is full. The crop starts at a random frame of the item (no later than
    where a whole window still fits), so the windows are random crops of the speaker's
    recordings played back to back, as AudioLM's crops of long audio are. Coarse chains join
    the semantic tokens and the codes of the same utterances in step
    (:class:`~cadence.audiolm.chains.AlignedChain`). ``ends`` is True only when the crop
    reaches the end of the chain's last utterance, which happens only when the group ran out
    of utterances: EOS stays a target at the end of a speaker's audio and nowhere else. Items
    that are not chained (in no group, alone in theirs, or not drawn) are cropped as without
    groups, identically. Chains are for unconditioned shards (no ``cond`` field: one
    transcript's condition would not describe a chain).

    Args:
        shards: a :class:`ShardReader` with ``tokens`` (semantic, coarse) and/or ``codes``
            (coarse, fine); checked against ``config`` (codebook sizes, levels, frame rates).
        config: the config of the model being trained; its ``max_frames`` bounds a crop.
        max_frames: a shorter crop than the context allows (optional).
        seed: crops (and chains) depend on ``(seed, epoch, index)`` only.
        groups: shard indices that may be chained, one sequence per group (speaker), e.g.
            :func:`~cadence.audiolm.chains.speaker_groups`; an index in no group is never
            chained. None: every item is one utterance.
        chain_prob: probability that an item of a group is a chain (1.0: always).
    """

    def __init__(
        self,
        shards: ShardReader,
        config: StageConfigs,
        *,
        max_frames: int | None = None,
        seed: int = 0,
        groups: Sequence[Sequence[int]] | None = None,
        chain_prob: float = 1.0,
    ):
        self.shards = shards
        self.config = config
        self.max_frames = min(max_frames or config.max_frames, config.max_frames)
        self.seed = seed
        self.epoch = 0
        if isinstance(chain_prob, bool) or not 0.0 <= chain_prob <= 1.0:
            raise ValueError(f"StageDataset: chain_prob must be in [0, 1], got {chain_prob!r}")
        self.chain_prob = float(chain_prob)
        self.groups = _check_groups(groups, len(shards))
        if self.groups and "cond" in shards.fields:
            # one condition per item (a transcript's embedding) would describe a chain's
            # first utterance only
            raise ValueError(
                "StageDataset: groups (chains of utterances) with conditioned shards (a 'cond' "
                "field) are not supported; train conditioned stages on single utterances"
            )
        self._group_of = {i: g for g, group in enumerate(self.groups) for i in group}
        self._orders: dict[tuple[int, int], tuple[list[int], dict[int, int]]] = {}
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

    def _generator(self, *key: int) -> torch.Generator:
        # a tuple of ints hashes the same in every process (no PYTHONHASHSEED salt)
        return torch.Generator().manual_seed(hash((self.seed, self.epoch, *key)) % (2**63))

    def _start(self, index: int, length: int, window: int) -> int:
        if length <= window:
            return 0
        gen = self._generator(index)
        return int(torch.randint(0, length - window + 1, (1,), generator=gen))

    def _followers(self, index: int) -> list[int] | None:
        """The utterances after ``index`` in its group's order this epoch; None: no chain."""
        g = self._group_of.get(index)
        if g is None or len(self.groups[g]) < 2:
            return None
        draw = self._generator(index, 1)
        if self.chain_prob < 1.0 and float(torch.rand((), generator=draw)) >= self.chain_prob:
            return None
        if (self.epoch, g) not in self._orders:
            if any(epoch != self.epoch for epoch, _ in self._orders):
                self._orders.clear()  # one epoch's orders at a time
            group = self.groups[g]
            perm = torch.randperm(len(group), generator=self._generator(-1 - g, 2)).tolist()
            order = [group[k] for k in perm]
            self._orders[self.epoch, g] = order, {i: k for k, i in enumerate(order)}
        order, position = self._orders[self.epoch, g]
        k = position[index]
        return order[k + 1 :] + order[:k]

    def __getitem__(self, index: int) -> dict[str, Any]:
        out = self._crop(index)
        item = self.shards[index]
        if "cond" in item:
            # a precomputed conditioning sequence (e.g. T5 embeddings of the transcript), whole
            out["cond"] = item["cond"].float()
        return out

    def _crop(self, index: int) -> dict[str, Any]:
        followers = self._followers(index)
        if followers is None:
            return self._crop_one(index)
        return self._crop_chain(index, followers)

    def _chain_piece(self, index: int) -> tuple[Tensor, ...]:
        """The streams of item ``index`` that a chain of this stage concatenates."""
        cfg, item = self.config, self.shards[index]
        if isinstance(cfg, SemanticTransformerConfig):
            return (item["tokens"],)
        qc = cfg.num_coarse_quantizers
        if isinstance(cfg, FineTransformerConfig):
            return (item["codes"][:, : qc + cfg.num_fine_quantizers],)
        return item["tokens"], item["codes"][:, :qc]

    def _crop_chain(self, index: int, followers: Sequence[int]) -> dict[str, Any]:
        cfg, window = self.config, self.max_frames
        chain: AlignedChain | TokenChain = (
            AlignedChain(cfg.frames_per_semantic)
            if isinstance(cfg, CoarseTransformerConfig)
            else TokenChain()
        )
        chain.add(*self._chain_piece(index))
        first = chain.frames  # (target) frames of the item itself
        for j in followers:
            if chain.frames >= first + window:
                break  # a window from any frame of the item ends inside the chain
            chain.add(*self._chain_piece(j))
        last = max(0, min(first - 1, chain.frames - window))
        start = int(torch.randint(0, last + 1, (1,), generator=self._generator(index)))
        if isinstance(chain, AlignedChain):
            semantic, codes, ends = chain.crop(start, window)
            return {"semantic": semantic, "codes": codes, "ends": ends}
        frames, ends = chain.crop(start, window)
        if isinstance(cfg, SemanticTransformerConfig):
            return {"tokens": frames, "ends": ends}
        qc = cfg.num_coarse_quantizers
        return {"coarse": frames[:, :qc], "fine": frames[:, qc:]}

    def _crop_one(self, index: int) -> dict[str, Any]:
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


def _check_groups(groups: Sequence[Sequence[int]] | None, size: int) -> tuple[tuple[int, ...], ...]:
    if groups is None:
        return ()
    out = tuple(tuple(int(i) for i in group) for group in groups)
    seen: set[int] = set()
    for group in out:
        for i in group:
            if not 0 <= i < size:
                raise ValueError(
                    f"StageDataset: group index {i} is out of range for {size} shard items"
                )
            if i in seen:
                raise ValueError(
                    f"StageDataset: shard item {i} is in two groups; each item chains with one"
                )
            seen.add(i)
    return out


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
