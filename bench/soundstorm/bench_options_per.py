"""SoundStorm's options by the PER of their resynthesis, on the shipped toy pipeline's codec and tokenizer.

The companion of ``bench_options.py`` (masked accuracy on a decoder-less toy codec): here the
codes are those of the shipped toy pipeline's codec (``cadence.pipeline.default_pipeline()``:
its first ``--levels`` levels modelled, default all) and the
semantic tokens its phonetic tokenizer's, so a generation can be decoded to audio and heard by
the shipped phoneme recognizer (``phoneme_recognizer``, trained on the same corpus).

Variants (each a config field; everything else equal), as in ``bench_options.py``:
  * paper: ``codebook_combiner="sum"``, ``semantic_conditioning="aligned"``, MaskGIT;
  * unet: ``codebook_combiner="unet"``;
  * diffusion: ``SoundStormTrainConfig(objective="diffusion")`` + ``sampler="diffusion"``;
  * cross: ``semantic_conditioning="cross_attention"``.

Data: the committed toy corpus (``tests/data/toy_speech``: 170 train, 30 held-out utterances
of speakers and sentences unseen in training). Each variant trains ``--steps`` steps (batch 8,
lr 2e-3, EMA 0.99; CPU, one thread) from each seed. Figures per variant, mean over seeds:
  * ``acc``: level-1 masked accuracy on the held-out shards (``masked_accuracy``);
  * ``per``: phoneme error rate of the held-out utterances resynthesized from their semantic
    tokens alone (no acoustic prompt; 8 passes on level 1, 1 on the others; seeded sampling),
    decoded by the codec at ``--levels`` levels, transcribed by the recognizer.
Reference rows: the originals' PER and the codec's own resynthesis at ``--levels`` levels
(the ceiling a perfect SoundStorm reaches).

Run: ``OMP_NUM_THREADS=1 uv run --no-sync python bench/soundstorm/bench_options_per.py``
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cadence.core.audio import load
from cadence.core.checkpoint import load_pretrained
from cadence.core.data import AudioDataset, ShardReader, collate_sequences, precompute
from cadence.core.nn import BackboneConfig
from cadence.core.testing import toy_corpus_dir
from cadence.core.train import TrainerConfig
from cadence.evaluation import normalize_phonemes, phoneme_error_rate
from cadence.pipeline import default_pipeline
from cadence.soundstorm import (
    SoundStorm,
    SoundStormConfig,
    SoundStormTrainConfig,
    masked_accuracy,
    train_soundstorm,
)

VARIANTS: dict[str, tuple[dict[str, Any], SoundStormTrainConfig, str]] = {
    "paper": ({}, SoundStormTrainConfig(), "maskgit"),
    "unet": ({"codebook_combiner": "unet"}, SoundStormTrainConfig(), "maskgit"),
    "diffusion": ({}, SoundStormTrainConfig(objective="diffusion"), "diffusion"),
    "cross": ({"semantic_conditioning": "cross_attention"}, SoundStormTrainConfig(), "maskgit"),
}


class FirstLevels(nn.Module):
    """The first ``levels`` levels of a codec, as a codec (what the bench's SoundStorms model)."""

    def __init__(self, codec: Any, levels: int):
        super().__init__()
        if not 1 <= levels <= codec.num_quantizers:
            raise SystemExit(f"--levels must be in [1, {codec.num_quantizers}] for this codec")
        self.codec, self.num_quantizers = codec, levels
        self.sample_rate, self.channels = codec.sample_rate, codec.channels
        self.frame_rate, self.codebook_size = codec.frame_rate, codec.codebook_size

    def num_frames(self, samples: int) -> int:
        return self.codec.num_frames(samples)

    def encode(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.codec.encode(audio, lengths)[..., : self.num_quantizers]

    def decode(self, codes: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.codec.decode(codes, lengths)


def config(codec: FirstLevels, tokenizer: Any, **changes: Any) -> SoundStormConfig:
    cross = changes.get("semantic_conditioning") == "cross_attention"
    return SoundStormConfig(
        num_quantizers=codec.num_quantizers,
        codebook_size=codec.codebook_size,
        semantic_codebook_size=tokenizer.codebook_size,
        frame_rate=codec.frame_rate,
        semantic_frame_rate=tokenizer.frame_rate,
        backbone=BackboneConfig(
            kind="conformer",
            dim=96,
            depth=3,
            heads=4,
            ff_mult=2.0,
            conv_kernel_size=7,
            cross_attn_dim=96 if cross else 0,
        ),
        **changes,
    )


def transcribe(recognizer: Any, audios: list[Tensor], sample_rate: int) -> list[list[str]]:
    return [recognizer.transcribe(a[None], sample_rate=sample_rate)[0] for a in audios]


def resynthesize(
    model: SoundStorm, codec: FirstLevels, valid: ShardReader, sampler: str, seed: int
):
    generator = torch.Generator().manual_seed(seed)
    audios = []
    for i in range(len(valid)):
        item = valid[i]
        out = model.generate(
            item["tokens"][None],
            num_frames=item["codes"].shape[0],
            iterations=(8,) + (1,) * (codec.num_quantizers - 1),
            sampler=sampler,  # type: ignore[arg-type]
            generator=generator,
        )
        audios.append(codec.decode(out.codes)[0])
    return audios


def run(name: str, seed: int, args, codec, tokenizer, train, valid, batch, workdir: Path):
    changes, train_config, sampler = VARIANTS[name]
    torch.manual_seed(seed)
    model = SoundStorm(config(codec, tokenizer, **changes))
    start = time.perf_counter()
    trainer = train_soundstorm(
        model,
        train.directory,
        TrainerConfig(
            max_steps=args.steps,
            batch_size=8,
            learning_rate=2e-3,
            warmup_steps=20,
            ema_decay=0.99,
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
    trained = SoundStorm.load_pretrained(workdir / f"{name}-{seed}" / "release").eval()
    with torch.inference_mode():
        audios = resynthesize(trained, codec, valid, sampler, seed)
    return {
        "acc": masked_accuracy(trained, batch, level=0),
        "per": phoneme_error_rate(
            args.references, transcribe(args.recognizer, audios, codec.sample_rate)
        ),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--levels", type=int, default=0, help="0: all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    shipped, corpus = default_pipeline(), toy_corpus_dir()
    full = load_pretrained(shipped / "codec").eval()
    codec = FirstLevels(full, args.levels or full.num_quantizers)
    args.levels = codec.num_quantizers
    tokenizer = load_pretrained(shipped / "semantic_tokenizer").eval()
    args.recognizer = load_pretrained(shipped / "phoneme_recognizer").eval()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        readers = {}
        for split in ("train", "valid"):
            data = AudioDataset(
                corpus / f"{split}.jsonl", sample_rate=codec.sample_rate, crop_seconds=None
            )
            readers[split] = ShardReader(
                precompute(
                    data, root / split, codec=codec, tokenizer=tokenizer, progress=False
                ).parent
            )
        train, valid = readers["train"], readers["valid"]
        rows = [json.loads(line) for line in (corpus / "valid.jsonl").read_text().splitlines()]
        by_id = {row["id"]: row for row in rows if row}
        held_out = [by_id[i] for i in valid.ids]  # the shards' order
        args.references = [normalize_phonemes(row["phonemes"]) for row in held_out]
        originals = [
            load(corpus / row["path"], sample_rate=codec.sample_rate)[0] for row in held_out
        ]
        batch = collate_sequences([valid[i] for i in range(len(valid))])
        with torch.inference_mode():
            resynth = [codec.decode(valid[i]["codes"][None])[0] for i in range(len(valid))]
        print(f"held-out items: {len(valid)}; levels modelled: {args.levels}; steps: {args.steps}")
        print(
            f"PER originals: {phoneme_error_rate(args.references, transcribe(args.recognizer, originals, codec.sample_rate)):.3f}"
        )
        print(
            f"PER codec resynthesis ({args.levels} levels): {phoneme_error_rate(args.references, transcribe(args.recognizer, resynth, codec.sample_rate)):.3f}"
        )
        print("| variant | acc per seed | acc mean | PER per seed | PER mean | train s/run |")
        print("|---|---|---|---|---|---|")
        for name in args.variants:
            results = [
                run(name, s, args, codec, tokenizer, train, valid, batch, root) for s in args.seeds
            ]
            acc, per = [r["acc"] for r in results], [r["per"] for r in results]
            secs = statistics.median(r["seconds"] for r in results)
            print(
                f"| {name} | {' / '.join(f'{a:.3f}' for a in acc)} | {statistics.mean(acc):.3f} "
                f"| {' / '.join(f'{p:.3f}' for p in per)} | {statistics.mean(per):.3f} | {secs:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
