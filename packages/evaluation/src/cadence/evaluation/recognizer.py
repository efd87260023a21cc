"""A small CTC phoneme recognizer: an offline stand-in for an ASR word error rate.

Intelligibility of original, resynthesized and generated speech is scored as a phoneme
error rate (PER): a Conformer over log-mel frames, trained with CTC (Graves et al. 2006) on
the corpus's phoneme transcriptions, decoded greedily. Stress marks are stripped so that
the vocabulary stays small (:func:`~cadence.evaluation.phonemes.normalize_phonemes`).

Features: 25 ms windows every 10 ms (100 Hz), each utterance's log-mel normalized to zero
mean and unit variance per mel bin over its own frames (robust to level changes a codec may
introduce), then a strided convolution to 50 Hz. Padding is zero and normalization
statistics come from real frames only, so an utterance decodes the same alone and padded
in a batch.
"""

# b batch | c channels | t samples | d mel bins / model width | n frames | v blank + phonemes

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from cadence.core.audio import EmptyAudioError, check_audio, resample, to_mono
from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import Config, ConfigError
from cadence.core.data import lengths_to_mask
from cadence.core.features import MelSpectrogram
from cadence.core.nn import BackboneConfig, build_backbone

from .phonemes import BLANK, normalize_phonemes, read_manifest

__all__ = ["PhonemeRecognizer", "PhonemeRecognizerConfig"]


def _default_backbone() -> BackboneConfig:
    # Conformer-S-like width (Gulati et al. 2020 use dim 144, 16 layers); 4 layers suffice for
    # synthetic speech and train in minutes on a CPU.
    return BackboneConfig(
        kind="conformer", dim=144, depth=4, heads=4, ff_mult=4.0, conv_kernel_size=15, dropout=0.1
    )


