"""The training mask is exactly SoundStorm's, and semantic tokens map onto codec frames."""

from __future__ import annotations

import math
import random

import pytest
import torch

from cadence.soundstorm import align_semantic, aligned_length, semantic_frame_index, training_mask


def _random_case(rng: random.Random):
    b = rng.randint(1, 5)
    q = rng.randint(1, 6)
    lengths = [rng.randint(1, 40) for _ in range(b)]
    n = max(lengths) + rng.randint(0, 5)
    lo = rng.choice([0.0, 0.0, 0.2, 0.5])
    hi = rng.choice([lo, 1.0, max(lo, 0.7)])
    return torch.tensor(lengths), n, q, (lo, hi)


@pytest.mark.parametrize("seed", range(8))
def test_mask_pattern_per_level_is_exactly_as_specified(seed):
    rng = random.Random(seed)
    for case in range(40):
        lengths, n, q, prompt_range = _random_case(rng)
        gen = torch.Generator().manual_seed(seed * 1000 + case)
        draw = training_mask(lengths, n, q, prompt_range=prompt_range, generator=gen)
        assert draw.masked.shape == (len(lengths), n, q)
        assert draw.loss_mask.shape == (len(lengths), n)
        for i, length in enumerate(lengths.tolist()):
            level, prompt = int(draw.level[i]), int(draw.prompt_lengths[i])
            lo, hi = prompt_range
            assert 0 <= level < q
            assert (
                math.floor(lo * (length - 1) + 1e-9)
                <= prompt
                <= math.floor(hi * (length - 1) + 1e-9)
            )
            frames = torch.arange(n)
            non_prompt = (frames >= prompt) & (frames < length)
            # levels < q visible everywhere
            assert not draw.masked[i, :, :level].any()
            # level q: masked exactly where the loss is taken, only on non-prompt real frames
            assert torch.equal(draw.masked[i, :, level], draw.loss_mask[i])
            assert not (draw.loss_mask[i] & ~non_prompt).any()
            assert draw.loss_mask[i].any(), "every sample contributes at least one scored frame"
            # levels > q masked on every non-prompt real frame, nowhere else
            for finer in range(level + 1, q):
                assert torch.equal(draw.masked[i, :, finer], non_prompt)
            # the prompt and the padding are never masked
            assert not draw.masked[i, :prompt].any()
            assert not draw.masked[i, length:].any()


def test_mask_statistics_follow_the_paper():
    # Long sequences, no prompt: the masked fraction at level q is cos(u), u ~ U[0, pi/2],
    # whose mean is 2/pi; the level is uniform.
    gen = torch.Generator().manual_seed(0)
    b, n, q = 4000, 200, 4
    draw = training_mask(torch.full((b,), n), n, q, prompt_range=(0.0, 0.0), generator=gen)
    fraction = draw.loss_mask.float().mean(1)
    assert abs(float(fraction.mean()) - 2 / math.pi) < 0.02
    # cos(u) is denser near 1: P(p > cos(pi/4)) = 1/2
    assert abs(float((fraction > math.cos(math.pi / 4)).float().mean()) - 0.5) < 0.04
    counts = torch.bincount(draw.level, minlength=q).float() / b
    assert torch.allclose(counts, torch.full((q,), 1 / q), atol=0.03)


def test_prompt_length_is_uniform_over_the_range():
    gen = torch.Generator().manual_seed(1)
    draw = training_mask(torch.full((20000,), 11), 11, 2, generator=gen)  # t ~ U{0, ..., 10}
    counts = torch.bincount(draw.prompt_lengths, minlength=11).float() / 20000
    assert counts.shape == (11,)
    assert torch.allclose(counts, torch.full((11,), 1 / 11), atol=0.012)


def test_fixed_level_and_ratio_for_evaluation():
    gen = torch.Generator().manual_seed(2)
    draw = training_mask(
        torch.tensor([50, 30]), 50, 3, prompt_range=(0, 0), level=1, mask_ratio=1.0, generator=gen
    )
    assert draw.level.tolist() == [1, 1]
    assert (
        draw.loss_mask[0].all()
        and draw.loss_mask[1, :30].all()
        and not draw.loss_mask[1, 30:].any()
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lengths=torch.tensor([0, 3])), "every length"),
        (dict(lengths=torch.tensor([9])), "every length"),
        (dict(prompt_range=(0.6, 0.2)), "prompt_range"),
        (dict(level=3), "level"),
        (dict(mask_ratio=1.5), "mask_ratio"),
        (dict(level_weights=[1.0, 1.0]), "level_weights"),
        (dict(level_weights=[1.0, -1.0, 1.0]), "level_weights"),
    ],
)
def test_mask_rejects_bad_arguments(kwargs, match):
    args = dict(lengths=torch.tensor([4, 3]), num_frames=5, num_quantizers=3) | kwargs
    with pytest.raises(ValueError, match=match):
        training_mask(**args)


def test_level_weights_set_how_often_each_level_is_drawn():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.full((4000,), 10)
    uniform = training_mask(lengths, 10, 4, generator=gen).level.bincount(minlength=4) / 4000
    assert (uniform - 0.25).abs().max() < 0.03
    weighted = training_mask(lengths, 10, 4, level_weights=(4, 2, 1, 0), generator=gen).level
    share = weighted.bincount(minlength=4) / 4000
    assert (share - torch.tensor([4 / 7, 2 / 7, 1 / 7, 0.0])).abs().max() < 0.03
    assert int(share[3] * 4000) == 0  # a zero weight is never drawn


def test_train_config_level_weights_are_validated():
    from cadence.core.config import ConfigError
    from cadence.soundstorm import SoundStormTrainConfig

    assert SoundStormTrainConfig(level_weights=[4, 1]).level_weights == (4.0, 1.0)
    for bad in ([], [0, 0], [1, -1], [float("nan")]):
        with pytest.raises(ConfigError, match="level_weights"):
            SoundStormTrainConfig(level_weights=bad)


def test_semantic_alignment_nearest_frame():
    # 25 Hz tokens onto 50 Hz frames: every token twice (the paper's setup)
    assert semantic_frame_index(6, 50.0, 25.0).tolist() == [0, 0, 1, 1, 2, 2]
    # 50 Hz tokens onto 75 Hz frames: the token holding each frame's centre
    assert semantic_frame_index(6, 75.0, 50.0).tolist() == [0, 1, 1, 2, 3, 3]
    # equal rates: identity
    assert semantic_frame_index(5, 50.0, 50.0).tolist() == [0, 1, 2, 3, 4]
    tokens = torch.tensor([[5, 6, 7], [8, 9, 0]])
    aligned = align_semantic(
        tokens, 6, frame_rate=50.0, semantic_rate=25.0, semantic_lengths=torch.tensor([3, 2])
    )
    assert aligned.tolist() == [
        [5, 5, 6, 6, 7, 7],
        [8, 8, 9, 9, 9, 9],
    ]  # clamped to the real tokens
    assert aligned_length(100, 75.0, 50.0) == 150
    with pytest.raises(ValueError, match=r"\(b, s\)"):  # s: semantic frames
        align_semantic(torch.tensor([1, 2]), 4, frame_rate=50.0, semantic_rate=50.0)
