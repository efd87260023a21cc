"""SoundStream (Zeghidour et al. 2021): a SEANet autoencoder with a residual quantizer.

    audio (b, c, t) --SEANetEncoder--> latents (b, n, d) --ResidualQuantizer--> codes (b, n, q)
    codes --quantizer.decode--> quantized latents (b, n, d) --SEANetDecoder--> audio (b, c, n * hop_length)

The model is trained as a GAN (:mod:`cadence.codec.training`); quantizer dropout during
training lets one model decode any number of levels ``1..num_quantizers`` (SoundStream
sec. 3.3), i.e. serve several bitrates. It conforms to ``cadence.core.interfaces.Codec`` and
``LatentCodec``. Frames are ``ceil(t / hop_length)``: the tail of the audio is padded to a
whole frame, as in EnCodec, and decoding returns ``n * hop_length`` samples.
"""

# b batch | c audio channels | t samples | n frames | q quantizer levels | d latent dim

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from einops import rearrange
from torch import Tensor, nn

from cadence.core.audio import check_audio, check_sample_rate
from cadence.core.checkpoint import CheckpointError, PretrainedMixin
from cadence.core.config import Config, ConfigError

from .conv import fold_weight_norm
from .nesting import nest_format1, with_changes
from .quantizer import QuantizerConfig, ResidualQuantizer
from .ragged import decode_ragged, encode_ragged
from .seanet import SEANetConfig, SEANetDecoder, SEANetEncoder

if TYPE_CHECKING:
    from .streaming import StreamingDecoder, StreamingEncoder

__all__ = ["SoundStream", "SoundStreamConfig", "SoundStreamOutput"]


