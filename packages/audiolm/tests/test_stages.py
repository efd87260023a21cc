"""The three stage transformers: cached sampling, guidance, EOS, prompts, checkpoints, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cadence.audiolm import (
    AudioLMTrainConfig,
    CoarseTransformer,
    CoarseTransformerConfig,
    FineTransformer,
    FineTransformerConfig,
    SamplingOptions,
    SemanticTransformer,
    SemanticTransformerConfig,
    StageTrainStep,
    stage_step,
)
from cadence.core.config import ConfigError, upgrade_config_dict
from cadence.core.validation import IdRangeError

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
            lambda **k: model.generate(
                semantic,
                torch.tensor([7, 5, 3, 6][:batch]),
                prompt=prompt,
                prompt_lengths=lengths,
                **k,
            ),
            (prompt, lengths),
        )
    coarse = torch.randint(0, 64, (batch, 6, 2), generator=g)
    prompt = torch.randint(0, 64, (batch, 2, 2), generator=g)
    lengths = torch.tensor([2, 0, 1, 2][:batch])
    return (
        lambda **k: model.generate(
            coarse, torch.tensor([6, 4, 3, 5][:batch]), prompt=prompt, prompt_lengths=lengths, **k
        ),
        (prompt, lengths),
    )


def forward_inputs(model, batch: int = 2) -> tuple[tuple, dict]:
    """Teacher-forcing inputs ``(args, kwargs)`` of a stage's forward, rows of different lengths."""
    g = torch.Generator().manual_seed(4)
    if isinstance(model, SemanticTransformer):
        return (torch.randint(0, 32, (batch, 8), generator=g), torch.tensor([8, 5][:batch])), {}
    if isinstance(model, CoarseTransformer):
        args = (
            torch.randint(0, 32, (batch, 6), generator=g),
            torch.randint(0, 64, (batch, 6, 2), generator=g),
        )
        return args, {
            "semantic_lengths": torch.tensor([6, 4][:batch]),
            "lengths": torch.tensor([6, 4][:batch]),
        }
    args = (
        torch.randint(0, 64, (batch, 6, 2), generator=g),
        torch.randint(0, 64, (batch, 6, 2), generator=g),
    )
    return args, {"lengths": torch.tensor([6, 3][:batch])}


def condition(batch: int = 3):
    g = torch.Generator().manual_seed(2)
    cond = torch.randn(batch, 5, COND_DIM, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)[
        :batch
    ]
    return {"cond": cond, "cond_mask": mask}


def finite_close(a: torch.Tensor, b: torch.Tensor, atol: float) -> bool:
    """Equal where finite (masked classes are -inf in both)."""
    same_inf = torch.isinf(a) == torch.isinf(b)
    finite = torch.isfinite(a)
    return bool(same_inf.all()) and torch.allclose(a[finite], b[finite], atol=atol, rtol=0)


STAGES = ["semantic", "coarse", "fine"]
GREEDY = SamplingOptions(temperature=0)


@pytest.mark.parametrize("cond_mode", [None, "cross", "prefix"])
@pytest.mark.parametrize("stage", STAGES)
def test_cached_sampling_equals_uncached(stage, cond_mode):
    model = make(stage, cond_mode)
    run, _ = sample_fn(model)
    cond = condition() if cond_mode else {}
    cached = run(
        sampling=SamplingOptions(temperature=0, use_cache=True), return_logits=True, **cond
    )
    full = run(sampling=SamplingOptions(temperature=0, use_cache=False), return_logits=True, **cond)
    assert torch.equal(cached.codes, full.codes)
    assert torch.equal(cached.lengths, full.lengths)
    assert finite_close(cached.logits, full.logits, 1e-4)
    # and sampled (not greedy) draws agree too with the same generator
    a = run(
        sampling=SamplingOptions(top_k=10, use_cache=True),
        generator=torch.Generator().manual_seed(3),
        **cond,
    )
    b = run(
        sampling=SamplingOptions(top_k=10, use_cache=False),
        generator=torch.Generator().manual_seed(3),
        **cond,
    )
    assert torch.equal(a.codes, b.codes)


