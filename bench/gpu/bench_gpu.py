"""One-shot GPU benchmark of Cadence's paper-size models (under 8 minutes on one H100/H200).

Measures, each as the median of ``--repeats`` runs after a warm-up:

1. SoundStorm at the paper's size (12-layer Conformer, width 1024, 12 levels x 1024 codes at
   50 Hz) generating 30 s of codes (1500 frames) with the paper's plan (16 passes on level 1,
   one greedy pass per finer level). The paper: 0.5 s on a TPU-v4.
2. Semantic-LM decoding (AudioLM semantic stage, 12 x 1024): ms per token, batch 1,
   KV cache on, continuing a 10 s prompt by 10 s.
3. bf16 training throughput of the semantic LM and SoundStorm (forward, cross-entropy,
   backward, AdamW) in items/s and tokens/s, with model FLOPs utilization from
   ``cadence.pipeline.plan``'s analytic FLOPs and the GPU's dense bf16 peak.
4. Peak GPU memory of each part (``torch.cuda.max_memory_allocated``).

Usage::

    python bench/gpu/bench_gpu.py --out bench/gpu/results.json     # on a GPU
    python bench/gpu/bench_gpu.py --tiny                            # CPU smoke run (seconds)

``--tiny`` shrinks every model and length so the script runs on a CPU in seconds; its
figures mean nothing. Never part of CI's timing; a test runs ``--tiny`` to keep it working.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from cadence.audiolm import SamplingOptions, SemanticTransformer, SemanticTransformerConfig
from cadence.core.nn import BackboneConfig
from cadence.pipeline.plan import GPUS, count_parameters, transformer_step_flops
from cadence.soundstorm import SoundStorm, SoundStormConfig


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], Any], device: torch.device, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` runs after one warm-up run."""
    run()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _autocast(device: torch.device) -> Any:
    return torch.autocast(device.type, dtype=torch.bfloat16)


def configs(tiny: bool) -> tuple[SemanticTransformerConfig, SoundStormConfig]:
    if tiny:
        lm = SemanticTransformerConfig(dim=64, depth=2, heads=4, dim_head=16, max_seq_len=256,
                                       codebook_size=500)  # fmt: skip
        backbone = BackboneConfig(kind="conformer", dim=64, depth=2, heads=4, ff_mult=4.0,
                                  conv_kernel_size=5)  # fmt: skip
        return lm, SoundStormConfig(num_quantizers=4, codebook_size=64, backbone=backbone)
    # AudioLM sec. 5: 12 layers, 16 heads, 1024 wide, FF 4096; 1536 tokens = 30 s at 50 Hz
    lm = SemanticTransformerConfig(codebook_size=500, frame_rate=50.0, max_seq_len=1536)
    return lm, SoundStormConfig()  # the paper's model (SoundStormConfig's defaults)


def bench_soundstorm_generation(
    config: SoundStormConfig, device: torch.device, seconds: float, repeats: int
) -> dict:
    model = SoundStorm(config).to(device).eval()
    frames = round(seconds * config.frame_rate)
    semantic = torch.randint(
        0,
        config.semantic_codebook_size,
        (1, round(seconds * config.semantic_frame_rate)),
        device=device,
    )
    generator = torch.Generator(device=device).manual_seed(0)
    _reset_peak(device)

    def run() -> None:
        with _autocast(device):
            model.generate(semantic, num_frames=frames, generator=generator)

    times = timed(run, device, repeats)
    return {"parameters": count_parameters(model), "seconds_of_audio": seconds, "frames": frames,
            "num_quantizers": config.num_quantizers, "median_s": statistics.median(times),
            "runs_s": times, "paper_tpu_v4_s": 0.5, "peak_gib": _peak_gib(device)}  # fmt: skip


def bench_lm_decoding(
    config: SemanticTransformerConfig, device: torch.device, prompt: int, new: int, repeats: int
) -> dict:
    model = SemanticTransformer(config).to(device).eval()
    tokens = torch.randint(0, config.codebook_size, (1, prompt), device=device)
    options = SamplingOptions(temperature=0.9, allow_eos=False, use_cache=True)
    _reset_peak(device)

    def run() -> None:
        with _autocast(device):
            model.generate(tokens, max_frames=prompt + new, sampling=options)

    times = timed(run, device, repeats)
    return {"parameters": count_parameters(model), "prompt_tokens": prompt, "new_tokens": new,
            "median_ms_per_token": 1000 * statistics.median(times) / new,
            "runs_s": times, "peak_gib": _peak_gib(device)}  # fmt: skip


