"""SoundStream (Zeghidour et al. 2021): a SEANet autoencoder with a residual quantizer.

    audio (b, c, t) --SEANetEncoder--> latents (b, n, d) --ResidualQuantizer--> codes (b, n, q)
    codes --quantizer.decode--> quantized latents (b, n, d) --SEANetDecoder--> audio (b, c, n h)

The model is trained as a GAN (:mod:`cadence.codec.training`); quantizer dropout during
training lets one model decode any number of levels ``1..num_quantizers`` (SoundStream
sec. 3.3), i.e. serve several bitrates. It conforms to ``cadence.core.interfaces.Codec`` and
``LatentCodec``. Frames are ``ceil(t / hop_length)``: the tail of the audio is padded to a
whole frame, as in EnCodec, and decoding returns ``n * hop_length`` samples.
"""

# b batch | c channels | t samples | n frames | q quantizer levels | d latent dim | h hop length

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from cadence.core.audio import check_audio, check_sample_rate
from cadence.core.checkpoint import CheckpointError, PretrainedMixin
from cadence.core.config import Config

from .conv import fold_weight_norm
from .quantizer import QuantizerKind, ResidualQuantizer
from .seanet import SEANetDecoder, SEANetEncoder

if TYPE_CHECKING:
    from .streaming import StreamingDecoder, StreamingEncoder

__all__ = ["SoundStream", "SoundStreamConfig", "SoundStreamOutput"]


@dataclass(frozen=True, kw_only=True)
class SoundStreamConfig(Config):
    """Everything that defines a SoundStream.

    ``strides`` are in encoder order (the first is applied first); their product is the hop
    length, so 16 kHz with (2, 4, 5, 8) gives 50 frames/s and 24 kHz with the same strides
    75 frames/s. The SEANet fields mirror audiocraft's ``SEANetEncoder`` arguments.
    """

    sample_rate: int = 16000
    channels: int = 1
    strides: tuple[int, ...] = (2, 4, 5, 8)
    latent_dim: int = 128
    n_filters: int = 32
    n_residual_layers: int = 1
    causal: bool = False
    lstm: int = 2
    activation: str = "ELU"
    norm: Literal["weight_norm", "time_group_norm", "none"] = "weight_norm"
    pad_mode: Literal["reflect", "constant", "replicate"] = "reflect"
    kernel_size: int = 7
    residual_kernel_size: int = 3
    last_kernel_size: int = 7
    dilation_base: int = 2
    true_skip: bool = True
    compress: int = 2
    # quantizer
    quantizer: QuantizerKind = "rvq"
    num_quantizers: int = 8
    codebook_size: int = 1024
    codebook_dim: int | None = None
    groups: int = 1  # grouped_rvq only; codes then have num_quantizers * groups columns
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)  # fsq only; codebook_size = their product
    kmeans_init: bool = True
    kmeans_iters: int = 10
    ema_decay: float = 0.99
    threshold_ema_dead_code: float = 2.0
    commitment_weight: float = 1.0
    quantize_dropout: bool = True
    quantize_dropout_cutoff_index: int = 0
    rotation_trick: bool = True

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.channels <= 0:
            raise ValueError("SoundStreamConfig: sample_rate and channels must be positive")
        if not self.strides or any(s < 1 for s in self.strides):
            raise ValueError(f"SoundStreamConfig.strides must be positive integers, got {self.strides}")
        if self.causal and self.norm == "time_group_norm":
            raise ValueError("time_group_norm looks at the whole clip; a causal model needs weight_norm or none")
        if self.quantizer == "grouped_rvq" and self.latent_dim % self.groups:
            raise ValueError(f"groups ({self.groups}) must divide latent_dim ({self.latent_dim})")
        if self.quantizer != "grouped_rvq" and self.groups != 1:
            raise ValueError("groups > 1 needs quantizer='grouped_rvq'")

    @property
    def hop_length(self) -> int:
        return math.prod(self.strides)

    @classmethod
    def tiny(cls, **changes) -> SoundStreamConfig:
        """A few thousand parameters, 16 kHz, 50 frames/s: for tests."""
        base = dict(
            sample_rate=16000,
            strides=(2, 4, 5, 8),
            latent_dim=16,
            n_filters=4,
            lstm=0,
            num_quantizers=4,
            codebook_size=64,
        )
        base.update(changes)
        return cls(**base)

    @classmethod
    def speech_16khz(cls, **changes) -> SoundStreamConfig:
        """SoundStream's speech setting: 16 kHz, 50 frames/s, 8 x 1024 codes (4 kbps)."""
        return cls(**{"sample_rate": 16000, "strides": (2, 4, 5, 8), **changes})

    @classmethod
    def general_24khz(cls, **changes) -> SoundStreamConfig:
        """24 kHz, 75 frames/s (EnCodec's rate), 8 x 1024 codes (6 kbps)."""
        return cls(**{"sample_rate": 24000, "strides": (2, 4, 5, 8), **changes})


