"""How much phonetic content tokens carry: phone purity, mutual information, phoneme error rate.

As HuBERT (Hsu et al. 2021) measures its clusters, tokens are compared with frame-level phoneme
labels through their joint distribution ``P(token, phoneme)`` over every labelled frame:

* *phone purity*: for each token its most frequent phoneme; the fraction of frames that
  phoneme covers, ``sum_v max_l P(v, l)``;
* *cluster purity*: the same per phoneme, ``sum_l max_v P(v, l)``;
* *mutual information* ``I(token; phoneme)`` in bits, and *PNMI*, divided by ``H(phoneme)``
  (1 = the tokens determine the phoneme).

The plug-in estimates are biased upwards by about ``(V - 1)(L - 1) / (2 N ln 2)`` bits for
``V`` tokens, ``L`` phonemes and ``N`` frames (Miller 1955); compare tokenizers with the same
codebook size on the same frames (or against the same tokens shuffled).

Frame labels come from a manifest's ``phoneme_starts`` (espeak-ng's start times, seconds):
phoneme ``i`` spans ``[start_i, start_{i+1})``, the last one runs to the end of the audio, and
frames before the first start are silence (as cadence-naturalspeech2 reads the same field).
A frame takes the phoneme under its centre.
"""

# b batch | s token frames | v tokens | l phonemes

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from cadence.core.data import AudioDataset

from .phonemes import strip_stress

__all__ = [
    "SILENCE",
    "TokenPhonemeScores",
    "contingency",
    "edit_distance",
    "frame_labels",
    "phoneme_error_rate",
    "score_tokenizer",
    "scores_from_counts",
    "token_phoneme_scores",
]

SILENCE = "sil"


def frame_labels(
    phonemes: Sequence[str],
    starts: Sequence[float],
    num_frames: int,
    *,
    frame_rate: float = 50.0,
    silence: str | None = SILENCE,
) -> list[str | None]:
    """The stress-stripped phoneme under the centre of each of ``num_frames`` frames.

    Args:
        phonemes: the utterance's symbols (stress marks allowed).
        starts: their start times in seconds, non-decreasing, one per symbol.
        num_frames: frames to label (the tokens of the utterance).
        frame_rate: frames per second; frame ``j`` is centred at ``(j + 0.5) / frame_rate``.
        silence: the label of frames before the first phoneme (None: unlabelled).
    """
    if len(phonemes) != len(starts):
        raise ValueError(f"{len(phonemes)} phonemes but {len(starts)} start times")
    if any(b < a for a, b in itertools.pairwise(starts)):
        raise ValueError("phoneme start times must be non-decreasing")
    symbols: list[str | None] = []
    for symbol in phonemes:
        # a symbol that is only a stress mark continues the phoneme before it
        stripped = strip_stress([symbol])
        symbols.append(stripped[0] if stripped else (symbols[-1] if symbols else silence))
    centres = (torch.arange(num_frames, dtype=torch.float64) + 0.5) / frame_rate
    index = torch.searchsorted(torch.tensor(starts, dtype=torch.float64), centres, right=True) - 1
    return [symbols[i] if i >= 0 else silence for i in index.tolist()]


def contingency(tokens: Tensor, labels: Tensor, *, num_tokens: int, num_labels: int) -> Tensor:
    """Joint counts ``(v, l)`` of frame tokens and label ids (both ``(n,)`` long)."""
    if tokens.shape != labels.shape or tokens.ndim != 1:
        raise ValueError(
            f"tokens and labels must be (n,) of one length, got {tuple(tokens.shape)} and "
            f"{tuple(labels.shape)}"
        )
    flat = tokens.long() * num_labels + labels.long()
    return torch.bincount(flat, minlength=num_tokens * num_labels).view(num_tokens, num_labels)


@dataclass(frozen=True)
class TokenPhonemeScores:
    """Agreement of tokens with phonemes over ``frames`` labelled frames (see the module docstring).

    Attributes:
        frames: labelled frames counted.
        tokens_used: distinct tokens among them.
        purity: phone purity, in ``[0, 1]``.
        cluster_purity: cluster purity, in ``[0, 1]``.
        mutual_information: ``I(token; phoneme)`` in bits.
        phoneme_entropy: ``H(phoneme)`` in bits.
    """

    frames: int
    tokens_used: int
    purity: float
    cluster_purity: float
    mutual_information: float
    phoneme_entropy: float

    @property
    def normalized_mutual_information(self) -> float:
        """PNMI: ``I(token; phoneme) / H(phoneme)``, in ``[0, 1]``."""
        return self.mutual_information / self.phoneme_entropy if self.phoneme_entropy else 0.0

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "normalized_mutual_information": self.normalized_mutual_information}


