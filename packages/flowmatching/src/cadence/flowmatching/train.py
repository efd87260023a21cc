"""Training the hierarchical flow matcher on precomputed shards, and measuring it.

Shards are written once by :func:`cadence.core.data.precompute` with a ``tokenizer`` (field
``"tokens"``) and a ``latent_codec`` (field ``"latents"``); the codec never runs inside the
training loop.

Example:
    >>> from cadence.core.data import AudioDataset, ShardReader, precompute   # doctest: +SKIP
    >>> precompute(AudioDataset("corpus/train.jsonl", sample_rate=16000, crop_seconds=None),
    ...            "shards/train", tokenizer=tokenizer, latent_codec=codec)   # doctest: +SKIP
    >>> shards = ShardReader("shards/train")                                   # doctest: +SKIP
    >>> fit_latent_statistics(model, shards)                                    # doctest: +SKIP
    >>> trainer = build_trainer(model, shards, TrainerConfig(ema_decay=0.999),
    ...                         output_dir="runs/flow",
    ...                         train_config=FlowMatchingTrainConfig())         # doctest: +SKIP
    >>> trainer.train()                                                          # doctest: +SKIP
"""

# b batch | s semantic frames | n latent frames | d latent dim

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import partial
from typing import Any, cast

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from cadence.core.checkpoint import unwrap_model
from cadence.core.data import ShardReader, collate_sequences, lengths_to_mask
from cadence.core.train import Trainer, TrainerConfig

from .config import FlowMatchingTrainConfig
from .hierarchical import HierarchicalConditionalFlowMatcher
from .solvers import ODEMethod
from .step import FlowMatchingTrainStep

__all__ = [
    "build_trainer",
    "check_shards",
    "collate_flow_batch",
    "fit_latent_statistics",
    "reconstruction_errors",
]


def collate_flow_batch(
    items: Sequence[dict[str, Any]],
    *,
    max_frames: int | None = None,
    frame_ratio: float = 1.0,
) -> dict[str, Any]:
    """Pad shard items holding ``"tokens"`` ``(s,)`` and ``"latents"`` ``(n, d)``.

    Args:
        items: shard items.
        max_frames: crop items longer than this many latent frames to a random window
            (drawn from torch's global RNG, which the Trainer reseeds per batch); the token
            window starts at token ``s0`` and the latent window at ``round(s0 * frame_ratio)``,
            so both cover the same audio (exactly when ``s0 * frame_ratio`` is an integer,
            e.g. for integer ratios; otherwise within half a latent frame).
        frame_ratio: latent frames per token (``model.frame_ratio``), for the crop.

    Returns:
        ``tokens``, ``tokens_mask``, ``latents``, ``latents_mask`` (and their lengths).
    """
    if max_frames is not None:
        items = [_crop(item, max_frames, frame_ratio) for item in items]
    return collate_sequences(items, keys=["tokens", "latents"])


def _crop(item: dict[str, Any], max_frames: int, frame_ratio: float) -> dict[str, Any]:
    latents, tokens = item["latents"], item["tokens"]
    if latents.shape[0] <= max_frames:
        return item
    num_tokens = math.ceil(max_frames / frame_ratio)
    # the last token start whose latent window still fits
    last = min(
        tokens.shape[0] - num_tokens, math.floor((latents.shape[0] - max_frames) / frame_ratio)
    )
    s0 = int(torch.randint(0, max(last, 0) + 1, ()).item())
    l0 = round(s0 * frame_ratio)
    out = dict(item)
    out["tokens"] = tokens[s0 : s0 + num_tokens]
    out["latents"] = latents[l0 : l0 + max_frames]
    return out


def check_shards(model: HierarchicalConditionalFlowMatcher, shards: ShardReader) -> None:
    """Raise ``ShardMismatchError`` unless the shards were made for this model's config."""
    cfg = model.config
    missing = {"tokens", "latents"} - set(shards.fields)
    if missing:
        raise ValueError(
            f"shards in {shards.directory} lack {sorted(missing)}; run precompute with "
            "tokenizer= and latent_codec="
        )
    shards.check_compatible(
        tokenizer_codebook_size=cfg.codebook_size,
        tokenizer_frame_rate=cfg.semantic_frame_rate,
        latent_dim=cfg.flow.latent_dim,
        latent_frame_rate=cfg.latent_frame_rate,
    )


