"""EMA math, warmup, state round trip and weight swapping."""

from __future__ import annotations

import itertools

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cadence.core.train import EMA


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def _fill(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_one_update_is_the_decay_formula():
    model = _model()
    ema = EMA(model, decay=0.9)
    before = {n: t.clone() for n, t in ema.shadow_params.items()}
    _fill(model, 1.0)
    ema.update()
    for name, shadow in ema.shadow_params.items():
        torch.testing.assert_close(shadow, 0.9 * before[name] + 0.1 * torch.ones_like(shadow))
    assert ema.num_updates == 1


def test_converges_to_a_constant_model_geometrically():
    model = _model()
    _fill(model, -2.0)
    ema = EMA(model, decay=0.8)
    _fill(model, 3.0)
    for _ in range(25):
        ema.update()
    for shadow in ema.shadow_params.values():
        # ema_n = c + decay^n (c0 - c)
        torch.testing.assert_close(shadow, torch.full_like(shadow, 3.0 + 0.8**25 * (-5.0)))
        assert (shadow - 3.0).abs().max() < 0.02


def test_update_after_step_copies_then_averages():
    model = _model()
    ema = EMA(model, decay=0.5, update_after_step=2)
    _fill(model, 1.0)
    ema.update()
    ema.update()  # still copying
    assert all(torch.equal(s, torch.ones_like(s)) for s in ema.shadow_params.values())
    assert ema.num_updates == 0
    _fill(model, 3.0)
    ema.update()
    assert all(torch.allclose(s, torch.full_like(s, 2.0)) for s in ema.shadow_params.values())


def test_update_every_skips_calls():
    model = _model()
    _fill(model, 0.0)
    ema = EMA(model, decay=0.5, update_every=3)
    _fill(model, 4.0)
    ema.update()
    ema.update()
    assert all(torch.equal(s, torch.zeros_like(s)) for s in ema.shadow_params.values())
    ema.update()
    assert ema.num_updates == 1
    assert all(torch.allclose(s, torch.full_like(s, 2.0)) for s in ema.shadow_params.values())


def test_power_warmup_ramps_the_decay_up_to_its_cap():
    ema = EMA(_model(), decay=0.99, warmup="power", inv_gamma=1.0, power=0.75)
    assert ema.current_decay() == 0.0  # the first average is the model itself
    decays = []
    for _ in range(2000):
        decays.append(ema.current_decay())
        ema.update()
    assert all(a <= b for a, b in itertools.pairwise(decays))
    assert decays[1] == pytest.approx(1 - 2**-0.75)
    assert decays[-1] == 0.99


def test_buffers_are_copied_not_averaged():
    model = _model()
    ema = EMA(model, decay=0.99)
    model.train()
    model(torch.randn(16, 3) * 5 + 2)  # moves the BatchNorm running stats
    ema.update()
    bn = model[1]
    torch.testing.assert_close(ema.shadow_buffers["1.running_mean"], bn.running_mean)
    assert int(ema.shadow_buffers["1.num_batches_tracked"]) == 1


def test_non_persistent_buffers_are_left_alone():
    model = _model()
    model.register_buffer("window", torch.hann_window(8), persistent=False)
    ema = EMA(model)
    assert "window" not in ema.shadow_buffers
    assert not any("window" in k for k in ema.state_dict())
    ema.update()
    with ema.average_parameters():
        pass


def test_average_parameters_swaps_in_and_restores():
    model = _model()
    _fill(model, 0.0)
    ema = EMA(model, decay=0.5)
    _fill(model, 2.0)
    ema.update()  # shadow = 1.0, live = 2.0
    x = torch.randn(5, 3)
    model.eval()
    live_out = model(x)
    with ema.average_parameters() as swapped:
        assert swapped is model
        assert all(torch.equal(p, torch.ones_like(p)) for p in model.parameters())
        assert not torch.equal(model(x), live_out)
    assert all(torch.equal(p, torch.full_like(p, 2.0)) for p in model.parameters())
    torch.testing.assert_close(model(x), live_out)
    with ema.swap():
        assert all(torch.equal(p, torch.ones_like(p)) for p in model.parameters())


def test_restores_even_when_the_block_raises():
    model = _model()
    ema = EMA(model, decay=0.5)
    _fill(model, 7.0)
    with pytest.raises(RuntimeError), ema.average_parameters():
        raise RuntimeError("boom")
    assert all(torch.equal(p, torch.full_like(p, 7.0)) for p in model.parameters())


def test_copy_to_another_model():
    model, other = _model(), _model()
    _fill(other, 5.0)
    ema = EMA(model, decay=0.9)
    ema.copy_to(other)
    for (_, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        torch.testing.assert_close(a, b)


def test_state_dict_round_trip_through_safetensors(tmp_path):
    model = _model()
    ema = EMA(model, decay=0.9, update_after_step=1)
    for v in (1.0, 2.0, 3.0):
        _fill(model, v)
        ema.update()
    save_file(ema.state_dict(), str(tmp_path / "ema.safetensors"))

    fresh = EMA(_model(), decay=0.9, update_after_step=1)
    fresh.load_state_dict(load_file(str(tmp_path / "ema.safetensors")))
    assert (fresh.step, fresh.num_updates) == (3, 2)
    for name, shadow in ema.shadow_params.items():
        torch.testing.assert_close(fresh.shadow_params[name], shadow, rtol=0, atol=0)
    # Both continue identically.
    _fill(fresh.model, 4.0)
    _fill(model, 4.0)
    fresh.update()
    ema.update()
    for name, shadow in ema.shadow_params.items():
        torch.testing.assert_close(fresh.shadow_params[name], shadow, rtol=0, atol=0)


def test_load_state_dict_rejects_another_model():
    ema = EMA(_model())
    other = EMA(nn.Linear(3, 3))
    with pytest.raises(KeyError, match="missing"):
        ema.load_state_dict(other.state_dict())


def test_half_precision_params_get_float32_shadows():
    model = nn.Linear(4, 4).to(torch.bfloat16)
    ema = EMA(model, decay=0.999)
    assert all(s.dtype == torch.float32 for s in ema.shadow_params.values())
    before = ema.shadow_params["weight"].clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update()
    expected = before + 0.001 * (model.weight.float() - before)
    torch.testing.assert_close(ema.shadow_params["weight"], expected, atol=1e-6, rtol=0)
    # The ~0.001 step survives in float32; in bfloat16 it would round back to `before`.
    assert (ema.shadow_params["weight"] - before).abs().min() > 5e-4


def test_invalid_arguments():
    with pytest.raises(ValueError):
        EMA(nn.Linear(2, 2), decay=1.5)
    with pytest.raises(ValueError):
        EMA(nn.Linear(2, 2), update_every=0)
