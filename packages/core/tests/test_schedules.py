"""LR schedules: values at known steps, shapes of the curves, LambdaLR wiring."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from cadence.core.train import (
    build_scheduler,
    lr_lambda,
    warmup_constant,
    warmup_cosine,
    warmup_linear,
)

W, T, M = 10, 110, 0.1  # warmup, total, min ratio


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.1), (4, 0.5), (9, 1.0), (10, 1.0), (60, 0.55), (110, 0.1), (500, 0.1)],
)
def test_cosine_known_values(step, expected):
    assert warmup_cosine(step, warmup_steps=W, total_steps=T, min_lr_ratio=M) == pytest.approx(
        expected
    )


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.1), (9, 1.0), (10, 1.0), (35, 0.775), (60, 0.55), (110, 0.1), (200, 0.1)],
)
def test_linear_known_values(step, expected):
    assert warmup_linear(step, warmup_steps=W, total_steps=T, min_lr_ratio=M) == pytest.approx(
        expected
    )


@pytest.mark.parametrize(
    ("step", "expected"), [(0, 0.1), (4, 0.5), (9, 1.0), (10, 1.0), (10**6, 1.0)]
)
def test_constant_known_values(step, expected):
    assert warmup_constant(step, warmup_steps=W) == pytest.approx(expected)


def test_no_warmup_starts_at_full_lr():
    assert warmup_cosine(0, warmup_steps=0, total_steps=100) == 1.0
    assert warmup_linear(0, warmup_steps=0, total_steps=100) == 1.0
    assert warmup_constant(0, warmup_steps=0) == 1.0
    assert warmup_cosine(100, warmup_steps=0, total_steps=100) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("fn", [warmup_cosine, warmup_linear])
def test_decay_is_monotone_and_bounded(fn):
    values = [fn(s, warmup_steps=W, total_steps=T, min_lr_ratio=M) for s in range(200)]
    warm, decay = values[:W], values[W:]
    assert all(a < b for a, b in itertools.pairwise(warm))
    assert all(a >= b for a, b in itertools.pairwise(decay))
    assert min(values) == pytest.approx(M) and max(values) == 1.0


def test_cosine_midpoint_is_mean_of_ends():
    mid = warmup_cosine(W + (T - W) // 2, warmup_steps=W, total_steps=T, min_lr_ratio=0.2)
    assert mid == pytest.approx((1.0 + 0.2) / 2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"warmup_steps": -1, "total_steps": 10},
        {"warmup_steps": 0, "total_steps": 0},
        {"warmup_steps": 0, "total_steps": 10, "min_lr_ratio": 1.5},
    ],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        warmup_cosine(0, **kwargs)


def test_unknown_schedule_raises():
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_lambda("exponential", warmup_steps=0, total_steps=10)  # type: ignore[arg-type]


def test_lambda_lr_follows_the_schedule_and_state_is_plain():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=2.0)
    sched = build_scheduler(opt, "cosine", warmup_steps=W, total_steps=T, min_lr_ratio=M)
    seen = []
    for _ in range(T + 5):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [
        2.0 * warmup_cosine(s, warmup_steps=W, total_steps=T, min_lr_ratio=M) for s in range(T + 5)
    ]
    assert seen == pytest.approx(expected)
    # The state holds numbers only (the multiplier is a plain function LambdaLR skips), so
    # the trainer can keep it in JSON.
    state = sched.state_dict()
    assert state["lr_lambdas"] == [None]
    assert all(isinstance(v, (int, float, bool, list, type(None))) for v in state.values())
    assert math.isclose(state["_last_lr"][0], 2.0 * M)