def _entropy_bits(p: Tensor) -> Tensor:
    p = p[p > 0]
    return -(p * p.log2()).sum()


def scores_from_counts(counts: Tensor) -> TokenPhonemeScores:
    """Scores of a ``(v, l)`` table of joint counts (tokens x phonemes)."""
    total = float(counts.sum())
    if total == 0:
        raise ValueError("no labelled frames to score")
    joint = counts.double() / total
    p_token, p_label = joint.sum(1), joint.sum(0)
    h_label = _entropy_bits(p_label)
    mi = _entropy_bits(p_token) + h_label - _entropy_bits(joint.flatten())
    return TokenPhonemeScores(
        frames=int(total),
        tokens_used=int((p_token > 0).sum()),
        purity=float(counts.max(1).values.sum()) / total,
        cluster_purity=float(counts.max(0).values.sum()) / total,
        mutual_information=max(float(mi), 0.0),  # rounding can leave -1e-16
        phoneme_entropy=float(h_label),
    )


def token_phoneme_scores(
    tokens: Sequence[Tensor | Sequence[int]],
    labels: Sequence[Sequence[str | None]],
    *,
    codebook_size: int | None = None,
) -> TokenPhonemeScores:
    """Scores of utterances' tokens ``(s_i,)`` against their frame labels (``None``: skipped).

    Args:
        tokens: one 1-D sequence of token ids per utterance.
        labels: one label per token (from :func:`frame_labels`).
        codebook_size: tokens lie in ``[0, codebook_size)`` (default: the largest seen + 1).
    """
    if len(tokens) != len(labels):
        raise ValueError(f"{len(tokens)} token sequences but {len(labels)} label sequences")
    ids: dict[str, int] = {}
    token_rows, label_rows = [], []
    for i, (row, names) in enumerate(zip(tokens, labels, strict=True)):
        row = torch.as_tensor(row, dtype=torch.long).flatten()
        if len(row) != len(names):
            raise ValueError(f"utterance {i}: {len(row)} tokens but {len(names)} frame labels")
        keep = torch.tensor([name is not None for name in names], dtype=torch.bool)
        token_rows.append(row[keep])
        label_rows.append(
            torch.tensor(
                [ids.setdefault(n, len(ids)) for n in names if n is not None], dtype=torch.long
            )
        )
    flat_tokens, flat_labels = torch.cat(token_rows), torch.cat(label_rows)
    if flat_tokens.numel() and int(flat_tokens.min()) < 0:
        raise ValueError("token ids must be >= 0")
    size = codebook_size or (int(flat_tokens.max()) + 1 if flat_tokens.numel() else 1)
    counts = contingency(flat_tokens, flat_labels, num_tokens=size, num_labels=max(len(ids), 1))
    return scores_from_counts(counts)


def score_tokenizer(
    tokenizer: Any,
    manifest: str | os.PathLike,
    *,
    silence: str | None = SILENCE,
    limit: int | None = None,
) -> TokenPhonemeScores:
    """Phoneme purity and mutual information of a tokenizer's tokens over a corpus manifest.

    Args:
        tokenizer: a :class:`cadence.core.interfaces.SemanticTokenizer` (``tokenize``,
            ``sample_rate``, ``frame_rate``, ``codebook_size``).
        manifest: JSONL with ``"path"``, ``"phonemes"`` and ``"phoneme_starts"`` per line.
        silence: label of the frames before the first phoneme (None: not counted).
        limit: score only the first ``limit`` utterances.
    """
    data = AudioDataset(manifest, sample_rate=tokenizer.sample_rate, channels=1)
    tokens, labels = [], []
    for index in range(len(data) if limit is None else min(limit, len(data))):
        item: Mapping[str, Any] = data.read(index)
        for key in ("phonemes", "phoneme_starts"):
            if key not in item:
                raise ValueError(f"{manifest}: item {item['id']} has no {key!r}")
        with torch.inference_mode():
            row = tokenizer.tokenize(item["audio"][None])[0].cpu()
        tokens.append(row)
        labels.append(
            frame_labels(
                item["phonemes"],
                item["phoneme_starts"],
                len(row),
                frame_rate=tokenizer.frame_rate,
                silence=silence,
            )
        )
    return token_phoneme_scores(tokens, labels, codebook_size=tokenizer.codebook_size)


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def phoneme_error_rate(
    references: Sequence[Sequence[str]], hypotheses: Sequence[Sequence[str]]
) -> float:
    """Total edit distance over total reference length (stress marks stripped on both sides)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    edits = total = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        ref, hyp = strip_stress(ref), strip_stress(hyp)
        edits += edit_distance(ref, hyp)
        total += len(ref)
    if total == 0:
        raise ValueError("the references hold no phonemes; the error rate is undefined")
    return edits / total