@pytest.mark.parametrize("cond_mode", ["cross", "prefix"])
@pytest.mark.parametrize("stage", STAGES)
def test_guidance(stage, cond_mode):
    model = make(stage, cond_mode)
    run, _ = sample_fn(model)
    cond = condition()
    plain = run(sampling=GREEDY, return_logits=True, **cond)
    scale_one = run(
        sampling=SamplingOptions(temperature=0, guidance_scale=1.0), return_logits=True, **cond
    )
    assert torch.equal(plain.codes, scale_one.codes)
    assert finite_close(plain.logits, scale_one.logits, 1e-5)
    # scale 0 is the unconditional model: the null half of the guided batch must match a run
    # with no condition at all
    scale_zero = run(
        sampling=SamplingOptions(temperature=0, guidance_scale=0.0), return_logits=True, **cond
    )
    uncond = run(sampling=GREEDY, return_logits=True)
    assert torch.equal(scale_zero.codes, uncond.codes)
    assert finite_close(scale_zero.logits, uncond.logits, 1e-4)
    # a real guidance scale changes the result, and runs cached == uncached
    guided = run(
        sampling=SamplingOptions(temperature=0, guidance_scale=3.0), return_logits=True, **cond
    )
    guided_full = run(
        sampling=SamplingOptions(temperature=0, guidance_scale=3.0, use_cache=False),
        return_logits=True,
        **cond,
    )
    assert not finite_close(guided.logits[:, :1], plain.logits[:, :1], 1e-3)
    assert finite_close(guided.logits, guided_full.logits, 1e-4)


def test_condition_changes_output_and_mask_matters():
    model = make("semantic", "cross")
    cond = condition()
    logits = model.generate(
        batch_size=3, max_frames=3, sampling=GREEDY, return_logits=True, **cond
    ).logits
    other = dict(cond, cond=cond["cond"].clone())
    other["cond"][0, 3:] += 10.0  # masked positions of row 0: no effect
    other["cond"][1, 0] += 10.0  # a real position of row 1: an effect
    logits2 = model.generate(
        batch_size=3, max_frames=3, sampling=GREEDY, return_logits=True, **other
    ).logits
    assert finite_close(logits[0], logits2[0], 1e-5)
    assert not finite_close(logits[1], logits2[1], 1e-3)


@pytest.mark.parametrize("stage", STAGES)
def test_prompt_is_preserved(stage):
    model = make(stage)
    run, (prompt, lengths) = sample_fn(model)
    out = run(generator=torch.Generator().manual_seed(0))
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
    free = run(sampling=GREEDY, return_logits=True)
    q = model.num_levels
    level0 = free.logits[:, ::q]  # (b, frames generated, v)
    gap = level0[..., :k].max(-1).values - level0[..., k]
    # Raise the EOS bias so that EOS wins where the gap is below a threshold: rows then stop
    # at the first such step, which differs between rows.
    threshold = gap[0, 1].item() + 1e-3
    with torch.no_grad():
        model.head_bias[0, k] += threshold
    out = run(sampling=GREEDY, return_logits=True)
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
    batch = {"tokens": tokens, "tokens_lengths": torch.full((3,), 12)}
    cond = condition()
    model = make("semantic", cond_mode).train()
    always = StageTrainStep(AudioLMTrainConfig(cond_drop_prob=0.999))
    never = StageTrainStep(AudioLMTrainConfig(cond_drop_prob=0.0))
    torch.manual_seed(0)
    dropped = always(model, {**batch, **cond}).loss
    unconditional = always(model, batch).loss
    kept = never(model, {**batch, **cond}).loss
    # a dropped condition is exactly the null condition; a kept one is not
    assert torch.allclose(dropped, unconditional, atol=1e-6)
    assert not torch.allclose(kept, unconditional, atol=1e-4)


@pytest.mark.parametrize("cond_mode", ["cross", "prefix"])
@pytest.mark.parametrize("stage", STAGES)
def test_forward_keep_false_is_the_null_condition(stage, cond_mode):
    model = make(stage, cond_mode)
    args, kwargs = forward_inputs(model)
    cond = condition(2)
    dropped = model(*args, **kwargs, keep=torch.tensor([False, True]), **cond).logits
    unconditional = model(*args, **kwargs).logits
    kept = model(*args, **kwargs, **cond).logits
    assert torch.allclose(dropped[0], unconditional[0], atol=1e-5)
    assert torch.allclose(dropped[1], kept[1], atol=1e-5)
    assert not torch.allclose(kept[0], unconditional[0], atol=1e-4)


def test_condition_dropout_comes_from_the_global_rng_and_only_in_training():
    model = make("semantic", "cross").train()  # the tiny config has no decoder dropout
    batch = {
        "tokens": torch.randint(0, 32, (3, 12)),
        "tokens_lengths": torch.full((3,), 12),
        **condition(),
    }
    step = StageTrainStep(AudioLMTrainConfig(cond_drop_prob=0.5))
    # the Trainer reseeds the global RNG per micro-batch: the same seed, the same step
    torch.manual_seed(1)
    a = step(model, batch).loss
    torch.manual_seed(1)
    b = step(model, batch).loss
    assert torch.equal(a, b)
    draws = {tuple(step.condition_keep(model, batch, batch["tokens"]).tolist()) for _ in range(20)}
    assert len(draws) > 1
    model.eval()
    assert step.condition_keep(model, batch, batch["tokens"]) is None, "no dropout outside training"
    assert (
        StageTrainStep().config == AudioLMTrainConfig() and stage_step.config.cond_drop_prob == 0.1
    )


