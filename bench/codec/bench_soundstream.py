"""SoundStream encode + decode speed and memory: cadence-codec vs audiolm-pytorch, one run.

Both models are built at the same configuration (16 kHz, causal, strides 2-4-5-8 -> 50 Hz,
widths 32-64-128-256-512, three residual units per resolution with dilations 1, 3, 9 and
kernel 7, latent 128, 8 x 1024 residual VQ) with random weights, and code 10 s of audio.
"default" keeps each model's own bottleneck sequence layer (ours: a 2-layer LSTM, as
EnCodec; theirs: local attention); "plain" removes both. Each measurement runs in a fresh
subprocess so that peak memory (max RSS growth over the coding calls) is its own.

Run from the repository root (see bench/codec/README.md for the peer environment):

    /work/bench-envs/codec/bin/python bench/codec/bench_soundstream.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import types

SECONDS = 10.0
SAMPLE_RATE = 16000


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build_ours(variant: str):
    from cadence.codec import QuantizerConfig, SEANetConfig, SoundStream, SoundStreamConfig

    config = SoundStreamConfig(
        sample_rate=SAMPLE_RATE,
        seanet=SEANetConfig(
            strides=(2, 4, 5, 8),
            n_filters=32,
            latent_dim=128,
            n_residual_layers=3,
            dilation_base=3,
            residual_kernel_size=7,
            compress=1,
            causal=True,
            pad_mode="constant",
            lstm=2 if variant == "default" else 0,
        ),
        quantizer=QuantizerConfig(num_quantizers=8, codebook_size=1024),
    )
    # Weight norm is a training reparametrisation (the peer's convs have none): fold it.
    model = SoundStream(config).eval().fold_weight_norm()

    def encode(audio):
        return model.encode(audio)

    def decode(codes):
        return model.decode(codes)

    return model, encode, decode


def _stub_torchaudio() -> None:
    # audiolm-pytorch imports torchaudio at module level (no wheel for torch 2.15); its
    # MelSpectrogram is only used by the training loss, which this benchmark does not run.
    import torch

    class MelSpectrogram(torch.nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()

    ta = types.ModuleType("torchaudio")
    transforms = types.ModuleType("torchaudio.transforms")
    transforms.MelSpectrogram = MelSpectrogram
    functional = types.ModuleType("torchaudio.functional")
    functional.resample = lambda *a, **k: None
    ta.transforms, ta.functional = transforms, functional
    sys.modules.update(
        {"torchaudio": ta, "torchaudio.transforms": transforms, "torchaudio.functional": functional}
    )
    # Skip audiolm_pytorch/__init__ (it imports encodec, fairseq and transformer paths);
    # register the package so its submodules import on their own.
    import importlib.util

    spec = importlib.util.find_spec("audiolm_pytorch")
    package = types.ModuleType("audiolm_pytorch")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["audiolm_pytorch"] = package


def build_peer(variant: str):
    import torch

    _stub_torchaudio()
    from audiolm_pytorch.soundstream import SoundStream

    model = SoundStream(
        channels=32,
        strides=(2, 4, 5, 8),
        channel_mults=(2, 4, 8, 16),
        codebook_dim=128,
        codebook_size=1024,
        rq_num_quantizers=8,
        target_sample_hz=SAMPLE_RATE,
        use_local_attn=variant == "default",
    ).eval()

    @torch.inference_mode()
    def encode(audio):
        return model.tokenize(audio)

    @torch.inference_mode()
    def decode(codes):
        return model.decode_from_codebook_indices(codes)

    return model, encode, decode


def worker(impl: str, variant: str, threads: int, repeats: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, encode, decode = (build_ours if impl == "ours" else build_peer)(variant)
    params = sum(p.numel() for p in model.parameters())
    audio = torch.randn(1, 1, int(SECONDS * SAMPLE_RATE)) * 0.1
    with torch.inference_mode():
        codes = encode(audio)  # warm-up (and k-means/lazy init, if any)
        decode(codes)
    base = _peak_rss_mb()
    enc_times, dec_times = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        codes = encode(audio)
        t1 = time.perf_counter()
        out = decode(codes)
        t2 = time.perf_counter()
        enc_times.append(t1 - t0)
        dec_times.append(t2 - t1)
    return {
        "impl": impl,
        "variant": variant,
        "params_m": params / 1e6,
        "encode_s": statistics.median(enc_times),
        "decode_s": statistics.median(dec_times),
        "peak_rss_growth_mb": _peak_rss_mb() - base,
        "peak_rss_mb": _peak_rss_mb(),
        "codes": list(codes.shape),
        "out": list(out.shape),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.threads, args.repeats)))
        return
    rows = []
    for variant in ("default", "plain"):
        for impl in ("ours", "peer"):
            cmd = [
                sys.executable,
                __file__,
                "--threads",
                str(args.threads),
                "--repeats",
                str(args.repeats),
                "--worker",
                impl,
                variant,
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"SoundStream, {SECONDS:.0f} s of 16 kHz audio, CPU, {args.threads} thread(s), median of {args.repeats}"
    )
    print(
        f"{'variant':8} {'impl':5} {'params M':>8} {'encode s':>9} {'decode s':>9} {'RTF':>7} {'peak MB':>8} {'growth MB':>9}"
    )
    by = {}
    for r in rows:
        rtf = (r["encode_s"] + r["decode_s"]) / SECONDS
        by[(r["variant"], r["impl"])] = (rtf, r["peak_rss_growth_mb"])
        print(
            f"{r['variant']:8} {r['impl']:5} {r['params_m']:8.2f} {r['encode_s']:9.3f} {r['decode_s']:9.3f} "
            f"{rtf:7.4f} {r['peak_rss_mb']:8.0f} {r['peak_rss_growth_mb']:9.0f}"
        )
    for variant in ("default", "plain"):
        ours, peer = by[(variant, "ours")], by[(variant, "peer")]
        print(f"{variant}: RTF ratio ours/peer = {ours[0] / peer[0]:.2f} (target <= 1.0)")


if __name__ == "__main__":
    main()
