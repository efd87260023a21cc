"""Flow-matching benchmark: sampling speed on CPU and held-out error vs. ODE steps.

    uv run --no-sync python bench/flowmatching/bench_flow.py [--out bench/flowmatching/out]

1. Speed: latent frames generated per second on CPU (``--threads``, default 2) by a
   HierarchicalConditionalFlowMatcher with a U-Conformer (dim 256, depth 6, 4 heads, 13.2 M
   parameters, 64-dim latents), 2 items x 250 latent frames (5 s at 50 Hz) after a
   100-frame prompt: Euler at 8 and 32 steps, midpoint at 8 steps (16 evaluations), and
   Euler 8 steps with classifier-free guidance (each evaluation a batch of 2b). Weights
   are random: speed does not depend on them.
2. Quality: a tiny model (dim 64, depth 2) trained for 400 steps on the committed toy corpus
   (25 Hz fake semantic tokens -> 50 Hz 8-dim log-mel latents, as in the learning test), then
   the held-out (unseen speakers) latent error at 1..32 steps, written as a PNG next to the
   baselines (mean latent, prior alone) so users can choose their steps.

No peer runs side by side: SpeechGPT-Gen's public code needs torchdiffeq / torchode and
releases no weights for this setting.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from cadence.core.data import AudioDataset, ShardReader, precompute
from cadence.core.features import log_mel_spectrogram
from cadence.core.nn import BackboneConfig
from cadence.core.plots import save_curves_png
from cadence.core.testing import FakeSemanticTokenizer, toy_corpus_dir
from cadence.core.train import TrainerConfig
from cadence.flowmatching import (
    EVALUATIONS_PER_STEP,
    FlowMatcherConfig,
    HierarchicalConditionalFlowMatcher,
    HierarchicalFlowMatcherConfig,
    build_trainer,
    collate_flow_batch,
    fit_latent_statistics,
    reconstruction_errors,
)


class LogMelLatents:
    """8 log-mel bands at 50 Hz as continuous latents (encode only; see the learning test)."""

    sample_rate, channels, hop_length, frame_rate, latent_dim = 16000, 1, 320, 50.0, 8
    num_quantizers, codebook_size = 1, 2

    def encode_latents(self, audio):
        n = audio.shape[-1] // self.hop_length
        mel = log_mel_spectrogram(
            audio.mean(1),
            self.sample_rate,
            n_fft=1024,
            hop_length=self.hop_length,
            n_mels=self.latent_dim,
            floor=1e-4,
        )
        return mel.transpose(1, 2)[:, :n]


def speed(rows: list[dict]) -> None:
    torch.manual_seed(0)
    config = HierarchicalFlowMatcherConfig(
        codebook_size=500,
        semantic_frame_rate=50.0,
        latent_frame_rate=50.0,
        flow=FlowMatcherConfig(
            latent_dim=64,
            semantic_dim=256,
            backbone=BackboneConfig(kind="uconformer", dim=256, depth=6, heads=4, cond_dim=256),
        ),
    )
    model = HierarchicalConditionalFlowMatcher(config).eval()
    params = sum(p.numel() for p in model.parameters())
    b, n, p = 2, 250, 100
    tokens = torch.randint(0, 500, (b, n))
    prompt_tokens = torch.randint(0, 500, (b, p))
    prompt_latents = torch.randn(b, p, 64)
    model.generate(tokens[:, :20], steps=1)  # warm-up
    runs = [("euler", 8, 1.0), ("euler", 32, 1.0), ("midpoint", 8, 1.0), ("euler", 8, 2.0)]
    for method, steps, scale in runs:
        start = time.perf_counter()
        out = model.generate(
            tokens,
            prompt_tokens=prompt_tokens,
            prompt_latents=prompt_latents,
            steps=steps,
            method=method,
            guidance_scale=scale,
        )
        seconds = time.perf_counter() - start
        frames = int(out.mask.sum())
        rows.append(
            {
                "params": params,
                "method": method,
                "steps": steps,
                "evaluations": steps * EVALUATIONS_PER_STEP[method],
                "guidance": scale,
                "frames": frames,
                "seconds": seconds,
                "frames_per_second": frames / seconds,
                "realtime_factor": frames / 50.0 / seconds,
            }
        )
        print(json.dumps(rows[-1]))


def samples(model, data, *, steps: int, method: str, batch_size: int = 16) -> list[torch.Tensor]:
    """Sampled latents per batch, with the noise reconstruction_errors draws (seed 0)."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for start in range(0, len(data), batch_size):
        batch = collate_flow_batch(
            [data[i] for i in range(start, min(start + batch_size, len(data)))]
        )
        lengths = batch["latents_mask"].sum(1)
        noise = torch.randn(batch["latents"].shape, generator=gen)
        out.append(
            model.sample(
                batch["tokens"].long(),
                batch["tokens_mask"],
                num_frames=lengths,
                steps=steps,
                method=method,
                noise=noise,
            ).latents
        )
    return out


