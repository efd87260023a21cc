"""A codec that works at its frame rate and makes audio with an inverse STFT (Vocos-style).

SoundStream's SEANet decoder upsamples latents to the waveform with transposed convolutions:
most of its compute runs at 16 kHz, and at the width a CPU can train in minutes (16
filters) it does not reach usable quality. Vocos (Siuzdak 2023, arXiv 2306.00814), and the
codecs built on it (WavTokenizer, Mimi's decoder design), keep the network at the frame
rate and let an inverse STFT make the samples: the head predicts a log-magnitude and a phase
per STFT bin, and ``torch.istft`` overlap-adds them. Every layer here runs at 50 or 100 Hz.

- **Encoder**: log-mel frames at the codec's hop (one per code frame) -> ConvNeXt stack ->
  a linear map to ``latent_dim`` (the continuous latents NaturalSpeech 2 and flow matching
  model).
- **Quantizer**: the shared :class:`~cadence.codec.quantizer.ResidualQuantizer` (RVQ by
  default: ``num_quantizers`` levels of ``codebook_size`` codes).
- **Decoder**: ConvNeXt stack at the frame rate -> a linear head giving
  ``frames_per_code`` STFT frames per code frame (hop ``hop_length / frames_per_code``), each a
  log-magnitude and a phase per bin -> ``torch.istft``.

Train it with :class:`~cadence.codec.training.CodecTrainer` (mel + L1 reconstruction, then the
adversarial phase), as SoundStream.
"""

# b batch | c channels | t samples | n code frames | f frequency bins | d width

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from cadence.core.audio import check_audio, check_sample_rate
from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import Config, ConfigError
from cadence.core.features import MelSpectrogram

from .convnext import ConvNeXtStack
from .quantizer import QuantizerConfig, ResidualQuantizer
from .ragged import decode_ragged, encode_ragged
from .soundstream import SoundStreamOutput

__all__ = ["ISTFTCodec", "ISTFTCodecConfig", "ISTFTHead"]


def _quantizer() -> QuantizerConfig:
    return QuantizerConfig(num_quantizers=8, codebook_size=1024, quantize_dropout=False)


@dataclass(frozen=True, kw_only=True)
class ISTFTCodecConfig(Config):
    """Everything needed to rebuild an :class:`ISTFTCodec`.

    Attributes:
        sample_rate: audio rate.
        hop_length: samples per code frame (320 at 16 kHz: 50 frames/s).
        n_mels, mel_fft: the encoder's log-mel analysis (bins, window).
        dim, encoder_depth: the encoder's ConvNeXt width and blocks.
        decoder_dim, decoder_depth: the decoder's.
        ff_mult, kernel_size: ConvNeXt MLP expansion and depthwise taps.
        latent_dim: width of the continuous latents (what the quantizer codes).
        quantizer: the residual quantizer.
        n_fft: the inverse STFT's window (samples).
        frames_per_code: STFT frames per code frame; the STFT hop is
            ``hop_length / frames_per_code`` (2: a 10 ms hop at 16 kHz, which keeps phase
            reconstruction easy while the network runs at 50 Hz).
        causal: causal convolutions (a frame never sees later ones).
    """

    sample_rate: int = 16000
    hop_length: int = 320
    n_mels: int = 80
    mel_fft: int = 1024
    dim: int = 256
    encoder_depth: int = 4
    decoder_dim: int = 384
    decoder_depth: int = 8
    ff_mult: float = 3.0
    kernel_size: int = 7
    latent_dim: int = 64
    quantizer: QuantizerConfig = field(default_factory=_quantizer)
    n_fft: int = 640
    frames_per_code: int = 2
    causal: bool = False

    def __post_init__(self) -> None:
        for name in ("sample_rate", "hop_length", "n_mels", "mel_fft", "dim", "decoder_dim",
                     "latent_dim", "n_fft", "frames_per_code", "kernel_size"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"ISTFTCodecConfig.{name} must be a whole number >= 1, got {value!r}"
                )
        for name in ("encoder_depth", "decoder_depth"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"ISTFTCodecConfig.{name} must be >= 0, got {getattr(self, name)}"
                )
        if self.hop_length % self.frames_per_code:
            raise ConfigError(
                f"ISTFTCodecConfig: frames_per_code={self.frames_per_code} must divide "
                f"hop_length={self.hop_length}"
            )
        if self.n_fft < self.hop_length // self.frames_per_code:
            raise ConfigError("ISTFTCodecConfig.n_fft must be at least the STFT hop")
        if not math.isfinite(self.ff_mult) or self.ff_mult <= 0:
            raise ConfigError(f"ISTFTCodecConfig.ff_mult must be > 0, got {self.ff_mult}")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def stft_hop(self) -> int:
        return self.hop_length // self.frames_per_code

    @classmethod
    def tiny(cls, **changes) -> ISTFTCodecConfig:
        """A small model for tests."""
        base = cls(
            n_mels=32,
            mel_fft=512,
            dim=32,
            encoder_depth=1,
            decoder_dim=48,
            decoder_depth=2,
            latent_dim=16,
            quantizer=QuantizerConfig(num_quantizers=3, codebook_size=32, quantize_dropout=False),
        )
        return base.replace(**changes) if changes else base


