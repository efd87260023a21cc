"""A log-mel front end for speech encoders: normalized log-mel at 100 Hz -> stride-2 conv -> 50 Hz.

The phoneme recognizer of cadence-evaluation and the CTC phoneme encoder of cadence-semantic
share it. Features: 25 ms windows every 10 ms (100 Hz), each utterance's log-mel normalized to
zero mean and unit variance per mel bin over its own frames (robust to level changes a codec
may introduce), SpecAugment (Park et al. 2019) in training, then a strided convolution to
50 Hz. Padding is zero and normalization statistics come from real frames only, so an
utterance gives the same frames alone and padded in a batch.
"""

# b batch | t samples | f mel bins | n frames (100 Hz before the subsampling, 50 Hz after) | d width

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..audio import EmptyAudioError
from ..config import Config, ConfigError
from ..data.collate import lengths_to_mask
from ..features import MelSpectrogram

__all__ = ["MelFrontend", "MelFrontendConfig"]


@dataclass(frozen=True, kw_only=True)
class MelFrontendConfig(Config):
    """Everything needed to rebuild a :class:`MelFrontend`.

    Attributes:
        dim: width of the output frames (the encoder's width).
        sample_rate: rate of the audio it is given.
        n_mels: mel bins of the log-mel features.
        n_fft: analysis window in samples (25 ms at 16 kHz).
        hop_length: samples between feature frames (10 ms, 100 Hz at 16 kHz); the strided
            convolution halves the rate again.
        time_masks, time_mask_width: SpecAugment in training only: up to ``time_masks``
            spans of at most ``time_mask_width`` feature frames per utterance are set to
            the mean.
        freq_masks, freq_mask_width: the same over mel bins.
    """

    dim: int
    sample_rate: int = 16000
    n_mels: int = 80
    n_fft: int = 400
    hop_length: int = 160
    time_masks: int = 2
    time_mask_width: int = 10
    freq_masks: int = 2
    freq_mask_width: int = 8

    def __post_init__(self) -> None:
        for name in ("dim", "sample_rate", "n_mels", "n_fft", "hop_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"MelFrontendConfig.{name} must be >= 1")
        if self.n_fft % 2:
            raise ConfigError(f"MelFrontendConfig.n_fft must be even, got {self.n_fft}")
        for name in ("time_masks", "time_mask_width", "freq_masks", "freq_mask_width"):
            if getattr(self, name) < 0:
                raise ConfigError(f"MelFrontendConfig.{name} must be >= 0")
        if self.freq_mask_width > self.n_mels:
            raise ConfigError("MelFrontendConfig.freq_mask_width must be <= n_mels")

    @property
    def frame_rate(self) -> float:
        """Output frames per second (after the stride-2 subsampling)."""
        return self.sample_rate / (2 * self.hop_length)


class MelFrontend(nn.Module):
    """Mono audio ``(b, 1, t)`` -> frames ``(b, n, dim)`` at ``sample_rate / (2 hop_length)`` Hz.

    ``t`` samples give ``n = ceil(floor(t / hop_length) / 2)`` frames (:meth:`frame_lengths`);
    frames past an item's length are 0.
    """

    def __init__(self, config: MelFrontendConfig):
        super().__init__()
        self.config = config
        c = config
        self.mel = MelSpectrogram(
            c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length, n_mels=c.n_mels, center=False
        )
        self.subsample = nn.Conv1d(c.n_mels, c.dim, kernel_size=3, stride=2, padding=1)

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
        """Frames of mono audio at ``config.sample_rate``.

        Args:
            audio: ``(b, 1, t)`` in [-1, 1].
            lengths: ``(b,)`` real samples per item (None: all ``t``).

        Returns:
            ``(frames, frame_lengths)``: ``(b, n, dim)``, 0 past each item's end, and ``(b,)``
            real frames per item.
        """
        if audio.ndim != 3 or audio.shape[1] != 1:
            raise ValueError(f"audio must be mono (b, 1, t), got {tuple(audio.shape)}")
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
        return rearrange(x, "b d n -> b n d") * mask[..., None], frame_lengths