def test_sampling_ignores_training_mode_dropout():
    model = make("semantic", attn_dropout=0.3, ff_dropout=0.3).train()
    run, _ = sample_fn(model)
    a = run(sampling=SamplingOptions(temperature=0, use_cache=False), return_logits=True)
    assert model.training, "generate restores the module's mode"
    b = run(sampling=SamplingOptions(temperature=0, use_cache=True), return_logits=True)
    assert torch.equal(a.codes, b.codes) and finite_close(a.logits, b.logits, 1e-4)


def test_rows_are_independent_of_each_other():
    model = make("semantic")
    run, (prompt, lengths) = sample_fn(model)
    batch = run(sampling=GREEDY)
    for i in range(3):
        alone = model.generate(prompt[i : i + 1, : lengths[i]], max_frames=10, sampling=GREEDY)
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
    a = run_a(sampling=GREEDY, return_logits=True, **condition())
    b = run_b(sampling=GREEDY, return_logits=True, **condition())
    assert torch.equal(a.codes, b.codes)
    assert finite_close(a.logits, b.logits, 0)


def test_forward_loss_ignores_padding():
    model = make("coarse")
    g = torch.Generator().manual_seed(0)
    semantic = torch.randint(0, 32, (2, 6), generator=g)
    codes = torch.randint(0, 64, (2, 6, 2), generator=g)

    def batch(sem, cod, sem_lengths, lengths):
        return {
            "semantic": sem,
            "codes": cod,
            "semantic_lengths": sem_lengths,
            "codes_lengths": lengths,
        }

    short = stage_step(
        model, batch(semantic[:1, :4], codes[:1, :4], torch.tensor([4]), torch.tensor([4]))
    )
    padded_sem = semantic.clone()
    padded_codes = codes.clone()
    padded_sem[0, 4:] = 7
    padded_codes[0, 4:] = 9
    both = stage_step(
        model, batch(padded_sem[:1], padded_codes[:1], torch.tensor([4]), torch.tensor([4]))
    )
    assert torch.allclose(short.loss, both.loss, atol=1e-6)
    # and the predictions of the real frames are the same
    a = model(semantic[:1, :4], codes[:1, :4])
    b = model(
        padded_sem[:1],
        padded_codes[:1],
        semantic_lengths=torch.tensor([4]),
        lengths=torch.tensor([4]),
    )
    assert torch.allclose(a.logits, b.logits[:, :4], atol=1e-5) and torch.allclose(
        a.eos_logits, b.eos_logits, atol=1e-5
    )
    assert b.mask.tolist() == [[True] * 4 + [False] * 2]


@pytest.mark.parametrize("stage", STAGES)
def test_forward_logits_line_up_with_the_codes(stage):
    """``logits[:, i, j]`` predicts code ``[:, i, j]``: it sees the codes before it, not it or after."""
    model = make(stage)
    args, kwargs = forward_inputs(model, batch=1)
    codes = args[-1] if stage != "semantic" else args[0][..., None]
    n, q = codes.shape[1:]
    base = model(*args, **kwargs).logits.flatten(1, 2)  # (1, n q, v), in the flat order
    t = 2 * q + q // 2  # a position inside frame 2
    changed = codes.clone().flatten(1)
    changed[:, t:] = (changed[:, t:] + 1) % 32
    changed = changed.view_as(codes)
    new_args = (changed[..., 0], args[1]) if stage == "semantic" else (args[0], changed)
    out = model(*new_args, **kwargs)
    logits = out.logits.flatten(1, 2)
    assert out.logits.shape[:3] == (1, n, q)
    assert torch.allclose(logits[:, : t + 1], base[:, : t + 1], atol=1e-5), (
        "a code's logits ignore it and what follows"
    )
    assert not torch.allclose(logits[:, t + 1], base[:, t + 1], atol=1e-4), "the next one sees it"
    if model.has_eos:
        assert out.eos_logits.shape == (1, out.logits.shape[-1])
        assert out.logits.shape[-1] == model.target_codebook_size + 1
    else:
        assert out.eos_logits is None


