from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from cadence.core.config import ConfigError
from cadence.naturalspeech2 import (
    Aligner,
    AlignerConfig,
    alphas_cumprod,
    monotonic_alignment_search,
    sample,
)
from cadence.naturalspeech2.aligner import beta_binomial_log_prior, forward_sum_loss


def _brute_force(lp: np.ndarray) -> float:
    t, n = lp.shape
    best = -np.inf
    for cuts in itertools.combinations(range(1, t), n - 1):
        index = np.repeat(np.arange(n), np.diff([0, *cuts, t]))
        best = max(best, lp[np.arange(t), index].sum())
    return best


def test_mas_matches_brute_force_and_is_monotonic():
    rng = np.random.default_rng(0)
    for _ in range(60):
        t = int(rng.integers(1, 9))
        n = int(rng.integers(1, t + 1))
        lp = rng.normal(size=(1, t, n))
        path = monotonic_alignment_search(lp)[0]
        assert (path.sum(1) == 1).all()  # every frame on exactly one phoneme
        index = path.argmax(1)
        assert index[0] == 0 and index[-1] == n - 1
        assert np.all(np.diff(index) >= 0) and np.all(np.diff(index) <= 1)
        assert np.isclose(lp[0][np.arange(t), index].sum(), _brute_force(lp[0]))


def test_mas_batched_with_lengths():
    rng = np.random.default_rng(1)
    lp = rng.normal(size=(3, 9, 5))
    path = monotonic_alignment_search(lp, np.array([9, 6, 5]), np.array([5, 3, 5]))
    assert path.sum((1, 2)).tolist() == [9, 6, 5]
    durations = path.sum(1)
    assert durations.sum(1).tolist() == [9, 6, 5]
    assert (durations[1, :3] >= 1).all() and (durations[1, 3:] == 0).all()
    single = monotonic_alignment_search(lp[1:2, :6, :3])
    np.testing.assert_array_equal(single[0], path[1, :6, :3])
    with pytest.raises(ValueError, match="at least as many frames"):
        monotonic_alignment_search(lp[:, :3], None, None)


def test_beta_binomial_prior_is_a_distribution_over_phonemes():
    prior = beta_binomial_log_prior(20, 6).exp()
    torch.testing.assert_close(prior.sum(-1), torch.ones(20), atol=1e-5, rtol=0)
    assert prior[0].argmax() == 0 and prior[-1].argmax() == 5


def test_forward_sum_loss_prefers_the_diagonal():
    t, n = 12, 4
    good = torch.full((1, t, n), -10.0)
    for j in range(t):
        good[0, j, j * n // t] = 0.0
    bad = good.flip(-1)
    lengths = torch.tensor([t]), torch.tensor([n])
    assert forward_sum_loss(good, *lengths) < forward_sum_loss(bad, *lengths)


def test_aligner_config_refuses_nonsense_with_config_errors():
    for bad in (
        dict(vocab_size=1),
        dict(feature_dim=0),
        dict(attention_dim=0),
        dict(prior_scaling=-1.0),
    ):
        with pytest.raises(ConfigError):
            AlignerConfig(**bad)


def test_aligner_shapes_and_durations_cover_frames():
    torch.manual_seed(0)
    aligner = Aligner(AlignerConfig.tiny(vocab_size=10, feature_dim=8))
    phonemes = torch.tensor([[3, 4, 5, 6], [3, 4, 0, 0]])
    pmask = phonemes != 0
    feats = torch.randn(2, 11, 8)
    fmask = torch.tensor([[True] * 11, [True] * 7 + [False] * 4])
    out = aligner(phonemes, pmask, feats, fmask)
    assert out.log_attn.shape == (2, 11, 4)
    assert out.durations.sum(-1).tolist() == [11, 7]
    assert (out.durations[pmask] >= 1).all() and (out.durations[~pmask] == 0).all()
    out.loss.backward()
    assert aligner.frame_encoder[0].weight.grad.abs().sum() > 0


# -- diffusion samplers ------------------------------------------------------------------


def _toy_denoiser(abar):
    # a fixed smooth "network": shrink x_t towards a target, differently per step
    target = torch.linspace(-1, 1, 8).repeat(2, 5, 1)

    def denoise(x, t):
        a = abar[t].float()[:, None, None]
        return (a.sqrt() * x + target) / (1 + a)

    return denoise


def test_ddim_full_schedule_eta1_matches_ddpm():
    abar = alphas_cumprod(50)
    denoise = _toy_denoiser(abar)
    ddpm = sample(
        denoise, (2, 5, 8), abar, sampler="ddpm", generator=torch.Generator().manual_seed(3)
    )
    ddim = sample(
        denoise,
        (2, 5, 8),
        abar,
        sampler="ddim",
        steps=50,
        eta=1.0,
        generator=torch.Generator().manual_seed(3),
    )
    torch.testing.assert_close(ddim, ddpm, atol=1e-4, rtol=1e-4)
    other = sample(
        denoise,
        (2, 5, 8),
        abar,
        sampler="ddim",
        steps=50,
        eta=0.0,
        generator=torch.Generator().manual_seed(3),
    )
    assert (other - ddpm).abs().max() > 1e-3  # the comparison can tell samplers apart


@pytest.mark.parametrize("sampler", ["ddim", "dpm++"])
def test_few_step_samplers_recover_a_known_x0(sampler):
    abar = alphas_cumprod(1000)
    x0 = torch.randn(2, 7, 4, generator=torch.Generator().manual_seed(0))
    out = sample(lambda x, t: x0, (2, 7, 4), abar, sampler=sampler, steps=16)
    torch.testing.assert_close(out, x0)
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(lambda x, t: x0, (2, 7, 4), abar, sampler="euler")  # type: ignore[arg-type]
