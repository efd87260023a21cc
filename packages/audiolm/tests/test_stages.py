"""The three stage transformers: cached sampling, guidance, EOS, prompts, checkpoints, errors."""

from __future__ import annotations

import pytest
import torch

from cadence.audiolm import (
    CoarseTransformer,
    CoarseTransformerConfig,
    FineTransformer,
    FineTransformerConfig,
    SemanticTransformer,
    SemanticTransformerConfig,
)
from cadence.core.config import ConfigError

COND_DIM = 12


def make(stage: str, cond_mode: str | None = None, seed: int = 0, **changes):
    torch.manual_seed(seed)
    kw = dict(changes)
    if cond_mode is not None:
        kw.update(cond_dim=COND_DIM, cond_mode=cond_mode)
    if stage == "semantic":
        return SemanticTransformer(SemanticTransformerConfig.tiny(**kw)).eval()
    if stage == "coarse":
        return CoarseTransformer(CoarseTransformerConfig.tiny(**kw)).eval()
    return FineTransformer(FineTransformerConfig.tiny(**kw)).eval()


def sample_fn(model, batch: int = 3):
    """A generate() call with varied prompt and input lengths for the model's stage."""
    g = torch.Generator().manual_seed(1)
    if isinstance(model, SemanticTransformer):
        prompt = torch.randint(0, 32, (batch, 4), generator=g)
        lengths = torch.tensor([4, 2, 0, 3][:batch])
        return lambda **k: model.generate(prompt, lengths, max_frames=10, **k), (prompt, lengths)
    if isinstance(model, CoarseTransformer):
        semantic = torch.randint(0, 32, (batch, 7), generator=g)
        prompt = torch.randint(0, 64, (batch, 2, 2), generator=g)
        lengths = torch.tensor([2, 1, 0, 2][:batch])
        return (
            lambda **k: model.generate(semantic, torch.tensor([7, 5, 3, 6][:batch]), prompt=prompt, prompt_lengths=lengths, **k),
            (prompt, lengths),
        )
    coarse = torch.randint(0, 64, (batch, 6, 2), generator=g)
    prompt = torch.randint(0, 64, (batch, 2, 2), generator=g)
    lengths = torch.tensor([2, 0, 1, 2][:batch])
    return (
        lambda **k: model.generate(coarse, torch.tensor([6, 4, 3, 5][:batch]), prompt=prompt, prompt_lengths=lengths, **k),
        (prompt, lengths),
    )


def condition(batch: int = 3):
    g = torch.Generator().manual_seed(2)
    cond = torch.randn(batch, 5, COND_DIM, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)[:batch]
    return {"cond": cond, "cond_mask": mask}


def finite_close(a: torch.Tensor, b: torch.Tensor, atol: float) -> bool:
    """Equal where finite (masked classes are -inf in both)."""
    same_inf = torch.isinf(a) == torch.isinf(b)
    finite = torch.isfinite(a)
    return bool(same_inf.all()) and torch.allclose(a[finite], b[finite], atol=atol, rtol=0)


STAGES = ["semantic", "coarse", "fine"]


@pytest.mark.parametrize("cond_mode", [None, "cross", "prefix"])
@pytest.mark.parametrize("stage", STAGES)
def test_cached_sampling_equals_uncached(stage, cond_mode):
    model = make(stage, cond_mode)
    run, _ = sample_fn(model)
    cond = condition() if cond_mode else {}
    cached = run(temperature=0, use_cache=True, return_logits=True, **cond)
    full = run(temperature=0, use_cache=False, return_logits=True, **cond)
    assert torch.equal(cached.codes, full.codes)
    assert torch.equal(cached.lengths, full.lengths)
    assert finite_close(cached.logits, full.logits, 1e-4)
    # and sampled (not greedy) draws agree too with the same generator
    a = run(temperature=1.0, top_k=10, use_cache=True, generator=torch.Generator().manual_seed(3), **cond)
    b = run(temperature=1.0, top_k=10, use_cache=False, generator=torch.Generator().manual_seed(3), **cond)
    assert torch.equal(a.codes, b.codes)


