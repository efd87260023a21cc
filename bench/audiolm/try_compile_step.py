"""torch.compile of the semantic LM's decoder step, tried and not used (see README.md).

Kept so the comparison can be rerun on a newer torch or another CPU: it times the shipped
eager :meth:`StaticDecoder.step` against a static-shape step (the write position as a tensor,
``index_copy_`` into the K/V buffer, attention over the whole buffer under a mask: the shape
``torch.compile`` and CUDA graphs need) compiled with inductor. Float weights, no cross-attention
(the semantic LM's case), batch 1, the bench configuration of ``bench_decoding.py``.

Run: ``uv run python bench/audiolm/try_compile_step.py [--threads 1]``
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from cadence.audiolm import (
    SamplingOptions,
    SemanticTransformer,
    SemanticTransformerConfig,
    static_cache,
)


def static_step(layers, final_norm, x, kv, pos_t, rotation, valid, heads: int, dim_head: int):
    """One position through the decoder with every shape fixed by the buffer, not the position."""
    b, d = x.shape
    he = heads * dim_head
    rot = rotation.index_select(0, pos_t)
    mask = valid[:, None, None, :]
    self_index = 0
    for kind, norm, w_in, w_out, b_in, b_out in layers:
        normed = F.layer_norm(x, (d,), norm)
        if kind == "a":
            proj = torch.mm(normed, w_in)
            qk = proj[:, : 2 * he].reshape(b, 2 * heads, dim_head // 2, 2).contiguous()
            qk = torch.view_as_real(torch.view_as_complex(qk) * rot).reshape(b, 2 * heads, dim_head)
            q = qk[:, :heads].reshape(b, heads, 1, dim_head)
            cache = kv[self_index]
            cache[0].index_copy_(2, pos_t, qk[:, heads:].reshape(b, heads, 1, dim_head))
            cache[1].index_copy_(2, pos_t, proj[:, 2 * he :].reshape(b, heads, 1, dim_head))
            out = F.scaled_dot_product_attention(q, cache[0], cache[1], attn_mask=mask)
            x = torch.addmm(x, out.reshape(b, he), w_out)
            self_index += 1
        else:
            hidden = torch.mm(normed, w_in) if b_in is None else torch.addmm(b_in, normed, w_in)
            x = torch.addmm(x, F.gelu(hidden), w_out)
            if b_out is not None:
                x = x + b_out
    return F.layer_norm(x, (d,), final_norm)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = SemanticTransformerConfig(dim=256, depth=4, heads=8, dim_head=64, codebook_size=500)
    model = SemanticTransformer(config).eval()
    sampling = SamplingOptions(temperature=1.0, top_k=50, allow_eos=False)

    def ms_per_token() -> float:
        start = time.perf_counter()
        model.generate(batch_size=1, max_frames=args.tokens, sampling=sampling)
        return (time.perf_counter() - start) / args.tokens * 1e3

    ms_per_token()
    print(f"eager    {sorted(ms_per_token() for _ in range(3))[1]:.2f} ms/token", flush=True)

    compiled = torch.compile(static_step, dynamic=False)

    def step(self, state, x):
        pos = state["length"]
        if "valid_full" not in state:  # first step after the prefill
            state["valid_full"] = torch.zeros(x.shape[0], state["max_len"], dtype=torch.bool)
            state["pos_t"] = torch.zeros(1, dtype=torch.long)
            state["kv"][:, :, :, :, pos:].zero_()  # masked, but 0 * NaN garbage is still NaN
        valid = state["valid_full"]
        valid[:, : pos + 1] = (
            True if state["key_valid"] is None else state["key_valid"][:, : pos + 1]
        )
        state["pos_t"].fill_(pos)
        layers = tuple((s.kind, s.norm, s.w_in, s.w_out, s.b_in, s.b_out) for s in self.layers)
        out = compiled(layers, self.final_norm, x, state["kv"], state["pos_t"], state["rotation"],
                       valid, self.heads, self.dim_head)  # fmt: skip
        state["length"] = pos + 1
        return out

    static_cache.StaticDecoder.step = step
    start = time.time()
    ms_per_token()
    print(f"compile + first run {time.time() - start:.0f} s", flush=True)
    print(f"compiled {sorted(ms_per_token() for _ in range(3))[1]:.2f} ms/token", flush=True)


if __name__ == "__main__":
    main()
