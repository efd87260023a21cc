"""Discriminators for adversarial codec training.

Three families, each returning ``(logits, feature_maps)``: a list with one logit tensor per
sub-discriminator, and a list (per sub-discriminator) of the lists of its hidden activations,
which feature matching compares between real and generated audio.

- :class:`MultiScaleSTFTDiscriminator`: EnCodec's MS-STFTD (Defossez et al. 2022, sec. 3.4),
  2-D convolutions over the real and imaginary parts of STFTs at several resolutions;
- :class:`MultiPeriodDiscriminator`: HiFi-GAN's MPD (Kong et al. 2020), the waveform folded
  into ``(t / k, k)`` for prime periods ``k``;
- :class:`MultiScaleDiscriminator`: MelGAN's waveform discriminator (Kumar et al. 2019) on
  the audio and its 2x / 4x average-pooled versions.

:class:`CodecDiscriminator` combines any of them from a :class:`DiscriminatorConfig`.
"""

# b batch | c audio channels | t samples | f frequency bins | n frames | k period

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from cadence.core.audio import check_audio
from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import Config, ConfigError

__all__ = [
    "CodecDiscriminator",
    "DiscriminatorConfig",
    "DiscriminatorKind",
    "DiscriminatorOutput",
    "MultiPeriodDiscriminator",
    "MultiScaleDiscriminator",
    "MultiScaleSTFTDiscriminator",
]

DiscriminatorKind = Literal["msstft", "mpd", "msd"]
DiscriminatorOutput = tuple[list[Tensor], list[list[Tensor]]]
_LRELU_SLOPE = 0.2


def _norm(module: nn.Module, norm: Literal["weight_norm", "spectral_norm", "none"]) -> nn.Module:
    if norm == "weight_norm":
        return weight_norm(module)
    if norm == "spectral_norm":
        return spectral_norm(module)
    return module


