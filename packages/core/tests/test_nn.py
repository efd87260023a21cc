"""Shared backbones: shapes, padding invariance, conditioning, rotary positions, learning."""

from __future__ import annotations

import pytest
import torch

from cadence.core.config import ConfigError
from cadence.core.nn import BackboneConfig, RotaryEmbedding, apply_rotary, build_backbone

KINDS = ["transformer", "conformer", "uconformer"]


def tiny(kind: str, **overrides) -> BackboneConfig:
    fields = dict(kind=kind, dim=32, depth=2, heads=4, conv_kernel_size=5) | overrides
    return BackboneConfig(**fields)


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_config_round_trip(kind):
    config = tiny(kind)
    assert BackboneConfig.from_json(config.to_json()) == config
    model = build_backbone(config)
    y = model(torch.randn(3, 11, 32))
    assert y.shape == (3, 11, 32)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("kind", KINDS)
def test_outputs_at_real_frames_do_not_depend_on_padding(kind):
    torch.manual_seed(0)
    model = build_backbone(tiny(kind)).eval()
    x = torch.randn(1, 9, 32)
    alone = model(x)
    padded = torch.cat((x, 100 * torch.randn(1, 6, 32)), dim=1)
    mask = torch.arange(15)[None] < 9
    together = model(padded, mask)
    torch.testing.assert_close(together[:, :9], alone, atol=1e-5, rtol=1e-5)


def test_without_mask_padding_does_leak():
    # The counterpart of the test above: it proves the mask is what protects real frames.
    torch.manual_seed(0)
    model = build_backbone(tiny("conformer")).eval()
    x = torch.randn(1, 9, 32)
    padded = torch.cat((x, 100 * torch.randn(1, 6, 32)), dim=1)
    assert not torch.allclose(model(padded)[:, :9], model(x), atol=1e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_condition_and_context_change_the_output(kind):
    torch.manual_seed(0)
    model = build_backbone(tiny(kind, cond_dim=8, cross_attn_dim=12)).eval()
    # adaLN starts at zero (identity modulation): give it weights so the condition matters.
    for name, p in model.named_parameters():
        if "to_scale_shift" in name:
            torch.nn.init.normal_(p, std=0.5)
    x, cond, context = torch.randn(2, 7, 32), torch.randn(2, 8), torch.randn(2, 5, 12)
    base = model(x, cond=cond, context=context)
    assert not torch.allclose(base, model(x, cond=torch.randn(2, 8), context=context))
    assert not torch.allclose(base, model(x, cond=cond, context=torch.randn(2, 5, 12)))
    # masked-out context entries are ignored
    noisy = context.clone()
    noisy[:, 3:] = 50.0
    keep = torch.arange(5)[None].expand(2, 5) < 3
    torch.testing.assert_close(
        model(x, cond=cond, context=context, context_mask=keep),
        model(x, cond=cond, context=noisy, context_mask=keep),
    )
    with pytest.raises(ValueError, match="cond"):
        model(x, context=context)
    with pytest.raises(ValueError, match="context"):
        model(x, cond=cond)


def test_rotary_scores_depend_only_on_relative_position():
    rotary = RotaryEmbedding(8)
    cos, sin = rotary(20, torch.device("cpu"))
    q, k = torch.randn(8), torch.randn(8)

    def score(i, j):
        qi = apply_rotary(q.expand(1, 1, 20, 8), cos, sin)[0, 0, i]
        kj = apply_rotary(k.expand(1, 1, 20, 8), cos, sin)[0, 0, j]
        return (qi * kj).sum()

    torch.testing.assert_close(score(3, 1), score(15, 13), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(score(3, 1), score(3, 2))


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError, match="even depth"):
        BackboneConfig(kind="uconformer", dim=32, heads=4, depth=3)
    with pytest.raises(ConfigError, match="head dim"):
        BackboneConfig(dim=30, heads=4)
    model = build_backbone(tiny("transformer"))
    with pytest.raises(ValueError, match=r"\(b, n, 32\)"):
        model(torch.randn(2, 5, 16))


@pytest.mark.parametrize("kind", KINDS)
def test_backbone_learns_a_position_dependent_task(kind):
    """Copy the token one frame to the left: impossible without working relative positions."""
    torch.manual_seed(0)
    vocab, n = 8, 16
    embed = torch.nn.Embedding(vocab, 32)
    model = build_backbone(tiny(kind))
    head = torch.nn.Linear(32, vocab)
    params = [*embed.parameters(), *model.parameters(), *head.parameters()]
    optim = torch.optim.AdamW(params, lr=3e-3)
    for _ in range(150):
        tokens = torch.randint(0, vocab, (16, n))
        logits = head(model(embed(tokens)))[:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, vocab), tokens[:, :-1].reshape(-1)
        )
        optim.zero_grad()
        loss.backward()
        optim.step()
    tokens = torch.randint(0, vocab, (64, n))
    with torch.no_grad():
        accuracy = (head(model(embed(tokens)))[:, 1:].argmax(-1) == tokens[:, :-1]).float().mean()
    assert accuracy > 0.9, f"accuracy {accuracy:.3f} (chance {1 / vocab:.3f})"


def test_training_after_inference_reuses_no_inference_tensors():
    # Rotary tables are cached; ones made under inference_mode must not reach autograd.
    model = build_backbone(tiny("transformer"))
    with torch.inference_mode():
        model(torch.randn(1, 12, 32))
    model(torch.randn(1, 8, 32)).sum().backward()
    assert all(p.grad is not None for p in model.blocks[0].attn.parameters())