def test_long_form_semantic_and_coarse():
    semantic_model = make("semantic")
    window = 24
    out = semantic_model.generate_long(
        batch_size=2,
        total_frames=60,
        window_frames=window,
        keep_frames=8,
        generator=torch.Generator().manual_seed(0),
        sampling=SamplingOptions(temperature=1.0, allow_eos=False),
    )
    assert out.codes.shape[0] == 2 and out.codes.shape[1] <= 60
    assert (out.lengths > window).all(), "long-form must go beyond one window"
    prompt = out.codes[:, :10]
    again = semantic_model.generate_long(
        prompt, total_frames=40, window_frames=window, keep_frames=8
    )
    assert torch.equal(again.codes[:, :10], prompt)

    coarse_model = make("coarse")
    semantic = torch.randint(0, 32, (2, 50), generator=torch.Generator().manual_seed(0))
    coarse = coarse_model.generate_long(
        semantic, window_frames=16, keep_frames=6, sampling=SamplingOptions(allow_eos=False)
    )
    assert coarse.codes.shape == (2, 50, 2)
    assert (coarse.lengths == 50).all()
    fine_model = make("fine")
    fine = fine_model.generate_long(coarse.codes, window_frames=16, keep_frames=4)
    assert fine.codes.shape == (2, 50, 2)


def long_form_runs(stage: str):
    """A ragged batch for generate_long of ``stage``, and a function running any subset of its rows."""
    g = torch.Generator().manual_seed(5)
    model = make(stage)
    if stage == "semantic":
        prompt, lengths = torch.randint(0, 32, (3, 10), generator=g), torch.tensor([10, 3, 0])

        def run(rows, **k):
            width = int(lengths[rows].max())
            return model.generate_long(
                prompt[rows, :width],
                lengths[rows],
                total_frames=50,
                window_frames=20,
                keep_frames=6,
                **k,
            )
    elif stage == "coarse":
        semantic, semantic_lengths = (
            torch.randint(0, 32, (3, 30), generator=g),
            torch.tensor([30, 17, 9]),
        )
        prompt, lengths = torch.randint(0, 64, (3, 4, 2), generator=g), torch.tensor([4, 0, 2])

        def run(rows, **k):
            s, p = int(semantic_lengths[rows].max()), int(lengths[rows].max())
            return model.generate_long(
                semantic[rows, :s],
                semantic_lengths[rows],
                prompt=prompt[rows, :p],
                prompt_lengths=lengths[rows],
                window_frames=16,
                keep_frames=6,
                **k,
            )
    else:
        coarse, lengths = torch.randint(0, 64, (3, 40, 2), generator=g), torch.tensor([40, 23, 7])

        def run(rows, **k):
            n = int(lengths[rows].max())
            return model.generate_long(
                coarse[rows, :n], lengths[rows], window_frames=16, keep_frames=4, **k
            )

    return model, run


@pytest.mark.parametrize("allow_eos", [True, False])
@pytest.mark.parametrize("stage", STAGES)
def test_ragged_long_form_batch_equals_each_row_alone(stage, allow_eos):
    _, run = long_form_runs(stage)
    sampling = SamplingOptions(temperature=0, allow_eos=allow_eos)
    batch = run(torch.arange(3), sampling=sampling)
    assert torch.equal(
        batch.mask, torch.arange(batch.codes.shape[1])[None] < batch.lengths[:, None]
    )
    for i in range(3):
        alone = run(torch.tensor([i]), sampling=sampling)
        n = int(batch.lengths[i])
        assert int(alone.lengths[0]) == n
        assert torch.equal(alone.codes[0, :n], batch.codes[i, :n])
        assert (batch.codes[i, n:] == 0).all()


@pytest.mark.parametrize("stage", ["semantic", "coarse"])
def test_eos_in_an_early_window_ends_the_row(stage):
    model, run = long_form_runs(stage)
    k = model.target_codebook_size
    with torch.no_grad():
        model.head_bias[0, k] += 100.0  # EOS wins at the first frame a row may end
    ended = run(torch.arange(3), sampling=SamplingOptions(temperature=0))
    running = run(torch.arange(3), sampling=SamplingOptions(temperature=0, allow_eos=False))
    if stage == "semantic":
        prompt_lengths, totals, window = torch.tensor([10, 3, 0]), torch.tensor([50, 50, 50]), 20
    else:
        prompt_lengths, totals, window = torch.tensor([4, 0, 2]), torch.tensor([30, 17, 9]), 16
    # every row stops right after its prompt, in its first window, long before its last one
    assert torch.equal(ended.lengths, prompt_lengths)
    assert torch.equal(running.lengths, totals) and (totals > window).any(), (
        "without EOS rows run to the end"
    )
    for i, n in enumerate(prompt_lengths.tolist()):
        assert torch.equal(ended.codes[i, :n], running.codes[i, :n])


