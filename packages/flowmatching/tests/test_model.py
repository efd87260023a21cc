"""ConditionalFlowMatcher / HierarchicalConditionalFlowMatcher: shapes, sampling, invariants."""

from __future__ import annotations

import pytest
import torch

from cadence.core.checkpoint import load_pretrained
from cadence.core.config import ConfigError
from cadence.core.nn import BackboneConfig
from cadence.core.testing import FakeCodec, FakeSemanticTokenizer
from cadence.core.validation import IdRangeError
from cadence.flowmatching import (
    EVALUATIONS_PER_STEP,
    ConditionalFlowMatcher,
    FlowMatcherConfig,
    FlowMatchingTrainConfig,
    FlowMatchingTrainStep,
    HierarchicalConditionalFlowMatcher,
    HierarchicalFlowMatcherConfig,
    voice_conversion,
)

KINDS = ["transformer", "conformer", "uconformer"]


def assert_close(a, b, *, atol=1e-6, rtol=1e-5):
    # not torch.testing.assert_close: its first call imports sympy (seconds)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.allclose(a, b, atol=atol, rtol=rtol), f"max abs diff {(a - b).abs().max():.3g}"


def training_loss(model, latents, semantic, mask=None, *, context_mask=None, **train):
    """The train step's loss for a bare ConditionalFlowMatcher (draw, forward, loss)."""
    step = FlowMatchingTrainStep(FlowMatchingTrainConfig(**train))
    draw = step.draw(latents, mask, context_mask=context_mask)
    return step.loss(model(latents, semantic, mask, draw=draw), draw)


def flow_config(kind: str = "conformer", **changes) -> FlowMatcherConfig:
    backbone = BackboneConfig(kind=kind, dim=32, depth=2, heads=2, conv_kernel_size=5, cond_dim=32)
    return FlowMatcherConfig.tiny(backbone=backbone, **changes)


def trained_looking(model: torch.nn.Module) -> torch.nn.Module:
    """Give zero-initialised parts random values so outputs depend on every input."""
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "to_scale_shift" in name or "output_proj" in name or "null_semantic" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


