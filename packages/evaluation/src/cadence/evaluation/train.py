"""Training and scoring the phoneme recognizer: data, the CTC train step, PER over a manifest."""

# b batch | t samples | l phonemes | n frames | v blank + phonemes

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.data import Dataset

from cadence.core.data import AudioDataset, pad_sequences
from cadence.core.train import StepOutput, Trainer, TrainerConfig

from .phonemes import BLANK, normalize_phonemes, phoneme_error_rate, read_manifest
from .recognizer import PhonemeRecognizer, PhonemeRecognizerConfig

__all__ = [
    "PhonemeDataset",
    "collate_phonemes",
    "ctc_loss",
    "evaluate_per",
    "recognizer_step",
    "train_phoneme_recognizer",
]


def ctc_loss(
    log_probs: Tensor, frame_lengths: Tensor, targets: Tensor, target_lengths: Tensor
) -> Tensor:
    """Mean CTC loss per target symbol (blank 0); impossible alignments count 0.

    Args:
        log_probs: ``(b, n, v)`` log-probabilities, as :meth:`PhonemeRecognizer.forward` gives.
        frame_lengths: ``(b,)`` real frames.
        targets: ``(b, m)`` long, ids in ``[1, v)``, padded with anything.
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


# -- data ----------------------------------------------------------------------------------


class PhonemeDataset(Dataset):
    """Utterances of a JSONL manifest with their phoneme ids, for training and scoring.

    Items::

        {"audio": (1, t) float at config.sample_rate, "length": t, "targets": (m,) long,
         "phonemes": normalized symbols, "id": str, "text": str}

    Args:
        manifest: JSONL with ``"path"`` and ``"phonemes"`` per line (the toy corpus's format).
        config: gives the vocabulary and the sample rate.
        limit: keep only the first ``limit`` utterances.
    """

    def __init__(
        self,
        manifest: str | os.PathLike,
        config: PhonemeRecognizerConfig,
        *,
        limit: int | None = None,
    ):
        self.audio = AudioDataset(manifest, sample_rate=config.sample_rate, channels=1)
        self.config = config
        ids = {s: i + 1 for i, s in enumerate(config.phonemes)}
        entries = read_manifest(manifest)[:limit]
        self.phonemes: list[list[str]] = []
        for number, entry in enumerate(entries, start=1):
            if "phonemes" not in entry:
                raise ValueError(f"{manifest}:{number}: no 'phonemes' field")
            symbols = normalize_phonemes(entry["phonemes"])
            unknown = sorted({s for s in symbols if s not in ids})
            if unknown:
                raise ValueError(
                    f"{manifest}:{number}: phonemes {unknown} are not in the vocabulary; build "
                    "the config with PhonemeRecognizerConfig.from_corpus over this manifest too"
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
            "text": str(item.get("text", "")),
        }


def collate_phonemes(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch :class:`PhonemeDataset` items.

    Returns:
        ``"audio"`` ``(b, 1, t)`` zero-padded, ``"lengths"`` ``(b,)``, ``"targets"`` ``(b, m)``
        long (0-padded), ``"target_lengths"`` ``(b,)``, and ``"phonemes"``, ``"id"``,
        ``"text"`` as lists.
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
        "text": [item.get("text", "") for item in items],
    }


# -- training ------------------------------------------------------------------------------


def recognizer_step(model: nn.Module, batch: Mapping[str, Any]) -> StepOutput:
    """CTC train step for :class:`cadence.core.train.Trainer` (``model`` may be DDP-wrapped)."""
    log_probs, frame_lengths = model(batch["audio"], batch["lengths"])
    loss = ctc_loss(log_probs, frame_lengths, batch["targets"], batch["target_lengths"])
    return StepOutput(loss=loss, num_items=int(batch["audio"].shape[0]))


@torch.no_grad()
def evaluate_per(
    model: PhonemeRecognizer,
    dataset: PhonemeDataset,
    *,
    batch_size: int = 8,
    progress: bool = False,
) -> float:
    """Greedy-decoding PER of ``model`` over ``dataset`` (batched by length)."""
    order = sorted(range(len(dataset)), key=lambda i: dataset.audio.duration(i))
    references, hypotheses = [], []
    starts = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="PER", leave=False)
    for start in starts:
        batch = collate_phonemes([dataset[i] for i in order[start : start + batch_size]])
        hypotheses += model.transcribe(
            batch["audio"], sample_rate=dataset.config.sample_rate, lengths=batch["lengths"]
        )
        references += batch["phonemes"]
    return phoneme_error_rate(references, hypotheses)


def train_phoneme_recognizer(
    corpus_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    trainer: TrainerConfig,
    *,
    config: PhonemeRecognizerConfig | None = None,
    progress: bool = True,
) -> tuple[PhonemeRecognizer, dict[str, float]]:
    """Train a recognizer on ``corpus_dir/train.jsonl`` and score it.

    The Trainer's resume state goes to ``output_dir/run`` (a rerun with the same arguments
    resumes there). The returned model holds the release weights (EMA ones when
    ``trainer.ema_decay`` is set), in eval mode; save it with ``model.save_pretrained(dir)``.

    Args:
        corpus_dir: a folder with ``train.jsonl`` and, optionally, ``valid.jsonl``.
        output_dir: where the run's checkpoints go.
        trainer: steps, batch size, learning rate, EMA...
        config: the model; default :meth:`PhonemeRecognizerConfig.from_corpus` over the
            corpus's manifests with the default architecture.
        progress: show the evaluation's progress bars (the Trainer always shows its own).

    Returns:
        ``(model, metrics)``; metrics hold ``"train_per"`` (greedy PER on the first 30
        training utterances, or ``valid.jsonl``'s size) and ``"valid_per"`` (when the corpus
        has ``valid.jsonl``), and ``"train_loss"``, the mean CTC loss of the last 10 steps.
    """
    corpus_dir = Path(corpus_dir)
    train_manifest, valid_manifest = corpus_dir / "train.jsonl", corpus_dir / "valid.jsonl"
    if not train_manifest.exists():
        raise FileNotFoundError(f"{train_manifest} not found; the corpus needs a train.jsonl")
    manifests = [train_manifest] + ([valid_manifest] if valid_manifest.exists() else [])
    if config is None:
        config = PhonemeRecognizerConfig.from_corpus(manifests)
    model = PhonemeRecognizer(config)
    train_set = PhonemeDataset(train_manifest, config)
    run = Trainer(
        model,
        recognizer_step,
        train_set,
        trainer,
        output_dir=Path(output_dir) / "run",
        collate_fn=collate_phonemes,
    )
    history = run.train(resume_from="latest")
    model = cast(PhonemeRecognizer, run.unwrapped_model)
    if run.ema is not None:
        run.ema.copy_to(model)
    model.eval()
    metrics: dict[str, float] = {}
    if history:
        tail = history[-10:]
        metrics["train_loss"] = sum(row["loss"] for row in tail) / len(tail)
    valid_set = PhonemeDataset(valid_manifest, config) if valid_manifest.exists() else None
    subset = len(valid_set) if valid_set is not None else 30
    metrics["train_per"] = evaluate_per(
        model, PhonemeDataset(train_manifest, config, limit=subset), progress=progress
    )
    if valid_set is not None:
        metrics["valid_per"] = evaluate_per(model, valid_set, progress=progress)
    return model, metrics