def test_eos_in_a_later_window_ends_the_row():
    model = make("semantic", seed=1)
    prompt = torch.randint(0, 32, (1, 10), generator=torch.Generator().manual_seed(5))

    def run(sampling):
        # windows [0, 20) (after the prompt), then [14, 34), [28, 48), [42, 50)
        return model.generate_long(
            prompt, total_frames=50, window_frames=20, keep_frames=6, sampling=sampling
        )

    free = run(SamplingOptions(temperature=0, allow_eos=False))
    k = model.target_codebook_size

    def gap(context):  # how far EOS is from winning after `context` (START + context)
        logits = model(context).eos_logits[0]
        return (logits[:k].max() - logits[k]).item()

    with torch.no_grad():
        first = [gap(free.codes[:, :p]) for p in range(10, 20)]
        second = [gap(free.codes[:, 14:p]) for p in range(20, 34)]
    end = 20 + second.index(min(second))
    assert min(second) < min(first + second[: end - 20]) - 1e-2, (
        "the test needs EOS to win first in window 2"
    )
    with torch.no_grad():
        model.head_bias[0, k] += min(second) + 1e-3
    out = run(SamplingOptions(temperature=0))
    assert int(out.lengths[0]) == end  # inside the second window, not the last one
    assert torch.equal(out.codes[0, :end], free.codes[0, :end])
    assert out.codes.shape[1] == end


def test_bad_inputs_raise_clear_errors():
    semantic = make("semantic")
    with pytest.raises(
        IdRangeError, match=r"vocabulary is \[0, 32\); were they made with another tokenizer"
    ):
        semantic(torch.full((1, 5), 40))
    with pytest.raises(IdRangeError, match="integer ids"):
        semantic(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="lengths must lie in"):
        semantic(torch.zeros(2, 5, dtype=torch.long), torch.tensor([5, 6]))
    with pytest.raises(ValueError, match="built without conditioning"):
        semantic.generate(batch_size=1, max_frames=3, cond=torch.randn(1, 2, COND_DIM))
    with pytest.raises(ValueError, match="needs a condition"):
        make("semantic", "cross").generate(
            batch_size=1, max_frames=3, sampling=SamplingOptions(guidance_scale=2.0)
        )
    with pytest.raises(ValueError, match="cond_dim=12"):
        make("semantic", "cross").generate(batch_size=1, max_frames=3, cond=torch.randn(1, 2, 5))
    with pytest.raises(ValueError, match="max_cond_len"):
        make("semantic", "prefix").generate(
            batch_size=1, max_frames=3, cond=torch.randn(1, 9, COND_DIM)
        )
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


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": -0.1},
        {"temperature": float("nan")},
        {"temperature": float("inf")},
        {"guidance_scale": -1.0},
        {"guidance_scale": float("nan")},
        {"guidance_scale": float("inf")},
        {"top_k": 0},
        {"top_k": 2.5},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"top_p": float("nan")},
        {"use_cache": 1},
    ],
)
def test_bad_sampling_options_are_refused(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        SamplingOptions(**bad)


def test_sampling_options_defaults_and_round_trip():
    options = SamplingOptions()
    assert (options.temperature, options.top_k, options.top_p, options.guidance_scale) == (
        1.0,
        None,
        None,
        1.0,
    )
    assert options.use_cache and options.allow_eos and not options.guided
    tuned = SamplingOptions(temperature=0, top_k=5, top_p=1.0, guidance_scale=2.5, allow_eos=False)
    assert SamplingOptions.from_dict(tuned.to_dict()) == tuned and tuned.guided


def test_generate_output_is_frozen():
    out = make("semantic").generate(batch_size=2, max_frames=4, sampling=GREEDY)
    assert out.codes.shape[0] == 2 and out.codes.ndim == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.codes = out.codes[:1]


@pytest.mark.parametrize(
    "config_class", [SemanticTransformerConfig, CoarseTransformerConfig, FineTransformerConfig]
)
def test_condition_dropout_left_the_model_configs(config_class):
    saved = {**config_class.tiny().to_dict(), "cond_drop_prob": 0.3}  # as format 1 saved it
    assert (
        config_class.from_dict(upgrade_config_dict(config_class, saved, 1)) == config_class.tiny()
    )
    with pytest.raises(ConfigError, match="cond_drop_prob"):
        config_class.from_dict(saved)
    with pytest.raises(ConfigError, match="cond_drop_prob"):
        AudioLMTrainConfig(cond_drop_prob=1.0)
