"""ISTFTCodec vs SoundStream: encode + decode speed, size and bitrate on CPU, one run.

The toy recipe replaced its SoundStream codec by an ISTFTCodec (a frame-rate ConvNeXt
decoder with an inverse-STFT head, as Vocos). This compares, side by side in one process per
measurement, the configurations that shipped: the recipe's ISTFTCodec (dim 192, decoder 320,
8 x 1024 codes at 50 Hz = 4 kbit/s), the class default (dim 256, decoder 384), and the
SoundStream the recipe used before (16 filters, 4 x 256 codes = 1.6 kbit/s) plus a 32-filter
SoundStream with 8 x 1024 codes (the same bitrate as the ISTFTCodec). Random weights: speed
does not depend on them. The quality figures come from `cadence eval` (docs/pipeline.md).

Run from the repository root (about a minute):

    uv run python bench/codec/bench_istft.py --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SECONDS = 10.0
SAMPLE_RATE = 16000
MODELS = ("istft-recipe", "istft-default", "soundstream-toy", "soundstream-32")


def build(name: str):
    from cadence.codec import (
        ISTFTCodec,
        ISTFTCodecConfig,
        QuantizerConfig,
        SEANetConfig,
        SoundStream,
        SoundStreamConfig,
    )

    if name == "istft-recipe":
        return ISTFTCodec(ISTFTCodecConfig(dim=192, decoder_dim=320))
    if name == "istft-default":
        return ISTFTCodec(ISTFTCodecConfig())
    filters, levels, size = (16, 4, 256) if name == "soundstream-toy" else (32, 8, 1024)
    config = SoundStreamConfig(
        sample_rate=SAMPLE_RATE,
        seanet=SEANetConfig(strides=(2, 4, 5, 8), n_filters=filters, latent_dim=64),
        quantizer=QuantizerConfig(num_quantizers=levels, codebook_size=size),
    )
    return SoundStream(config).fold_weight_norm()


def measure(name: str, threads: int, repeats: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(name).eval()
    audio = 0.1 * torch.randn(1, 1, int(SECONDS * SAMPLE_RATE))
    encode, decode = [], []
    with torch.inference_mode():
        codes = model.encode(audio)  # warm-up
        model.decode(codes)
        for _ in range(repeats):
            start = time.perf_counter()
            codes = model.encode(audio)
            encode.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.decode(codes)
            decode.append(time.perf_counter() - start)
    levels, frames = codes.shape[1], codes.shape[-1]
    bits = levels * frames * float(torch.log2(torch.tensor(float(model.codebook_size))))
    return {
        "model": name,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "kbit_s": bits / SECONDS / 1000,
        "encode_s": statistics.median(encode),
        "decode_s": statistics.median(decode),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.threads, args.repeats)))
        return
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    rows = []
    for name in MODELS:  # each in its own process: no shared caches or allocator state
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, "--threads", str(args.threads),
             "--repeats", str(args.repeats)],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"{SECONDS:g} s of 16 kHz audio, CPU, {args.threads} thread(s), median of {args.repeats}")
    print(f"{'model':<16}{'params M':>9}{'kbit/s':>8}{'encode s':>10}{'decode s':>10}{'RTF':>8}")
    for r in rows:
        rtf = (r["encode_s"] + r["decode_s"]) / SECONDS
        print(
            f"{r['model']:<16}{r['params_m']:>9.2f}{r['kbit_s']:>8.2f}"
            f"{r['encode_s']:>10.3f}{r['decode_s']:>10.3f}{rtf:>8.3f}"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
