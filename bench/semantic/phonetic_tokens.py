"""Supervised (CTC-phonetic) semantic tokens vs MFCC k-means tokens on a ~1 hour corpus.

Trains :class:`cadence.semantic.PhoneticEncoder` with CTC on ``<corpus>/train.jsonl`` on ONE
CPU thread for a wall-clock budget (steps calibrated from the first batches), logging the
training loss and the greedy PER on valid utterances; then fits k-means (each cluster count)
on every encoder layer and on MFCCs (:class:`MFCCKMeansTokenizer`) over the same training
audio, and scores each tokenizer on ``<corpus>/valid.jsonl`` (held-out speakers): phone
purity, cluster purity, I(token; phoneme) in bits, PNMI, and the same MI with the tokens
shuffled over frames (the estimator's bias). Writes ``results.json`` and ``results.md``
and the encoder (and the best tokenizers) to ``--out``.

Run by hand (not a test), from the repository root::

    OMP_NUM_THREADS=1 uv run --no-sync python bench/semantic/phonetic_tokens.py \\
        --corpus /work/data/research --out /tmp/phonetic-bench --minutes 18
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the machine is shared: one thread

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from cadence.core.data import AudioDataset, lengths_to_mask
from cadence.core.train import Trainer, TrainerConfig
from cadence.semantic import (
    KMeansTrainConfig,
    MFCCKMeansTokenizer,
    PhoneticDataset,
    PhoneticEncoder,
    PhoneticEncoderConfig,
    PhoneticKMeansTokenizer,
    collate_phonetic,
    evaluate_phoneme_error_rate,
    fit_kmeans,
    frame_labels,
    phonetic_ctc_step,
    score_tokenizer,
    token_phoneme_scores,
)


class LengthBuckets(Sampler[list[int]]):
    """Batches of utterances of similar length (CTC pads to the longest), in a random order.

    Lengths are jittered by up to ``jitter`` (relative) each epoch so that batches change;
    the order draws from the global RNG, which the Trainer reseeds per epoch.
    """

    def __init__(self, durations: list[float], batch_size: int, jitter: float = 0.15):
        self.durations, self.batch_size, self.jitter = durations, batch_size, jitter

    def __len__(self) -> int:
        return len(self.durations) // self.batch_size

    def __iter__(self):
        noisy = torch.tensor(self.durations) * (1 + self.jitter * torch.rand(len(self.durations)))
        order = noisy.argsort().tolist()
        batches = [
            order[i : i + self.batch_size]
            for i in range(0, len(self) * self.batch_size, self.batch_size)
        ]
        for b in torch.randperm(len(batches)).tolist():
            yield batches[b]


def calibrate(config: PhoneticEncoderConfig, loader: DataLoader, batches: int = 6) -> float:
    """Seconds per training step (forward, backward, AdamW) over a few batches, the first skipped."""
    torch.manual_seed(0)
    model = PhoneticEncoder(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for i, batch in enumerate(loader):
        start = time.perf_counter()
        phonetic_ctc_step(model, batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
        if i + 1 >= batches:
            break
    return sum(times[1:]) / len(times[1:])


def train_encoder(args, config: PhoneticEncoderConfig, out: Path) -> tuple[PhoneticEncoder, dict]:
    corpus = Path(args.corpus)
    train = PhoneticDataset(corpus / "train.jsonl", config)
    probe = PhoneticDataset(corpus / "valid.jsonl", config, limit=args.eval_utterances)
    durations = [train.audio.duration(i) for i in range(len(train))]
    loader = DataLoader(
        train, batch_sampler=LengthBuckets(durations, args.batch_size), collate_fn=collate_phonetic
    )
    step_seconds = calibrate(config, loader)
    # Evaluations cost about as much as training on the probe's audio once per eval.
    budget = 60 * args.minutes
    steps = args.steps or max(50, int(0.9 * budget / step_seconds))
    eval_every = max(25, steps // 10)
    print(f"{step_seconds:.2f} s/step -> {steps} steps, evaluating every {eval_every}", flush=True)

    def eval_fn(run: Trainer) -> dict[str, float]:
        return {"valid_per": evaluate_phoneme_error_rate(run.unwrapped_model, probe)}

    torch.manual_seed(args.seed)
    run = Trainer(
        PhoneticEncoder(config),
        phonetic_ctc_step,
        loader,
        TrainerConfig(
            max_steps=steps,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            warmup_steps=min(100, steps // 10),
            save_every=None,
            log_every=25,
            eval_every=eval_every,
            seed=args.seed,
        ),
        output_dir=out / "run",
        eval_fn=eval_fn,
    )
    start = time.perf_counter()
    history = run.train()
    seconds = time.perf_counter() - start
    encoder = run.unwrapped_model.eval()
    encoder.save_pretrained(out / "encoder")
    curve = [
        {
            "step": int(row["step"]),
            "loss": sum(r["loss"] for r in history[max(0, i - 9) : i + 1])
            / len(history[max(0, i - 9) : i + 1]),
            "valid_per": row["eval/valid_per"],
        }
        for i, row in enumerate(history)
        if "eval/valid_per" in row
    ]
    valid = PhoneticDataset(corpus / "valid.jsonl", config)
    info = {
        "steps": steps,
        "step_seconds_calibrated": step_seconds,
        "train_seconds": seconds,
        "epochs": steps * args.batch_size / len(train),
        "curve": curve,
        "valid_per": evaluate_phoneme_error_rate(encoder, valid),
        "train_per_142": evaluate_phoneme_error_rate(
            encoder, PhoneticDataset(corpus / "train.jsonl", config, limit=len(valid))
        ),
    }
    return encoder, info


@torch.inference_mode()
def all_layers(encoder: PhoneticEncoder, audio: torch.Tensor) -> list[torch.Tensor]:
    """Every layer ``(s, d)`` of one clip ``(1, t)``, cut to whole tokens as the tokenizer does."""
    hop = 2 * encoder.config.frontend.hop_length
    audio = audio[None, :, : audio.shape[-1] // hop * hop]
    x, n = encoder.frontend(audio)
    mask = lengths_to_mask(n, x.shape[1])
    rotary = encoder.backbone.rotary(x.shape[1], x.device)
    layers = [x[0]]
    for block in encoder.backbone.blocks:
        x = block(x, mask=mask, rotary=rotary)
        layers.append(x[0])
    return layers


def layer_features(encoder, data: AudioDataset, max_frames: int, seed: int) -> list[torch.Tensor]:
    """``(frames, d)`` per layer over the dataset, one encoder pass per clip, a seeded subset."""
    per_layer: list[list[torch.Tensor]] = [[] for _ in range(encoder.config.depth + 1)]
    for i in range(len(data)):
        for layer, feats in enumerate(all_layers(encoder, data.read(i)["audio"])):
            per_layer[layer].append(feats)
    out = []
    for chunks in per_layer:
        x = torch.cat(chunks)
        if x.shape[0] > max_frames:
            keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
            x = x[keep[:max_frames].sort().values]
        out.append(x)
    return out


def scores_with_chance(tokens: list[torch.Tensor], labels: list, codebook_size: int) -> dict:
    real = token_phoneme_scores(tokens, labels, codebook_size=codebook_size).to_dict()
    flat = torch.cat(tokens)
    shuffled = flat[torch.randperm(len(flat), generator=torch.Generator().manual_seed(0))]
    pieces = list(torch.split(shuffled, [len(t) for t in tokens]))
    chance = token_phoneme_scores(pieces, labels, codebook_size=codebook_size)
    return {**real, "shuffled_mutual_information": chance.mutual_information}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="/work/data/research")
    parser.add_argument("--out", default="/tmp/phonetic-bench")
    parser.add_argument("--minutes", type=float, default=18.0, help="training wall-clock budget")
    parser.add_argument("--steps", type=int, default=None, help="override the calibrated steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--eval-utterances", type=int, default=48)
    parser.add_argument("--clusters", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--max-frames", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    corpus, out = Path(args.corpus), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifests = [corpus / "train.jsonl", corpus / "valid.jsonl"]
    config = PhoneticEncoderConfig.from_corpus(manifests)
    results: dict[str, Any] = {"args": vars(args), "config": config.to_dict()}

    if (out / "encoder" / "model.safetensors").exists() and args.steps == 0:
        encoder = PhoneticEncoder.load_pretrained(out / "encoder").eval()
        results["training"] = json.loads((out / "results.json").read_text())["training"]
    else:
        encoder, results["training"] = train_encoder(args, config, out)
    print(json.dumps(results["training"], indent=1), flush=True)

    train_audio = AudioDataset(corpus / "train.jsonl", sample_rate=16000, channels=1)
    valid_audio = AudioDataset(corpus / "valid.jsonl", sample_rate=16000, channels=1)
    start = time.perf_counter()
    features = layer_features(encoder, train_audio, args.max_frames, args.seed)
    valid_layers, labels = [], []
    for i in range(len(valid_audio)):
        item = valid_audio.read(i)
        layers = all_layers(encoder, item["audio"])
        valid_layers.append(layers)
        labels.append(frame_labels(item["phonemes"], item["phoneme_starts"], len(layers[0])))
    print(f"features: {time.perf_counter() - start:.0f} s", flush=True)

    table: dict[str, dict[str, dict]] = {}
    for k in args.clusters:
        train_cfg = KMeansTrainConfig(
            num_clusters=k, batch_size=10_000, max_steps=150, seed=args.seed
        )
        mfcc = MFCCKMeansTokenizer.fit(
            train_audio, train_cfg, max_frames=args.max_frames, progress=False
        )
        mfcc_tokens = [
            mfcc.tokenize(valid_audio.read(i)["audio"][None])[0] for i in range(len(valid_audio))
        ]
        table.setdefault("mfcc", {})[str(k)] = scores_with_chance(mfcc_tokens, labels, k)
        for layer, feats in enumerate(features):
            kmeans = fit_kmeans(
                feats, train_cfg, progress=False, features_description=f"phonetic layer {layer}"
            )
            tokens = [kmeans(layers[layer]) for layers in valid_layers]
            table.setdefault(f"layer {layer}", {})[str(k)] = scores_with_chance(tokens, labels, k)
            if layer == len(features) // 2:
                # the shortcut above equals the tokenizer's own path
                tokenizer = PhoneticKMeansTokenizer.from_parts(encoder, kmeans, layer=layer)
                direct = score_tokenizer(tokenizer, corpus / "valid.jsonl")
                shortcut = table[f"layer {layer}"][str(k)]["purity"]
                print(f"tokenizer path: purity {direct.purity:.4f} (shortcut {shortcut:.4f})")
                assert abs(direct.purity - shortcut) < 2e-3  # only near-ties may differ
                tokenizer.save_pretrained(out / f"tokenizer-layer{layer}-k{k}")
            print(k, f"layer {layer}", table[f"layer {layer}"][str(k)], flush=True)
        print(k, "mfcc", table["mfcc"][str(k)], flush=True)
    results["tokens"] = table
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    (out / "results.md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    training = results["training"]
    lines = [
        f"Training: {training['steps']} steps of {results['args']['batch_size']} "
        f"({training['epochs']:.1f} epochs) in {training['train_seconds'] / 60:.1f} min on one "
        f"thread; valid PER {training['valid_per']:.3f} (train {training['train_per_142']:.3f}).",
        "",
        "| step | train loss (mean of 10) | valid PER (probe) |",
        "|---|---|---|",
        *(f"| {r['step']} | {r['loss']:.3f} | {r['valid_per']:.3f} |" for r in training["curve"]),
        "",
        "| tokens | k | phone purity | cluster purity | MI (bits) | PNMI | MI shuffled | used |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, by_k in results["tokens"].items():
        for k, s in by_k.items():
            lines.append(
                f"| {name} | {k} | {s['purity']:.3f} | {s['cluster_purity']:.3f} | "
                f"{s['mutual_information']:.3f} | {s['normalized_mutual_information']:.3f} | "
                f"{s['shuffled_mutual_information']:.3f} | {s['tokens_used']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
