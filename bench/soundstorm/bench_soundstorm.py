"""Cadence SoundStorm vs soundstorm-pytorch 0.6.1, same configuration, same process.

Configuration (issue 6): codebook 1024, 8 levels, dim 256, depth 4, heads 8, conv kernel 31,
feed-forward x4, 250 frames, semantic vocabulary 1024 at the codec frame rate, CPU,
``torch.set_num_threads(2)``.

Measured:
  * generation, batch 1, with the paper's plan (16 iterations on level 1, 1 on the others)
    for both, and with soundstorm-pytorch's default (steps=18);
  * training throughput (frames/s: forward + backward + AdamW step) at batch 4.

Run (see README.md for the venv):
    PYTHONPATH=bench/soundstorm/peer_stubs /work/bench-envs/soundstorm/bin/python \
        bench/soundstorm/bench_soundstorm.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

CODEBOOK, LEVELS, DIM, DEPTH, HEADS, FRAMES, SEMANTIC_VOCAB = 1024, 8, 256, 4, 8, 250, 1024


def timed(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ours():
    from cadence.core.nn import BackboneConfig
    from cadence.soundstorm import (
        SoundStorm,
        SoundStormConfig,
        SoundStormTrainConfig,
        SoundStormTrainStep,
    )

    config = SoundStormConfig(
        num_quantizers=LEVELS,
        codebook_size=CODEBOOK,
        semantic_codebook_size=SEMANTIC_VOCAB,
        frame_rate=50.0,
        semantic_frame_rate=50.0,
        backbone=BackboneConfig(
            kind="conformer", dim=DIM, depth=DEPTH, heads=HEADS, ff_mult=4.0, conv_kernel_size=31
        ),
    )
    torch.manual_seed(0)
    model = SoundStorm(config).eval()
    semantic = torch.randint(0, SEMANTIC_VOCAB, (1, FRAMES))

    def generate(plan):
        return lambda: model.generate(
            semantic, iterations=plan, generator=torch.Generator().manual_seed(0)
        )

    step = SoundStormTrainStep(SoundStormTrainConfig(cond_drop_prob=0.0))
    train_model = SoundStorm(config).train()
    optimizer = torch.optim.AdamW(train_model.parameters(), lr=1e-4)
    batch = {
        "codes": torch.randint(0, CODEBOOK, (4, FRAMES, LEVELS)),
        "codes_lengths": torch.full((4,), FRAMES),
        "tokens": torch.randint(0, SEMANTIC_VOCAB, (4, FRAMES)),
        "tokens_lengths": torch.full((4,), FRAMES),
    }

    def train_step():
        out = step(train_model, batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    params = sum(p.numel() for p in model.parameters())
    return generate, train_step, params


def peer(dim_head: int, residual_streams: int):
    from soundstorm_pytorch import ConformerWrapper, SoundStorm

    def build(steps: int):
        torch.manual_seed(0)
        net = ConformerWrapper(
            codebook_size=CODEBOOK,
            num_quantizers=LEVELS,
            conformer=dict(
                dim=DIM,
                depth=DEPTH,
                heads=HEADS,
                dim_head=dim_head,
                ff_mult=4,
                conv_kernel_size=31,
                num_residual_streams=residual_streams,
            ),
        )
        return SoundStorm(
            net,
            steps=steps,
            num_semantic_token_ids=SEMANTIC_VOCAB,
            wav2vec_target_sample_hz=16000,
            wav2vec_downsample_factor=320,
            codec_target_sample_hz=16000,
            codec_downsample_factor=320,
        )

    semantic = torch.randint(0, SEMANTIC_VOCAB, (1, FRAMES))
    models = {steps: build(steps).eval() for steps in (16, 18)}

    def generate(steps):
        # its tqdm bar per level is silenced to keep the table readable
        import soundstorm_pytorch.soundstorm as module

        module.tqdm = lambda it, **kwargs: it
        return lambda: models[steps].generate(cond_semantic_token_ids=semantic)

    train_model = build(18).train()
    optimizer = torch.optim.AdamW(train_model.parameters(), lr=1e-4)
    codes = torch.randint(0, CODEBOOK, (4, FRAMES, LEVELS))
    tokens = torch.randint(0, SEMANTIC_VOCAB, (4, FRAMES))

    def train_step():
        loss, _ = train_model(codes, cond_semantic_token_ids=tokens)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    params = sum(p.numel() for p in models[16].parameters())
    return generate, train_step, params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paper_plan = (16,) + (1,) * (LEVELS - 1)

    our_generate, our_train, our_params = ours()
    rows = []
    with torch.inference_mode():
        g_ours = timed(our_generate(paper_plan), args.repeats)
    log(f"cadence: generate {g_ours:.3f}s")
    t_ours = timed(our_train, args.repeats)
    log(f"cadence: train step {t_ours:.3f}s")

    variants = [
        ("soundstorm-pytorch (defaults: dim_head 64, 4 residual streams)", 64, 4),
        ("soundstorm-pytorch (matched: dim_head 32, 1 residual stream)", 32, 1),
    ]
    for name, dim_head, streams in variants:
        peer_generate, peer_train, peer_params = peer(dim_head, streams)
        with torch.inference_mode():
            g16 = timed(peer_generate(16), args.repeats)
            g18 = timed(peer_generate(18), args.repeats)
        log(f"{name}: generate {g16:.3f}s / {g18:.3f}s")
        t_peer = timed(peer_train, args.repeats)
        log(f"{name}: train step {t_peer:.3f}s")
        rows.append((name, peer_params, g16, g18, t_peer))

    frames = 4 * FRAMES
    print(
        f"\nSoundStorm, codebook {CODEBOOK}, {LEVELS} levels, dim {DIM}, depth {DEPTH}, heads {HEADS}, "
        f"{FRAMES} frames, CPU, {torch.get_num_threads()} threads, median of {args.repeats}\n"
    )
    header = f"{'model':<66} {'params':>9} {'gen 16+1s':>10} {'gen 18 (default)':>17} {'train frames/s':>15}"
    print(header)
    print("-" * len(header))
    print(
        f"{'cadence SoundStorm (16 on level 1, 1 greedy on the rest)':<66} {our_params / 1e6:>8.2f}M "
        f"{g_ours:>9.3f}s {'-':>17} {frames / t_ours:>15.0f}"
    )
    for name, params, g16, g18, t_peer in rows:
        print(
            f"{name:<66} {params / 1e6:>8.2f}M {g16:>9.3f}s {g18:>16.3f}s {frames / t_peer:>15.0f}"
        )
    print()
    for name, _, g16, g18, t_peer in rows:
        print(
            f"vs {name}: generation {g16 / g_ours:.2f}x faster (same plan), {g18 / g_ours:.2f}x "
            f"(its default 18 steps); training {t_peer / t_ours:.2f}x the throughput"
        )


if __name__ == "__main__":
    main()
