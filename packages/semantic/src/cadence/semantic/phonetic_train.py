"""Training the phonetic encoder with CTC on a corpus's phoneme transcriptions, and its PER."""

# b batch | t samples | l phonemes | n frames | v blank + phonemes

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.data import Dataset

from cadence.core.data import AudioDataset, pad_sequences
from cadence.core.train import StepOutput, Trainer, TrainerConfig

from .metrics import phoneme_error_rate
from .phonemes import read_manifest, strip_stress
from .phonetic import BLANK, PhoneticEncoder, PhoneticEncoderConfig

__all__ = [
    "PhoneticDataset",
    "PhoneticTraining",
    "collate_phonetic",
    "ctc_loss",
    "evaluate_phoneme_error_rate",
    "phonetic_ctc_step",
    "train_phonetic_encoder",
]


def ctc_loss(
    log_probs: Tensor, frame_lengths: Tensor, targets: Tensor, target_lengths: Tensor
) -> Tensor:
    """Mean CTC loss per target symbol (blank 0); impossible alignments count 0.

    Args:
        log_probs: ``(b, n, v)`` log-probabilities.
        frame_lengths: ``(b,)`` real frames.
        targets: ``(b, l)`` long ids in ``[1, v)``, padded with anything.
        target_lengths: ``(b,)`` real symbols.
    """
    return F.ctc_loss(
        rearrange(log_probs.float(), "b n v -> n b v"),
        targets.long(),
        frame_lengths.long(),
        target_lengths.long(),
        blank=BLANK,
        reduction="mean",
        zero_infinity=True,
    )


class PhoneticDataset(Dataset):
    """Utterances of a JSONL manifest with their CTC targets.

    Items::

        {"audio": (1, t) float at the encoder's rate, "length": t, "targets": (l,) long,
         "phonemes": stress-stripped symbols, "id": str}

    Args:
        manifest: JSONL with ``"path"`` and ``"phonemes"`` per line (the toy corpus's format).
        config: gives the vocabulary and the sample rate.
        limit: keep only the first ``limit`` utterances.
    """

    def __init__(
        self,
        manifest: str | os.PathLike,
        config: PhoneticEncoderConfig,
        *,
        limit: int | None = None,
    ):
        self.audio = AudioDataset(manifest, sample_rate=config.frontend.sample_rate, channels=1)
        self.config = config
        ids = {s: i + 1 for i, s in enumerate(config.phonemes)}
        self.phonemes: list[list[str]] = []
        for number, entry in enumerate(read_manifest(manifest)[:limit], start=1):
            if "phonemes" not in entry:
                raise ValueError(f"{manifest}:{number}: no 'phonemes' field")
            symbols = strip_stress(entry["phonemes"])
            unknown = sorted({s for s in symbols if s not in ids})
            if unknown:
                raise ValueError(
                    f"{manifest}:{number}: phonemes {unknown} are not in the vocabulary; build "
                    "the config with PhoneticEncoderConfig.from_corpus over this manifest too"
                )
            self.phonemes.append(symbols)
        self._targets = [torch.tensor([ids[s] for s in p], dtype=torch.long) for p in self.phonemes]

    def __len__(self) -> int:
        return len(self.phonemes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} utterances")
        # read() raises on a bad file instead of substituting another utterance, whose
        # audio would not match these targets.
        item = self.audio.read(index)
        return {
            "audio": item["audio"],
            "length": int(item["length"]),
            "targets": self._targets[index],
            "phonemes": self.phonemes[index],
            "id": item["id"],
        }


