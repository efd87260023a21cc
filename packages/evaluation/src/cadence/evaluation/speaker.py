"""Speaker similarity: the cosine between speaker embeddings of two utterances.

The embeddings come from Resemblyzer's pretrained speaker encoder (Jemine 2019, from
Real-Time-Voice-Cloning; Apache-2.0): a 3-layer LSTM over 40-bin mel frames trained with
the generalized end-to-end (GE2E) loss of Wan et al. 2018, giving 256-d unit vectors whose
entries are non-negative (a ReLU precedes the normalization), so cosines lie in [0, 1].
Its weights ship inside the ``resemblyzer`` wheel: nothing is downloaded, and they are
loaded as tensors only (``torch.load(..., weights_only=True)``).

Each clip is mixed to mono, resampled to 16 kHz and preprocessed as Resemblyzer recommends
(``preprocess_wav``: level raised to -30 dBFS, long silences cut by WebRTC's VAD); Resemblyzer's
``embed_utterance`` then averages the embeddings of 1.6 s windows and renormalizes. Install
with ``pip install "cadence-evaluation[speaker]"``; importing :mod:`cadence.evaluation` does
not import Resemblyzer, :class:`SpeakerEncoder` does.
"""

# b batch | c channels | t samples | d embedding width (256)

from __future__ import annotations

import importlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor

from cadence.core.audio import batch_audio
from cadence.core.validation import check_lengths

__all__ = [
    "SpeakerEncoder",
    "SpeakerPairSimilarity",
    "pairwise_similarity",
    "similarity",
    "speaker_pair_similarity",
    "speaker_similarity_report",
]

INSTALL_HINT = 'pip install "cadence-evaluation[speaker]"'


def _import_backend() -> ModuleType:
    try:
        return importlib.import_module("cadence.evaluation._resemblyzer")
    except ImportError as error:
        hint = INSTALL_HINT
        if error.name == "pkg_resources":
            # The original `webrtcvad` module imports pkg_resources (gone from setuptools);
            # `webrtcvad-wheels` installs the same module without it.
            hint = "pip uninstall -y webrtcvad && pip install --force-reinstall webrtcvad-wheels"
        raise ImportError(
            f"speaker similarity needs Resemblyzer's speaker encoder, which failed to import "
            f"({error}); install it with: {hint}"
        ) from error


class SpeakerEncoder:
    """Speaker embeddings of utterances: ``(b, 256)`` unit vectors (see the module docstring).

    Args:
        device: where the encoder runs; embeddings are returned on the inputs' device.

    Raises:
        ImportError: Resemblyzer is not installed (``pip install "cadence-evaluation[speaker]"``).
    """

    sample_rate = 16000
    dim = 256

    def __init__(self, device: str | torch.device = "cpu"):
        self._backend = _import_backend()
        self.model = self._backend.BundledVoiceEncoder(torch.device(device))

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.inference_mode()
    def embed(
        self,
        audio: Tensor | Sequence[Tensor],
        *,
        sample_rate: int,
        lengths: Tensor | None = None,
    ) -> Tensor:
        """Embed each utterance alone (so padding never matters).

        Args:
            audio: ``(b, c, t)``, one clip ``(c, t)``, or a list of ``(c, t)`` / ``(t,)`` clips
                of different lengths; in [-1, 1]. Channels are averaged.
            sample_rate: the rate of ``audio``; other rates than 16 kHz are resampled.
            lengths: ``(b,)`` real samples per item of a padded ``(b, c, t)`` batch.

        Returns:
            ``(b, d)`` float32 unit vectors (``d = 256``), on the device of ``audio``.

        Raises:
            EmptyAudioError, NonFiniteAudioError: an empty clip, a NaN or infinite sample.
        """
        if isinstance(audio, Tensor) and audio.ndim == 3:
            lengths = check_lengths(lengths, audio.shape[0], audio.shape[-1], min_length=1)
            audio = [clip[:, :n] for clip, n in zip(audio, lengths.tolist())]
        elif lengths is not None:
            raise ValueError("lengths is for a padded (b, c, t) batch, not one clip or a list")
        batch, lengths = batch_audio(
            audio, sample_rate, target_rate=self.sample_rate, channels=1, what="speaker audio"
        )
        embeddings = []
        for clip, n in zip(batch[:, 0].cpu(), lengths.tolist()):
            wav = self._backend.preprocess(clip[:n].numpy())
            embeddings.append(torch.from_numpy(self.model.embed_utterance(wav)))
        device = audio.device if isinstance(audio, Tensor) else audio[0].device
        return torch.stack(embeddings).float().to(device)


