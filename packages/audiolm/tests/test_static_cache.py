"""The static-cache sampling loop against the references it replaces.

StaticDecoder.step against FastDecoder (which tests/test_fast_decoder.py checks against the
x-transformers forward); the in-place draw against cadence.core.sampling.sample_logits; the
whole loop against the uncached x-transformers sampler (``use_cache=False``), token for
token for the same seed, and the semantic stream against generate / generate_long.
"""

from __future__ import annotations

import pytest
import torch

from cadence.audiolm import (
    CoarseTransformer,
    CoarseTransformerConfig,
    SamplingOptions,
    SemanticTransformer,
    SemanticTransformerConfig,
)
from cadence.audiolm.sampling_loop import SamplingLoop
from cadence.audiolm.static_cache import StaticDecoder
from cadence.core.sampling import sample_logits


def semantic(**changes) -> SemanticTransformer:
    torch.manual_seed(0)
    return SemanticTransformer(SemanticTransformerConfig.tiny(**changes)).eval()


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_a_step_equals_the_fast_decoder_forward(cross, dtype):
    extra = {"cond_dim": 12, "cond_mode": "cross"} if cross else {}
    dec = semantic(**extra).decoder.to(dtype)
    g = torch.Generator().manual_seed(1)
    b, n, d = 2, 8, 64
    x = torch.randn(b, n, d, generator=g).to(dtype)
    start_pos = torch.tensor([0, 2])
    context = torch.randn(b, 5, d, generator=g).to(dtype) if cross else None
    static = StaticDecoder(dec)
    with torch.inference_mode():
        ref_state = static.fast.start(b, n, start_pos=start_pos, context=context)
        reference = static.fast.forward(ref_state, x)
        state = static.start(b, n, start_pos=start_pos, context=context)
        steps = [static.prefill(state, x[:, :3])[:, -1]]
        steps += [static.step(state, x[:, i]) for i in range(3, n)]
        with pytest.raises(RuntimeError, match="holds 8 positions"):
            static.step(state, x[:, 0])
    stepped = torch.stack(steps[1:], dim=1)
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
    assert torch.allclose(stepped.float(), reference[:, 3:].float(), atol=tol, rtol=tol)
    assert torch.allclose(steps[0].float(), reference[:, 2].float(), atol=tol, rtol=tol)


@pytest.mark.parametrize(
    "options",
    [
        dict(temperature=1.0),
        dict(temperature=0.7, top_k=5),
        dict(temperature=1.3, top_p=0.8),
        dict(temperature=0.0, top_k=3),
    ],
)
def test_the_in_place_draw_is_sample_logits(options):
    logits = torch.randn(4, 33, generator=torch.Generator().manual_seed(0))
    expected = sample_logits(logits, generator=torch.Generator().manual_seed(5), **options)
    loop = SamplingLoop.__new__(SamplingLoop)
    loop.sampling = SamplingOptions(**options)
    loop.generator = torch.Generator().manual_seed(5)
    loop.noise = None
    assert torch.equal(loop._draw(logits.clone()), expected)


CASES = {
    "greedy": SamplingOptions(temperature=0.0, allow_eos=False),
    "top-k": SamplingOptions(temperature=1.0, top_k=5, allow_eos=False),
    "top-p, EOS": SamplingOptions(temperature=0.9, top_p=0.9),
    "hot, EOS": SamplingOptions(temperature=1.5),
}


def _uncached(options: SamplingOptions) -> SamplingOptions:
    return options.replace(use_cache=False)


