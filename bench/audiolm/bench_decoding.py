"""Semantic-LM cached sampling, cadence-audiolm vs audiolm-pytorch 2.4.0, in one run.

The bench configuration of issue 16: dim 256, depth 4, heads 8 x 64, 500 semantic tokens
(codebook), random weights, temperature 1 with top-k 50 (both), KV cache on, CPU; Cadence
in float and with ``SamplingOptions(weights="int8")``. Two
measures: ms per generated token at batch 1 over ``--tokens`` tokens (default 500), and
tokens/s at batch 16 (rows x tokens / wall time). Median of ``--repeats`` runs after a
warm-up; the load average is printed next to the figures.

    /work/bench-envs/audiolm/bin/python bench/audiolm/bench_decoding.py --threads 2

(the peer environment of bench/audiolm/README.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_audiolm import DEPTH, DIM, DIM_HEAD, HEADS, SEMANTIC, load_peer


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peer, _ = load_peer()
    peer.tqdm = lambda iterable, **_: iterable  # the peer draws a bar per token otherwise
    from cadence.audiolm import SamplingOptions, SemanticTransformer, SemanticTransformerConfig

    torch.manual_seed(0)
    ours = SemanticTransformer(
        SemanticTransformerConfig(
            dim=DIM, depth=DEPTH, heads=HEADS, dim_head=DIM_HEAD, codebook_size=SEMANTIC
        )
    ).eval()
    theirs = peer.SemanticTransformerWrapper(
        transformer=peer.SemanticTransformer(
            num_semantic_tokens=SEMANTIC, dim=DIM, depth=DEPTH, heads=HEADS
        ),
        unique_consecutive=False,
    ).eval()
    # Cadence samples with allow_eos=False (every row runs its 500 tokens); the peer stops when
    # every row has drawn EOS, which made some of its runs a few tokens long: no id is -1, so
    # with this it also runs to max_length (checked below)
    theirs.eos_id = -1
    n = args.tokens
    sampling = SamplingOptions(temperature=1.0, top_k=50, allow_eos=False)

    int8 = sampling.replace(weights="int8")

    def ours_fn(batch: int, options=sampling):
        return lambda: ours.generate(batch_size=batch, max_frames=n, sampling=options)

    def theirs_fn(batch: int):
        # filter_thres 0.9 keeps the top 10 % of the 500 classes: top-k 50, as ours
        def run():
            out = theirs.generate(
                max_length=n, batch_size=batch, use_kv_cache=True, temperature=1.0, filter_thres=0.9
            )
            assert out.shape[-1] >= n - 1, out.shape  # the whole length was sampled

        return run

    rows = []
    for batch in (1, args.batch):
        with torch.inference_mode():
            a = timed(ours_fn(batch), args.repeats)
            q = timed(ours_fn(batch, int8), args.repeats)
        with torch.no_grad():
            b = timed(theirs_fn(batch), args.repeats)
        rows.append(
            (batch, statistics.median(a), statistics.median(q), statistics.median(b), a, q, b)
        )
    load = os.getloadavg()
    print(
        f"\nsemantic LM cached sampling | cadence-audiolm vs audiolm-pytorch 2.4.0 | "
        f"{n} tokens | dim {DIM} depth {DEPTH} heads {HEADS}x{DIM_HEAD} | threads "
        f"{args.threads} | median of {args.repeats} | load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"{'batch':>5} {'measure':12s} {'cadence':>10s} {'cadence int8':>13s} "
        f"{'audiolm-pytorch':>16s} {'ratio':>7s} {'int8 ratio':>10s}"
    )
    for batch, a, q, b, runs_a, runs_q, runs_b in rows:
        if batch == 1:
            print(
                f"{batch:5d} {'ms/token':12s} {a / n * 1e3:10.3f} {q / n * 1e3:13.3f} "
                f"{b / n * 1e3:16.3f} {b / a:6.2f}x {b / q:9.2f}x"
            )
        else:
            ta, tq, tb = batch * n / a, batch * n / q, batch * n / b
            print(
                f"{batch:5d} {'tokens/s':12s} {ta:10.0f} {tq:13.0f} {tb:16.0f} "
                f"{ta / tb:6.2f}x {tq / tb:9.2f}x"
            )
        print(
            f"      runs (s): cadence {[round(t, 3) for t in runs_a]}, int8 "
            f"{[round(t, 3) for t in runs_q]}, peer {[round(t, 3) for t in runs_b]}"
        )


if __name__ == "__main__":
    main()