def batch(b=3, n=12, e=16, d=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    semantic = torch.randn(b, n, e, generator=gen)
    latents = torch.randn(b, n, d, generator=gen)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[1, n - 4 :] = False
    return semantic, latents, mask


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prior", ["gaussian", "semantic"])
def test_loss_and_sample_shapes(kind, prior):
    torch.manual_seed(0)
    model = ConditionalFlowMatcher(flow_config(kind, prior=prior))
    semantic, latents, mask = batch()
    out = training_loss(model, latents, semantic, mask)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.input_proj.weight.grad is not None
    if prior == "semantic":
        assert out.prior_loss > 0 and model.prior_proj.weight.grad is not None
    else:
        assert out.prior_loss == 0 and model.prior_proj is None
    sample = model.sample(semantic, mask=mask, steps=2)
    assert sample.shape == latents.shape
    assert torch.all(sample[~mask] == 0)


def test_loss_covers_only_generated_frames():
    torch.manual_seed(0)
    model = trained_looking(ConditionalFlowMatcher(flow_config()))
    semantic, latents, mask = batch()
    context_mask = torch.zeros_like(mask)
    context_mask[:, :5] = True
    out = training_loss(
        model, latents, semantic, mask, context_mask=context_mask, cond_drop_prob=0.0
    )
    assert out.num_frames == int((mask & ~context_mask).sum())
    # changing the latents of context frames changes the inputs but the loss never scores them
    torch.manual_seed(1)
    a = training_loss(model, latents, semantic, mask, context_mask=context_mask, cond_drop_prob=0.0)
    assert a.num_frames == out.num_frames


def test_training_contexts_are_one_generated_span_per_item():
    torch.manual_seed(0)
    step = FlowMatchingTrainStep(
        FlowMatchingTrainConfig(context_prob=1.0, min_generate_fraction=0.5)
    )
    mask = torch.ones(64, 40, dtype=torch.bool)
    mask[::2, 25:] = False
    ctx = step.sample_context_mask(mask)
    assert not bool((ctx & ~mask).any())
    generated = mask & ~ctx
    lengths = mask.sum(1)
    for i in range(64):
        idx = generated[i].nonzero().flatten()
        assert len(idx) >= 0.5 * lengths[i] and len(idx) == int(idx[-1] - idx[0] + 1)  # contiguous


@pytest.mark.parametrize("method", ["euler", "midpoint"])
@pytest.mark.parametrize("guidance_scale", [1.0, 2.5])
@pytest.mark.parametrize("steps", [1, 4, 8])
def test_sampling_makes_exactly_steps_times_evaluations(method, guidance_scale, steps):
    model = ConditionalFlowMatcher(flow_config())
    calls = []
    hook = model.backbone.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    semantic, latents, mask = batch(b=2)
    model.sample(
        semantic,
        mask=mask,
        context=latents,
        context_mask=mask & (torch.arange(12) < 3),
        steps=steps,
        method=method,
        guidance_scale=guidance_scale,
    )
    hook.remove()
    assert len(calls) == steps * EVALUATIONS_PER_STEP[method]
    # guidance runs the conditional and unconditional inputs as one batch of 2b
    assert set(calls) == {2 if guidance_scale == 1.0 else 4}


@pytest.mark.parametrize("kind", KINDS)
def test_prompt_part_of_the_output_equals_the_context(kind):
    torch.manual_seed(0)
    model = trained_looking(ConditionalFlowMatcher(flow_config(kind)))
    model.set_latent_statistics(torch.full((8,), 0.3), torch.full((8,), 2.0))
    semantic, latents, mask = batch()
    context_mask = torch.zeros_like(mask)
    context_mask[0, :4] = True
    context_mask[1, 2:6] = True  # an infilling span
    context_mask[2, 9:] = True
    out = model.sample(semantic, mask=mask, context=latents, context_mask=context_mask, steps=3)
    assert torch.equal(out[context_mask], latents[context_mask])
    assert not torch.allclose(out[mask & ~context_mask], latents[mask & ~context_mask])


def test_guidance_scale_one_equals_conditional_sampling():
    torch.manual_seed(0)
    model = trained_looking(ConditionalFlowMatcher(flow_config()))
    semantic, latents, mask = batch()
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(5))
    kw = dict(mask=mask, context=latents, context_mask=mask & (torch.arange(12) < 4), noise=noise)
    plain = model.sample(semantic, steps=4, **kw)
    guided_1 = model.sample(semantic, steps=4, guidance_scale=1.0, **kw)
    guided_3 = model.sample(semantic, steps=4, guidance_scale=3.0, **kw)
    assert torch.equal(plain, guided_1)
    assert not torch.allclose(plain, guided_3, atol=1e-4)
    # guidance mixes cond and uncond velocities batched together: scale 0 is the unconditional model
    uncond = model.sample(semantic, steps=4, guidance_scale=0.0, **kw)
    semantic2 = torch.randn_like(semantic)
    uncond2 = model.sample(semantic2, steps=4, guidance_scale=0.0, **kw)
    # the unconditional branch ignores semantic conditions (only the prior still sees them)
    model_g = ConditionalFlowMatcher(flow_config(prior="gaussian"))
    trained_looking(model_g)
    a = model_g.sample(semantic, steps=2, guidance_scale=0.0, **kw)
    b = model_g.sample(semantic2, steps=2, guidance_scale=0.0, **kw)
    assert_close(a, b)
    assert not torch.allclose(uncond, uncond2)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_batch_padding_invariance(kind, method):
    torch.manual_seed(0)
    model = trained_looking(ConditionalFlowMatcher(flow_config(kind)))
    gen = torch.Generator().manual_seed(7)
    lengths = [12, 7, 9]
    semantic = torch.randn(3, 12, 16, generator=gen)
    latents = torch.randn(3, 12, 8, generator=gen)
    noise = torch.randn(3, 12, 8, generator=gen)
    mask = torch.arange(12)[None] < torch.tensor(lengths)[:, None]
    context_mask = mask & (torch.arange(12)[None] < 3)
    kw = dict(steps=3, method=method, guidance_scale=2.0)
    together = model.sample(
        semantic, mask=mask, context=latents, context_mask=context_mask, noise=noise, **kw
    )
    for i, n in enumerate(lengths):
        alone = model.sample(
            semantic[i : i + 1, :n],
            context=latents[i : i + 1, :n],
            context_mask=context_mask[i : i + 1, :n],
            noise=noise[i : i + 1, :n],
            **kw,
        )
        assert_close(together[i, :n], alone[0], atol=1e-5, rtol=1e-4)
        assert torch.all(together[i, n:] == 0)


