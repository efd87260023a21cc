"""A small CTC phoneme recognizer: an offline stand-in for an ASR word error rate.

Intelligibility of original, resynthesized and generated speech is scored as a phoneme
error rate (PER): a Conformer over log-mel frames, trained with CTC (Graves et al. 2006) on
the corpus's phoneme transcriptions, decoded greedily. Stress marks are stripped so that
the vocabulary stays small (:func:`~cadence.evaluation.phonemes.normalize_phonemes`).

Features: core's :class:`~cadence.core.nn.MelFrontend` (per-utterance normalized log-mel at
100 Hz, SpecAugment in training, a strided convolution to 50 Hz), so an utterance decodes
the same alone and padded in a batch.
"""

# b batch | c channels | t samples | d model width | n frames | v blank + phonemes

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from cadence.core.audio import EmptyAudioError, check_audio, resample, to_mono
from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import Config, ConfigError
from cadence.core.data import lengths_to_mask
from cadence.core.nn import BackboneConfig, MelFrontend, MelFrontendConfig, build_backbone

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
        try:
            _ = self.frontend  # building it checks the front-end fields
        except ConfigError as err:
            raise ConfigError(f"PhonemeRecognizerConfig: {err}") from None
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
        return self.frontend.frame_rate

    @property
    def frontend(self) -> MelFrontendConfig:
        """The front end these fields describe (its width is the backbone's)."""
        return MelFrontendConfig(
            dim=self.backbone.dim,
            sample_rate=self.sample_rate,
            n_mels=self.n_mels,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            time_masks=self.time_masks,
            time_mask_width=self.time_mask_width,
            freq_masks=self.freq_masks,
            freq_mask_width=self.freq_mask_width,
        )

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
        self.frontend = MelFrontend(config.frontend)
        self.backbone = build_backbone(config.backbone)
        self.head = nn.Linear(config.backbone.dim, config.vocab_size)
        self._ids = {symbol: i + 1 for i, symbol in enumerate(config.phonemes)}

    @classmethod
    def upgrade_state_dict(cls, state: dict[str, Tensor], from_version: int) -> dict[str, Tensor]:
        """Format 1 held the subsampling convolution at ``subsample.*``; it is now ``frontend.subsample.*``."""
        if from_version >= 2:
            return state
        return {(f"frontend.{k}" if k.startswith("subsample.") else k): v for k, v in state.items()}

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
        return self.frontend.frame_lengths(lengths)

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
        x, frame_lengths = self.frontend(audio, lengths)
        hidden = self.backbone(x, lengths_to_mask(frame_lengths, x.shape[1]))
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