@pytest.mark.parametrize("cond_mode", ["cross", "prefix"])
@pytest.mark.parametrize("stage", STAGES)
def test_guidance(stage, cond_mode):
    model = make(stage, cond_mode)
    run, _ = sample_fn(model)
    cond = condition()
    plain = run(temperature=0, return_logits=True, **cond)
    scale_one = run(temperature=0, return_logits=True, cond_scale=1.0, **cond)
    assert torch.equal(plain.codes, scale_one.codes)
    assert finite_close(plain.logits, scale_one.logits, 1e-5)
    # scale 0 is the unconditional model: the null half of the guided batch must match a run
    # with no condition at all
    scale_zero = run(temperature=0, return_logits=True, cond_scale=0.0, **cond)
    uncond = run(temperature=0, return_logits=True)
    assert torch.equal(scale_zero.codes, uncond.codes)
    assert finite_close(scale_zero.logits, uncond.logits, 1e-4)
    # a real guidance scale changes the result, and runs cached == uncached
    guided = run(temperature=0, return_logits=True, cond_scale=3.0, **cond)
    guided_full = run(temperature=0, return_logits=True, cond_scale=3.0, use_cache=False, **cond)
    assert not finite_close(guided.logits[:, :1], plain.logits[:, :1], 1e-3)
    assert finite_close(guided.logits, guided_full.logits, 1e-4)


def test_condition_changes_output_and_mask_matters():
    model = make("semantic", "cross")
    cond = condition()
    logits = model.generate(batch_size=3, max_frames=3, temperature=0, return_logits=True, **cond).logits
    other = dict(cond, cond=cond["cond"].clone())
    other["cond"][0, 3:] += 10.0  # masked positions of row 0: no effect
    other["cond"][1, 0] += 10.0  # a real position of row 1: an effect
    logits2 = model.generate(batch_size=3, max_frames=3, temperature=0, return_logits=True, **other).logits
    assert finite_close(logits[0], logits2[0], 1e-5)
    assert not finite_close(logits[1], logits2[1], 1e-3)


@pytest.mark.parametrize("stage", STAGES)
def test_prompt_is_preserved(stage):
    model = make(stage)
    run, (prompt, lengths) = sample_fn(model)
    out = run(temperature=1.0, generator=torch.Generator().manual_seed(0))
    for i, n in enumerate(lengths.tolist()):
        assert torch.equal(out.codes[i, :n], prompt[i, :n])
        assert out.lengths[i] >= n
    assert torch.equal(out.mask, torch.arange(out.codes.shape[1])[None] < out.lengths[:, None])


@pytest.mark.parametrize("stage", ["semantic", "coarse"])
def test_eos_stops_rows_independently(stage):
    model = make(stage)
    run, (_, prompt_lengths) = sample_fn(model, batch=4)
    k = model.target_codebook_size
    # Greedy with EOS pushed far down: the margin by which EOS loses at every level-0 step
    with torch.no_grad():
        model.head_bias[0, k] -= 100.0
    free = run(temperature=0, return_logits=True)
    q = model.num_levels
    level0 = free.logits[:, ::q]  # (b, frames generated, v)
    gap = level0[..., :k].max(-1).values - level0[..., k]
    # Raise the EOS bias so that EOS wins where the gap is below a threshold: rows then stop
    # at the first such step, which differs between rows.
    threshold = gap[0, 1].item() + 1e-3
    with torch.no_grad():
        model.head_bias[0, k] += threshold
    out = run(temperature=0, return_logits=True)
    wins = gap < threshold
    new_frames = free.lengths - prompt_lengths
    expected = []
    for i in range(4):
        hits = wins[i, : new_frames[i]].nonzero()
        expected.append(int(hits[0]) if len(hits) else int(new_frames[i]))
    expected = torch.tensor(expected) + prompt_lengths
    assert torch.equal(out.lengths, expected)
    assert len(set(expected.tolist())) > 1, "the test needs rows that stop at different steps"
    for i in range(4):
        n = int(expected[i])
        # before its EOS a row is what it was without EOS; after it, padding
        assert torch.equal(out.codes[i, :n], free.codes[i, :n])
        assert (out.codes[i, n:] == 0).all()
    assert torch.equal(out.mask, torch.arange(out.codes.shape[1])[None] < expected[:, None])


@pytest.mark.parametrize("cond_mode", ["cross", "prefix"])
def test_condition_dropout_in_training(cond_mode):
    tokens = torch.randint(0, 32, (3, 12), generator=torch.Generator().manual_seed(0))
    cond = condition()
    always = make("semantic", cond_mode, cond_drop_prob=0.999).train()
    never = make("semantic", cond_mode, cond_drop_prob=0.0).train()  # same seed: same weights
    torch.manual_seed(0)
    dropped = always(tokens, **cond).loss
    unconditional = always(tokens).loss
    kept = never(tokens, **cond).loss
    # a dropped condition is exactly the null condition; a kept one is not
    assert torch.allclose(dropped, unconditional, atol=1e-6)
    assert not torch.allclose(kept, unconditional, atol=1e-4)