class ISTFTHead(nn.Module):
    """Hidden frames ``(b, n, d)`` -> audio ``(b, 1, n * hop_length)`` through ``torch.istft``.

    Vocos sec. 3: the head predicts the log-magnitude (clamped before the exponential, so an
    early, untrained step cannot overflow) and the phase of each bin; the phase is an angle,
    so no normalization of a real/imaginary pair is needed.
    """

    window: Tensor

    def __init__(self, dim: int, *, n_fft: int, stft_hop: int, frames_per_code: int):
        super().__init__()
        self.n_fft, self.stft_hop, self.frames_per_code = n_fft, stft_hop, frames_per_code
        self.bins = n_fft // 2 + 1
        self.proj = nn.Linear(dim, frames_per_code * self.bins * 2)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, hidden: Tensor) -> Tensor:
        out = rearrange(
            self.proj(hidden), "b n (u f two) -> b (n u) f two", u=self.frames_per_code, two=2
        )
        magnitude = out[..., 0].float().clamp(max=8.0).exp()
        spectrum = torch.polar(magnitude, out[..., 1].float())  # (b, frames, f)
        frames = spectrum.shape[1]
        audio = torch.istft(
            rearrange(spectrum, "b n f -> b f n"),
            self.n_fft,
            self.stft_hop,
            window=self.window.float(),
            center=True,
            length=frames * self.stft_hop,
        )
        return audio[:, None].to(hidden.dtype)


