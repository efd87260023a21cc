"""The OT path and the fixed-step solvers, checked analytically."""

from __future__ import annotations

import math

import pytest
import torch

from cadence.flowmatching import EVALUATIONS_PER_STEP, ot_interpolate, ot_velocity, solve_ode


def assert_close(a, b, *, atol=1e-6, rtol=1e-5):
    # not torch.testing.assert_close: its first call imports sympy (seconds)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.allclose(a, b, atol=atol, rtol=rtol), f"max abs diff {(a - b).abs().max():.3g}"


@pytest.mark.parametrize("sigma_min", [0.0, 1e-4, 0.1])
def test_ot_path_endpoints_and_formula(sigma_min):
    gen = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(2, 3, 5, 4, generator=gen)
    assert torch.equal(ot_interpolate(x0, x1, 0.0, sigma_min), x0)
    assert_close(ot_interpolate(x0, x1, 1.0, sigma_min), x1 + sigma_min * x0)
    t = torch.tensor([0.0, 0.25, 0.9])
    x_t = ot_interpolate(x0, x1, t, sigma_min)
    for i, ti in enumerate(t.tolist()):
        assert_close(x_t[i], (1 - (1 - sigma_min) * ti) * x0[i] + ti * x1[i])


@pytest.mark.parametrize("sigma_min", [0.0, 1e-4, 0.1])
def test_ot_velocity_is_the_time_derivative_of_the_path(sigma_min):
    gen = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(2, 2, 6, 3, generator=gen, dtype=torch.float64)
    t = torch.tensor([0.3, 0.7], dtype=torch.float64, requires_grad=True)
    # d/dt of a path linear in t, by autograd, one batch item at a time
    for i in range(2):
        grad = torch.autograd.functional.jacobian(
            lambda s, i=i: ot_interpolate(x0[i : i + 1], x1[i : i + 1], s, sigma_min), t[i : i + 1]
        )
        assert_close(grad[..., 0][0], ot_velocity(x0, x1, sigma_min)[i])


def test_ot_path_marginal_is_the_lipman_gaussian():
    # x0 ~ N(0, I): x_t | x1 ~ N(t x1, (1 - (1 - sigma_min) t)^2 I)  (Lipman et al. eq. 20)
    sigma_min, t = 0.05, 0.6
    x1 = torch.tensor([2.0, -1.0])
    x0 = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(2))
    x_t = ot_interpolate(x0, x1.expand_as(x0), t, sigma_min)
    assert_close(x_t.mean(0), t * x1, atol=0.01, rtol=0)
    assert_close(x_t.std(0), torch.full((2,), 1 - (1 - sigma_min) * t), atol=0.01, rtol=0)


def test_the_conditional_vector_field_transports_x0_to_x1_in_one_euler_step():
    # The conditional field u_t(x | x1) = (x1 - (1 - s) x) / (1 - (1 - s) t) is constant along
    # OT paths, so even one Euler step lands on the path's end point.
    sigma_min = 1e-3
    gen = torch.Generator().manual_seed(3)
    x0, x1 = torch.randn(2, 4, 7, generator=gen, dtype=torch.float64)

    def field(x, t):
        return (x1 - (1 - sigma_min) * x) / (1 - (1 - sigma_min) * t)

    for method in ("euler", "midpoint"):
        for steps in (1, 5):
            end = solve_ode(field, x0, steps=steps, method=method)
            assert_close(end, x1 + sigma_min * x0)


@pytest.mark.parametrize("method", ["euler", "midpoint"])
@pytest.mark.parametrize("steps", [1, 3, 8, 32])
def test_solver_evaluates_the_field_exactly_steps_times_evaluations_per_step(method, steps):
    times = []

    def field(x, t):
        times.append(float(t))
        return torch.ones_like(x)

    end = solve_ode(field, torch.zeros(3), steps=steps, method=method)
    assert len(times) == steps * EVALUATIONS_PER_STEP[method]
    assert_close(end, torch.ones(3))  # the integral of 1 over [0, 1]
    assert times[0] == 0.0 and max(times) < 1.0


def test_solver_orders_of_accuracy():
    # dx/dt = x, x(0) = 1 -> e: Euler's error falls like 1/steps, midpoint's like 1/steps^2
    def field(x, t):
        return x

    x0 = torch.ones((), dtype=torch.float64)
    errors = {
        m: [abs(float(solve_ode(field, x0, steps=s, method=m)) - math.e) for s in (8, 16)]
        for m in ("euler", "midpoint")
    }
    assert 1.8 < errors["euler"][0] / errors["euler"][1] < 2.2
    assert 3.6 < errors["midpoint"][0] / errors["midpoint"][1] < 4.4
    assert errors["midpoint"][1] < errors["euler"][1] / 10


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_solver_rejects_bad_steps(bad):
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        solve_ode(lambda x, t: x, torch.zeros(1), steps=bad)


def test_solver_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown ODE method 'rk4'"):
        solve_ode(lambda x, t: x, torch.zeros(1), steps=2, method="rk4")