@dataclass(frozen=True, kw_only=True)
class SoundStreamConfig(Config):
    """Everything that defines a SoundStream.

    The hop length is the product of ``seanet.strides`` (encoder order), so 16 kHz with
    (2, 4, 5, 8) gives 50 frames/s and 24 kHz with the same strides 75 frames/s.

    Attributes:
        sample_rate: audio samples per second.
        seanet: the encoder and the decoder that mirrors it.
        quantizer: the residual quantizer between them.
    """

    sample_rate: int = 16000
    seanet: SEANetConfig = field(default_factory=SEANetConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ConfigError(
                f"SoundStreamConfig.sample_rate must be positive, got {self.sample_rate}"
            )
        if self.quantizer.kind == "grouped_rvq" and self.seanet.latent_dim % self.quantizer.groups:
            raise ConfigError(
                f"quantizer.groups ({self.quantizer.groups}) must divide seanet.latent_dim "
                f"({self.seanet.latent_dim})"
            )

    @classmethod
    def upgrade_dict(cls, data: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Format 1 held every SEANet and quantizer setting as a flat key; nest them."""
        data = super().upgrade_dict(data, from_version)
        if from_version < 2:
            # format 1 named the quantizer kind `quantizer`; that key now holds the whole config
            renames = {"quantizer": "kind"} if isinstance(data.get("quantizer"), str) else {}
            nest_format1(data, "quantizer", QuantizerConfig, renames=renames)
            nest_format1(data, "seanet", SEANetConfig)
        return data

    @property
    def hop_length(self) -> int:
        return self.seanet.hop_length

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @classmethod
    def tiny(cls, **changes: Any) -> SoundStreamConfig:
        """A few thousand parameters, 16 kHz, 50 frames/s: for tests.

        ``changes`` replace fields; a dict for ``seanet`` or ``quantizer`` changes only the
        keys it names (``tiny(seanet={"causal": True})``).
        """
        base = cls(
            sample_rate=16000,
            seanet=SEANetConfig(strides=(2, 4, 5, 8), latent_dim=16, n_filters=4, lstm=0),
            quantizer=QuantizerConfig(num_quantizers=4, codebook_size=64),
        )
        return with_changes(base, changes)

    @classmethod
    def speech_16khz(cls, **changes: Any) -> SoundStreamConfig:
        """SoundStream's speech setting: 16 kHz, 50 frames/s, 8 x 1024 codes (4 kbps)."""
        return with_changes(
            cls(sample_rate=16000, seanet=SEANetConfig(strides=(2, 4, 5, 8))), changes
        )

    @classmethod
    def general_24khz(cls, **changes: Any) -> SoundStreamConfig:
        """24 kHz, 75 frames/s (EnCodec's rate), 8 x 1024 codes (6 kbps)."""
        return with_changes(
            cls(sample_rate=24000, seanet=SEANetConfig(strides=(2, 4, 5, 8))), changes
        )


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

    Implements ``Codec`` and ``LatentCodec`` (``cadence.core.interfaces``): padded batches
    travel with ``lengths`` and each item's result is what it would get alone.

    Example:
        >>> model = SoundStream(SoundStreamConfig.tiny())
        >>> codes = model.encode(torch.zeros(1, 1, 16000))   # (1, 50, 4) long
        >>> model.decode(codes[..., :2]).shape                 # 2 of 4 levels
        torch.Size([1, 1, 16000])
    """

    config_class = SoundStreamConfig

    def __init__(self, config: SoundStreamConfig):
        super().__init__()
        self.config = config
        self.encoder = SEANetEncoder(config.seanet)
        self.decoder = SEANetDecoder(config.seanet)
        self.quantizer = ResidualQuantizer(config.quantizer, dim=config.seanet.latent_dim)

    # -- Codec attributes ------------------------------------------------------------------

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
        return self.config.frame_rate

    @property
    def num_quantizers(self) -> int:
        """Columns of a full code (levels x groups for grouped RVQ)."""
        return self.quantizer.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def latent_dim(self) -> int:
        return self.config.seanet.latent_dim

    @property
    def causal(self) -> bool:
        return self.config.seanet.causal

    def num_frames(self, samples: int) -> int:
        """Frames :meth:`encode` makes of ``samples`` samples: ``ceil(samples / hop_length)``."""
        return max(0, -(-samples // self.hop_length))

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
        decoded = self._audio(result.quantized)
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

    def _audio(self, latents: Tensor) -> Tensor:
        return self.decoder(rearrange(latents, "b n d -> b d n"))

    @torch.inference_mode()
    def encode(
        self,
        audio: Tensor,
        lengths: Tensor | None = None,
        *,
        num_quantizers: int | None = None,
        sample_rate: int | None = None,
    ) -> Tensor:
        """``(b, c, t)`` audio -> ``(b, ceil(t / hop_length), q)`` long codes.

        Args:
            audio: in [-1, 1] at ``self.sample_rate``.
            lengths: ``(b,)`` real samples per item (None: all ``t``); item ``i`` gets
                :meth:`num_frames` ``(lengths[i])`` frames, those it would get alone, then 0.
            num_quantizers: keep the first this many levels (a lower bitrate); default all.
            sample_rate: the audio's rate, checked against the model's when given.
        """
        self._check_audio(audio, sample_rate)
        q = self.quantizer._check_levels(num_quantizers)

        def encode(x: Tensor) -> Tensor:
            return self.quantizer.encode(self._latents(x), q)

        return encode_ragged(encode, audio, lengths, num_frames=self.num_frames)

    @torch.inference_mode()
    def decode(self, codes: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``(b, n, q')`` codes, any ``q' <= num_quantizers`` -> ``(b, c, n * hop_length)`` audio.

        ``lengths`` ``(b,)``: real frames per item (None: all ``n``); item ``i``'s audio past
        ``lengths[i] * hop_length`` samples is 0, and its padding frames are never read.
        """
        # quantizer.decode checks the codes of each item's real frames
        return decode_ragged(self._decode_codes, codes, lengths, hop_length=self.hop_length)

    def _decode_codes(self, codes: Tensor) -> Tensor:
        return self._audio(self.quantizer.decode(codes))

    @torch.no_grad()
    def encode_latents(
        self, audio: Tensor, lengths: Tensor | None = None, *, sample_rate: int | None = None
    ) -> Tensor:
        """``(b, c, t)`` audio -> ``(b, n, d)`` continuous latents, before quantization.

        ``lengths`` as in :meth:`encode`: frames past an item's own are 0.
        """
        self._check_audio(audio, sample_rate)
        return encode_ragged(self._latents, audio, lengths, num_frames=self.num_frames)

    @torch.no_grad()
    def codes_to_latents(self, codes: Tensor) -> Tensor:
        """``(b, n, q')`` codes -> ``(b, n, d)`` quantized latents (sum over the given levels)."""
        return self.quantizer.decode(codes)

    @torch.no_grad()
    def decode_latents(
        self, latents: Tensor, lengths: Tensor | None = None, *, quantize: bool = False
    ) -> Tensor:
        """``(b, n, d)`` latents -> ``(b, c, n * hop_length)`` audio.

        Args:
            latents: quantized latents (:meth:`codes_to_latents`) or a model's prediction of them.
            lengths: ``(b,)`` real frames per item (None: all ``n``); audio past
                ``lengths[i] * hop_length`` is 0.
            quantize: snap ``latents`` to the codebooks first (all levels), as the decoder
                only ever saw quantized latents in training.
        """
        if latents.ndim != 3 or latents.shape[-1] != self.latent_dim:
            raise ValueError(
                f"latents must have shape (b, n, {self.latent_dim}), got {tuple(latents.shape)}"
            )

        def decode(x: Tensor) -> Tensor:
            if quantize:
                x = self.quantizer.decode(self.quantizer.encode(x))
            return self._audio(x)

        return decode_ragged(decode, latents, lengths, hop_length=self.hop_length)

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