def test_sample_is_reproducible_with_a_generator():
    model = trained_looking(ConditionalFlowMatcher(flow_config()))
    semantic, _, mask = batch()
    a = model.sample(semantic, mask=mask, generator=torch.Generator().manual_seed(3))
    b = model.sample(semantic, mask=mask, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(tmp_path, kind):
    torch.manual_seed(0)
    config = HierarchicalFlowMatcherConfig.tiny(flow=flow_config(kind))
    model = trained_looking(HierarchicalConditionalFlowMatcher(config))
    model.flow.set_latent_statistics(torch.linspace(-1, 1, 8), torch.linspace(0.5, 2, 8))
    model.save_pretrained(tmp_path / "m")
    loaded = load_pretrained(tmp_path / "m")
    assert type(loaded) is HierarchicalConditionalFlowMatcher and loaded.config == config
    tokens = torch.randint(0, 32, (2, 10), generator=torch.Generator().manual_seed(0))
    noise = torch.randn(2, 20, 8, generator=torch.Generator().manual_seed(1))
    a = model.sample(tokens, noise=noise, steps=3, guidance_scale=1.5).latents
    b = loaded.sample(tokens, noise=noise, steps=3, guidance_scale=1.5).latents
    assert torch.equal(a, b)
    # a bare ConditionalFlowMatcher too
    flow = trained_looking(ConditionalFlowMatcher(flow_config(kind)))
    flow.save_pretrained(tmp_path / "f")
    again = ConditionalFlowMatcher.load_pretrained(tmp_path / "f")
    semantic, _, mask = batch()
    noise = torch.randn(3, 12, 8)
    assert torch.equal(
        flow.sample(semantic, mask=mask, noise=noise),
        again.sample(semantic, mask=mask, noise=noise),
    )


def test_config_json_round_trip_and_validation():
    config = HierarchicalFlowMatcherConfig.tiny()
    assert HierarchicalFlowMatcherConfig.from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match="cond_dim"):
        FlowMatcherConfig(backbone=BackboneConfig(dim=32, heads=2))
    with pytest.raises(ConfigError, match="prior"):
        FlowMatcherConfig.from_dict({"prior": "uniform"})
    with pytest.raises(ConfigError, match="sigma_min"):
        FlowMatchingTrainConfig(sigma_min=1.5)


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(cond_drop_prob=1.5), "cond_drop_prob"),
        (dict(context_prob=-0.1), "context_prob"),
        (dict(min_generate_fraction=2.0), "min_generate_fraction"),
        (dict(prior_loss_weight=-1.0), "prior_loss_weight"),
    ],
)
def test_bad_train_config_is_refused(changes, match):
    with pytest.raises(ConfigError, match=match):
        FlowMatchingTrainConfig(**changes)