def _train_rate(model: torch.nn.Module, step: Callable[[], torch.Tensor], device: torch.device,
                steps: int, repeats: int) -> list[float]:  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")

    def run() -> None:
        for _ in range(steps):
            with _autocast(device):
                loss = step()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return [t / steps for t in timed(run, device, repeats)]


def _embeddings(model: torch.nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))


def _peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device).lower()
    return next((peak for key, peak in GPUS.items() if key in name), None)


def _rates(
    name: str,
    times: list[float],
    batch: int,
    tokens: int,
    flops: float,
    device: torch.device,
    extra: dict,
) -> dict:
    step = statistics.median(times)
    peak = _peak_tflops(device)
    return {"model": name, **extra, "batch": batch, "tokens_per_item": tokens,
            "median_step_s": step, "items_per_s": batch / step, "tokens_per_s": batch * tokens / step,
            "flops_per_step": flops, "achieved_tflops": flops / step / 1e12,
            "mfu": flops / step / (peak * 1e12) if peak else None, "peak_gib": _peak_gib(device)}  # fmt: skip


def bench_lm_training(
    config: SemanticTransformerConfig, device: torch.device, batch: int, steps: int, repeats: int
) -> dict:
    model = SemanticTransformer(config).to(device).train()
    n = config.max_seq_len - 1  # START takes one place
    tokens = torch.randint(0, config.codebook_size, (batch, n), device=device)

    def step() -> torch.Tensor:
        logits = model(tokens).logits[:, :n]
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens.reshape(-1))

    _reset_peak(device)
    times = _train_rate(model, step, device, steps, repeats)
    dense = count_parameters(model) - _embeddings(model)
    flops = transformer_step_flops(
        dense, config.max_seq_len, config.depth, config.heads * config.dim_head, batch
    )
    return _rates("semantic_lm", times, batch, config.max_seq_len, flops, device,
                  {"parameters": count_parameters(model)})  # fmt: skip


def bench_soundstorm_training(
    config: SoundStormConfig,
    device: torch.device,
    batch: int,
    frames: int,
    steps: int,
    repeats: int,
) -> dict:
    model = SoundStorm(config).to(device).train()
    q, v = config.num_quantizers, config.codebook_size
    codes = torch.randint(0, v, (batch, frames, q), device=device)
    masked = codes.clone()
    masked[:, frames // 2 :, 0] = v  # mask id: half of level 1 to predict, finer levels masked
    masked[:, :, 1:] = v
    semantic = torch.randint(0, config.semantic_codebook_size, (batch, frames), device=device)
    level = torch.zeros(batch, dtype=torch.long, device=device)

    def step() -> torch.Tensor:
        logits = model(masked, semantic, level=level)
        return F.cross_entropy(logits.float().reshape(-1, v), codes[:, :, 0].reshape(-1))

    _reset_peak(device)
    times = _train_rate(model, step, device, steps, repeats)
    idle_heads = model.get_parameter("head_weight").numel() * (q - 1) // q
    dense = count_parameters(model) - _embeddings(model) - idle_heads
    backbone = config.backbone
    flops = transformer_step_flops(dense, frames, backbone.depth, backbone.dim, batch)
    return _rates("soundstorm", times, batch, frames, flops, device,
                  {"parameters": count_parameters(model)})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tiny", action="store_true", help="tiny models on any device: a smoke run"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    lm, storm = configs(args.tiny)
    scale = 0.1 if args.tiny else 1.0
    start = time.perf_counter()
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "tiny": args.tiny, "repeats": args.repeats,
        "load_average": os.getloadavg(),
    }  # fmt: skip
    results["soundstorm_generate_30s"] = bench_soundstorm_generation(
        storm, device, 30.0 * scale, args.repeats
    )
    results["semantic_lm_decoding"] = bench_lm_decoding(
        lm, device, round(500 * scale), round(500 * scale), args.repeats
    )
    results["training"] = [
        bench_lm_training(lm, device, 2 if args.tiny else 8, 2 if args.tiny else 5, args.repeats),
        bench_soundstorm_training(
            storm,
            device,
            2 if args.tiny else 16,
            round(600 * scale),
            2 if args.tiny else 5,
            args.repeats,
        ),
    ]
    results["wall_s"] = time.perf_counter() - start
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