@dataclass(frozen=True, kw_only=True)
class PhonemeRecognizerConfig(Config):
    """Everything needed to rebuild a :class:`PhonemeRecognizer`.

    Attributes:
        phonemes: the vocabulary, normalized symbols (no stress marks), each once. Output
            ``0`` is the CTC blank, output ``i + 1`` is ``phonemes[i]``.
        sample_rate: rate the model listens at; :meth:`PhonemeRecognizer.transcribe`
            resamples other rates.
        n_mels: mel bins of the log-mel features.
        n_fft: analysis window in samples (25 ms at 16 kHz).
        hop_length: samples between feature frames (10 ms, 100 Hz at 16 kHz); a strided
            convolution halves the rate again (50 Hz outputs).
        backbone: the sequence model over the subsampled frames.
        time_masks, time_mask_width: SpecAugment (Park et al. 2019) in training only: up to
            ``time_masks`` spans of at most ``time_mask_width`` feature frames per utterance
            are set to the mean.
        freq_masks, freq_mask_width: the same over mel bins.
    """

    phonemes: tuple[str, ...]
    sample_rate: int = 16000
    n_mels: int = 80
    n_fft: int = 400
    hop_length: int = 160
    backbone: BackboneConfig = field(default_factory=_default_backbone)
    time_masks: int = 2
    time_mask_width: int = 10
    freq_masks: int = 2
    freq_mask_width: int = 8

    def __post_init__(self) -> None:
        if not self.phonemes:
            raise ConfigError("PhonemeRecognizerConfig.phonemes is empty; give the vocabulary")
        if len(set(self.phonemes)) != len(self.phonemes):
            dup = sorted({p for p in self.phonemes if self.phonemes.count(p) > 1})
            raise ConfigError(f"PhonemeRecognizerConfig.phonemes lists {dup} more than once")
        odd = [p for p in self.phonemes if normalize_phonemes([p]) != [p]]
        if odd:
            raise ConfigError(
                f"PhonemeRecognizerConfig.phonemes must be normalized symbols (no stress marks, "
                f"not empty); got {odd}: pass them through normalize_phonemes"
            )
        for name in ("sample_rate", "n_mels", "n_fft", "hop_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"PhonemeRecognizerConfig.{name} must be >= 1")
        if self.n_fft % 2:
            raise ConfigError(f"PhonemeRecognizerConfig.n_fft must be even, got {self.n_fft}")
        for name in ("time_masks", "time_mask_width", "freq_masks", "freq_mask_width"):
            if getattr(self, name) < 0:
                raise ConfigError(f"PhonemeRecognizerConfig.{name} must be >= 0")
        if self.freq_mask_width > self.n_mels:
            raise ConfigError("PhonemeRecognizerConfig.freq_mask_width must be <= n_mels")
        if self.backbone.cond_dim or self.backbone.cross_attn_dim:
            raise ConfigError(
                "PhonemeRecognizerConfig.backbone: set cond_dim=0 and cross_attn_dim=0"
            )

    @property
    def vocab_size(self) -> int:
        """Outputs per frame: the blank and every phoneme."""
        return len(self.phonemes) + 1

    @property
    def frame_rate(self) -> float:
        """Output frames per second (after the stride-2 subsampling)."""
        return self.sample_rate / (2 * self.hop_length)

    @classmethod
    def tiny(cls, phonemes: Sequence[str], **changes) -> PhonemeRecognizerConfig:
        """A small, fast model for tests (still learns the toy corpus a little in seconds)."""
        base = cls(
            phonemes=tuple(phonemes),
            n_mels=40,
            backbone=BackboneConfig(
                kind="conformer", dim=64, depth=2, heads=4, ff_mult=2.0, conv_kernel_size=7
            ),
        )
        return base.replace(**changes) if changes else base

    @classmethod
    def from_corpus(
        cls, manifest_paths: str | os.PathLike | Iterable[str | os.PathLike], **changes
    ) -> PhonemeRecognizerConfig:
        """A config whose vocabulary is every normalized phoneme of the manifests (sorted).

        Args:
            manifest_paths: one JSONL manifest or several; each line needs ``"phonemes"``.
            changes: other fields (``backbone=...``, ``n_mels=...``).
        """
        if isinstance(manifest_paths, (str, os.PathLike)):
            manifest_paths = [manifest_paths]
        symbols: set[str] = set()
        for path in manifest_paths:
            for number, entry in enumerate(read_manifest(path), start=1):
                if "phonemes" not in entry:
                    raise ConfigError(f"{path}:{number}: no 'phonemes' field")
                symbols.update(normalize_phonemes(entry["phonemes"]))
        if not symbols:
            raise ConfigError("the manifests hold no phonemes")
        return cls(phonemes=tuple(sorted(symbols)), **changes)


# -- model ---------------------------------------------------------------------------------


class PhonemeRecognizer(PretrainedMixin, nn.Module):
    """Log-mel -> stride-2 convolution -> Conformer -> blank + phoneme log-probabilities.

    See the module docstring and :class:`PhonemeRecognizerConfig`.
    """

    config_class = PhonemeRecognizerConfig

    def __init__(self, config: PhonemeRecognizerConfig):
        super().__init__()
        self.config = config
        c, d = config, config.backbone.dim
        self.mel = MelSpectrogram(
            c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length, n_mels=c.n_mels, center=False
        )
        self.subsample = nn.Conv1d(c.n_mels, d, kernel_size=3, stride=2, padding=1)
        self.backbone = build_backbone(c.backbone)
        self.head = nn.Linear(d, c.vocab_size)
        self._ids = {symbol: i + 1 for i, symbol in enumerate(c.phonemes)}

    # -- vocabulary ----------------------------------------------------------------------

    def encode_phonemes(self, phonemes: Sequence[str]) -> list[int]:
        """Normalized symbols -> ids in ``[1, vocab_size)``; unknown symbols raise ValueError."""
        symbols = normalize_phonemes(phonemes)
        unknown = sorted({s for s in symbols if s not in self._ids})
        if unknown:
            raise ValueError(
                f"phonemes {unknown} are not in the recognizer's vocabulary of "
                f"{len(self._ids)} symbols ({' '.join(self.config.phonemes)}); build the "
                "config from a corpus that contains them (PhonemeRecognizerConfig.from_corpus)"
            )
        return [self._ids[s] for s in symbols]

    def decode_ids(self, ids: Iterable[int]) -> list[str]:
        """Ids -> symbols (the blank, id 0, is dropped)."""
        return [self.config.phonemes[i - 1] for i in ids if i != BLANK]

    # -- network -------------------------------------------------------------------------

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Output frames of items with ``lengths`` samples: ``ceil(floor(t / hop) / 2)``."""
        return (lengths // self.config.hop_length + 1) // 2

    def features(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Per-utterance normalized log-mel ``(b, f, n)`` at 100 Hz, 0 at padding, and ``(b,)`` frames."""
        c = self.config
        t = audio.shape[-1]
        # Zero what lies past each item's end, then pad zeros on both sides ("centered"
        # frames): the frames of an item then do not depend on what is padded after it.
        audio = audio[:, 0] * lengths_to_mask(lengths, t).to(audio.dtype)
        audio = F.pad(audio, (c.n_fft // 2, c.n_fft // 2))
        mel = self.mel(audio)[..., : t // c.hop_length]  # (b, f, n)
        n_lengths = lengths // c.hop_length
        mask = lengths_to_mask(n_lengths, mel.shape[-1])[:, None, :]  # (b, 1, n)
        count = n_lengths.clamp(min=1)[:, None, None].to(mel.dtype)
        mean = (mel * mask).sum(-1, keepdim=True) / count
        var = (((mel - mean) * mask) ** 2).sum(-1, keepdim=True) / count
        mel = (mel - mean) / (var + 1e-5).sqrt()
        if self.training:
            mel = self._spec_augment(mel, n_lengths)
        return mel * mask, n_lengths

    def _spec_augment(self, mel: Tensor, n_lengths: Tensor) -> Tensor:
        c = self.config
        b, f, n = mel.shape
        keep = torch.ones(b, f, n, dtype=torch.bool, device=mel.device)
        for count, width, size, axis in (
            (c.time_masks, c.time_mask_width, n, 2),
            (c.freq_masks, c.freq_mask_width, f, 1),
        ):
            if not count or not width:
                continue
            widths = torch.randint(0, width + 1, (b, count), device=mel.device)
            limit = n_lengths if axis == 2 else torch.full_like(n_lengths, f)
            span = (limit[:, None] - widths).clamp(min=0) + 1
            starts = (torch.rand(b, count, device=mel.device) * span).long()
            pos = torch.arange(size, device=mel.device)
            hit = ((pos >= starts[..., None]) & (pos < (starts + widths)[..., None])).any(1)
            keep &= ~hit[:, None, :] if axis == 2 else ~hit[:, :, None]
        return mel * keep  # 0 is the utterance mean after normalization

    def forward(self, audio: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Frame log-probabilities of mono audio at ``config.sample_rate``.

        Args:
            audio: ``(b, 1, t)`` in [-1, 1].
            lengths: ``(b,)`` real samples per item (None: all ``t``).

        Returns:
            ``(log_probs, frame_lengths)``: ``(b, n, v)`` log-softmax over blank + phonemes,
            ``n = ceil(floor(t / hop_length) / 2)``, and ``(b,)`` real frames per item.
        """
        if audio.ndim != 3 or audio.shape[1] != 1:
            raise ValueError(
                f"audio must be mono (b, 1, t), got {tuple(audio.shape)}; transcribe() "
                "downmixes and resamples for you"
            )
        if audio.shape[-1] < self.config.hop_length:
            raise EmptyAudioError(
                f"audio of {audio.shape[-1]} samples is shorter than one frame "
                f"({self.config.hop_length} samples)"
            )
        b, _, t = audio.shape
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=audio.device)
        elif lengths.shape != (b,):
            raise ValueError(f"lengths must be (b,) = ({b},), got {tuple(lengths.shape)}")
        lengths = lengths.to(audio.device).long().clamp(max=t)
        mel, n_lengths = self.features(audio, lengths)
        x = F.gelu(self.subsample(mel))  # (b, d, n / 2)
        frame_lengths = (n_lengths + 1) // 2
        mask = lengths_to_mask(frame_lengths, x.shape[-1])
        x = rearrange(x, "b d n -> b n d") * mask[..., None]
        hidden = self.backbone(x, mask)
        return self.head(hidden).float().log_softmax(-1), frame_lengths

    # -- decoding ------------------------------------------------------------------------

    @torch.no_grad()
    def transcribe(
        self, audio: Tensor, *, sample_rate: int, lengths: Tensor | None = None
    ) -> list[list[str]]:
        """Greedy CTC transcription: best symbol per frame, repeats merged, blanks dropped.

        Args:
            audio: ``(b, c, t)`` or one clip ``(c, t)``, in [-1, 1]; channels are averaged
                and the audio resampled to ``config.sample_rate`` when needed.
            sample_rate: the rate of ``audio``.
            lengths: ``(b,)`` real samples per item at ``sample_rate`` (None: all ``t``).

        Returns:
            One list of phoneme symbols per item.
        """
        if isinstance(audio, Tensor) and audio.ndim == 2:
            audio = audio[None]
        check_audio(audio, what="transcribe audio")
        b, _, t = audio.shape
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long)
        lengths = torch.as_tensor(lengths).long().cpu()
        if lengths.shape != (b,):
            raise ValueError(f"lengths must be (b,) = ({b},), got {tuple(lengths.shape)}")
        param = next(self.parameters())
        audio = to_mono(audio).to(param.device, param.dtype)
        rate = self.config.sample_rate
        if sample_rate != rate:
            audio = resample(audio, sample_rate, rate)
            lengths = (lengths * rate + sample_rate // 2) // sample_rate
            lengths = lengths.clamp(max=audio.shape[-1])
        short = [i for i, n in enumerate(lengths.tolist()) if n < self.config.hop_length]
        if short:
            raise EmptyAudioError(
                f"items {short} hold less than one frame of audio "
                f"({self.config.hop_length} samples at {rate} Hz); nothing to transcribe"
            )
        was_training = self.training
        self.eval()
        try:
            log_probs, frame_lengths = self(audio, lengths.to(audio.device))
        finally:
            self.train(was_training)
        best = log_probs.argmax(-1).cpu()
        out = []
        for ids, n in zip(best, frame_lengths.tolist()):
            ids = torch.unique_consecutive(ids[:n]).tolist()
            out.append(self.decode_ids(ids))
        return out