def test_training_settings_are_not_in_the_model_config():
    moved = {
        "sigma_min",
        "prior_loss_weight",
        "cond_drop_prob",
        "context_prob",
        "min_generate_fraction",
    }
    assert not moved & set(FlowMatcherConfig().to_dict())
    assert set(FlowMatcherConfig.dropped_keys) == moved == set(FlowMatchingTrainConfig().to_dict())
    train = FlowMatchingTrainConfig()
    assert (train.sigma_min, train.prior_loss_weight, train.cond_drop_prob) == (1e-4, 1.0, 0.2)
    assert (train.context_prob, train.min_generate_fraction) == (0.7, 0.7)
    assert FlowMatchingTrainConfig.from_json(train.to_json()) == train
    with pytest.raises(ConfigError, match="unknown key"):  # a format-2 config must not hold them
        FlowMatcherConfig.from_dict({"cond_drop_prob": 0.2})


# -- hierarchical ------------------------------------------------------------------------


def test_frame_rate_mapping():
    config = HierarchicalFlowMatcherConfig.tiny(semantic_frame_rate=50.0, latent_frame_rate=75.0)
    model = HierarchicalConditionalFlowMatcher(config)
    with torch.no_grad():
        model.semantic_embedding.weight.copy_(torch.arange(32.0)[:, None].expand(32, 16))
    tokens = torch.arange(6)[None]  # 6 tokens at 50 Hz = 0.12 s = 9 latent frames at 75 Hz
    semantic, mask = model.tokens_to_frames(tokens)
    assert semantic.shape == (1, 9, 16) and bool(mask.all())
    # latent frame j takes the token whose frame holds its centre (j + 1/2) / 75 s
    expected = [int((j + 0.5) / 75 * 50) for j in range(9)]
    assert semantic[0, :, 0].long().tolist() == expected == [0, 1, 1, 2, 3, 3, 4, 5, 5]
    # 25 Hz -> 50 Hz: each token twice
    model2 = HierarchicalConditionalFlowMatcher(HierarchicalFlowMatcherConfig.tiny())
    assert model2.num_latent_frames(torch.tensor([7])).item() == 14


@pytest.mark.parametrize("with_context", [False, True])
def test_hierarchical_generates_with_and_without_context(with_context):
    torch.manual_seed(0)
    model = trained_looking(
        HierarchicalConditionalFlowMatcher(HierarchicalFlowMatcherConfig.tiny())
    )
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 32, (2, 10), generator=gen)
    tokens_mask = torch.tensor([[True] * 10, [True] * 6 + [False] * 4])
    kwargs = {}
    if with_context:
        prompt_latents = torch.randn(2, 8, 8, generator=gen)
        kwargs = dict(
            prompt_tokens=torch.randint(0, 32, (2, 4), generator=gen),
            prompt_latents=prompt_latents,
            prompt_latents_mask=torch.tensor([[True] * 8, [True] * 5 + [False] * 3]),
            prompt_tokens_mask=torch.tensor([[True] * 4, [True] * 3 + [False]]),
        )
    out = model.generate(tokens, tokens_mask, steps=2, guidance_scale=1.5, **kwargs)
    assert out.latents.shape == (2, 20, 8)
    assert out.lengths.tolist() == [20, 12]
    assert torch.isfinite(out.latents).all() and torch.all(out.latents[1, 12:] == 0)

    # training with and without context
    latents = torch.randn(2, 20, 8)
    latents_mask = out.mask.clone()  # generate's outputs are inference tensors
    step = FlowMatchingTrainStep()
    batch = dict(tokens=tokens, tokens_mask=tokens_mask, latents=latents, latents_mask=latents_mask)
    loss = step(model, batch).loss
    loss.backward()
    draw = step.draw(latents, latents_mask, context_mask=torch.zeros(2, 20, dtype=torch.bool))
    no_ctx = step.loss(model(tokens, latents, tokens_mask, latents_mask, draw=draw), draw)
    assert torch.isfinite(no_ctx.loss)


def test_hierarchical_prompt_conditions_the_generated_part():
    torch.manual_seed(0)
    model = trained_looking(
        HierarchicalConditionalFlowMatcher(HierarchicalFlowMatcherConfig.tiny())
    )
    tokens = torch.randint(0, 32, (1, 6))
    prompt_tokens = torch.randint(0, 32, (1, 4))
    outs = []
    for scale in (1.0, 5.0):
        outs.append(
            model.generate(
                tokens,
                prompt_tokens=prompt_tokens,
                prompt_latents=scale * torch.ones(1, 8, 8),
                steps=2,
                generator=torch.Generator().manual_seed(0),
            ).latents
        )
    assert outs[0].shape == (1, 12, 8)
    assert not torch.allclose(outs[0], outs[1])


