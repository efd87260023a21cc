"""SoundStorm's options against the paper's setting on the toy corpus.

Variants (each a config field; everything else equal):
  * paper: ``codebook_combiner="sum"``, ``semantic_conditioning="aligned"``, MaskGIT objective;
  * unet: ``codebook_combiner="unet"`` (InstructTTS's level U-Net);
  * diffusion: ``SoundStormTrainConfig(objective="diffusion")``, decoded with
    ``generate(sampler="diffusion")``;
  * cross: ``semantic_conditioning="cross_attention"`` (25 Hz tokens, 50 Hz codes, attended to
    at their own rate instead of being aligned to frames).

Data: the SoundStorm package's toy shards (``packages/soundstorm/tests/conftest.py``: the
toy corpus, a log-mel-energy residual "codec" of 2 x 16 codes at 50 Hz and 25 Hz fake
semantic tokens), the held-out split for evaluation (speakers and sentences unseen in
training). Training as in the package's learning test: 200 steps of batch 8, lr 5e-3,
EMA 0.9, CPU, one thread. Figures, per seed:
  * ``acc``: level-1 masked-token accuracy on held-out shards (half the frames of level 1
    masked, finer levels masked, no prompt: ``masked_accuracy``);
  * ``gen``: level-1 frame accuracy of ``generate`` from the semantic tokens alone
    (8 passes on level 1, temperature 1), the variant's sampler.
The toy codec has no decoder, so the PER of a resynthesis cannot be measured here.

Run: ``OMP_NUM_THREADS=1 uv run --no-sync python bench/soundstorm/bench_options.py``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "packages" / "soundstorm" / "tests"))

from conftest import CODEBOOK, LEVELS, SEMANTIC_VOCAB, write_toy_shards  # noqa: E402

from cadence.core.data import ShardReader, collate_sequences  # noqa: E402
from cadence.core.nn import BackboneConfig  # noqa: E402
from cadence.core.train import TrainerConfig  # noqa: E402
from cadence.soundstorm import (  # noqa: E402
    SoundStorm,
    SoundStormConfig,
    SoundStormTrainConfig,
    masked_accuracy,
    train_soundstorm,
    unigram_accuracy,
)


def toy_config(**changes) -> SoundStormConfig:
    cross = changes.get("semantic_conditioning") == "cross_attention"
    return SoundStormConfig.tiny(
        **changes,
        num_quantizers=LEVELS,
        codebook_size=CODEBOOK,
        semantic_codebook_size=SEMANTIC_VOCAB,
        frame_rate=50.0,
        semantic_frame_rate=25.0,
        backbone=BackboneConfig(
            kind="conformer",
            dim=64,
            depth=2,
            heads=4,
            ff_mult=2.0,
            conv_kernel_size=5,
            cross_attn_dim=64 if cross else 0,
        ),
    )


VARIANTS = {
    "paper": (dict(), SoundStormTrainConfig(), "maskgit"),
    "unet": (dict(codebook_combiner="unet"), SoundStormTrainConfig(), "maskgit"),
    "diffusion": (dict(), SoundStormTrainConfig(objective="diffusion"), "diffusion"),
    "cross": (dict(semantic_conditioning="cross_attention"), SoundStormTrainConfig(), "maskgit"),
}


def generated_accuracy(model: SoundStorm, batch, sampler: str, seed: int) -> float:
    out = model.generate(
        batch["tokens"],
        semantic_lengths=batch["tokens_lengths"],
        num_frames=batch["codes_lengths"],
        iterations=(8, 1),
        sampler=sampler,
        generator=torch.Generator().manual_seed(seed),
    )
    real = torch.arange(out.codes.shape[1])[None] < batch["codes_lengths"][:, None]
    n = out.codes.shape[1]
    hits = (out.codes[..., 0] == batch["codes"][:, :n, 0]) & real
    return float(hits.sum() / real.sum())


def run(name: str, seed: int, steps: int, train: ShardReader, batch, workdir: Path) -> dict:
    changes, train_config, sampler = VARIANTS[name]
    torch.manual_seed(seed)
    model = SoundStorm(toy_config(**changes))
    start = time.perf_counter()
    trainer = train_soundstorm(
        model,
        train.directory,
        TrainerConfig(
            max_steps=steps,
            batch_size=8,
            learning_rate=5e-3,
            warmup_steps=10,
            ema_decay=0.9,
            save_every=None,
            log_every=10_000,
            seed=seed,
        ),
        output_dir=workdir / f"{name}-{seed}",
        train_config=train_config,
        resume_from=None,
    )
    seconds = time.perf_counter() - start
    trainer.save_pretrained(workdir / f"{name}-{seed}" / "release")
    trained = SoundStorm.load_pretrained(workdir / f"{name}-{seed}" / "release")
    return {
        "acc": masked_accuracy(trained, batch, level=0),
        "gen": generated_accuracy(trained, batch, sampler, seed),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train = ShardReader(write_toy_shards(root / "train", "train"))
        valid = ShardReader(write_toy_shards(root / "valid", "valid"))
        batch = collate_sequences([valid[i] for i in range(len(valid))])
        baseline = unigram_accuracy([train[i]["codes"] for i in range(len(train))], batch, level=0)
        print(f"held-out items: {len(valid)}; unigram baseline (level 1): {baseline:.3f}")
        print("| variant | acc per seed | acc mean | gen per seed | gen mean | train s/run |")
        print("|---|---|---|---|---|---|")
        for name in args.variants:
            results = [run(name, s, args.steps, train, batch, root) for s in args.seeds]
            acc = [r["acc"] for r in results]
            gen = [r["gen"] for r in results]
            secs = statistics.mean(r["seconds"] for r in results)
            print(
                f"| {name} | {' / '.join(f'{a:.3f}' for a in acc)} | {statistics.mean(acc):.3f} "
                f"| {' / '.join(f'{g:.3f}' for g in gen)} | {statistics.mean(gen):.3f} | {secs:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
