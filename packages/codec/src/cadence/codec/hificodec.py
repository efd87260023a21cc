"""HiFi-Codec (Yang et al. 2023, AcademiCodec) for inference, loading the released checkpoints.

A HiFi-GAN generator as the decoder, its mirror (strided convs, multi-receptive-field
residual blocks with group norm) as the encoder, and a *group-residual* VQ between them:
each of 2 residual levels splits the 512-wide latent into ``n_code_groups`` slices, each
quantized by its own codebook. Codes ``(b, n, q)`` hold ``q = levels * groups`` columns in
the released order ``[level 0 group 0, level 0 group 1, level 1 group 0, level 1 group 1]``.

Why not SoundStream with a grouped RVQ: the quantizer is the same idea, but the encoder and
decoder are HiFi-GAN's (leaky ReLU, three parallel residual blocks per resolution averaged,
a tanh output, group norm in the encoder), not SEANet, so no SEANet configuration holds
the released weights; the layout test (``tests/test_hificodec.py``) maps every published
tensor onto this model instead.
"""

# b batch | c audio channels | t samples | n frames (floor(t / hop_length)) | q codebooks | g groups | d latent dim

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal, cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from cadence.core.audio import check_audio
from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import Config, ConfigError

from .encodec import check_codes
from .ragged import decode_ragged, encode_ragged

__all__ = ["GroupResidualVQ", "HiFiCodec", "HiFiCodecConfig"]

LRELU_SLOPE = 0.1  # HiFi-GAN's


@dataclass(frozen=True, kw_only=True)
class HiFiCodecConfig(Config):
    """Everything that defines a HiFi-Codec. Defaults are the released 16 kHz, hop-320 model.

    Field names follow the published ``config_16k_320d.json`` where it has them.

    Attributes:
        sample_rate: audio rate in Hz.
        upsample_rates: the generator's upsampling strides (decoder order); the encoder
            downsamples by them reversed. Their product is the hop length.
        upsample_kernel_sizes: the matching (transposed) conv kernels; ``k - rate`` must be even.
        upsample_initial_channel: the generator's width after its first conv.
        resblock: HiFi-GAN's residual block type ``"1"`` (two convs per dilation) or ``"2"``.
        resblock_kernel_sizes: kernels of the parallel residual blocks of a resolution.
        resblock_dilation_sizes: their dilations.
        n_code_groups: latent slices per level, one codebook each.
        codebook_size: entries per codebook (``n_codes``).
        levels: residual levels (2 in AcademiCodec's code).
        latent_dim: latent width ``d`` (512 in AcademiCodec's code).
        encoder_width: the encoder's first width, doubled at each downsampling (32 there);
            ``encoder_width * 2 ** len(upsample_rates)`` must equal ``latent_dim``.
    """

    sample_rate: int = 16000
    upsample_rates: tuple[int, ...] = (8, 5, 4, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 11, 8, 4)
    upsample_initial_channel: int = 512
    resblock: Literal["1", "2"] = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    n_code_groups: int = 2
    codebook_size: int = 1024
    levels: int = 2
    latent_dim: int = 512
    encoder_width: int = 32

    def __post_init__(self) -> None:
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ConfigError("upsample_rates and upsample_kernel_sizes must have the same length")
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes):
            if rate < 1 or kernel < rate or (kernel - rate) % 2:
                raise ConfigError(
                    f"upsampling kernel {kernel} for rate {rate}: kernel >= rate with an even "
                    "difference keeps lengths exact (n * rate)"
                )
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ConfigError("resblock_kernel_sizes and resblock_dilation_sizes must match")
        expected = 2 if self.resblock == "2" else 3
        if any(len(d) != expected for d in self.resblock_dilation_sizes):
            raise ConfigError(f"resblock {self.resblock!r} takes {expected} dilations per block")
        if self.latent_dim % self.n_code_groups:
            raise ConfigError(
                f"latent_dim {self.latent_dim} is not divisible by {self.n_code_groups} groups"
            )
        if self.encoder_width * 2 ** len(self.upsample_rates) != self.latent_dim:
            raise ConfigError("encoder_width * 2 ** len(upsample_rates) must equal latent_dim")
        if (2 * self.encoder_width) % 16:
            # the encoder's group norms have width // 16 groups
            raise ConfigError(
                f"2 * encoder_width must be a multiple of 16, got {self.encoder_width}"
            )
        if (
            min(
                self.sample_rate, self.codebook_size - 1, self.levels, self.upsample_initial_channel
            )
            < 1
        ):
            raise ConfigError(
                "sample_rate, levels, upsample_initial_channel >= 1; codebook_size >= 2"
            )

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)

    @property
    def num_quantizers(self) -> int:
        return self.levels * self.n_code_groups

    @classmethod
    def tiny(cls) -> HiFiCodecConfig:
        """A small model for tests: 16 kHz, hop 8 (2 kHz frames), 2 levels x 2 groups of 32 codes."""
        return cls(
            upsample_rates=(4, 2),
            upsample_kernel_sizes=(8, 4),
            upsample_initial_channel=16,
            resblock_kernel_sizes=(3, 5),
            resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)),
            codebook_size=32,
            latent_dim=32,
            encoder_width=8,
        )


