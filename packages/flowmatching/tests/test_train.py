"""Batching shards for training: crops stay aligned, mismatched shards are refused."""

from __future__ import annotations

import pytest
import torch

from cadence.core.data import ShardMismatchError
from cadence.core.train import TrainerConfig
from cadence.flowmatching import (
    HierarchicalConditionalFlowMatcher,
    HierarchicalFlowMatcherConfig,
    build_trainer,
    collate_flow_batch,
    fit_latent_statistics,
)


def test_crops_cut_tokens_and_latents_at_the_same_instant():
    torch.manual_seed(0)
    items = []
    for s in (7, 30, 41):
        tokens = torch.arange(s)
        # latent frame j belongs to token j // 2 (25 Hz tokens, 50 Hz latents)
        latents = (torch.arange(2 * s) // 2).float()[:, None].expand(2 * s, 8)
        items.append({"id": str(s), "tokens": tokens, "latents": latents})
    for _ in range(20):
        batch = collate_flow_batch(items, max_frames=16, frame_ratio=2.0)
        assert batch["latents"].shape[1] == 16
        assert batch["latents_lengths"].tolist() == [14, 16, 16]  # the short item is kept whole
        for i in (1, 2):
            first_token = int(batch["tokens"][i, 0])
            expected = torch.arange(first_token, first_token + 8).repeat_interleave(2).float()
            assert torch.equal(batch["latents"][i, :16, 0], expected)
            assert int(batch["tokens_lengths"][i]) == 8


def test_build_trainer_refuses_shards_made_for_another_model(toy_shards, tmp_path):
    train, _ = toy_shards
    config = HierarchicalFlowMatcherConfig.tiny(codebook_size=64)
    model = HierarchicalConditionalFlowMatcher(config)
    with pytest.raises(ShardMismatchError, match="tokenizer_codebook_size=32"):
        build_trainer(model, train, TrainerConfig(max_steps=1), output_dir=tmp_path)
    model = HierarchicalConditionalFlowMatcher(
        HierarchicalFlowMatcherConfig.tiny(latent_frame_rate=75.0)
    )
    with pytest.raises(ShardMismatchError, match="latent_frame_rate"):
        build_trainer(model, train, TrainerConfig(max_steps=1), output_dir=tmp_path)


def test_fit_latent_statistics_standardizes_the_data(toy_shards):
    train, _ = toy_shards
    model = HierarchicalConditionalFlowMatcher(HierarchicalFlowMatcherConfig.tiny())
    mean, std = fit_latent_statistics(model, train)
    latents = torch.cat([train[i]["latents"] for i in range(len(train))])
    assert torch.equal(model.flow.latent_mean, mean) and torch.equal(model.flow.latent_std, std)
    z = model.flow.normalize(latents)
    assert torch.allclose(z.mean(0), torch.zeros(8), atol=1e-4)
    assert torch.allclose(z.std(0), torch.ones(8), atol=1e-3)
