"""SpeechTokenizer (Zhang et al. 2023) for inference, in our own code, loading the official weights.

A SEANet encoder whose bottleneck LSTM is bidirectional -> an 8-level residual VQ with
Euclidean codebooks -> a SEANet decoder. Training distilled HuBERT into the first level
(RVQ-1), so ``codes[..., 0]`` is a semantic token stream (:class:`SpeechTokenizerSemantic`)
and the other levels carry what remains (speaker, prosody, detail): SpeechGPT-Gen's CoIG
models predict RVQ-2..8 from RVQ-1.

The model is not causal (symmetric padding, bidirectional LSTM), so it does not stream.
Official checkpoints (``SpeechTokenizer.pt`` + ``config.json``) load with
:meth:`SpeechTokenizer.from_official` (:mod:`cadence.codec.speechtokenizer_loading`).
"""

# b batch | c audio channels | t samples | n frames | q quantizer levels | d latent dim | e semantic dim

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import Tensor, nn

from cadence.core.audio import check_audio
from cadence.core.checkpoint import PretrainedMixin
from cadence.core.config import Config, ConfigError

from .conv import StreamableConv1d
from .encodec import EuclideanResidualVQ, check_codes
from .ragged import decode_ragged, encode_ragged
from .seanet import SEANetConfig, SEANetDecoder, SEANetEncoder

__all__ = [
    "BidirectionalSkipLSTM",
    "SpeechTokenizer",
    "SpeechTokenizerConfig",
    "SpeechTokenizerEncoder",
    "SpeechTokenizerSemantic",
]


def _official_seanet() -> SEANetConfig:
    """The SEANet of the released model: 64 filters, hop 320, 1024-wide latents, 1x1 shortcuts."""
    return SEANetConfig(n_filters=64, latent_dim=1024, true_skip=False, lstm=2)


@dataclass(frozen=True, kw_only=True)
class SpeechTokenizerConfig(Config):
    """Everything that defines a SpeechTokenizer. Defaults are the released 16 kHz model.

    Attributes:
        sample_rate: audio rate in Hz.
        seanet: encoder and decoder (non-causal); ``seanet.latent_dim`` is the codebook width.
        bidirectional: the encoder's bottleneck LSTM reads both directions (the decoder's
            never does); its doubled width feeds the encoder's last conv.
        num_quantizers: RVQ levels; level 0 is the distilled semantic one.
        codebook_size: entries per codebook.
        semantic_dim: width of the RVQ-1 features after the projection trained to match
            HuBERT (``transform``); equal to ``seanet.latent_dim`` means no projection.
    """

    sample_rate: int = 16000
    seanet: SEANetConfig = field(default_factory=_official_seanet)
    bidirectional: bool = True
    num_quantizers: int = 8
    codebook_size: int = 1024
    semantic_dim: int = 768

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ConfigError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.seanet.causal:
            raise ConfigError("SpeechTokenizer is non-causal (bidirectional LSTM); causal=False")
        if self.num_quantizers < 1 or self.codebook_size < 2 or self.semantic_dim < 1:
            raise ConfigError(
                "SpeechTokenizerConfig needs num_quantizers >= 1, codebook_size >= 2, "
                f"semantic_dim >= 1; got {self.num_quantizers}, {self.codebook_size}, "
                f"{self.semantic_dim}"
            )
        if self.bidirectional and self.seanet.lstm == 0:
            raise ConfigError("bidirectional=True needs an LSTM (seanet.lstm >= 1)")

    @property
    def hop_length(self) -> int:
        return self.seanet.hop_length

    @classmethod
    def tiny(cls) -> SpeechTokenizerConfig:
        """A small model for tests: 16 kHz, hop 40 (400 frames/s), 4 levels of 64 codes."""
        return cls(
            seanet=_official_seanet().replace(
                n_filters=4, latent_dim=16, strides=(2, 4, 5), lstm=1
            ),
            num_quantizers=4,
            codebook_size=64,
            semantic_dim=8,
        )


class BidirectionalSkipLSTM(nn.Module):
    """SpeechTokenizer's bottleneck: a bidirectional LSTM plus its input repeated twice.

    ``(b, d, n) -> (b, 2d, n)``; the parameters sit under ``lstm`` as in the checkpoints.
    """

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers, bidirectional=True)

    def forward(self, x: Tensor) -> Tensor:
        h = rearrange(x, "b d n -> n b d")  # nn.LSTM's time-major layout
        y, _ = self.lstm(h)
        return rearrange(y + h.repeat(1, 1, 2), "n b d -> b d n")


