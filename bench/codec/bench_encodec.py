"""EnCodec 24 kHz on CPU: ours vs transformers.EncodecModel with the same weights, and streaming.

    uv run --no-sync python bench/codec/bench_encodec.py [--seconds 10] [--repeats 2]
    uv run --no-sync python bench/codec/bench_encodec.py --long-minutes 10   # file, chunked

Each measurement runs in its own subprocess (so peak memory is its own): encode + decode of
``--seconds`` of audio at 6 kbps with ``torch.set_num_threads(--threads)`` (2 by default), best of ``--repeats``
after a warm-up on 1 s. Peak memory is the growth of the process's peak RSS during the timed
runs; times come from a run with the default allocator, peak memory from a second run with
glibc set to return freed memory at once, so it follows live tensors.
The weights are a seeded random ``EncodecConfig()`` model (no download), with random codebooks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch


def build(seed: int = 0):
    from transformers import EncodecConfig, EncodecModel

    from cadence.codec.encodec import EnCodec, EnCodecConfig
    from cadence.codec.encodec_loading import from_official_state_dict

    torch.manual_seed(seed)
    hf = EncodecModel(EncodecConfig()).eval()
    with torch.no_grad():
        for layer in hf.quantizer.layers:
            layer.codebook.embed.normal_()
    ours = EnCodec(EnCodecConfig.encodec_24khz(bandwidth=6.0)).eval()
    ours.load_state_dict(from_official_state_dict(hf.state_dict(), "hf"))
    # Inference only: compute each weight-normed kernel once instead of at every call
    # (transformers offers no such switch, so it recomputes them per forward).
    ours.fold_weight_norm()
    return hf, ours


def worker(kind: str, seconds: float, repeats: int, chunk_seconds: float, threads: int) -> dict:
    torch.set_num_threads(threads)
    from cadence.codec.streaming import decode_chunked, encode_chunked

    hf, ours = build()
    torch.manual_seed(1)
    audio = torch.randn(1, 1, int(seconds * 24000)) * 0.1
    warm = audio[..., :24000]

    def run_hf(x):
        with torch.inference_mode():
            enc = hf.encode(x, bandwidth=6.0)
            return hf.decode(enc.audio_codes, enc.audio_scales).audio_values

    def run_ours(x):
        return ours.decode(ours.encode(x))

    chunk = int(chunk_seconds * 24000)

    def run_stream(x):
        codes = encode_chunked(ours, x, chunk_samples=chunk)
        return decode_chunked(ours, codes, chunk_frames=int(chunk_seconds * 75))

    fn = {"transformers": run_hf, "cadence": run_ours, "cadence-stream": run_stream}[kind]
    fn(warm)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(audio)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "kind": kind,
        "seconds": min(times),
        "rtf": min(times) / seconds,
        "peak_mb": (peak - base) / 1024,
        "out_len": out.shape[-1],
    }


def long_file(minutes_list: list[float], chunk_seconds: float, threads: int) -> None:
    """encode_file + decode_to_file on generated files: time and peak memory per length."""
    import tempfile

    print(
        f"EnCodec 24 kHz, 6 kbps, file -> codes -> file in {chunk_seconds:g} s chunks, CPU, {threads} threads"
    )
    print(f"{'minutes':>8}{'enc+dec s':>11}{'RTF':>8}{'peak MB':>9}")
    for minutes in minutes_list:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [
                sys.executable,
                __file__,
                "--long-worker",
                str(minutes),
                "--chunk-seconds",
                str(chunk_seconds),
                "--tmp",
                tmp,
                "--threads",
                str(threads),
            ]
            env = {
                **os.environ,
                "MALLOC_MMAP_THRESHOLD_": "65536",
                "MALLOC_TRIM_THRESHOLD_": "0",
                "MALLOC_ARENA_MAX": "1",
            }
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{minutes:>8g}{r['seconds']:>11.1f}{r['rtf']:>8.3f}{r['peak_mb']:>9.0f}")


def long_worker(minutes: float, chunk_seconds: float, tmp: str, threads: int) -> dict:
    import numpy as np
    import soundfile as sf

    from cadence.codec.streaming import decode_to_file, encode_file

    torch.set_num_threads(threads)
    _, ours = build()
    path = f"{tmp}/long.wav"
    rng = np.random.default_rng(0)
    total = int(minutes * 60 * 24000)
    with sf.SoundFile(path, "w", samplerate=24000, channels=1) as f:  # written in 1-minute blocks
        for start in range(0, total, 24000 * 60):
            f.write((rng.standard_normal(min(24000 * 60, total - start)) * 0.1).astype("float32"))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    codes = encode_file(ours, path, chunk_seconds=chunk_seconds, progress=False)
    decode_to_file(
        ours, codes, f"{tmp}/out.wav", chunk_frames=int(chunk_seconds * 75), progress=False
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    duration = sf.info(path).duration
    return {"seconds": seconds, "rtf": seconds / duration, "peak_mb": (peak - base) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2 for the report)")
    parser.add_argument("--chunk-seconds", type=float, default=1.0, help="streaming chunk length")
    parser.add_argument(
        "--long-minutes",
        type=float,
        nargs="+",
        help="instead: encode/decode generated files of these lengths chunk by chunk",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--long-worker", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.long_worker:
        print(json.dumps(long_worker(args.long_worker, args.chunk_seconds, args.tmp, args.threads)))
        return
    if args.long_minutes:
        long_file(args.long_minutes, args.chunk_seconds, args.threads)
        return
    if args.worker:
        print(
            json.dumps(
                worker(args.worker, args.seconds, args.repeats, args.chunk_seconds, args.threads)
            )
        )
        return

    results = {}
    for kind in ("transformers", "cadence", "cadence-stream"):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            kind,
            "--seconds",
            str(args.seconds),
            "--repeats",
            str(args.repeats),
            "--chunk-seconds",
            str(args.chunk_seconds),
            "--threads",
            str(args.threads),
        ]
        # Time with the default allocator; measure memory in a second run where glibc mmaps
        # and trims large blocks at once, so peak RSS tracks live tensors rather than the
        # allocator's caching (that setting page-faults on every allocation and would
        # distort the timings, most of all for streaming's many small chunks).
        timed = subprocess.run(cmd, capture_output=True, text=True, check=True)
        env = {
            **os.environ,
            "MALLOC_MMAP_THRESHOLD_": "65536",
            "MALLOC_TRIM_THRESHOLD_": "0",
            "MALLOC_ARENA_MAX": "1",
        }
        measured = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        results[kind] = json.loads(timed.stdout.strip().splitlines()[-1])
        results[kind]["peak_mb"] = json.loads(measured.stdout.strip().splitlines()[-1])["peak_mb"]

    ref = results["transformers"]
    print(
        f"EnCodec 24 kHz, 6 kbps, {args.seconds:g} s of audio, CPU, {args.threads} threads, best of {args.repeats}"
    )
    print(f"{'implementation':<34}{'enc+dec s':>10}{'RTF':>8}{'peak MB':>9}{'time ratio':>12}")
    labels = {
        "transformers": "transformers.EncodecModel",
        "cadence": "cadence EnCodec (offline)",
        "cadence-stream": f"cadence EnCodec (stream, {args.chunk_seconds:g} s chunks)",
    }
    for kind, r in results.items():
        ratio = r["seconds"] / ref["seconds"]
        print(
            f"{labels[kind]:<34}{r['seconds']:>10.2f}{r['rtf']:>8.3f}{r['peak_mb']:>9.0f}{ratio:>12.2f}"
        )
    overhead = results["cadence-stream"]["seconds"] / results["cadence"]["seconds"] - 1
    print(f"streaming overhead vs offline: {100 * overhead:+.1f}% (target < 20%)")


if __name__ == "__main__":
    main()