@torch.no_grad()
def fit_latent_statistics(
    model: HierarchicalConditionalFlowMatcher,
    data: Dataset,
    *,
    max_items: int | None = None,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Set the model's per-dimension latent mean / std from items holding ``"latents"``.

    Returns the ``(mean, std)`` it set, each ``(d,)``.
    """
    count = 0
    total = None
    total_sq = None
    limit = len(data) if max_items is None else min(max_items, len(data))  # type: ignore[arg-type]  # map-style: sized
    if limit == 0:
        raise ValueError("no items to compute latent statistics from")
    for i in tqdm(range(limit), desc="latent statistics", disable=not progress):
        x = data[i]["latents"].double().reshape(-1, model.config.flow.latent_dim)
        total = x.sum(0) if total is None else total + x.sum(0)
        total_sq = (x**2).sum(0) if total_sq is None else total_sq + (x**2).sum(0)
        count += x.shape[0]
    mean = cast(Tensor, total) / count  # limit > 0: the loop ran
    std = (cast(Tensor, total_sq) / count - mean**2).clamp(min=1e-10).sqrt()
    mean, std = mean.float(), std.float()
    flow = cast(HierarchicalConditionalFlowMatcher, unwrap_model(model)).flow
    flow.set_latent_statistics(mean.to(flow.latent_mean), std.to(flow.latent_std))
    return mean, std


def build_trainer(
    model: HierarchicalConditionalFlowMatcher,
    train_shards: ShardReader,
    config: TrainerConfig,
    *,
    output_dir: str | os.PathLike,
    train_config: FlowMatchingTrainConfig | None = None,
    eval_shards: ShardReader | None = None,
    max_frames: int | None = None,
    **kwargs: Any,
) -> Trainer:
    """A core :class:`~cadence.core.train.Trainer` running a :class:`FlowMatchingTrainStep`.

    ``train_config`` sets the step's path, loss weight, condition dropout and training
    contexts (default ``FlowMatchingTrainConfig()``). Checks the shards against the model
    config first. Use ``config.ema_decay`` for EMA
    weights (used by evaluation and ``trainer.save_pretrained``). ``max_frames`` crops
    training items to random windows of that many latent frames (evaluation items stay
    whole); extra keyword arguments go to the Trainer (``eval_fn``, ``accelerator``, ...).
    """
    check_shards(model, train_shards)
    if eval_shards is not None:
        check_shards(model, eval_shards)
    # a ready loader so that only training batches are cropped (the Trainer's collate_fn
    # then serves the evaluation set)
    train_loader = DataLoader(
        train_shards,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=config.num_workers,
        collate_fn=partial(
            collate_flow_batch, max_frames=max_frames, frame_ratio=model.frame_ratio
        ),
    )
    return Trainer(
        model,
        FlowMatchingTrainStep(train_config),
        train_loader,
        config,
        output_dir=output_dir,
        collate_fn=collate_flow_batch,
        eval_dataset=eval_shards,
        **kwargs,
    )


@torch.no_grad()
def reconstruction_errors(
    model: HierarchicalConditionalFlowMatcher,
    data: Dataset,
    *,
    steps: int = 8,
    method: ODEMethod = "euler",
    guidance_scale: float = 1.0,
    prompt_fraction: float = 0.0,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, float]:
    """Held-out latent reconstruction error from semantic tokens, with two baselines.

    Errors are mean squared errors per latent dimension in standardized units (the model's
    ``latent_mean`` / ``latent_std``), over the generated frames of every item:

    * ``model``: latents sampled with ``steps`` ODE steps;
    * ``prior``: the flow's starting point alone (a sample of the prior, 0 steps);
    * ``mean``: the training mean latent for every frame (the best constant guess; about 1
      for data standardized with its own statistics);
    * ``prior_mean``: the semantic prior's mean ``W s`` (semantic prior only).

    With ``prompt_fraction > 0`` the first part of each item's latents is given as context
    (infilling in the speaker's own voice) and only the rest is scored.
    """
    model = cast(HierarchicalConditionalFlowMatcher, unwrap_model(model))
    flow = model.flow
    gen = torch.Generator().manual_seed(seed)
    sums = {"model": 0.0, "prior": 0.0, "mean": 0.0, "prior_mean": 0.0}
    frames = 0
    device = flow.latent_mean.device
    starts = range(0, len(data), batch_size)  # type: ignore[arg-type]  # map-style: sized
    for start in tqdm(starts, desc=f"sampling ({steps} {method} steps)", disable=not progress):
        items = [data[i] for i in range(start, min(start + batch_size, len(data)))]  # type: ignore[arg-type]  # map-style: sized
        batch = collate_flow_batch(items)
        tokens = batch["tokens"].long().to(device)
        latents = batch["latents"].float().to(device)
        t_mask = batch["tokens_mask"].to(device)
        l_mask = batch["latents_mask"].to(device)
        lengths = l_mask.sum(1)
        b, n, d = latents.shape
        prompt = (lengths.double() * prompt_fraction).floor().long()
        context_mask = lengths_to_mask(prompt, n) & l_mask
        noise = torch.randn(b, n, d, generator=gen).to(device)
        out = model.sample(
            tokens,
            t_mask,
            num_frames=lengths,
            context=latents if prompt_fraction > 0 else None,
            context_mask=context_mask if prompt_fraction > 0 else None,
            steps=steps,
            method=method,
            guidance_scale=guidance_scale,
            noise=noise,
        ).latents
        semantic, _ = model.tokens_to_frames(tokens, t_mask, num_frames=lengths)
        target = flow.normalize(latents)
        prior_mean = flow.prior_mean(semantic)
        scored = (l_mask & ~context_mask)[..., None].float()
        guesses = {
            "model": flow.normalize(out),
            "prior": prior_mean + flow.config.prior_std * noise,
            "mean": torch.zeros_like(target),
            "prior_mean": prior_mean,
        }
        for key, guess in guesses.items():
            sums[key] += float((((guess - target) ** 2) * scored).sum())
        frames += int(scored.sum())
    result = {k: v / (frames * flow.config.latent_dim) for k, v in sums.items()}
    if flow.prior_proj is None:
        result.pop("prior_mean")
    return result