class SpeechTokenizerEncoder(nn.Module):
    """Waveform ``(b, c, t)`` -> latents ``(b, d, ceil(t / hop_length))``.

    SEANet's encoder with its bottleneck LSTM made bidirectional: the same convolutions and
    residual units (built by :class:`SEANetEncoder`), the LSTM, then the last conv reading
    the doubled width. Layer indices match the official ``encoder.model.{i}`` keys.
    """

    def __init__(self, config: SEANetConfig, *, bidirectional: bool):
        super().__init__()
        self.config = config
        if not bidirectional:
            self.model = SEANetEncoder(config).model
            return
        *body, activation, _ = SEANetEncoder(config.replace(lstm=0)).model
        width = config.n_filters * 2 ** len(config.strides)
        last = StreamableConv1d(
            2 * width,
            config.latent_dim,
            config.last_kernel_size,
            norm=config.norm,
            causal=config.causal,
            pad_mode=config.pad_mode,
        )
        self.model = nn.Sequential(
            *body, BidirectionalSkipLSTM(width, config.lstm), activation, last
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(b, c, t) -> (b, d, ceil(t / hop_length))``."""
        return self.model(x)


class SpeechTokenizer(PretrainedMixin, nn.Module):
    """SpeechTokenizer neural audio codec (inference). Implements ``Codec`` and ``LatentCodec``.

    Example:
        >>> model = SpeechTokenizer(SpeechTokenizerConfig.tiny()).eval()
        >>> codes = model.encode(torch.randn(1, 1, 800) * 0.1)  # (b, n, q) long
        >>> tuple(codes.shape)
        (1, 20, 4)
        >>> tuple(model.decode(codes).shape)
        (1, 1, 800)
    """

    config_class = SpeechTokenizerConfig

    def __init__(self, config: SpeechTokenizerConfig):
        super().__init__()
        self.config = config
        self.encoder = SpeechTokenizerEncoder(config.seanet, bidirectional=config.bidirectional)
        self.quantizer = EuclideanResidualVQ(
            config.num_quantizers, config.codebook_size, config.seanet.latent_dim
        )
        latent_dim = config.seanet.latent_dim
        self.transform: nn.Module = (
            nn.Identity()
            if config.semantic_dim == latent_dim
            else nn.Linear(latent_dim, config.semantic_dim)
        )
        self.decoder = SEANetDecoder(config.seanet)

    # -- Codec attributes ---------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.seanet.channels

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
        return self.config.seanet.latent_dim

    def num_frames(self, samples: int) -> int:
        """Frames :meth:`encode` makes of ``samples`` samples: ``ceil(samples / hop_length)``."""
        return max(0, -(-samples // self.hop_length))

    # -- encode / decode ----------------------------------------------------------------------

    def check_audio(self, audio: Tensor, sample_rate: int | None = None) -> Tensor:
        """Validate audio ``(b, c, t)`` for this model (channels, finite, non-empty, sample rate)."""
        return check_audio(
            audio,
            channels=self.channels,
            sample_rate=sample_rate,
            expected_sample_rate=self.sample_rate,
            what="SpeechTokenizer input",
        )

    def _latents(self, audio: Tensor) -> Tensor:
        audio = audio.to(self.quantizer.codebooks.dtype)
        return rearrange(self.encoder(audio), "b d n -> b n d")

    def _levels(self, num_quantizers: int | None) -> int:
        q = self.num_quantizers if num_quantizers is None else num_quantizers
        if not 1 <= q <= self.num_quantizers:
            raise ValueError(f"num_quantizers must be in [1, {self.num_quantizers}], got {q}")
        return q

    def encode(
        self,
        audio: Tensor,
        lengths: Tensor | None = None,
        *,
        num_quantizers: int | None = None,
        sample_rate: int | None = None,
    ) -> Tensor:
        """Audio ``(b, c, t)`` in [-1, 1] -> codes ``(b, ceil(t / hop_length), q)`` long.

        Args:
            audio: waveform at ``self.sample_rate``.
            lengths: ``(b,)`` real samples per item (None: all ``t``); item ``i`` gets
                :meth:`num_frames` ``(lengths[i])`` frames, those it would get alone, then 0.
            num_quantizers: levels to return (default all); ``1`` gives RVQ-1 alone.
            sample_rate: the rate of ``audio``, checked against the model's when given.
        """
        self.check_audio(audio, sample_rate)
        q = self._levels(num_quantizers)

        def encode(x: Tensor) -> Tensor:
            return self.quantizer.encode(self._latents(x), q)

        with torch.inference_mode():
            return encode_ragged(encode, audio, lengths, num_frames=self.num_frames)

    def encode_latents(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Audio ``(b, c, t)`` -> continuous latents ``(b, n, d)`` before quantization."""
        self.check_audio(audio)
        with torch.inference_mode():
            return encode_ragged(self._latents, audio, lengths, num_frames=self.num_frames)

    def codes_to_latents(self, codes: Tensor, *, first_level: int = 0) -> Tensor:
        """Codes ``(b, n, q)`` of levels ``first_level .. first_level + q - 1`` -> latents ``(b, n, d)``.

        The sum of their codebook vectors; ``first_level=1`` takes RVQ-2.. alone (the
        reference's ``st``).
        """
        if not 0 <= first_level < self.num_quantizers:
            raise ValueError(
                f"first_level must be in [0, {self.num_quantizers}), got {first_level}"
            )
        check_codes(
            codes,
            codebook_size=self.codebook_size,
            max_quantizers=self.num_quantizers - first_level,
        )
        with torch.inference_mode():
            books = self.quantizer.codebooks[first_level : first_level + codes.shape[-1]]
            out = torch.zeros((), device=codes.device, dtype=books.dtype)
            for level in range(codes.shape[-1]):  # in order, as the reference sums them
                out = out + nn.functional.embedding(codes[..., level], books[level])
            return out

    def decode_latents(self, latents: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Latents ``(b, n, d)`` -> audio ``(b, c, n * hop_length)``; 0 past ``lengths[i]`` frames."""
        if latents.ndim != 3 or latents.shape[-1] != self.latent_dim:
            raise ValueError(
                f"latents must have shape (b, n, {self.latent_dim}), got {tuple(latents.shape)}"
            )
        with torch.inference_mode():
            return decode_ragged(self._audio, latents, lengths, hop_length=self.hop_length)

    def _audio(self, latents: Tensor) -> Tensor:
        return self.decoder(rearrange(latents, "b n d -> b d n"))

    def decode(
        self, codes: Tensor, lengths: Tensor | None = None, *, first_level: int = 0
    ) -> Tensor:
        """Codes ``(b, n, q)`` -> audio ``(b, c, n * hop_length)``, 0 past ``lengths[i]`` frames.

        ``first_level``: the level of ``codes[..., 0]`` (see :meth:`codes_to_latents`). The
        output may be up to ``hop_length - 1`` samples longer than the encoded audio.
        """

        def decode(x: Tensor) -> Tensor:
            return self._audio(self.codes_to_latents(x, first_level=first_level))

        with torch.inference_mode():
            return decode_ragged(decode, codes, lengths, hop_length=self.hop_length)

    def semantic_features(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Audio ``(b, c, t)`` -> RVQ-1's quantized latents projected to ``(b, n, e)``.

        The features trained to match HuBERT's (the reference's ``forward(...)[2]``).
        """
        self.check_audio(audio)

        def features(x: Tensor) -> Tensor:
            codes = self.quantizer.encode(self._latents(x), 1)
            return self.transform(self.quantizer.decode(codes))

        with torch.inference_mode():
            return encode_ragged(features, audio, lengths, num_frames=self.num_frames)

    def forward(self, audio: Tensor) -> Tensor:
        """Encode and decode, trimmed to the input length."""
        return self.decode(self.encode(audio))[..., : audio.shape[-1]]

    def semantic_tokenizer(self) -> SpeechTokenizerSemantic:
        """RVQ-1 as a ``SemanticTokenizer`` (tokens ``(b, n)`` at :attr:`frame_rate`)."""
        return SpeechTokenizerSemantic(self)

    # -- official checkpoints -----------------------------------------------------------------

    @classmethod
    def from_official(
        cls,
        path: str | os.PathLike,
        *,
        config: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ) -> SpeechTokenizer:
        """Load the official ``SpeechTokenizer.pt`` and its ``config.json`` from a local path.

        Args:
            path: the ``.pt`` file, or the directory holding ``SpeechTokenizer.pt`` and
                ``config.json`` (as in ``fnlp/SpeechTokenizer/speechtokenizer_hubert_avg``).
            config: the ``config.json`` (default: the one beside the ``.pt`` file).
            device: where the weights go.
        """
        from .speechtokenizer_loading import load_official

        return load_official(path, config=config, device=device)


class SpeechTokenizerSemantic(nn.Module):
    """SpeechTokenizer's RVQ-1 as a ``SemanticTokenizer``: ``(b, c, t)`` audio -> ``(b, n)`` tokens.

    Only the encoder and the first codebook run. Holds the codec it reads (not a copy).
    """

    def __init__(self, codec: SpeechTokenizer):
        super().__init__()
        self.codec = codec

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.codec.frame_rate

    @property
    def codebook_size(self) -> int:
        return self.codec.codebook_size

    def num_frames(self, samples: int) -> int:
        """Tokens :meth:`tokenize` makes of ``samples`` samples: ``ceil(samples / hop_length)``."""
        return self.codec.num_frames(samples)

    def tokenize(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``(b, c, t)`` audio and ``(b,)`` real samples -> ``(b, n)`` RVQ-1 tokens, 0 past each item."""
        return self.codec.encode(audio, lengths, num_quantizers=1)[..., 0]