def _conv(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Module:
    """A weight-normed "same" conv (HiFi-GAN's ``get_padding``)."""
    pad = (kernel * dilation - dilation) // 2
    return weight_norm(nn.Conv1d(cin, cout, kernel, 1, dilation=dilation, padding=pad))


class ResBlock(nn.Module):
    """HiFi-GAN's residual block: ``x += conv2(lrelu(conv1(lrelu(x))))`` per dilation (type 1);
    type 2 has only the dilated conv."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...], kind: str):
        super().__init__()
        self.convs1 = nn.ModuleList(_conv(channels, channels, kernel, d) for d in dilations)
        self.convs2 = (
            nn.ModuleList(_conv(channels, channels, kernel) for _ in dilations)
            if kind == "1"
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        for i, conv1 in enumerate(self.convs1):
            y = conv1(F.leaky_relu(x, LRELU_SLOPE))
            if self.convs2 is not None:
                y = self.convs2[i](F.leaky_relu(y, LRELU_SLOPE))
            x = y + x
        return x


class HiFiEncoder(nn.Module):
    """Waveform ``(b, 1, t)`` -> latents ``(b, d, floor(t / hop_length))`` (AcademiCodec's ``Encoder``)."""

    def __init__(self, c: HiFiCodecConfig):
        super().__init__()
        self.conv_pre = weight_norm(nn.Conv1d(1, c.encoder_width, 7, 1, padding=3))
        pairs = list(zip(c.upsample_rates, c.upsample_kernel_sizes))[::-1]
        blocks = list(zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes))[::-1]
        width = c.encoder_width
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        self.normalize = nn.ModuleList()
        for rate, kernel in pairs:
            conv = nn.Conv1d(width, 2 * width, kernel, rate, padding=(kernel - rate) // 2)
            self.ups.append(weight_norm(conv))
            width *= 2
            for k, d in blocks:
                self.resblocks.append(ResBlock(width, k, d, c.resblock))
                self.normalize.append(nn.GroupNorm(width // 16, width, eps=1e-6, affine=True))
        self.conv_post = nn.Conv1d(c.latent_dim, c.latent_dim, 3, 1, padding=1)
        self.num_kernels = len(blocks)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_pre(x)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            xs: Tensor | None = None
            for j in range(i * self.num_kernels, (i + 1) * self.num_kernels):
                # the released model normalizes the running sum after each block
                y = self.resblocks[j](x)
                xs = self.normalize[j](y if xs is None else xs + y)
            assert xs is not None
            x = xs / self.num_kernels
        return self.conv_post(F.leaky_relu(x))  # default slope (0.01) here, as released


class HiFiGenerator(nn.Module):
    """Latents ``(b, d, n)`` -> waveform ``(b, 1, n * hop_length)`` in (-1, 1): HiFi-GAN's generator."""

    def __init__(self, c: HiFiCodecConfig):
        super().__init__()
        self.conv_pre = weight_norm(
            nn.Conv1d(c.latent_dim, c.upsample_initial_channel, 7, 1, padding=3)
        )
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        width = c.upsample_initial_channel
        for rate, kernel in zip(c.upsample_rates, c.upsample_kernel_sizes):
            up = nn.ConvTranspose1d(width, width // 2, kernel, rate, padding=(kernel - rate) // 2)
            self.ups.append(weight_norm(up))
            width //= 2
            for k, d in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes):
                self.resblocks.append(ResBlock(width, k, d, c.resblock))
        self.conv_post = weight_norm(nn.Conv1d(width, 1, 7, 1, padding=3))
        self.num_kernels = len(c.resblock_kernel_sizes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_pre(x)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            xs: Tensor | None = None
            for j in range(i * self.num_kernels, (i + 1) * self.num_kernels):
                y = self.resblocks[j](x)
                xs = y if xs is None else xs + y
            assert xs is not None
            x = xs / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x, LRELU_SLOPE)))


class _Codebook(nn.Module):
    """One codebook, under AcademiCodec's name (``embedding.weight``)."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(size, dim)

    def nearest(self, x: Tensor) -> Tensor:
        """``(m, e)`` -> ``(m,)`` indices, with the released expression (so ties resolve alike)."""
        e = self.embedding.weight
        d = torch.sum(x**2, 1, keepdim=True) + torch.sum(e**2, 1) - 2 * torch.matmul(x, e.T)
        return torch.argmin(d, 1)


class GroupResidualVQ(nn.Module):
    """Residual levels, each splitting the latent into groups with a codebook per group.

    Parameters sit where AcademiCodec's ``Quantizer`` keeps them: level 0's codebooks in
    ``quantizer_modules``, level 1's in ``quantizer_modules2`` (further levels: ``3``, ...).
    """

    def __init__(self, c: HiFiCodecConfig):
        super().__init__()
        self.groups, self.levels = c.n_code_groups, c.levels
        dim = c.latent_dim // c.n_code_groups
        for level in range(c.levels):
            books = nn.ModuleList(_Codebook(c.codebook_size, dim) for _ in range(c.n_code_groups))
            self.add_module(self._name(level), books)

    @staticmethod
    def _name(level: int) -> str:
        return "quantizer_modules" if level == 0 else f"quantizer_modules{level + 1}"

    def books(self, level: int) -> list[_Codebook]:
        """The ``groups`` codebooks of ``level``."""
        books = self.get_submodule(self._name(level))
        assert isinstance(books, nn.ModuleList)
        return cast(list[_Codebook], list(books))

    def encode(self, latents: Tensor) -> Tensor:
        """Latents ``(b, n, d)`` -> codes ``(b, n, levels * groups)``."""
        residual, codes = latents, []
        for level in range(self.levels):
            slices = residual.reshape(-1, residual.shape[-1]).split(
                residual.shape[-1] // self.groups, -1
            )
            indices = [book.nearest(s) for book, s in zip(self.books(level), slices)]
            quantized = torch.cat(
                [book.embedding(i) for book, i in zip(self.books(level), indices)], -1
            ).reshape(residual.shape)
            # The released code subtracts its straight-through value x + (q - x), which differs
            # from q in the last bit; the next level's codes depend on it.
            residual = residual - (residual + (quantized - residual))
            codes += [i.reshape(latents.shape[:2]) for i in indices]
        return torch.stack(codes, -1)

    def decode(self, codes: Tensor) -> Tensor:
        """Codes ``(b, n, q)``, the first ``q <= levels * groups`` columns -> latents ``(b, n, d)``.

        Columns not given (a prefix of the codebooks) contribute nothing.
        """
        out = torch.zeros((), device=codes.device)
        for level in range(self.levels):
            parts = []
            for g, book in enumerate(self.books(level)):
                column = level * self.groups + g
                if column < codes.shape[-1]:
                    parts.append(book.embedding(codes[..., column]))
                else:
                    weight = book.embedding.weight
                    parts.append(weight.new_zeros(*codes.shape[:2], weight.shape[1]))
            out = out + torch.cat(parts, -1)
        return out


class HiFiCodec(PretrainedMixin, nn.Module):
    """HiFi-Codec (AcademiCodec) for inference. Implements ``Codec`` and ``LatentCodec``.

    Frames are ``floor(t / hop_length)`` (strided convs without end padding, as released).

    Example:
        >>> model = HiFiCodec(HiFiCodecConfig.tiny()).eval()
        >>> codes = model.encode(torch.randn(1, 1, 800) * 0.1)  # (b, n, q) long
        >>> tuple(codes.shape)
        (1, 100, 4)
        >>> tuple(model.decode(codes).shape)
        (1, 1, 800)
    """

    config_class = HiFiCodecConfig
    channels = 1

    def __init__(self, config: HiFiCodecConfig):
        super().__init__()
        self.config = config
        self.encoder = HiFiEncoder(config)
        self.generator = HiFiGenerator(config)
        self.quantizer = GroupResidualVQ(config)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def num_quantizers(self) -> int:
        return self.config.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def num_frames(self, samples: int) -> int:
        """Frames :meth:`encode` makes of ``samples`` samples: ``floor(samples / hop_length)``."""
        return max(0, samples // self.hop_length)

    def check_audio(self, audio: Tensor, sample_rate: int | None = None) -> Tensor:
        """Validate audio ``(b, 1, t)``: mono, finite, at least one frame, at the model's rate."""
        check_audio(
            audio,
            channels=1,
            sample_rate=sample_rate,
            expected_sample_rate=self.sample_rate,
            what="HiFi-Codec input",
        )
        if audio.shape[-1] < self.hop_length:
            raise ValueError(
                f"HiFi-Codec needs at least one frame ({self.hop_length} samples), got {audio.shape[-1]}"
            )
        return audio

    def _latents(self, audio: Tensor) -> Tensor:
        dtype = self.encoder.conv_post.weight.dtype
        return rearrange(self.encoder(audio.to(dtype)), "b d n -> b n d")

    def encode(
        self, audio: Tensor, lengths: Tensor | None = None, *, sample_rate: int | None = None
    ) -> Tensor:
        """Audio ``(b, 1, t)`` -> codes ``(b, floor(t / hop_length), levels * groups)`` long.

        ``lengths`` ``(b,)``: real samples per item (each at least ``hop_length``); item ``i``
        gets the frames it gets alone, then 0.
        """
        self.check_audio(audio, sample_rate)
        with torch.inference_mode():
            return encode_ragged(
                lambda x: self.quantizer.encode(self._latents(x)),
                audio,
                lengths,
                num_frames=self.num_frames,
            )

    def encode_latents(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Audio ``(b, 1, t)`` -> the encoder's latents ``(b, n, d)`` before quantization."""
        self.check_audio(audio)
        with torch.inference_mode():
            return encode_ragged(self._latents, audio, lengths, num_frames=self.num_frames)

    def codes_to_latents(self, codes: Tensor) -> Tensor:
        """Codes ``(b, n, q)`` -> quantized latents ``(b, n, d)`` (the released ``Quantizer.embed``)."""
        check_codes(codes, codebook_size=self.codebook_size, max_quantizers=self.num_quantizers)
        with torch.inference_mode():
            return self.quantizer.decode(codes)

    def _audio(self, latents: Tensor) -> Tensor:
        return self.generator(rearrange(latents, "b n d -> b d n"))

    def decode_latents(self, latents: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Latents ``(b, n, d)`` -> audio ``(b, 1, n * hop_length)``; 0 past ``lengths[i]`` frames."""
        if latents.ndim != 3 or latents.shape[-1] != self.latent_dim:
            raise ValueError(
                f"latents must have shape (b, n, {self.latent_dim}), got {tuple(latents.shape)}"
            )
        with torch.inference_mode():
            return decode_ragged(self._audio, latents, lengths, hop_length=self.hop_length)

    def decode(self, codes: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Codes ``(b, n, q)`` -> audio ``(b, 1, n * hop_length)``; 0 past ``lengths[i]`` frames."""
        with torch.inference_mode():
            return decode_ragged(
                lambda c: self._audio(self.codes_to_latents(c)),
                codes,
                lengths,
                hop_length=self.hop_length,
            )

    def forward(self, audio: Tensor) -> Tensor:
        """Encode and decode (``floor(t / hop_length) * hop_length`` samples)."""
        return self.decode(self.encode(audio))

    @classmethod
    def from_official(
        cls,
        path: str | os.PathLike,
        *,
        config: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ) -> HiFiCodec:
        """Load a released AcademiCodec checkpoint (e.g. ``HiFi-Codec-16k-320d``) from a local path.

        Args:
            path: the ``g_*`` checkpoint file (``{"generator", "encoder", "quantizer"}``).
            config: its JSON config (e.g. ``config_16k_320d.json``); default: the 16 kHz
                hop-320 release's (:class:`HiFiCodecConfig` defaults).
            device: where the weights go.
        """
        from .hificodec_loading import load_official

        return load_official(path, config=config, device=device)