class STFTDiscriminator(nn.Module):
    """One MS-STFTD branch: complex STFT -> 2-D convs with growing time dilation (EnCodec)."""

    window: Tensor

    def __init__(
        self,
        *,
        filters: int = 32,
        in_channels: int = 1,
        n_fft: int = 1024,
        hop_length: int = 256,
        win_length: int = 1024,
        max_filters: int = 1024,
        filters_scale: int = 1,
        kernel_size: tuple[int, int] = (3, 9),
        dilations: tuple[int, ...] = (1, 2, 4),
        stride: tuple[int, int] = (1, 2),
        norm: Literal["weight_norm", "spectral_norm", "none"] = "weight_norm",
    ):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

        def pad(k: tuple[int, int], d: tuple[int, int] = (1, 1)) -> tuple[int, int]:
            return ((k[0] - 1) * d[0] // 2, (k[1] - 1) * d[1] // 2)

        convs = [
            _norm(nn.Conv2d(2 * in_channels, filters, kernel_size, padding=pad(kernel_size)), norm)
        ]
        in_chs = min(filters_scale * filters, max_filters)
        for i, dilation in enumerate(dilations):
            out_chs = min(filters_scale ** (i + 1) * filters, max_filters)
            convs.append(
                _norm(
                    nn.Conv2d(
                        in_chs,
                        out_chs,
                        kernel_size,
                        stride=stride,
                        dilation=(dilation, 1),
                        padding=pad(kernel_size, (dilation, 1)),
                    ),
                    norm,
                )
            )
            in_chs = out_chs
        out_chs = min(filters_scale ** (len(dilations) + 1) * filters, max_filters)
        square = (kernel_size[0], kernel_size[0])
        convs.append(_norm(nn.Conv2d(in_chs, out_chs, square, padding=pad(square)), norm))
        self.convs = nn.ModuleList(convs)
        self.conv_post = _norm(nn.Conv2d(out_chs, 1, square, padding=pad(square)), norm)

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        b = audio.shape[0]
        flat = rearrange(audio, "b c t -> (b c) t")
        spec = torch.stft(
            flat,
            self.n_fft,
            self.hop_length,
            self.win_length,
            window=self.window.to(flat.dtype),
            center=False,
            normalized=True,  # torchaudio's "window" normalization, as in EnCodec
            return_complex=True,
        )
        spec = rearrange(spec, "(b c) f n -> b c f n", b=b)
        z = torch.cat([spec.real, spec.imag], dim=1)
        z = rearrange(z, "b c f n -> b c n f")  # time first: dilation runs along time
        fmap = []
        for conv in self.convs:
            z = F.leaky_relu(conv(z), _LRELU_SLOPE)
            fmap.append(z)
        return self.conv_post(z), fmap


class _DiscriminatorSet(nn.Module):
    """Sub-discriminators in ``self.discriminators``, each seeing ``self._inputs(audio)``'s item."""

    discriminators: nn.ModuleList

    def _inputs(self, audio: Tensor) -> Iterator[Tensor]:
        for _ in self.discriminators:
            yield audio

    def forward(self, audio: Tensor) -> DiscriminatorOutput:
        logits, fmaps = [], []
        for disc, x in zip(self.discriminators, self._inputs(audio)):
            logit, fmap = disc(x)
            logits.append(logit)
            fmaps.append(fmap)
        return logits, fmaps


class MultiScaleSTFTDiscriminator(_DiscriminatorSet):
    """EnCodec's multi-scale STFT discriminator: one :class:`STFTDiscriminator` per resolution."""

    def __init__(
        self,
        *,
        filters: int = 32,
        in_channels: int = 1,
        n_ffts: tuple[int, ...] = (1024, 2048, 512, 256, 128),
        hop_lengths: tuple[int, ...] = (256, 512, 128, 64, 32),
        win_lengths: tuple[int, ...] = (1024, 2048, 512, 256, 128),
        **kwargs,
    ):
        super().__init__()
        if not len(n_ffts) == len(hop_lengths) == len(win_lengths):
            raise ValueError("n_ffts, hop_lengths and win_lengths must have the same length")
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(
                filters=filters,
                in_channels=in_channels,
                n_fft=n,
                hop_length=h,
                win_length=w,
                **kwargs,
            )
            for n, h, w in zip(n_ffts, hop_lengths, win_lengths)
        )


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's sub-discriminator for one period: 2-D convs over the folded waveform."""

    def __init__(
        self,
        period: int,
        *,
        in_channels: int = 1,
        channels: tuple[int, ...] = (32, 128, 512, 1024, 1024),
        kernel_size: int = 5,
        stride: int = 3,
        norm: Literal["weight_norm", "spectral_norm", "none"] = "weight_norm",
    ):
        super().__init__()
        self.period = period
        convs, in_chs = [], in_channels
        for i, out_chs in enumerate(channels):
            last = i == len(channels) - 1
            convs.append(
                _norm(
                    nn.Conv2d(
                        in_chs,
                        out_chs,
                        (kernel_size, 1),
                        (1 if last else stride, 1),
                        padding=((kernel_size - 1) // 2, 0),
                    ),
                    norm,
                )
            )
            in_chs = out_chs
        self.convs = nn.ModuleList(convs)
        self.conv_post = _norm(nn.Conv2d(in_chs, 1, (3, 1), padding=(1, 0)), norm)

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        t = audio.shape[-1]
        if t % self.period:
            pad = self.period - t % self.period
            # HiFi-GAN pads with reflection; very short inputs fall back to zeros.
            audio = F.pad(audio, (0, pad), "reflect" if pad < t else "constant")
        z = rearrange(audio, "b c (n k) -> b c n k", k=self.period)
        fmap = []
        for conv in self.convs:
            z = F.leaky_relu(conv(z), 0.1)
            fmap.append(z)
        z = self.conv_post(z)
        fmap.append(z)
        return z, fmap


class MultiPeriodDiscriminator(_DiscriminatorSet):
    """HiFi-GAN's multi-period discriminator (periods 2, 3, 5, 7, 11 by default)."""

    def __init__(self, *, periods: tuple[int, ...] = (2, 3, 5, 7, 11), **kwargs):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, **kwargs) for p in periods)


