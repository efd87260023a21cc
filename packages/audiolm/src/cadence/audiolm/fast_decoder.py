"""Incremental (KV-cached) forward pass of the stages' x-transformers ``Decoder``.

x-transformers' own ``cache=`` path concatenates the cache and re-derives rotary tables on
every call and runs its general per-layer machinery; at AudioLM sizes that per-call work
dominates a decoding step. :class:`FastDecoder` runs the same weights over preallocated
key/value buffers instead (one write per step, fused QKV projection). It supports exactly
the decoder configuration :class:`~cadence.audiolm.transformer.StageTransformer` builds
(pre-norm LayerNorm, full-width rotary, optional cross-attention, GELU feed-forward); the
tests compare it with the x-transformers forward pass. It reads x-transformers internals
(layer types, norms, projections): packages/audiolm/pyproject.toml pins x-transformers to
its major version, and tests/test_fast_decoder.py checks every attribute it reads.
"""

# b batch | n positions of the flat token sequence | d dim | h heads | e head dim | m condition length

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor
from x_transformers import Decoder

from cadence.core.data import lengths_to_mask

__all__ = ["FastDecoder"]


@dataclass
class _AttnWeights:
    kind: str  # "a" self-attention | "c" cross-attention | "f" feed-forward
    norm: Tensor  # effective LayerNorm scale
    w_in: Tensor  # qkv (a), q (c), ff in (f)
    b_in: Tensor | None
    w_out: Tensor
    b_out: Tensor | None
    w_kv: Tensor | None = None  # cross-attention k, v