def test_sampling_ignores_training_mode_dropout():
    model = make("semantic", attn_dropout=0.3, ff_dropout=0.3).train()
    run, _ = sample_fn(model)
    a = run(temperature=0, use_cache=False, return_logits=True)
    assert model.training, "generate restores the module's mode"
    b = run(temperature=0, use_cache=True, return_logits=True)
    assert torch.equal(a.codes, b.codes) and finite_close(a.logits, b.logits, 1e-4)


def test_rows_are_independent_of_each_other():
    model = make("semantic")
    run, (prompt, lengths) = sample_fn(model)
    batch = run(temperature=0)
    for i in range(3):
        alone = model.generate(prompt[i : i + 1, : lengths[i]], max_frames=10, temperature=0)
        n = int(batch.lengths[i])
        assert torch.equal(alone.codes[0, :n], batch.codes[i, :n])


@pytest.mark.parametrize("stage", STAGES)
def test_save_load_round_trip(stage, tmp_path):
    model = make(stage, "cross")
    model.save_pretrained(tmp_path / stage)
    loaded = type(model).load_pretrained(tmp_path / stage).eval()
    assert loaded.config == model.config
    run_a, _ = sample_fn(model)
    run_b, _ = sample_fn(loaded)
    a = run_a(temperature=0, return_logits=True, **condition())
    b = run_b(temperature=0, return_logits=True, **condition())
    assert torch.equal(a.codes, b.codes)
    assert finite_close(a.logits, b.logits, 0)


def test_forward_loss_ignores_padding():
    model = make("coarse")
    g = torch.Generator().manual_seed(0)
    semantic = torch.randint(0, 32, (2, 6), generator=g)
    codes = torch.randint(0, 64, (2, 6, 2), generator=g)
    short = model(semantic[:1, :4], codes[:1, :4])
    padded_sem = semantic.clone()
    padded_codes = codes.clone()
    padded_sem[0, 4:] = 7
    padded_codes[0, 4:] = 9
    both = model(padded_sem[:1], padded_codes[:1], semantic_lengths=torch.tensor([4]), lengths=torch.tensor([4]))
    assert torch.allclose(short.loss, both.loss, atol=1e-6)


def test_long_form_semantic_and_coarse():
    semantic_model = make("semantic")
    window = 24
    out = semantic_model.generate_long(
        batch_size=2, total_frames=60, window_frames=window, keep_frames=8, temperature=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.codes.shape[0] == 2 and out.codes.shape[1] <= 60
    assert (out.lengths > window).all(), "long-form must go beyond one window"
    prompt = out.codes[:, :10]
    again = semantic_model.generate_long(prompt, total_frames=40, window_frames=window, keep_frames=8, temperature=1.0)
    assert torch.equal(again.codes[:, :10], prompt)

    coarse_model = make("coarse")
    semantic = torch.randint(0, 32, (2, 50), generator=torch.Generator().manual_seed(0))
    coarse = coarse_model.generate_long(semantic, window_frames=16, keep_frames=6, temperature=1.0, allow_eos=False)
    assert coarse.codes.shape == (2, 50, 2)
    assert (coarse.lengths == 50).all()
    fine_model = make("fine")
    fine = fine_model.generate_long(coarse.codes, window_frames=16, keep_frames=4, temperature=1.0)
    assert fine.codes.shape == (2, 50, 2)


def test_bad_inputs_raise_clear_errors():
    semantic = make("semantic")
    with pytest.raises(ValueError, match="codebook has 32 entries"):
        semantic(torch.full((1, 5), 40))
    with pytest.raises(TypeError, match="integer ids"):
        semantic(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="built without conditioning"):
        semantic.generate(batch_size=1, max_frames=3, cond=torch.randn(1, 2, COND_DIM))
    with pytest.raises(ValueError, match="needs a condition"):
        make("semantic", "cross").generate(batch_size=1, max_frames=3, cond_scale=2.0)
    with pytest.raises(ValueError, match="cond_dim=12"):
        make("semantic", "cross").generate(batch_size=1, max_frames=3, cond=torch.randn(1, 2, 5))
    with pytest.raises(ValueError, match="max_cond_len"):
        make("semantic", "prefix").generate(batch_size=1, max_frames=3, cond=torch.randn(1, 9, COND_DIM))
    coarse = make("coarse")
    with pytest.raises(ValueError, match="num_coarse_quantizers=2"):
        coarse(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, 3, dtype=torch.long))
    fine = make("fine")
    with pytest.raises(ValueError, match="num_fine_quantizers=2"):
        fine(torch.zeros(1, 4, 2, dtype=torch.long), torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ConfigError, match="cond_mode"):
        SemanticTransformerConfig.from_dict({"cond_mode": "adaptive"})
    with pytest.raises(ConfigError, match="dim_head"):
        SemanticTransformerConfig.tiny(dim_head=15)
