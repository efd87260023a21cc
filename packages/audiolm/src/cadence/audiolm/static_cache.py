"""One decoding step at a time over a static (preallocated) KV cache, for the sampling loop.

:class:`FastDecoder` already runs the stages' decoder over preallocated key/value buffers; its
forward pass is general (any number of new positions, masks built per call). Sampling calls
it once per token, and at AudioLM sizes a step's arithmetic is a few microseconds while its
per-call work (masks, rotary by stack/flatten, 3-D reshapes, separate K and V writes) costs
more than the network. :class:`StaticDecoder` adds a single-position step whose work is fixed
in advance:

- one key/value buffer per decoder, ``(layers, 2, b, h, positions, e)``, allocated once and
  shared with the prefill (FastDecoder writes the prompt into the same memory);
- one fused ``q, k, v`` projection per self-attention layer (weights transposed once);
- rotary as one in-place complex multiply of ``q`` and ``k`` together: x-transformers
  rotates interleaved pairs ``(x0, x1)`` by the position's angle, which is ``(x0 + i x1)
  e^{i theta}``, instead of a stack, a flatten and four ops per tensor. (Folding the rotation
  into extra weight rows would also work, but batch-1 decoding reads every weight once per
  token and is bound by memory traffic: it would add 40 % to the attention weights read.)
- K and V of a step written with one copy into the buffer; the attention reads views of it;
- residuals folded into ``addmm`` (``x + a @ W``); 2-D tensors throughout.

With ``int8=True`` the step's projections run as fbgemm's dynamic int8 linear (weights
quantized once per output channel, each step's activations quantized on the fly): batch-1
decoding on a CPU is bound by reading the weights, and int8 reads a quarter of the bytes
(bench/audiolm/README.md has the figures). The prefill stays in float. Tokens then differ
from float decoding where the logits' rounding moves a draw; the tests bound the logits'
difference.

Building a :class:`StaticDecoder` copies (and, in int8, quantizes and packs) every weight:
~100-150 ms per call in int8 (bench/audiolm/README.md), more than the first chunk of a stream takes to sample. :func:`static_decoder`
keeps one per decoder and rebuilds it only when a weight changed (an optimizer step, a
``load_state_dict``, a ``.to()``: each bumps a parameter's version or moves its storage).

Why hand-written: PyTorch's StaticCache lives in ``transformers`` for its own model classes;
x-transformers has no static-cache step. ``torch.compile`` was measured on this step on CPU
(bench/audiolm/README.md) and is not used.
"""

# b batch | n positions | d dim | h heads | e head dim | l self-attention layers

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from x_transformers import Decoder

from .fast_decoder import FastDecoder

__all__ = ["StaticDecoder", "static_decoder"]


@dataclass
class _StepLayer:
    kind: str  # "a" self-attention | "c" cross-attention | "f" feed-forward
    norm: Tensor  # (d,) LayerNorm scale
    w_in: Tensor  # (d, 3he) [q k v] for "a"; (d, he) q for "c"; (d, hidden) for "f"
    w_out: Tensor  # (he, d) or (hidden, d), transposed for addmm
    b_in: Tensor | None = None
    b_out: Tensor | None = None
    q_in: object = None  # int8: fbgemm-packed w_in (with b_in)
    q_out: object = None  # int8: fbgemm-packed w_out (with b_out)


def _pack_int8(weight_t: Tensor, bias: Tensor | None) -> object:
    """``(k, n)`` float weight (as ``mm`` takes it) -> fbgemm's packed per-channel int8 linear."""
    weight = weight_t.t().contiguous().float()  # (n, k): out x in
    scale = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
    zero = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():
        # PyTorch marks quantized-tensor constructors deprecated (in favour of torchao, whose
        # CPU int8 matmul is 5x slower than fbgemm's here); the packed op is still the fast one
        warnings.simplefilter("ignore")
        q = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(q, None if bias is None else bias.float())


def _linear_int8(x: Tensor, packed: object) -> Tensor:
    # reduce_range: 7-bit activations, which fbgemm needs on CPUs without VNNI (AVX2's
    # multiply-add saturates at 8 bits); the logits test covers the precision it costs
    return torch.ops.quantized.linear_dynamic(x, packed, True)