class ISTFTCodec(PretrainedMixin, nn.Module):
    """The frame-rate codec of the module docstring; a Codec and a LatentCodec."""

    config_class = ISTFTCodecConfig
    channels = 1

    def __init__(self, config: ISTFTCodecConfig):
        super().__init__()
        self.config = c = config
        self.mel = MelSpectrogram(
            c.sample_rate, n_fft=c.mel_fft, hop_length=c.hop_length, n_mels=c.n_mels
        )
        self.encoder = ConvNeXtStack(
            c.n_mels,
            c.dim,
            c.encoder_depth,
            ff_mult=c.ff_mult,
            kernel_size=c.kernel_size,
            causal=c.causal,
        )
        self.to_latent = nn.Linear(c.dim, c.latent_dim)
        self.quantizer = ResidualQuantizer(c.quantizer, dim=c.latent_dim)
        self.decoder = ConvNeXtStack(
            c.latent_dim, c.decoder_dim, c.decoder_depth, ff_mult=c.ff_mult, kernel_size=c.kernel_size,
            causal=c.causal,
        )  # fmt: skip
        self.head = ISTFTHead(
            c.decoder_dim, n_fft=c.n_fft, stft_hop=c.stft_hop, frames_per_code=c.frames_per_code
        )

    # -- Codec attributes ------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def num_quantizers(self) -> int:
        return self.quantizer.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def num_frames(self, samples: int) -> int:
        """Frames :meth:`encode` makes of ``samples`` samples: ``floor(samples / hop_length)``."""
        return max(0, samples // self.hop_length)

    def bandwidth(self, num_quantizers: int | None = None) -> float:
        """Bits per second of a code with ``num_quantizers`` levels (default: all)."""
        q = self.num_quantizers if num_quantizers is None else num_quantizers
        return q * math.log2(self.codebook_size) * self.frame_rate

    # -- network -----------------------------------------------------------------------------

    def _check_audio(self, audio: Tensor, sample_rate: int | None = None) -> None:
        check_audio(audio, channels=1, min_samples=self.hop_length, what="ISTFTCodec input audio")
        if sample_rate is not None:
            check_sample_rate(sample_rate, self.sample_rate, what="ISTFTCodec input audio")

    def _latents(self, audio: Tensor) -> Tensor:
        """``(b, 1, t)`` -> ``(b, floor(t / hop), d)``."""
        mel = self.mel(audio[:, 0])[..., : audio.shape[-1] // self.hop_length]  # (b, f, n)
        return self.to_latent(self.encoder(mel))

    def _audio(self, latents: Tensor) -> Tensor:
        """``(b, n, d)`` -> ``(b, 1, n * hop)``."""
        return self.head(self.decoder(rearrange(latents, "b n d -> b d n")))

    def forward(self, audio: Tensor) -> SoundStreamOutput:
        """Encode, quantize (updating the codebooks in training) and decode ``(b, 1, t)`` audio.

        The output has the input's length: samples past the last whole frame are zero.
        """
        self._check_audio(audio)
        latents = self._latents(audio)
        result = self.quantizer(latents)
        decoded = self._audio(result.quantized)
        decoded = F.pad(decoded, (0, audio.shape[-1] - decoded.shape[-1]))
        return SoundStreamOutput(
            audio=decoded, codes=result.codes, commit_loss=result.commit_loss, latents=latents
        )

    # -- Codec / LatentCodec -------------------------------------------------------------------

    @torch.inference_mode()
    def encode(
        self, audio: Tensor, lengths: Tensor | None = None, *, num_quantizers: int | None = None,
        sample_rate: int | None = None,
    ) -> Tensor:  # fmt: skip
        """``(b, 1, t)`` audio -> ``(b, floor(t / hop_length), q)`` long codes (0 past ``lengths``)."""
        self._check_audio(audio, sample_rate)
        q = self.quantizer._check_levels(num_quantizers)
        return encode_ragged(
            lambda x: self.quantizer.encode(self._latents(x), q),
            audio,
            lengths,
            num_frames=self.num_frames,
        )

    @torch.inference_mode()
    def decode(self, codes: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``(b, n, q')`` codes, ``q' <= num_quantizers`` -> ``(b, 1, n * hop_length)`` audio."""
        return decode_ragged(
            lambda c: self._audio(self.quantizer.decode(c)),
            codes,
            lengths,
            hop_length=self.hop_length,
        )

    @torch.no_grad()
    def encode_latents(
        self, audio: Tensor, lengths: Tensor | None = None, *, sample_rate: int | None = None
    ) -> Tensor:
        """``(b, 1, t)`` audio -> ``(b, n, d)`` continuous latents, before quantization."""
        self._check_audio(audio, sample_rate)
        return encode_ragged(self._latents, audio, lengths, num_frames=self.num_frames)

    @torch.no_grad()
    def codes_to_latents(self, codes: Tensor) -> Tensor:
        """``(b, n, q')`` codes -> ``(b, n, d)`` quantized latents (the sum over the given levels)."""
        return self.quantizer.decode(codes)

    @torch.no_grad()
    def decode_latents(
        self, latents: Tensor, lengths: Tensor | None = None, *, quantize: bool = False
    ) -> Tensor:
        """``(b, n, d)`` latents -> ``(b, 1, n * hop_length)`` audio (``quantize``: through the RVQ first)."""
        if quantize:
            latents = self.quantizer.decode(self.quantizer.encode(latents))
        return decode_ragged(self._audio, latents, lengths, hop_length=self.hop_length)