def test_voice_conversion_with_fake_models():
    torch.manual_seed(0)
    tokenizer = FakeSemanticTokenizer(hop_length=640, codebook_size=32)
    codec = FakeCodec(latent_dim=8)
    model = trained_looking(
        HierarchicalConditionalFlowMatcher(HierarchicalFlowMatcherConfig.tiny())
    )
    source = 0.1 * torch.randn(2, 1, 8000)
    target = 0.1 * torch.randn(2, 1, 6400)
    audio = voice_conversion(model, tokenizer, codec, source, target, sample_rate=16000, steps=2)
    # 8000 samples -> 12 tokens at 25 Hz -> 24 latent frames at 50 Hz -> 24 * 320 samples
    assert audio.shape == (2, 1, 24 * 320) and torch.isfinite(audio).all()
    # resampled inputs work too
    audio8k = voice_conversion(
        model, tokenizer, codec, source[..., ::2], target[..., ::2], sample_rate=8000, steps=1
    )
    assert audio8k.shape == (2, 1, 24 * 320)


# -- bad input -------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    model = HierarchicalConditionalFlowMatcher(HierarchicalFlowMatcherConfig.tiny())
    flow = model.flow
    semantic, latents, mask = batch()
    with pytest.raises(ValueError, match="semantic must be"):
        flow.sample(semantic[..., :5])
    with pytest.raises(ValueError, match="latents must be"):
        flow(latents[..., :3], semantic, draw=FlowMatchingTrainStep().draw(latents))
    with pytest.raises(ValueError, match="context must be"):
        flow.sample(semantic, context=latents[:, :5])
    with pytest.raises(ValueError, match="context_mask was given without context"):
        flow.sample(semantic, context_mask=mask)
    with pytest.raises(ValueError, match="bool"):
        flow.sample(semantic, mask=mask.long())
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        flow.sample(semantic, steps=0)
    with pytest.raises(IdRangeError, match="codebook_size=32"):
        model.sample(torch.full((1, 4), 40))
    with pytest.raises(IdRangeError, match="must hold integer ids"):
        model.sample(torch.zeros(1, 4))
    with pytest.raises(IdRangeError, match=r"must be \(b, n\)"):
        model.sample(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="both prompt_tokens and prompt_latents"):
        model.generate(
            torch.zeros(1, 4, dtype=torch.long), prompt_tokens=torch.zeros(1, 2, dtype=torch.long)
        )
    with pytest.raises(ValueError, match="semantic_frame_rate"):
        # 10 tokens at 25 Hz are 20 latent frames, not 50
        latents = torch.randn(1, 50, 8)
        model(
            torch.zeros(1, 10, dtype=torch.long),
            latents,
            draw=FlowMatchingTrainStep().draw(latents),
        )
    with pytest.raises(ConfigError, match="codebook_size 64 != 32"):
        model.check_compatible(tokenizer=FakeSemanticTokenizer(hop_length=640, codebook_size=64))
    with pytest.raises(ConfigError, match="latent_dim 16 != 8"):
        model.check_compatible(codec=FakeCodec(latent_dim=16))


def test_padded_tokens_may_hold_any_id():
    # Only real tokens are range-checked: collated batches pad with anything.
    model = HierarchicalConditionalFlowMatcher(HierarchicalFlowMatcherConfig.tiny())
    tokens = torch.tensor([[1, 2, 3, 4], [5, 6, -1, 99]])
    tokens_mask = torch.tensor([[True] * 4, [True, True, False, False]])
    out = model.sample(tokens, tokens_mask, steps=1)
    assert out.lengths.tolist() == [8, 4]