@dataclass
class SoundStreamOutput:
    """A training forward pass.

    Attributes:
        audio: ``(b, c, t)`` reconstruction, trimmed to the input length.
        codes: ``(b, n, q)``; levels dropped by quantizer dropout are -1.
        commit_loss: scalar commitment loss (already weighted by ``commitment_weight``).
        latents: ``(b, n, d)`` encoder output before quantization.
    """

    audio: Tensor
    codes: Tensor
    commit_loss: Tensor
    latents: Tensor


class SoundStream(PretrainedMixin, nn.Module):
    """A neural audio codec: SEANet encoder/decoder around a residual quantizer.

    Implements ``Codec`` and ``LatentCodec`` (``cadence.core.interfaces``).

    Example:
        >>> model = SoundStream(SoundStreamConfig.tiny())
        >>> codes = model.encode(torch.zeros(1, 1, 16000))   # (1, 50, 4) long
        >>> model.decode(codes[..., :2]).shape                 # 2 of 4 levels
        torch.Size([1, 1, 16000])
    """

    config_class = SoundStreamConfig

    def __init__(self, config: SoundStreamConfig):
        super().__init__()
        self.config = c = config
        seanet = dict(
            channels=c.channels,
            dimension=c.latent_dim,
            n_filters=c.n_filters,
            n_residual_layers=c.n_residual_layers,
            ratios=tuple(reversed(c.strides)),  # SEANet takes decoder order
            activation=c.activation,
            norm=c.norm,
            kernel_size=c.kernel_size,
            residual_kernel_size=c.residual_kernel_size,
            last_kernel_size=c.last_kernel_size,
            dilation_base=c.dilation_base,
            causal=c.causal,
            pad_mode=c.pad_mode,
            true_skip=c.true_skip,
            compress=c.compress,
            lstm=c.lstm,
        )
        self.encoder = SEANetEncoder(**seanet)
        self.decoder = SEANetDecoder(**seanet)
        self.quantizer = ResidualQuantizer(
            dim=c.latent_dim,
            kind=c.quantizer,
            num_quantizers=c.num_quantizers,
            codebook_size=c.codebook_size,
            codebook_dim=c.codebook_dim,
            groups=c.groups,
            fsq_levels=c.fsq_levels,
            kmeans_init=c.kmeans_init,
            kmeans_iters=c.kmeans_iters,
            ema_decay=c.ema_decay,
            threshold_ema_dead_code=c.threshold_ema_dead_code,
            commitment_weight=c.commitment_weight,
            quantize_dropout=c.quantize_dropout,
            quantize_dropout_cutoff_index=c.quantize_dropout_cutoff_index,
            rotation_trick=c.rotation_trick,
        )

    # -- Codec attributes ------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def frame_rate(self) -> float:
        return self.config.sample_rate / self.config.hop_length

    @property
    def num_quantizers(self) -> int:
        """Columns of a full code (levels x groups for grouped RVQ)."""
        return self.quantizer.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def causal(self) -> bool:
        return self.config.causal

    def bandwidth(self, num_quantizers: int | None = None) -> float:
        """Bits per second of a code with ``num_quantizers`` columns (default: all)."""
        q = self.num_quantizers if num_quantizers is None else num_quantizers
        return q * math.log2(self.codebook_size) * self.frame_rate

    # -- training ---------------------------------------------------------------------------

    def forward(self, audio: Tensor) -> SoundStreamOutput:
        """Encode, quantize (updating codebooks in training) and decode ``(b, c, t)`` audio."""
        self._check_audio(audio)
        latents = self._latents(audio)
        result = self.quantizer(latents)
        decoded = self.decoder(rearrange(result.quantized, "b n d -> b d n"))
        return SoundStreamOutput(
            audio=decoded[..., : audio.shape[-1]],
            codes=result.codes,
            commit_loss=result.commit_loss,
            latents=latents,
        )

    # -- Codec / LatentCodec ------------------------------------------------------------------

    def _check_audio(self, audio: Tensor, sample_rate: int | None = None) -> None:
        check_audio(audio, channels=self.channels, what="SoundStream input audio")
        if sample_rate is not None:
            check_sample_rate(sample_rate, self.sample_rate, what="SoundStream input audio")

    def _latents(self, audio: Tensor) -> Tensor:
        return rearrange(self.encoder(audio), "b d n -> b n d")

    @torch.inference_mode()
    def encode(
        self, audio: Tensor, *, num_quantizers: int | None = None, sample_rate: int | None = None
    ) -> Tensor:
        """``(b, c, t)`` audio -> ``(b, ceil(t / hop_length), q)`` long codes.

        Args:
            audio: in [-1, 1] at ``self.sample_rate``.
            num_quantizers: keep the first this many levels (a lower bitrate); default all.
            sample_rate: the audio's rate, checked against the model's when given.
        """
        self._check_audio(audio, sample_rate)
        return self.quantizer.encode(self._latents(audio), num_quantizers)

    @torch.inference_mode()
    def decode(self, codes: Tensor) -> Tensor:
        """``(b, n, q')`` codes, any ``q' <= num_quantizers`` -> ``(b, c, n * hop_length)`` audio."""
        return self.decoder(rearrange(self.quantizer.decode(codes), "b n d -> b d n"))

    @torch.no_grad()
    def encode_latents(self, audio: Tensor, *, sample_rate: int | None = None) -> Tensor:
        """``(b, c, t)`` audio -> ``(b, n, d)`` continuous latents, before quantization."""
        self._check_audio(audio, sample_rate)
        return self._latents(audio)

    @torch.no_grad()
    def codes_to_latents(self, codes: Tensor) -> Tensor:
        """``(b, n, q')`` codes -> ``(b, n, d)`` quantized latents (sum over the given levels)."""
        return self.quantizer.decode(codes)

    # -- inference speed ------------------------------------------------------------------

    def fold_weight_norm(self) -> SoundStream:
        """Fold weight normalisation into plain conv weights, in place, for faster inference.

        Weight norm is a training reparametrisation: every forward recomputes each conv
        weight from its direction and norm (~10% of CPU encode time at 16 kHz). Folding
        computes them once; outputs are unchanged. A folded model is for inference only:
        it cannot be saved in the checkpoint format (save before folding) and should not be
        trained further.

        Returns:
            ``self``, for chaining: ``SoundStream.load_pretrained(d).eval().fold_weight_norm()``.
        """
        fold_weight_norm(self)
        self._weight_norm_folded = True
        return self

    def save_pretrained(self, directory, **kwargs):
        if getattr(self, "_weight_norm_folded", False):
            raise CheckpointError(
                "this SoundStream's weight norm was folded for inference (fold_weight_norm), so "
                "its weights no longer match the checkpoint format; save the model before folding"
            )
        return super().save_pretrained(directory, **kwargs)

    # -- streaming (causal models) ---------------------------------------------------------

    def stream_encoder(self, *, num_quantizers: int | None = None) -> StreamingEncoder:
        """A stateful chunk-by-chunk encoder whose codes equal :meth:`encode`'s (causal models).

        See :mod:`cadence.codec.streaming` (``encode_chunked``, ``encode_file``).
        """
        from .streaming import StreamingEncoder

        q = self.quantizer._check_levels(num_quantizers)
        return StreamingEncoder(
            self.encoder,
            lambda latents: self.quantizer.encode(latents, q),
            check=self._check_audio,
        )

    def stream_decoder(self) -> StreamingDecoder:
        """A stateful chunk-by-chunk decoder whose audio equals :meth:`decode`'s (causal models)."""
        from .streaming import StreamingDecoder

        return StreamingDecoder(self.decoder, self.quantizer.decode)

    @torch.no_grad()
    def decode_latents(self, latents: Tensor, *, quantize: bool = False) -> Tensor:
        """``(b, n, d)`` latents -> ``(b, c, n * hop_length)`` audio.

        Args:
            latents: quantized latents (:meth:`codes_to_latents`) or a model's prediction of them.
            quantize: snap ``latents`` to the codebooks first (all levels), as the decoder
                only ever saw quantized latents in training.
        """
        if latents.ndim != 3 or latents.shape[-1] != self.latent_dim:
            raise ValueError(
                f"latents must have shape (b, n, {self.latent_dim}), got {tuple(latents.shape)}"
            )
        if quantize:
            latents = self.quantizer.decode(self.quantizer.encode(latents))
        return self.decoder(rearrange(latents, "b n d -> b d n"))