class StaticDecoder:
    """:class:`FastDecoder`'s prefill plus a fixed-cost single-position :meth:`step`.

    Usage::

        static = StaticDecoder(decoder)
        state = static.start(batch, max_len, start_pos=..., context=..., context_mask=...)
        h = static.prefill(state, x)      # (b, n, d) prompt -> (b, n, d)
        h = static.step(state, x_next)    # (b, d) one new position -> (b, d)
    """

    def __init__(self, decoder: Decoder, *, int8: bool = False):
        self.fast = fast = FastDecoder(decoder)
        self.int8 = int8
        self.heads, self.dim_head = fast.heads, fast.dim_head
        self.layers: list[_StepLayer] = []
        for layer in fast.layers:
            if layer.kind == "a":
                self.layers.append(_StepLayer("a", layer.norm, layer.w_in.t().contiguous(), layer.w_out.t().contiguous()))  # fmt: skip
            elif layer.kind == "c":
                self.layers.append(_StepLayer("c", layer.norm, layer.w_in.t().contiguous(), layer.w_out.t().contiguous()))  # fmt: skip
            else:
                self.layers.append(
                    _StepLayer(
                        "f",
                        layer.norm,
                        layer.w_in.t().contiguous(),
                        layer.w_out.t().contiguous(),
                        layer.b_in,
                        layer.b_out,
                    )
                )
        self.final_norm = fast.final_norm
        if int8:
            if self.final_norm.device.type != "cpu" or self.final_norm.dtype != torch.float32:
                raise ValueError(
                    "int8 decoding runs a float32 model on the CPU (fbgemm); got "
                    f"{self.final_norm.dtype} on {self.final_norm.device}: use weights='float'"
                )
            for step_layer in self.layers:
                step_layer.q_in = _pack_int8(step_layer.w_in, step_layer.b_in)
                step_layer.q_out = _pack_int8(step_layer.w_out, step_layer.b_out)

    def start(
        self,
        batch: int,
        max_len: int,
        *,
        start_pos: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> dict:
        """A decoding state with room for ``max_len`` positions (one buffer for K and V)."""
        ref = self.final_norm
        kv = torch.empty(
            self.fast.num_self, 2, batch, self.heads, max_len, self.dim_head,
            dtype=ref.dtype, device=ref.device,
        )  # fmt: skip
        state = self.fast.start(
            batch,
            max_len,
            start_pos=start_pos,
            context=context,
            context_mask=context_mask,
            buffers=(kv[:, 0], kv[:, 1]),
        )
        state["kv"] = kv
        if kv.dtype in (torch.float32, torch.float64):
            # e^{i theta} per position and pair (the tables hold each angle twice, interleaved)
            state["rotation"] = torch.complex(state["cos"][:, 0::2], state["sin"][:, 0::2])
        return state

    def prefill(self, state: dict, x: Tensor) -> Tensor:
        """The prompt ``(b, n, d)`` through FastDecoder, into this state's buffer."""
        return self.fast.forward(state, x)

    def step(self, state: dict, x: Tensor) -> Tensor:
        """One new position ``(b, d)`` -> its hidden state ``(b, d)``."""
        pos = state["length"]
        end = pos + 1
        if end > state["max_len"]:
            raise RuntimeError(
                f"decoding state holds {state['max_len']} positions; asked for {end}"
            )
        b, d = x.shape
        h, e = self.heads, self.dim_head
        he = h * e
        rotation = state.get("rotation")
        key_valid = state["key_valid"]
        mask = None if key_valid is None else key_valid[:, None, None, :end]
        kv = state["kv"]
        self_index = cross_index = 0
        int8 = self.int8
        for layer in self.layers:
            normed = F.layer_norm(x, (d,), layer.norm)
            if layer.kind == "a":
                # (b, 3he): q k v
                proj = _linear_int8(normed, layer.q_in) if int8 else torch.mm(normed, layer.w_in)
                qk = proj[:, : 2 * he].view(b, 2 * h, e)
                if rotation is not None:
                    torch.view_as_complex(qk.unflatten(-1, (-1, 2))).mul_(rotation[pos])
                else:  # half precision: no complex type; FastDecoder's rotation
                    qk.copy_(FastDecoder._rotate(qk, state["cos"][pos], state["sin"][pos]))
                cache = kv[self_index]  # (2, b, h, n, e)
                cache[:, :, :, pos].copy_(proj[:, he : 3 * he].view(b, 2, h, e).transpose(0, 1))
                q = proj[:, :he].view(b, h, 1, e)
                out = F.scaled_dot_product_attention(
                    q, cache[0, :, :, :end], cache[1, :, :, :end], attn_mask=mask
                )
                x = self._residual(x, out.view(b, he), layer)
                self_index += 1
            elif layer.kind == "c":
                q_in = _linear_int8(normed, layer.q_in) if int8 else torch.mm(normed, layer.w_in)
                q = q_in.view(b, h, 1, e)
                k, v = state["context_kv"][cross_index]
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=state["context_mask"])
                x = self._residual(x, out.view(b, he), layer)
                cross_index += 1
            elif int8:
                x = x + _linear_int8(F.gelu(_linear_int8(normed, layer.q_in)), layer.q_out)
            else:
                hidden = torch.mm(normed, layer.w_in) if layer.b_in is None else torch.addmm(layer.b_in, normed, layer.w_in)  # fmt: skip
                x = torch.addmm(x, F.gelu(hidden), layer.w_out)
                if layer.b_out is not None:
                    x = x.add_(layer.b_out)
        state["length"] = end
        return F.layer_norm(x, (d,), self.final_norm)

    def _residual(self, x: Tensor, a: Tensor, layer: _StepLayer) -> Tensor:
        """``x + a @ W_out`` of an attention layer (no bias)."""
        if self.int8:
            return x + _linear_int8(a, layer.q_out)
        return torch.addmm(x, a, layer.w_out)


# decoder -> (its weights' key when built, {int8: StaticDecoder})
_BUILT: weakref.WeakKeyDictionary[Decoder, tuple[tuple, dict[bool, StaticDecoder]]] = (
    weakref.WeakKeyDictionary()
)


def _weights_key(decoder: Decoder) -> tuple:
    """Changes whenever a weight does: an in-place update bumps ``_version``; ``.to()`` and
    ``load_state_dict(assign=True)`` give new storage."""
    return tuple(
        (p.data_ptr(), p._version, p.dtype, p.device)
        for p in (*decoder.parameters(), *decoder.buffers())
    )


def static_decoder(decoder: Decoder, *, int8: bool = False) -> StaticDecoder:
    """The :class:`StaticDecoder` of ``decoder``, built once and reused while its weights are
    unchanged (it holds weights only, no decoding state, so sampling loops can share it)."""
    key = _weights_key(decoder)
    built = _BUILT.get(decoder)
    if built is None or built[0] != key:
        built = (key, {})
        _BUILT[decoder] = built
    cache = built[1]
    if int8 not in cache:
        # built outside inference mode: its tensors must serve a later no_grad call too
        with torch.inference_mode(False), torch.no_grad():
            cache[int8] = StaticDecoder(decoder, int8=int8)
    return cache[int8]
