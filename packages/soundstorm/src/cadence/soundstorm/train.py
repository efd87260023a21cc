"""Training SoundStorm on precomputed (semantic token, codec code) shards with core's Trainer.

Shards come from :func:`cadence.core.data.precompute` with a codec and a semantic tokenizer
(fields ``codes`` ``(n, q)`` and ``tokens`` ``(s,)``); batches from
:func:`cadence.core.data.collate_sequences`.
"""

# b batch | n codec frames | s semantic frames | q quantizer levels | v codebook entries

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cadence.core.checkpoint import unwrap_model
from cadence.core.data import ShardReader, collate_sequences, lengths_to_mask
from cadence.core.train import StepOutput, Trainer, TrainerConfig

from .config import SoundStormConfig, SoundStormTrainConfig
from .cross import prompt_tokens
from .masking import TrainingMask, align_semantic, training_mask
from .soundstorm import SoundStorm

__all__ = [
    "SoundStormTrainStep",
    "masked_accuracy",
    "open_shards",
    "train_soundstorm",
    "unigram_accuracy",
]


def _unpack(batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    for key in ("codes", "codes_lengths", "tokens", "tokens_lengths"):
        if key not in batch:
            raise KeyError(
                f"a SoundStorm batch needs {key!r} (collate ShardReader items holding 'codes' and "
                f"'tokens' with collate_sequences); got keys {sorted(batch)}"
            )
    return batch["codes"], batch["codes_lengths"], batch["tokens"], batch["tokens_lengths"]


def _masked_problem(
    config: SoundStormConfig,
    batch: Mapping[str, Any],
    draw: TrainingMask | None,
    *,
    prompt_range: tuple[float, float] = (0.0, 1.0),
    objective: str = "maskgit",
    level_weights: tuple[float, ...] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, TrainingMask]:
    """Inputs (masked codes, semantic, frame mask), targets and the mask of one batch.

    ``config`` is the model's (levels, vocabularies, frame rates); without a ``draw``, the
    training mask is drawn with ``prompt_range`` from the global RNG (ratio from the cosine
    schedule, or uniform for the diffusion ``objective``). The semantic tokens are aligned
    to the frames ``(b, n)``, or kept at their rate ``(b, s)`` for cross-attention.
    """
    codes, lengths, tokens, token_lengths = _unpack(batch)
    b, n, q = codes.shape
    if q != config.num_quantizers:
        raise ValueError(f"batch codes have {q} levels, the model {config.num_quantizers}")
    if draw is None:
        draw = training_mask(
            lengths,
            n,
            q,
            prompt_range=prompt_range,
            level_weights=level_weights,
            schedule="linear" if objective == "diffusion" else "cosine",
        )
    inputs = codes.masked_fill(draw.masked, config.codebook_size)
    targets = codes.gather(2, draw.level[:, None, None].expand(b, n, 1)).squeeze(-1)
    mask = lengths_to_mask(lengths.to(codes.device), n)
    if config.semantic_conditioning == "cross_attention":
        token_mask = lengths_to_mask(token_lengths.to(tokens.device), tokens.shape[1])
        return (
            inputs,
            tokens.masked_fill(~token_mask, config.semantic_codebook_size),
            mask,
            targets,
            draw,
        )
    semantic = align_semantic(
        tokens,
        n,
        frame_rate=config.frame_rate,
        semantic_rate=config.semantic_frame_rate,
        semantic_lengths=token_lengths,
    )
    semantic = semantic.masked_fill(~mask, config.semantic_codebook_size)
    return inputs, semantic, mask, targets, draw


def _semantic_kwargs(config: SoundStormConfig, batch: Mapping[str, Any]) -> dict[str, Tensor]:
    """``semantic_mask`` for a cross-attending model (aligned tokens need none)."""
    if config.semantic_conditioning != "cross_attention":
        return {}
    tokens, token_lengths = batch["tokens"], batch["tokens_lengths"]
    return {"semantic_mask": lengths_to_mask(token_lengths.to(tokens.device), tokens.shape[1])}


def _in_prompt(config: SoundStormConfig, draw: TrainingMask, semantic: Tensor) -> Tensor:
    """``(b, n)`` or ``(b, s)`` bool: the semantic entries of each sample's prompt."""
    if config.semantic_conditioning == "cross_attention":
        return prompt_tokens(
            draw.prompt_lengths,
            semantic.shape[1],
            frame_rate=config.frame_rate,
            semantic_rate=config.semantic_frame_rate,
        )
    return lengths_to_mask(draw.prompt_lengths, semantic.shape[1])


class SoundStormTrainStep:
    """``step(model, batch) -> StepOutput`` for :class:`cadence.core.train.Trainer`.

    Draws the paper's training mask (:func:`~cadence.soundstorm.masking.training_mask`)
    with the prompt lengths of ``config.prompt_range``, drops the semantic tokens of a
    sample's prompt frames with probability ``prompt_cond_drop_prob`` and of all its frames
    with probability ``cond_drop_prob``, and returns the cross-entropy over the masked frames
    of each sample's level (``objective="diffusion"``: ratios drawn uniformly and each
    sample's loss weighted by ``1 / ratio``), with the masked-token accuracy as a metric. The levels,
    vocabularies and frame rates are the model's (``model.config``). Randomness comes from the
    global RNGs, which the Trainer reseeds per micro-batch (exact resume).

    Args:
        config: the training settings (default ``SoundStormTrainConfig()``).
    """

    def __init__(self, config: SoundStormTrainConfig | None = None):
        self.config = config if config is not None else SoundStormTrainConfig()

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> StepOutput:
        cfg = self.config
        model_config = cast(SoundStormConfig, unwrap_model(model).config)
        inputs, semantic, mask, targets, draw = _masked_problem(
            model_config,
            batch,
            None,
            prompt_range=cfg.prompt_range,
            objective=cfg.objective,
            level_weights=cfg.level_weights,
        )
        if model.training:
            b = semantic.shape[0]
            null = model_config.semantic_codebook_size
            if cfg.prompt_cond_drop_prob > 0:
                drop = torch.rand(b, device=inputs.device) < cfg.prompt_cond_drop_prob
                in_prompt = _in_prompt(model_config, draw, semantic)
                semantic = semantic.masked_fill(drop[:, None] & in_prompt, null)
            if cfg.cond_drop_prob > 0:
                drop = torch.rand(b, device=inputs.device) < cfg.cond_drop_prob
                semantic = semantic.masked_fill(drop[:, None], null)
        extra = _semantic_kwargs(model_config, batch)
        logits = model(inputs, semantic, mask, level=draw.level, **extra)  # (b, n, v)
        weight = draw.loss_mask.float()
        per_frame = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
        total = weight.sum().clamp(min=1.0)
        if cfg.objective == "diffusion":
            loss = _diffusion_loss(per_frame, weight, draw, mask)
        else:
            loss = (per_frame * weight).sum() / total
        accuracy = ((logits.argmax(-1) == targets).float() * weight).sum() / total
        return StepOutput(loss=loss, metrics={"accuracy": accuracy.detach()})


def _diffusion_loss(per_frame: Tensor, weight: Tensor, draw: TrainingMask, mask: Tensor) -> Tensor:
    """The absorbing-state ELBO: each sample's masked cross-entropy over ``ratio * T``, averaged.

    ``T`` is the sample's maskable frames (real, not prompt): in expectation ``ratio * T``
    are masked, so a sample masked lightly counts as much as one masked heavily.
    """
    assert draw.ratio is not None
    n = mask.shape[1]
    prompt = lengths_to_mask(draw.prompt_lengths.to(mask.device), n)
    candidates = (mask & ~prompt).sum(1).clamp(min=1).float()
    per_sample = (per_frame * weight).sum(1) / (draw.ratio.float().to(mask.device) * candidates)
    return per_sample.mean()


@torch.no_grad()
def masked_accuracy(
    model: SoundStorm,
    batch: Mapping[str, Any],
    *,
    level: int = 0,
    mask_ratio: float = 0.5,
    seed: int = 0,
) -> float:
    """Argmax accuracy on a fixed, seeded masking of one level (no prompt, finer levels masked).

    The same ``seed`` masks the same frames as :func:`unigram_accuracy`, so the two compare.
    """
    was_training = model.training
    model.eval()
    try:
        generator = torch.Generator().manual_seed(seed)
        inputs, semantic, mask, targets, draw = _fixed_problem(
            model.config, batch, level, mask_ratio, generator
        )
        logits = model(inputs, semantic, mask, level=level, **_semantic_kwargs(model.config, batch))
        hits = (logits.argmax(-1) == targets) & draw.loss_mask
        return float(hits.sum() / draw.loss_mask.sum().clamp(min=1))
    finally:
        model.train(was_training)


def _fixed_draw(batch, level: int, mask_ratio: float, generator):
    """The evaluation mask: no prompt, one given level, a fixed masked fraction."""
    codes, lengths, _, _ = _unpack(batch)
    return training_mask(
        lengths,
        codes.shape[1],
        codes.shape[2],
        prompt_range=(0.0, 0.0),
        level=level,
        mask_ratio=mask_ratio,
        generator=generator,
    )


def _fixed_problem(config: SoundStormConfig, batch, level: int, mask_ratio: float, generator):
    return _masked_problem(config, batch, _fixed_draw(batch, level, mask_ratio, generator))


def unigram_accuracy(
    train_codes: Iterable[Tensor],
    batch: Mapping[str, Any],
    *,
    level: int = 0,
    mask_ratio: float = 0.5,
    seed: int = 0,
) -> float:
    """The trivial baseline: always predict the most frequent training code of ``level``.

    Scored on the frames :func:`masked_accuracy` masks with the same arguments.
    """
    counts: Counter[int] = Counter()
    for codes in train_codes:
        counts.update(codes[:, level].tolist())
    if not counts:
        raise ValueError("unigram_accuracy needs at least one training item")
    mode = counts.most_common(1)[0][0]
    codes = _unpack(batch)[0]
    draw = _fixed_draw(batch, level, mask_ratio, torch.Generator().manual_seed(seed))
    hits = (codes[..., level] == mode) & draw.loss_mask
    return float(hits.sum() / draw.loss_mask.sum().clamp(min=1))


def open_shards(directory: str | os.PathLike, config: SoundStormConfig) -> ShardReader:
    """A :class:`ShardReader` checked against the model's codec and tokenizer settings."""
    reader = ShardReader(directory)
    missing = {"codes", "tokens"} - set(reader.fields)
    if missing:
        raise ValueError(
            f"shards in {directory} lack {sorted(missing)}; precompute them with both a codec "
            "and a semantic tokenizer"
        )
    reader.check_compatible(
        codebook_size=config.codebook_size,
        num_quantizers=config.num_quantizers,
        frame_rate=config.frame_rate,
        tokenizer_codebook_size=config.semantic_codebook_size,
        tokenizer_frame_rate=config.semantic_frame_rate,
    )
    return reader


def train_soundstorm(
    model: SoundStorm | SoundStormConfig,
    train_dir: str | os.PathLike,
    config: TrainerConfig,
    *,
    output_dir: str | os.PathLike,
    train_config: SoundStormTrainConfig | None = None,
    valid_dir: str | os.PathLike | None = None,
    resume_from: str | os.PathLike | None = "latest",
) -> Trainer:
    """Train SoundStorm on precomputed shards; returns the Trainer (``trainer.history``,
    ``trainer.save_pretrained(dir)`` for the EMA release weights).

    ``train_config`` sets the train step's prompt sampling and condition dropout (default
    ``SoundStormTrainConfig()``).

    Example::

        trainer = train_soundstorm(SoundStormConfig(), "shards/train",
                                   TrainerConfig(max_steps=200_000, batch_size=32, ema_decay=0.999),
                                   output_dir="runs/soundstorm", valid_dir="shards/valid",
                                   train_config=SoundStormTrainConfig(cond_drop_prob=0.1))
        trainer.save_pretrained("runs/soundstorm/release")
    """
    if isinstance(model, SoundStormConfig):
        model = SoundStorm(model)
    train = open_shards(train_dir, model.config)
    valid = None if valid_dir is None else open_shards(valid_dir, model.config)
    trainer = Trainer(
        model,
        SoundStormTrainStep(train_config),
        train,
        config,
        output_dir=Path(output_dir),
        collate_fn=collate_sequences,
        eval_dataset=valid,
    )
    trainer.train(resume_from=resume_from)
    return trainer
