"""Streaming speech continuation on the shipped pipeline: first audio, real-time factor, memory.

Run from the repository root (the workspace environment; no peer: none of the systems we
compare with streams, so the non-streaming ``generate`` of the same pipeline is the side by
side):

    uv run --no-sync python bench/pipeline/bench_streaming.py --threads 2

- time to first audio: from the moment ``SpeechContinuation.stream`` returns (the prompt is
  checked, tokenized and encoded) to the first chunk with samples; ``generate`` has its
  first audio when it returns, so its figure is its whole time (also from after tokenizing:
  the same tokenization is subtracted);
- start of gapless playback: the earliest moment a player could start and never run dry,
  ``max_i(arrival_i - audio before chunk i / rate)``. The first audio of a non-causal codec
  is short (its decoder holds back its look-ahead), so this, not the first chunk, is when
  a listener hears sound that goes on;
- real-time factor: wall time / seconds of audio, streaming ``--seconds`` (default 10);
- peak memory: ``ru_maxrss`` of a fresh process streaming (or generating) 10 s and 60 s.

Median of ``--repeats`` runs for the times; one process per memory figure. The load
average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = """
import json, resource, sys, torch
torch.set_num_threads(int(sys.argv[3]))
from cadence.core.audio import load
from cadence.pipeline import SpeechContinuation
from cadence.pipeline.cli import default_pipeline
from cadence.pipeline.continuation import DEFAULT_SAMPLING
pipe = SpeechContinuation.from_pretrained(default_pipeline())
audio, rate = load(default_pipeline() / "prompts" / "prompt.flac")
sampling = DEFAULT_SAMPLING.replace(allow_eos=False)
seconds = float(sys.argv[2])
if sys.argv[1] == "stream":
    n = sum(c.audio.shape[-1] for c in pipe.stream(audio, sample_rate=rate, seconds=seconds, sampling=sampling, seed=0))
else:
    n = int(pipe.generate(audio, sample_rate=rate, seconds=seconds, sampling=sampling, seed=0).lengths[0])
print(json.dumps({"samples": n, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak(mode: str, seconds: float, threads: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(seconds), str(threads)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--chunk-seconds", type=float, default=1.0)
    parser.add_argument("--left-context", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=16, help="SoundStorm passes on level 0")
    parser.add_argument("--lookahead", type=float, default=None, help="seconds (default exact)")
    parser.add_argument("--int8", action="store_true", help="semantic LM step in int8")
    parser.add_argument(
        "--guidance", type=float, default=None, help="SoundStorm's (default: the pipelines')"
    )
    parser.add_argument(
        "--guided-levels",
        type=int,
        default=None,
        help="SoundStorm levels guided (default: the pipelines', SOUNDSTORM_GUIDED_LEVELS)",
    )
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from cadence.core.audio import load
    from cadence.pipeline import SpeechContinuation
    from cadence.pipeline import guidance as pipeline_guidance
    from cadence.pipeline.cli import default_pipeline
    from cadence.pipeline.continuation import DEFAULT_SAMPLING
    from cadence.pipeline.guidance import SOUNDSTORM_GUIDANCE

    if args.guided_levels is not None:  # read by soundstorm_scales at each call
        pipeline_guidance.SOUNDSTORM_GUIDED_LEVELS = args.guided_levels
    levels = pipeline_guidance.SOUNDSTORM_GUIDED_LEVELS
    guidance = SOUNDSTORM_GUIDANCE if args.guidance is None else args.guidance
    pipe = SpeechContinuation.from_pretrained(default_pipeline())
    audio, rate = load(default_pipeline() / "prompts" / "prompt.flac")
    from cadence.soundstorm import default_iterations

    sampling = DEFAULT_SAMPLING.replace(allow_eos=False, weights="int8" if args.int8 else "float")
    plan = default_iterations(pipe.soundstorm.config.num_quantizers, first=args.steps)
    kwargs = dict(
        sample_rate=rate, seconds=args.seconds, sampling=sampling, seed=0, iterations=plan,
        guidance_scale=guidance,
    )  # fmt: skip

    def tokenize_time() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            x = audio[None].float()
            pipe.tokenizer.tokenize(x)
            pipe.codec.encode(x)
        return time.perf_counter() - start

    def streamed() -> tuple[float, float, float]:
        stream = pipe.stream(
            audio,
            chunk_seconds=args.chunk_seconds,
            left_context_seconds=args.left_context,
            lookahead_seconds=args.lookahead,
            **kwargs,
        )
        start = time.perf_counter()
        first, gapless, played = None, 0.0, 0
        for chunk in stream:
            if chunk.audio.shape[-1]:
                now = time.perf_counter() - start
                first = now if first is None else first
                gapless = max(gapless, now - played / chunk.sample_rate)
                played += chunk.audio.shape[-1]
        return first or 0.0, time.perf_counter() - start, gapless

    def generated() -> float:
        start = time.perf_counter()
        pipe.generate(audio, **kwargs)
        return time.perf_counter() - start - tokenize_time()

    streamed()  # warm-up (measures the codec's reach once, fills einx/oneDNN caches)
    generated()
    s_runs = [streamed() for _ in range(args.repeats)]
    g_runs = [generated() for _ in range(args.repeats)]
    ttfa = statistics.median(r[0] for r in s_runs)
    s_total = statistics.median(r[1] for r in s_runs)
    gapless = statistics.median(r[2] for r in s_runs)
    g_total = statistics.median(g_runs)
    load_avg = os.getloadavg()
    print(
        f"\nshipped pipeline ({type(pipe.codec).__name__} codec) | {args.seconds:g} s continuation | chunk "
        f"{args.chunk_seconds:g} s, left context {args.left_context:g} s | look-ahead {'exact' if args.lookahead is None else f'{args.lookahead:g} s'} | SoundStorm {args.steps} "
        f"passes on level 0, guidance {guidance:g} on {levels} levels | LM {sampling.weights} | threads {args.threads} | median of {args.repeats} | load "
        f"average {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}"
    )
    print(f"{'measure':34s} {'stream':>10s} {'generate':>10s}")
    print(f"{'time to first audio (s)':34s} {ttfa:10.3f} {g_total:10.3f}")
    print(f"{'start of gapless playback (s)':34s} {gapless:10.3f} {g_total:10.3f}")
    print(f"{'real-time factor':34s} {s_total / args.seconds:10.3f} {g_total / args.seconds:10.3f}")
    print(
        f"      runs: stream {[tuple(round(x, 3) for x in r) for r in s_runs]}, generate {[round(x, 3) for x in g_runs]}"
    )
    if not args.no_memory:
        for seconds in (10.0, 60.0):
            s, g = peak("stream", seconds, args.threads), peak("generate", seconds, args.threads)
            print(f"{f'peak memory, {seconds:g} s (MiB)':34s} {s:10.0f} {g:10.0f}")


if __name__ == "__main__":
    main()