def collate_phonetic(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch :class:`PhoneticDataset` items.

    Returns:
        ``"audio"`` ``(b, 1, t)`` zero-padded, ``"lengths"`` ``(b,)``, ``"targets"`` ``(b, l)``
        long (0-padded), ``"target_lengths"`` ``(b,)``, and ``"phonemes"``, ``"id"`` as lists.
    """
    if not items:
        raise ValueError("cannot collate an empty list of items")
    audio, _ = pad_sequences([item["audio"].transpose(0, 1) for item in items])
    targets = [item["targets"] for item in items]
    target_lengths = torch.tensor([len(x) for x in targets], dtype=torch.long)
    if int(target_lengths.max()) == 0:
        padded = torch.zeros(len(items), 0, dtype=torch.long)
    else:
        padded, _ = pad_sequences(targets)
    return {
        "audio": audio.transpose(1, 2).contiguous(),  # (b, t, 1) -> (b, 1, t)
        "lengths": torch.tensor([int(item["length"]) for item in items], dtype=torch.long),
        "targets": padded,
        "target_lengths": target_lengths,
        "phonemes": [item["phonemes"] for item in items],
        "id": [item["id"] for item in items],
    }


def phonetic_ctc_step(model: nn.Module, batch: Mapping[str, Any]) -> StepOutput:
    """CTC train step for :class:`cadence.core.train.Trainer` (``model`` may be DDP-wrapped)."""
    out = model(batch["audio"], batch["lengths"])
    loss = ctc_loss(out.log_probs, out.frame_lengths, batch["targets"], batch["target_lengths"])
    return StepOutput(loss=loss, num_items=int(batch["audio"].shape[0]))


@torch.no_grad()
def evaluate_phoneme_error_rate(
    model: PhoneticEncoder, dataset: PhoneticDataset, *, batch_size: int = 8
) -> float:
    """Greedy-decoding phoneme error rate of ``model`` over ``dataset`` (batched by length)."""
    order = sorted(range(len(dataset)), key=dataset.audio.duration)
    references, hypotheses = [], []
    for start in range(0, len(order), batch_size):
        batch = collate_phonetic([dataset[i] for i in order[start : start + batch_size]])
        param = next(model.parameters())
        hypotheses += model.transcribe(batch["audio"].to(param.device), batch["lengths"])
        references += batch["phonemes"]
    return phoneme_error_rate(references, hypotheses)


@dataclass
class PhoneticTraining:
    """What :func:`train_phonetic_encoder` returns.

    Attributes:
        model: the release weights (EMA ones when the trainer keeps an EMA), in eval mode.
        metrics: ``"train_loss"`` (mean CTC loss of the last 10 steps), ``"train_per"``
            (greedy PER on as many training utterances as ``valid_per`` uses, or 30) and
            ``"valid_per"`` (when the corpus has ``valid.jsonl``).
        history: the Trainer's rows, one per step (``eval/valid_per`` where it evaluated).
    """

    model: PhoneticEncoder
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)


def train_phonetic_encoder(
    corpus_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    trainer: TrainerConfig,
    *,
    config: PhoneticEncoderConfig | None = None,
    eval_utterances: int | None = 64,
) -> PhoneticTraining:
    """Train a :class:`PhoneticEncoder` on ``corpus_dir/train.jsonl`` with CTC and score it.

    The Trainer's resume state goes to ``output_dir/run`` (a rerun with the same arguments
    resumes there). With ``trainer.eval_every``, the greedy PER on the first
    ``eval_utterances`` of ``valid.jsonl`` is logged as ``eval/valid_per``.

    Args:
        corpus_dir: a folder with ``train.jsonl`` and, optionally, ``valid.jsonl`` whose
            lines carry ``"phonemes"``.
        output_dir: where the run's checkpoints go.
        trainer: steps, batch size, learning rate, EMA...
        config: the model; default :meth:`PhoneticEncoderConfig.from_corpus` over the
            corpus's manifests with the default architecture.
        eval_utterances: valid utterances scored during training (None: all).
    """
    corpus_dir = Path(corpus_dir)
    train_manifest, valid_manifest = corpus_dir / "train.jsonl", corpus_dir / "valid.jsonl"
    if not train_manifest.exists():
        raise FileNotFoundError(f"{train_manifest} not found; the corpus needs a train.jsonl")
    manifests = [train_manifest] + ([valid_manifest] if valid_manifest.exists() else [])
    if config is None:
        config = PhoneticEncoderConfig.from_corpus(manifests)
    valid = PhoneticDataset(valid_manifest, config) if valid_manifest.exists() else None
    probe = (
        None if valid is None else PhoneticDataset(valid_manifest, config, limit=eval_utterances)
    )

    def eval_fn(run: Trainer) -> dict[str, float]:
        assert probe is not None
        encoder = cast(PhoneticEncoder, run.unwrapped_model)
        return {"valid_per": evaluate_phoneme_error_rate(encoder, probe)}

    run = Trainer(
        PhoneticEncoder(config),
        phonetic_ctc_step,
        PhoneticDataset(train_manifest, config),
        trainer,
        output_dir=Path(output_dir) / "run",
        collate_fn=collate_phonetic,
        eval_fn=eval_fn if probe is not None and trainer.eval_every else None,
    )
    history = run.train(resume_from="latest")
    model = cast(PhoneticEncoder, run.unwrapped_model)
    if run.ema is not None:
        run.ema.copy_to(model)
    model.eval()
    metrics: dict[str, float] = {}
    if history:
        tail = history[-10:]
        metrics["train_loss"] = sum(row["loss"] for row in tail) / len(tail)
    subset = len(valid) if valid is not None else 30
    metrics["train_per"] = evaluate_phoneme_error_rate(
        model, PhoneticDataset(train_manifest, config, limit=subset)
    )
    if valid is not None:
        metrics["valid_per"] = evaluate_phoneme_error_rate(model, valid)
    return PhoneticTraining(model=model, metrics=metrics, history=history)