class FastDecoder:
    """Incremental forward pass of an ``x_transformers.Decoder`` over a preallocated KV cache.

    Supports the configuration :class:`StageTransformer` builds (pre-norm LayerNorm, full
    rotary, optional cross-attention, GELU feed-forward). Usage::

        fast = FastDecoder(decoder)
        state = fast.start(batch, max_len, start_pos, context, context_mask)
        h = fast.forward(state, x)     # x (b, n_new, d): prefill, then one position at a time
    """

    def __init__(self, decoder: Decoder):
        try:
            self._read(decoder)
        except (AttributeError, IndexError, TypeError) as err:
            raise RuntimeError(
                f"FastDecoder cannot read this x_transformers.Decoder ({err}); its internals "
                "changed: use the x-transformers version that cadence-audiolm pins, or sample "
                "with SamplingOptions(use_cache=False)"
            ) from err

    def _read(self, decoder: Decoder) -> None:
        """Take the weights of every layer (the x-transformers internals FastDecoder relies on)."""
        self.heads = decoder.layers[0][1].heads
        self.dim_head = decoder.rotary_pos_emb.inv_freq.shape[0] * 2
        self.inv_freq = decoder.rotary_pos_emb.inv_freq
        self.layers: list[_AttnWeights] = []
        for kind, layer in zip(decoder.layer_types, decoder.layers):
            norm_module, block = layer[0][0], layer[1]
            norm = norm_module.gamma + float(norm_module.unit_offset)
            if kind == "a":
                w_in = torch.cat([block.to_q.weight, block.to_k.weight, block.to_v.weight])
                self.layers.append(_AttnWeights("a", norm, w_in, None, block.to_out.weight, None))
            elif kind == "c":
                w_kv = torch.cat([block.to_k.weight, block.to_v.weight])
                self.layers.append(
                    _AttnWeights(
                        "c", norm, block.to_q.weight, None, block.to_out.weight, None, w_kv
                    )
                )
            elif kind == "f":
                lin_in, lin_out = block.ff[0][0], block.ff[2]
                self.layers.append(
                    _AttnWeights(
                        "f", norm, lin_in.weight, lin_in.bias, lin_out.weight, lin_out.bias
                    )
                )
            else:  # pragma: no cover - StageTransformer never builds other layer types
                raise NotImplementedError(f"layer type {kind!r}")
        fn = decoder.final_norm
        self.final_norm = fn.gamma + float(fn.unit_offset)
        self.num_self = sum(layer.kind == "a" for layer in self.layers)

    def start(
        self,
        batch: int,
        max_len: int,
        *,
        start_pos: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        buffers: tuple[Tensor, Tensor] | None = None,
    ) -> dict:
        """A fresh decoding state with room for ``max_len`` positions.

        ``buffers``: the ``(layers, b, h, max_len, e)`` key and value memory to write into
        (:class:`~cadence.audiolm.static_cache.StaticDecoder` shares one); default new ones.
        """
        ref = self.final_norm
        h, e = self.heads, self.dim_head
        if buffers is None:
            shape = (self.num_self, batch, h, max_len, e)
            buffers = (
                torch.empty(shape, dtype=ref.dtype, device=ref.device),
                torch.empty(shape, dtype=ref.dtype, device=ref.device),
            )
        state: dict = {
            "k": buffers[0],
            "v": buffers[1],
            "length": 0,
            "max_len": max_len,
        }
        positions = torch.arange(max_len, device=ref.device, dtype=ref.dtype)
        freqs = positions[:, None] * self.inv_freq[None, :]  # (n, e/2)
        freqs = torch.stack([freqs, freqs], dim=-1).flatten(-2)  # interleaved, as x-transformers
        state["cos"], state["sin"] = freqs.cos(), freqs.sin()
        if start_pos is not None and bool((start_pos > 0).any()):
            # a row's left padding, before its start position, is never attended
            state["key_valid"] = ~lengths_to_mask(start_pos.to(ref.device), max_len)
        else:
            state["key_valid"] = None
        if context is not None:
            kvs = []
            for layer in self.layers:
                if layer.kind == "c":
                    kv = F.linear(context, cast(Tensor, layer.w_kv))  # set on every "c" layer
                    k, v = rearrange(kv, "b m (two h e) -> two b h m e", two=2, h=h)
                    kvs.append((k, v))
            state["context_kv"] = kvs
            state["context_mask"] = None if context_mask is None else context_mask[:, None, None, :]
        return state

    @staticmethod
    def _rotate(t: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        pairs = t.unflatten(-1, (-1, 2))
        rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
        return t * cos + rotated * sin

    def forward(self, state: dict, x: Tensor) -> Tensor:
        """Run ``x`` ``(b, n_new, d)``, the next positions, and return their hidden states."""
        _, n, d = x.shape
        start = state["length"]
        end = start + n
        if end > state["max_len"]:
            raise RuntimeError(
                f"decoding state holds {state['max_len']} positions; asked for {end}"
            )
        cos = state["cos"][start:end]
        sin = state["sin"][start:end]
        key_valid = state["key_valid"]
        if n == 1:
            mask = None if key_valid is None else key_valid[:, None, None, :end]
        else:
            causal = torch.ones(n, end, dtype=torch.bool, device=x.device).tril(start)
            if key_valid is None:
                mask = causal[None, None]
            else:
                # a padded query attends itself only, so no row is empty (SDPA would give NaN)
                eye = torch.zeros(n, end, dtype=torch.bool, device=x.device)
                eye[torch.arange(n), torch.arange(start, end)] = True
                mask = ((causal & key_valid[:, None, :end]) | eye)[:, None]
        self_index = 0
        cross_index = 0
        h = self.heads
        for layer in self.layers:
            normed = F.layer_norm(x, (d,), layer.norm)
            if layer.kind == "a":
                qkv = F.linear(normed, layer.w_in)
                q, k, v = rearrange(qkv, "b n (three h e) -> three b h n e", three=3, h=h)
                q = self._rotate(q, cos, sin)
                k = self._rotate(k, cos, sin)
                cache_k = state["k"][self_index]
                cache_v = state["v"][self_index]
                cache_k[:, :, start:end] = k
                cache_v[:, :, start:end] = v
                out = F.scaled_dot_product_attention(
                    q, cache_k[:, :, :end], cache_v[:, :, :end], attn_mask=mask
                )
                x = x + F.linear(rearrange(out, "b h n e -> b n (h e)"), layer.w_out)
                self_index += 1
            elif layer.kind == "c":
                q = rearrange(F.linear(normed, layer.w_in), "b n (h e) -> b h n e", h=h)
                k, v = state["context_kv"][cross_index]
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=state["context_mask"])
                x = x + F.linear(rearrange(out, "b h n e -> b n (h e)"), layer.w_out)
                cross_index += 1
            else:
                hidden = F.gelu(F.linear(normed, layer.w_in, layer.b_in))
                x = x + F.linear(hidden, layer.w_out, layer.b_out)
        state["length"] = end
        return F.layer_norm(x, (d,), self.final_norm)
