import math

import pytest
import torch

from cadence.core import sampling


def test_top_k():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0]])
    out = sampling.top_k_filter(logits, 2)
    assert torch.isinf(out).tolist() == [[True, False, True, False]]
    assert torch.equal(sampling.top_k_filter(logits, fraction=0.5), out)
    assert torch.equal(sampling.top_k_filter(logits, 10), logits)


def test_top_p_keeps_smallest_nucleus():
    probs = torch.tensor([[0.05, 0.5, 0.3, 0.15]])
    out = sampling.top_p_filter(probs.log(), 0.75)
    assert torch.isfinite(out).tolist() == [[False, True, True, False]]
    # the top token always survives, even for tiny p
    assert torch.isfinite(sampling.top_p_filter(probs.log(), 1e-6)).sum() == 1


def test_gumbel_sample_matches_distribution():
    probs = torch.tensor([0.1, 0.6, 0.3])
    gen = torch.Generator().manual_seed(0)
    draws = sampling.gumbel_sample(probs.log().expand(20000, 3), generator=gen)
    freq = torch.bincount(draws, minlength=3).float() / 20000
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)
    assert torch.equal(sampling.gumbel_sample(probs.log()[None], 0.0), torch.tensor([1]))


def test_low_temperature_sharpens():
    logits = torch.tensor([1.0, 1.5, 0.5]).expand(5000, 3)
    gen = torch.Generator().manual_seed(0)
    hot = (sampling.gumbel_sample(logits, 2.0, generator=gen) == 1).float().mean()
    cold = (sampling.gumbel_sample(logits, 0.2, generator=gen) == 1).float().mean()
    assert cold > 0.9 > hot


def test_sample_logits_respects_filters():
    logits = torch.randn(1000, 50)
    tokens = sampling.sample_logits(logits, top_k=3, generator=torch.Generator().manual_seed(0))
    top3 = logits.topk(3, dim=-1).indices
    assert (tokens[:, None] == top3).any(-1).all()


def test_classifier_free_guidance():
    cond, uncond = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    assert torch.equal(sampling.classifier_free_guidance(cond, uncond, 1.0), cond)
    assert torch.equal(sampling.classifier_free_guidance(cond, uncond, 0.0), uncond)
    assert torch.equal(
        sampling.classifier_free_guidance(cond, uncond, 3.0), torch.tensor([4.0, -2.0])
    )
    with pytest.raises(ValueError, match="equal shapes"):
        sampling.classifier_free_guidance(cond, uncond[:1], 2.0)


@pytest.mark.parametrize("name", ["cosine", "linear", "arccos", "square", "sqrt"])
def test_schedules_run_from_one_to_zero(name):
    gamma = sampling.mask_schedule(name)
    r = torch.linspace(0, 1, 101, dtype=torch.float64)
    values = gamma(r)
    assert values[0].item() == pytest.approx(1.0) and values[-1].item() == pytest.approx(
        0.0, abs=1e-7
    )
    assert (values.diff() <= 1e-12).all()


def test_cosine_schedule_values():
    gamma = sampling.mask_schedule("cosine")
    assert gamma(torch.tensor(0.5)).item() == pytest.approx(math.cos(math.pi / 4))
    with pytest.raises(ValueError, match="unknown mask schedule"):
        sampling.mask_schedule("exp")


@pytest.mark.parametrize("length", [1, 5, 16, 100, 1000])
@pytest.mark.parametrize("steps", [1, 4, 8, 32])
def test_num_masked_decreases_to_zero(length, steps):
    left = [sampling.num_masked(i, steps, length) for i in range(steps)]
    assert left[-1] == 0
    previous = length
    for value in left:
        assert value < previous or previous == 0  # progress every step while tokens remain
        previous = value


def test_lowest_confidence_mask():
    confidence = torch.tensor([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.7, 0.6]])
    picked = sampling.lowest_confidence_mask(confidence, torch.tensor([2, 1]))
    assert picked.tolist() == [[False, True, False, True], [True, False, False, False]]
    allowed = torch.tensor([[True, False, True, True], [True, True, True, True]])
    picked = sampling.lowest_confidence_mask(confidence, 2, candidates=allowed)
    assert picked[0].tolist() == [False, False, True, True]
