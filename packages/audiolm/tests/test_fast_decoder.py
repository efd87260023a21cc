"""FastDecoder against the x-transformers ``Decoder`` it re-implements.

FastDecoder reads x-transformers internals (layer types, the pre-norm modules, projection
weights); these tests fail first when an x-transformers release changes them, before any
sampled token does. pyproject.toml pins x-transformers to the major version they pass with.
"""

from __future__ import annotations

import importlib.metadata

import pytest
import torch
from torch import nn

from cadence.audiolm import FastDecoder, SemanticTransformer, SemanticTransformerConfig


def decoder(cross: bool):
    torch.manual_seed(0)
    extra = {"cond_dim": 12, "cond_mode": "cross"} if cross else {}
    return SemanticTransformer(SemanticTransformerConfig.tiny(**extra)).eval().decoder


def test_x_transformers_is_the_pinned_major_version():
    major = int(importlib.metadata.version("x-transformers").split(".")[0])
    assert major == 2, (
        "FastDecoder was written against x-transformers 2.x; check it before moving the pin"
    )


@pytest.mark.parametrize("cross", [False, True])
def test_the_decoder_internals_fast_decoder_reads_exist(cross):
    dec = decoder(cross)
    assert dec.layer_types == (("a", "c", "f") if cross else ("a", "f")) * 2
    assert isinstance(dec.rotary_pos_emb.inv_freq, torch.Tensor)
    assert dec.rotary_pos_emb.inv_freq.shape[0] * 2 == 16  # full-width rotary over dim_head
    for norm in [layer[0][0] for layer in dec.layers] + [dec.final_norm]:
        assert isinstance(norm.gamma, torch.Tensor) and norm.gamma.shape == (64,)
        assert isinstance(norm.unit_offset, (bool, int, float))
    for kind, layer in zip(dec.layer_types, dec.layers):
        pre, block = layer[0], layer[1]
        assert pre[1] is None and pre[2] is None, "pre-norm only: no norm after the branch"
        if kind in ("a", "c"):
            assert block.heads == 4
            for name in ("to_q", "to_k", "to_v", "to_out"):
                linear = getattr(block, name)
                assert isinstance(linear, nn.Linear) and linear.bias is None, name
        else:
            lin_in, act, lin_out = block.ff[0][0], block.ff[0][1], block.ff[2]
            assert isinstance(lin_in, nn.Linear) and isinstance(lin_out, nn.Linear)
            assert isinstance(act, nn.GELU) and act.approximate == "none"
    FastDecoder(dec)  # reads them all


@pytest.mark.parametrize("cross", [False, True])
def test_cached_forward_equals_the_x_transformers_forward(cross):
    dec = decoder(cross)
    g = torch.Generator().manual_seed(1)
    b, n, d = 2, 9, 64
    x = torch.randn(b, n, d, generator=g)
    start_pos = torch.tensor([0, 3])  # row 1 is left-padded by 3 positions
    context = torch.randn(b, 5, d, generator=g) if cross else None
    context_mask = (
        torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool) if cross else None
    )
    with torch.no_grad():
        reference = dec(x, seq_start_pos=start_pos, context=context, context_mask=context_mask)
        fast = FastDecoder(dec)
        # all at once (a prefill)
        state = fast.start(b, n, start_pos=start_pos, context=context, context_mask=context_mask)
        whole = fast.forward(state, x)
        # a prefill of 5 positions, then one position at a time (sampling)
        state = fast.start(b, n, start_pos=start_pos, context=context, context_mask=context_mask)
        steps = [fast.forward(state, x[:, :5])] + [
            fast.forward(state, x[:, i : i + 1]) for i in range(5, n)
        ]
        stepped = torch.cat(steps, dim=1)
    real = torch.arange(n)[None] >= start_pos[:, None]  # padded positions' outputs are unused
    assert torch.allclose(whole[real], reference[real], atol=1e-5)
    assert torch.allclose(stepped[real], reference[real], atol=1e-5)
    with pytest.raises(RuntimeError, match="holds 9 positions"):
        fast.forward(state, x[:, :1])


def test_an_unreadable_decoder_fails_with_the_fix():
    class NotADecoder:
        layers = ()

    with pytest.raises(RuntimeError, match="use_cache=False"):
        FastDecoder(NotADecoder())