@pytest.mark.parametrize("name", list(CASES))
def test_cached_sampling_draws_the_tokens_of_the_uncached_sampler(name):
    options = CASES[name]
    model = semantic()
    prompt = torch.randint(0, 32, (3, 7), generator=torch.Generator().manual_seed(2))
    lengths, max_frames = torch.tensor([7, 4, 2]), torch.tensor([30, 22, 31])
    outs, after = [], []
    for sampling in (options, _uncached(options)):
        g = torch.Generator().manual_seed(1)
        out = model.generate(
            prompt,
            lengths,
            max_frames=max_frames,
            sampling=sampling,
            generator=g,
            return_logits=True,
        )
        outs.append(out)
        after.append(torch.rand(4, generator=g))  # the generator is left where it was
    fast, slow = outs
    assert torch.equal(fast.codes, slow.codes) and torch.equal(fast.lengths, slow.lengths)
    assert torch.equal(after[0], after[1])
    # each row's logits up to its own end (rows past their budget run on with the batch)
    for i, n in enumerate((fast.lengths - lengths).tolist()):
        a, b = fast.logits[i, :n], slow.logits[i, :n]
        assert torch.equal(a.isfinite(), b.isfinite())
        assert torch.allclose(a[a.isfinite()], b[b.isfinite()], atol=1e-4)
    if not options.allow_eos:
        assert torch.equal(fast.lengths, max_frames)


def test_guided_and_multi_level_sampling_match_the_uncached_sampler():
    cond = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(3))
    model = semantic(cond_dim=12)
    torch.manual_seed(0)
    coarse = CoarseTransformer(CoarseTransformerConfig.tiny()).eval()
    semantic_in = torch.randint(0, 32, (2, 12), generator=torch.Generator().manual_seed(4))
    for eos in (False, True):
        guided = SamplingOptions(temperature=1.0, guidance_scale=2.0, allow_eos=eos)
        plain = SamplingOptions(temperature=1.0, top_k=4, allow_eos=eos)
        results = []
        for use_cache in (True, False):
            g = torch.Generator().manual_seed(5)
            a = model.generate(
                batch_size=2, max_frames=20, cond=cond,
                sampling=guided.replace(use_cache=use_cache), generator=g,
            )  # fmt: skip
            c = coarse.generate(
                semantic_in, max_frames=8, sampling=plain.replace(use_cache=use_cache), generator=g
            )
            results.append((a.codes, a.lengths, c.codes, c.lengths))
        for x, y in zip(*results):
            assert torch.equal(x, y)


@pytest.mark.parametrize("eos", [False, True])
@pytest.mark.parametrize("chunk", [1, 7, 50])
def test_the_token_stream_joined_is_generate_and_generate_long(eos, chunk):
    model = semantic()  # max_frames 191
    prompt = torch.randint(0, 32, (1, 9), generator=torch.Generator().manual_seed(6))
    sampling = SamplingOptions(temperature=1.0, top_k=8, allow_eos=eos)
    for new, call in ((40, "generate"), (130, "generate_long")):
        window = 60 if call == "generate_long" else None
        g = torch.Generator().manual_seed(7)
        if call == "generate":
            ref = model.generate(prompt, max_frames=9 + new, sampling=sampling, generator=g)
        else:
            ref = model.generate_long(
                prompt, total_frames=9 + new, window_frames=60, keep_frames=20,
                sampling=sampling, generator=g,
            )  # fmt: skip
        expected = ref.codes[:, 9 : int(ref.lengths[0])]
        g = torch.Generator().manual_seed(7)
        chunks = list(
            model.stream(
                prompt, new_frames=new, chunk_frames=chunk, window_frames=window,
                keep_frames=20 if window else None, sampling=sampling, generator=g,
            )
        )  # fmt: skip
        assert all(c.shape[1] == chunk for c in chunks[:-1]) and 1 <= chunks[-1].shape[1] <= chunk
        assert torch.equal(torch.cat(chunks, dim=1), expected), call


def test_a_bad_stream_request_is_refused():
    model = semantic()
    prompt = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="chunk_frames must be an integer >= 1"):
        next(model.stream(prompt, new_frames=5, chunk_frames=0))
    with pytest.raises(ValueError, match=r"one prompt, shape \(1, p\)"):
        next(model.stream(torch.zeros(2, 4, dtype=torch.long), new_frames=5, chunk_frames=2))