# -- similarities --------------------------------------------------------------------------


def similarity(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of embeddings along the last axis: ``(..., d), (..., d) -> (...)``.

    Shapes broadcast, so one embedding ``(d,)`` against a batch ``(b, d)`` gives ``(b,)``.
    """
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"embeddings of width {a.shape[-1]} and {b.shape[-1]} do not compare")
    return F.cosine_similarity(a, b, dim=-1)


def pairwise_similarity(a: Tensor, b: Tensor | None = None) -> Tensor:
    """Cosine of every row of ``a (i, d)`` with every row of ``b (j, d)`` (default ``a``): ``(i, j)``."""
    b = a if b is None else b
    if a.ndim != 2 or b.ndim != 2 or a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"pairwise_similarity wants (i, d) and (j, d), got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


@dataclass(frozen=True)
class SpeakerPairSimilarity:
    """Mean cosine over utterance pairs, by whether the two share a speaker.

    Attributes:
        same_speaker: mean over every pair of two different utterances of one speaker
            (pooled over speakers, so a speaker with more utterances weighs more); NaN
            without such a pair.
        different_speaker: mean over every pair of utterances of two speakers; NaN without.
        same_pairs, different_pairs: how many pairs each mean is over.
    """

    same_speaker: float
    different_speaker: float
    same_pairs: int
    different_pairs: int


def speaker_pair_similarity(embeddings: Tensor, speakers: Sequence[str]) -> SpeakerPairSimilarity:
    """Same- and different-speaker mean similarity of ``(b, d)`` embeddings of ``b`` utterances.

    A speaker encoder is only useful if the first clearly exceeds the second on originals;
    the gap is the scale against which a system's similarity to its references is read.
    """
    if len(speakers) != embeddings.shape[0]:
        raise ValueError(f"{embeddings.shape[0]} embeddings but {len(speakers)} speakers")
    scores = pairwise_similarity(embeddings)
    same: list[float] = []
    different: list[float] = []
    for i, j in itertools.combinations(range(len(speakers)), 2):
        (same if speakers[i] == speakers[j] else different).append(float(scores[i, j]))
    return SpeakerPairSimilarity(
        same_speaker=_mean(same),
        different_speaker=_mean(different),
        same_pairs=len(same),
        different_pairs=len(different),
    )


def speaker_similarity_report(
    references: Tensor,
    hypotheses: Mapping[str, Tensor],
    speakers: Sequence[str] | None = None,
) -> dict[str, float]:
    """The speaker-similarity figures of an evaluation, flat (as the PER figures are).

    Args:
        references: ``(b, d)`` embeddings of the original utterances.
        hypotheses: per system, ``(b, d)`` embeddings of its outputs; row ``i`` is the output
            made for reference ``i``.
        speakers: the speaker of each reference, for the same/different-speaker scale.

    Returns:
        ``speaker_sim_<system>``: mean cosine of each output to its reference; with
        ``speakers``, ``speaker_sim_same`` and ``speaker_sim_different``
        (:func:`speaker_pair_similarity` on the references). NaN where nothing is averaged.
    """
    out = {}
    for system, embeddings in hypotheses.items():
        if system in ("same", "different"):
            raise ValueError(f"system name {system!r} collides with a speaker-pair figure")
        if embeddings.shape != references.shape:
            raise ValueError(
                f"{system}: {tuple(embeddings.shape)} embeddings for {tuple(references.shape)} "
                "references; give one output per reference, in the same order"
            )
        out[f"speaker_sim_{system}"] = _mean(similarity(embeddings, references).tolist())
    if speakers is not None:
        pairs = speaker_pair_similarity(references, speakers)
        out["speaker_sim_same"] = pairs.same_speaker
        out["speaker_sim_different"] = pairs.different_speaker
    return out


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")