class WaveformDiscriminator(nn.Module):
    """MelGAN's ``NLayerDiscriminator``: strided grouped 1-D convs over the waveform."""

    def __init__(
        self,
        *,
        in_channels: int = 1,
        filters: int = 16,
        max_filters: int = 1024,
        downsample_factors: tuple[int, ...] = (4, 4, 4, 4),
        norm: Literal["weight_norm", "spectral_norm", "none"] = "weight_norm",
    ):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Sequential(nn.ReflectionPad1d(7), _norm(nn.Conv1d(in_channels, filters, 15), norm))
        ]
        chs = filters
        for factor in downsample_factors:
            out = min(chs * factor, max_filters)
            layers.append(
                _norm(
                    nn.Conv1d(
                        chs,
                        out,
                        kernel_size=factor * 10 + 1,
                        stride=factor,
                        padding=factor * 5,
                        groups=max(chs // 4, 1),
                    ),
                    norm,
                )
            )
            chs = out
        out = min(chs * 2, max_filters)
        layers.append(_norm(nn.Conv1d(chs, out, 5, padding=2), norm))
        self.convs = nn.ModuleList(layers)
        self.conv_post = _norm(nn.Conv1d(out, 1, 3, padding=1), norm)

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        z, fmap = audio, []
        for conv in self.convs:
            z = F.leaky_relu(conv(z), _LRELU_SLOPE)
            fmap.append(z)
        z = self.conv_post(z)
        fmap.append(z)
        return z, fmap


class MultiScaleDiscriminator(_DiscriminatorSet):
    """MelGAN's multi-scale discriminator: the same architecture on x, x/2, x/4, ..."""

    def __init__(self, *, num_scales: int = 3, **kwargs):
        super().__init__()
        self.discriminators = nn.ModuleList(
            WaveformDiscriminator(**kwargs) for _ in range(num_scales)
        )
        self.pool = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def _inputs(self, audio: Tensor) -> Iterator[Tensor]:
        for i in range(len(self.discriminators)):
            if i:
                audio = self.pool(audio)
            yield audio


@dataclass(frozen=True, kw_only=True)
class DiscriminatorConfig(Config):
    """Which discriminators a codec is trained against, and their sizes.

    The defaults are EnCodec's MS-STFTD plus HiFi-GAN's MPD; ``"msd"`` adds MelGAN's
    waveform discriminator. Widths are the papers' unless scaled down for tests.
    """

    kinds: tuple[DiscriminatorKind, ...] = ("msstft", "mpd")
    channels: int = 1
    norm: Literal["weight_norm", "spectral_norm", "none"] = "weight_norm"
    # MS-STFTD (EnCodec)
    stft_filters: int = 32
    stft_max_filters: int = 1024
    n_ffts: tuple[int, ...] = (1024, 2048, 512, 256, 128)
    hop_lengths: tuple[int, ...] = (256, 512, 128, 64, 32)
    win_lengths: tuple[int, ...] = (1024, 2048, 512, 256, 128)
    # MPD (HiFi-GAN)
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    period_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)
    # MSD (MelGAN)
    num_scales: int = 3
    waveform_filters: int = 16
    waveform_max_filters: int = 1024
    downsample_factors: tuple[int, ...] = (4, 4, 4, 4)

    def __post_init__(self) -> None:
        if not self.kinds:
            raise ConfigError("DiscriminatorConfig.kinds must name at least one discriminator")
        if len(set(self.kinds)) != len(self.kinds):
            raise ConfigError(f"DiscriminatorConfig.kinds has duplicates: {self.kinds}")

    @classmethod
    def tiny(cls) -> DiscriminatorConfig:
        """All three families, a few channels each, short STFTs: for tests."""
        return cls(
            kinds=("msstft", "mpd", "msd"),
            stft_filters=4,
            stft_max_filters=16,
            n_ffts=(256, 128),
            hop_lengths=(64, 32),
            win_lengths=(256, 128),
            periods=(2, 3),
            period_channels=(4, 8, 8),
            num_scales=2,
            waveform_filters=4,
            waveform_max_filters=16,
            downsample_factors=(4, 4),
        )


class CodecDiscriminator(PretrainedMixin, nn.Module):
    """The discriminators named in a :class:`DiscriminatorConfig`, run side by side.

    ``forward(audio (b, c, t))`` returns ``(logits, feature_maps)`` concatenated over the
    families in ``config.kinds`` order.
    """

    config_class = DiscriminatorConfig

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        c = config
        families: dict[str, nn.Module] = {}
        for kind in c.kinds:
            if kind == "msstft":
                families[kind] = MultiScaleSTFTDiscriminator(
                    filters=c.stft_filters,
                    in_channels=c.channels,
                    n_ffts=c.n_ffts,
                    hop_lengths=c.hop_lengths,
                    win_lengths=c.win_lengths,
                    max_filters=c.stft_max_filters,
                    norm=c.norm,
                )
            elif kind == "mpd":
                families[kind] = MultiPeriodDiscriminator(
                    periods=c.periods,
                    in_channels=c.channels,
                    channels=c.period_channels,
                    norm=c.norm,
                )
            else:
                families[kind] = MultiScaleDiscriminator(
                    num_scales=c.num_scales,
                    in_channels=c.channels,
                    filters=c.waveform_filters,
                    max_filters=c.waveform_max_filters,
                    downsample_factors=c.downsample_factors,
                    norm=c.norm,
                )
        self.families = nn.ModuleDict(families)

    def forward(self, audio: Tensor) -> DiscriminatorOutput:
        # STFTs without centering need at least one full window.
        shortest = max(self.config.n_ffts) if "msstft" in self.config.kinds else 1
        check_audio(
            audio, channels=self.config.channels, min_samples=shortest, what="discriminator input"
        )
        logits: list[Tensor] = []
        fmaps: list[list[Tensor]] = []
        for family in self.families.values():
            lg, fm = family(audio)
            logits += lg
            fmaps += fm
        return logits, fmaps