@pytest.mark.parametrize("cross", [False, True])
def test_an_int8_step_stays_close_to_the_float_step(cross):
    extra = {"cond_dim": 12, "cond_mode": "cross"} if cross else {}
    dec = semantic(**extra).decoder
    g = torch.Generator().manual_seed(1)
    b, n, d = 2, 12, 64
    x = torch.randn(b, n, d, generator=g)
    context = torch.randn(b, 5, d, generator=g) if cross else None
    results = []
    for int8 in (False, True):
        static = StaticDecoder(dec, int8=int8)
        with torch.inference_mode():
            state = static.start(b, n, context=context)
            static.prefill(state, x[:, :3])
            results.append(torch.stack([static.step(state, x[:, i]) for i in range(3, n)], 1))
    exact, quantized = results
    # final-norm outputs are O(1): int8 weights and 7-bit activations move them by ~1e-2
    error = (quantized - exact).abs().max()
    assert 0 < error < 0.1, error
    assert torch.nn.functional.cosine_similarity(quantized, exact, dim=-1).min() > 0.999


def test_int8_sampling_runs_the_int8_step_after_a_float_prefill():
    model = semantic()
    out = {}
    for weights in ("float", "int8"):
        sampling = SamplingOptions(temperature=1.0, allow_eos=False, weights=weights)
        out[weights] = model.generate(
            batch_size=4, max_frames=40, sampling=sampling, return_logits=True,
            generator=torch.Generator().manual_seed(3),
        )  # fmt: skip
    a, q = out["float"].logits, out["int8"].logits
    # the first step sees the same (float) prefill; later ones follow their own tokens
    assert torch.allclose(a[:, 0], q[:, 0])
    assert not torch.allclose(a[:, 1:], q[:, 1:])  # the int8 step ran
    assert torch.isfinite(q[..., :32]).all()
    assert out["int8"].codes.shape == out["float"].codes.shape
    assert bool((out["int8"].codes < 32).all())


def test_int8_needs_the_cache_and_a_float32_cpu_model():
    from cadence.core.config import ConfigError

    with pytest.raises(ConfigError, match="weights must be 'float' or 'int8'"):
        SamplingOptions(weights="fp8")
    with pytest.raises(ConfigError, match="keep use_cache=True"):
        SamplingOptions(weights="int8", use_cache=False)
    with pytest.raises(ValueError, match="int8 decoding runs a float32 model on the CPU"):
        StaticDecoder(semantic().decoder.to(torch.float64), int8=True)


@pytest.mark.parametrize("weights", ["float", "int8"])
def test_the_step_weights_are_built_once_and_rebuilt_when_a_weight_changes(weights):
    from cadence.audiolm.static_cache import static_decoder

    model = semantic()
    int8 = weights == "int8"
    first = static_decoder(model.decoder, int8=int8)
    assert static_decoder(model.decoder, int8=int8) is first  # reused: nothing was copied
    assert static_decoder(model.decoder, int8=not int8) is not first
    sampling = SamplingOptions(temperature=1.0, allow_eos=False, weights=weights)

    def draw():
        return model.generate(
            batch_size=2, max_frames=12, sampling=sampling, return_logits=True,
            generator=torch.Generator().manual_seed(1),
        ).logits  # fmt: skip

    before = draw()
    assert torch.equal(draw(), before)  # a reused decoder samples what a fresh one did
    with torch.no_grad():  # an optimizer step's in-place update
        model.decoder.layers[0][1].to_v.weight.mul_(1.5)
    rebuilt = static_decoder(model.decoder, int8=int8)
    assert rebuilt is not first
    after = draw()
    assert not torch.allclose(after[:, 1:], before[:, 1:])  # the new weights decode
    fresh = StaticDecoder(model.decoder, int8=int8)
    x = torch.randn(2, model.config.dim)
    state_a, state_b = rebuilt.start(2, 4), fresh.start(2, 4)
    assert torch.equal(rebuilt.step(state_a, x), fresh.step(state_b, x))
    model.load_state_dict(semantic().state_dict())  # load_state_dict copies in place
    assert static_decoder(model.decoder, int8=int8) is not rebuilt
    # under inference mode too (the pipelines sample there), and usable outside it afterwards
    other = semantic()
    with torch.inference_mode():
        built = static_decoder(other.decoder, int8=int8)
    with torch.no_grad():
        built.step(built.start(1, 2), torch.randn(1, other.config.dim))