def ode_error(outputs, reference, model) -> float:
    """MSE per dimension (standardized) between two lists of sampled batches."""
    flow = model.flow
    total = frames = 0.0
    for a, b in zip(outputs, reference):
        real = (b.abs().sum(-1) > 0).float()[..., None]
        total += float(((flow.normalize(a) - flow.normalize(b)) ** 2 * real).sum())
        frames += float(real.sum())
    return total / (frames * flow.config.latent_dim)


def quality(out_dir: Path) -> dict:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = FakeSemanticTokenizer(hop_length=640, codebook_size=32)
        shards = []
        for split in ("train", "valid"):
            data = AudioDataset(
                toy_corpus_dir() / f"{split}.jsonl", sample_rate=16000, crop_seconds=None
            )
            precompute(
                data,
                Path(tmp) / split,
                tokenizer=tokenizer,
                latent_codec=LogMelLatents(),
                batch_size=16,
                progress=False,
            )
            shards.append(ShardReader(Path(tmp) / split))
        train, valid = shards
        backbone = BackboneConfig(
            kind="conformer", dim=64, depth=2, heads=4, conv_kernel_size=5, cond_dim=64
        )
        model = HierarchicalConditionalFlowMatcher(
            HierarchicalFlowMatcherConfig.tiny(flow=FlowMatcherConfig.tiny(backbone=backbone))
        )
        fit_latent_statistics(model, train)
        trainer = build_trainer(
            model,
            train,
            TrainerConfig(
                max_steps=400,
                batch_size=16,
                learning_rate=2e-3,
                warmup_steps=20,
                ema_decay=0.99,
                save_every=None,
                log_every=100,
            ),
            output_dir=Path(tmp) / "run",
            max_frames=64,
        )
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny model: one thread is as fast and steadier
        trainer.train()
        results: dict = {"euler": {}, "midpoint": {}}
        grid = [1, 2, 4, 8, 16, 32]
        with trainer.ema.average_parameters(model):
            reference = samples(model, valid, steps=64, method="midpoint")
            for method, steps_list in (("euler", grid), ("midpoint", grid[:-1])):
                for steps in steps_list:
                    errors = reconstruction_errors(model, valid, steps=steps, method=method)
                    # the same noise as the reference: what is left is discretization error
                    errors["ode"] = ode_error(
                        samples(model, valid, steps=steps, method=method), reference, model
                    )
                    results[method][steps] = errors
                    print(method, steps, json.dumps({k: round(v, 4) for k, v in errors.items()}))
        torch.set_num_threads(threads)
    first = results["euler"][1]
    curves = {
        "euler: error to the 64-step solution": [results["euler"][s]["ode"] for s in grid],
        "midpoint: error to the 64-step solution": [
            results["midpoint"][s]["ode"] for s in grid[:-1]
        ],
        "euler: error to the real latents": [results["euler"][s]["model"] for s in grid],
        "midpoint: error to the real latents": [results["midpoint"][s]["model"] for s in grid[:-1]],
        "mean latent (baseline)": [first["mean"]] * len(grid),
        "prior alone": [first["prior"]] * len(grid),
        "semantic prior mean": [first["prior_mean"]] * len(grid),
    }
    path = save_curves_png(
        curves,
        out_dir / "error_vs_steps.png",
        steps=grid,
        xlabel="ODE steps",
        title="held-out latent MSE (standardized) vs. ODE steps",
        log_y=True,
    )
    print(f"wrote {path}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {args.threads}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    speed(rows)
    print("\nmethod    steps  evals  guidance  latent frames/s  x realtime (50 Hz)")
    for r in rows:
        print(
            f"{r['method']:<9} {r['steps']:>5}  {r['evaluations']:>5}  {r['guidance']:>8}  "
            f"{r['frames_per_second']:>15.0f}  {r['realtime_factor']:>8.1f}"
        )
    report = {"speed": rows}
    if not args.skip_quality:
        report["quality"] = quality(args.out)
    (args.out / "results.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
