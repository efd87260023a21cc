"""EnCodec (Défossez et al. 2022) for inference, in our own code, loading the official weights.

SEANet encoder -> residual vector quantizer with Euclidean codebooks -> SEANet decoder.
The bandwidth picks how many of the codebooks are used: ``bandwidth * 1000 /
(frame_rate * log2(codebook_size))`` levels, so the 24 kHz model (75 Hz, 32 x 1024) uses
2 / 4 / 8 / 16 / 32 levels at 1.5 / 3 / 6 / 12 / 24 kbps.

Official checkpoints (the ``encodec_24khz-*.th`` state dict and the Hugging Face
``facebook/encodec_24khz`` directory) load with :meth:`EnCodec.from_official`; Cadence's own
``save_pretrained`` / ``load_pretrained`` also work. Training (EMA codebooks, losses,
discriminators) is not part of this class; the 24 kHz model is causal and streams
(:meth:`EnCodec.stream_encoder`, :meth:`EnCodec.stream_decoder`).
"""

# b batch | c audio channels | t samples | n frames | q quantizer levels | v codebook entries | d latent dim

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from cadence.core.audio import check_audio
from cadence.core.checkpoint import CheckpointError, PretrainedMixin
from cadence.core.config import Config, ConfigError

from .conv import fold_weight_norm
from .nesting import nest_format1
from .quantizer import CodeRangeError, check_code_values
from .ragged import decode_ragged, encode_ragged
from .seanet import SEANetConfig, SEANetDecoder, SEANetEncoder

if TYPE_CHECKING:
    from .streaming import StreamingDecoder, StreamingEncoder

__all__ = ["EnCodec", "EnCodecConfig", "EuclideanResidualVQ", "check_codes"]


def _official_seanet() -> SEANetConfig:
    """The SEANet of the official 24 kHz model: causal, 1x1-conv shortcuts, hop 320."""
    return SEANetConfig(causal=True, true_skip=False)


@dataclass(frozen=True, kw_only=True)
class EnCodecConfig(Config):
    """Everything that defines an EnCodec model. Defaults are the official 24 kHz model.

    Attributes:
        sample_rate: audio sample rate in Hz.
        seanet: the encoder and decoder; ``seanet.latent_dim`` is also the codebook width.
        codebook_size: entries per codebook.
        n_codebooks: codebooks stored (levels at the highest bandwidth).
        target_bandwidths: the bandwidths (kbps) the model was trained for.
        bandwidth: the bandwidth :meth:`EnCodec.encode` uses unless told otherwise.
    """

    sample_rate: int = 24000
    seanet: SEANetConfig = field(default_factory=_official_seanet)
    codebook_size: int = 1024
    n_codebooks: int = 32
    target_bandwidths: tuple[float, ...] = (1.5, 3.0, 6.0, 12.0, 24.0)
    bandwidth: float = 6.0

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ConfigError(f"EnCodecConfig.sample_rate must be positive, got {self.sample_rate}")
        if self.bandwidth not in self.target_bandwidths:
            raise ConfigError(
                f"bandwidth {self.bandwidth} is not one of target_bandwidths {list(self.target_bandwidths)}"
            )
        if self.codebook_size < 2:
            raise ConfigError("codebook_size must be at least 2")
        if (
            max(self.target_bandwidths)
            and self.quantizers_for(max(self.target_bandwidths)) > self.n_codebooks
        ):
            raise ConfigError(
                f"target bandwidth {max(self.target_bandwidths)} kbps needs "
                f"{self.quantizers_for(max(self.target_bandwidths))} codebooks but n_codebooks={self.n_codebooks}"
            )

    @classmethod
    def upgrade_dict(cls, data: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Format 1 held the SEANet settings as flat keys, under audiocraft's names; nest them."""
        data = super().upgrade_dict(data, from_version)
        if from_version < 2 and "seanet" not in data:
            if "ratios" in data:  # decoder order then, encoder order now
                data["strides"] = list(reversed(data.pop("ratios")))
            nest_format1(
                data,
                "seanet",
                SEANetConfig,
                renames={"dimension": "latent_dim"},
                base=_official_seanet(),
            )
        return data

    @property
    def hop_length(self) -> int:
        return self.seanet.hop_length

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def quantizers_for(self, bandwidth: float) -> int:
        """Levels used at ``bandwidth`` kbps (EnCodec: ``bw * 1000 / (ceil(frame_rate) * log2 v)``)."""
        bits_per_level = math.ceil(self.frame_rate) * math.log2(self.codebook_size)
        return max(1, math.floor(bandwidth * 1000 / bits_per_level))

    @classmethod
    def encodec_24khz(cls, bandwidth: float = 6.0) -> EnCodecConfig:
        """The official 24 kHz mono model (``encodec_24khz-d7cc33bc.th``, ``facebook/encodec_24khz``)."""
        return cls(bandwidth=bandwidth)

    @classmethod
    def tiny(cls) -> EnCodecConfig:
        """A small causal model for tests (hop 8 at 8 kHz -> 1 kHz frames)."""
        return cls(
            sample_rate=8000,
            seanet=_official_seanet().replace(latent_dim=16, n_filters=4, strides=(2, 4)),
            codebook_size=64,
            n_codebooks=4,
            target_bandwidths=(6.0, 12.0, 24.0),
            bandwidth=12.0,
        )


def check_codes(
    codes: Tensor, *, codebook_size: int, max_quantizers: int, lengths: Tensor | None = None
) -> None:
    """Validate codes ``(b, n, q)``: integer, in ``[0, codebook_size)``, ``1 <= q <= max_quantizers``.

    ``lengths`` ``(b,)``: real frames per item; only those are range-checked. Raises
    CodeRangeError (an IdRangeError), the error SoundStream raises for the same problems.
    """
    check_code_values(codes, codebook_size, lengths=lengths)
    q = codes.shape[-1]
    if q > max_quantizers:
        raise CodeRangeError(
            f"codes have {q} quantizer levels but the model has only {max_quantizers}; "
            f"keep the first levels: codes[..., :{max_quantizers}]"
        )
    if q == 0:
        raise CodeRangeError("codes have 0 quantizer levels; at least one is needed")
    if codes.shape[1] == 0:
        raise CodeRangeError("codes have 0 frames; there is nothing to decode")


class EuclideanResidualVQ(nn.Module):
    """EnCodec's residual VQ at inference: nearest codebook vector per level, on the residual.

    ``codebooks`` ``(q, k, d)`` are the EMA-trained ``embed`` tensors of the checkpoint.
    """

    def __init__(self, n_codebooks: int, codebook_size: int, dim: int):
        super().__init__()
        self.codebook_size = codebook_size
        self.register_buffer("codebooks", torch.zeros(n_codebooks, codebook_size, dim))
        self.codebooks: Tensor

    @property
    def n_codebooks(self) -> int:
        return self.codebooks.shape[0]

    def encode(self, latents: Tensor, n_q: int) -> Tensor:
        """Latents ``(b, n, d)`` -> codes ``(b, n, n_q)``."""
        b, n, d = latents.shape
        residual = latents.reshape(b * n, d)
        codebooks = self.codebooks[:n_q]
        # ||x||^2 - 2 x.e + ||e||^2 as one matmul per level (the expression EnCodec uses, so
        # near-ties resolve the same way); ||e||^2 is computed once for all levels.
        squared_norms = codebooks.pow(2).sum(-1)  # (q, k)
        indices = []
        for level in range(n_q):
            embed = codebooks[level]
            dist = -(
                residual.pow(2).sum(1, keepdim=True)
                - 2 * residual @ embed.t()
                + squared_norms[level]
            )
            index = dist.max(dim=-1).indices
            residual = residual - F.embedding(index, embed)
            indices.append(index)
        return rearrange(torch.stack(indices, dim=-1), "(b n) q -> b n q", b=b)

    def decode(self, codes: Tensor) -> Tensor:
        """Codes ``(b, n, q)`` -> quantized latents ``(b, n, d)``, the sum over levels."""
        out = torch.zeros((), device=codes.device, dtype=self.codebooks.dtype)
        # Summed level by level in order (as EnCodec does), so outputs match it bit for bit.
        for level in range(codes.shape[-1]):
            out = out + F.embedding(codes[..., level], self.codebooks[level])
        return out


class EnCodec(PretrainedMixin, nn.Module):
    """EnCodec neural audio codec (inference). Implements ``Codec`` and ``LatentCodec``.

    Example:
        >>> model = EnCodec(EnCodecConfig.tiny()).eval()
        >>> codes = model.encode(torch.randn(1, 1, 800))   # (b, n, q) long
        >>> tuple(codes.shape)
        (1, 100, 2)
        >>> tuple(model.decode(codes).shape)
        (1, 1, 800)
    """

    config_class = EnCodecConfig

    def __init__(self, config: EnCodecConfig):
        super().__init__()
        self.config = config
        self.encoder = SEANetEncoder(config.seanet)
        self.decoder = SEANetDecoder(config.seanet)
        self.quantizer = EuclideanResidualVQ(
            config.n_codebooks, config.codebook_size, config.seanet.latent_dim
        )
        self.bandwidth = config.bandwidth

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
        return self.config.frame_rate

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def latent_dim(self) -> int:
        return self.config.seanet.latent_dim

    def num_frames(self, samples: int) -> int:
        """Frames :meth:`encode` makes of ``samples`` samples: ``ceil(samples / hop_length)``."""
        return max(0, -(-samples // self.hop_length))

    @property
    def num_quantizers(self) -> int:
        """Levels :meth:`encode` returns at the current bandwidth."""
        return self.config.quantizers_for(self.bandwidth)

    def set_bandwidth(self, bandwidth: float) -> None:
        """Choose the bandwidth (kbps) that :meth:`encode` uses; one of ``target_bandwidths``."""
        self.bandwidth = self._check_bandwidth(bandwidth)

    def _check_bandwidth(self, bandwidth: float | None) -> float:
        if bandwidth is None:
            return self.bandwidth
        if bandwidth not in self.config.target_bandwidths:
            raise ValueError(
                f"bandwidth {bandwidth} kbps is not supported by this model; "
                f"choose one of {list(self.config.target_bandwidths)}"
            )
        return float(bandwidth)

    # -- encode / decode ----------------------------------------------------------------------

    def check_audio(self, audio: Tensor, sample_rate: int | None = None) -> Tensor:
        """Validate audio ``(b, c, t)`` for this model (channels, finite, non-empty, sample rate)."""
        return check_audio(
            audio,
            channels=self.channels,
            sample_rate=sample_rate,
            expected_sample_rate=self.sample_rate,
            what="EnCodec input",
        )

    def _encoder_input(self, audio: Tensor) -> Tensor:
        return audio.to(self.quantizer.codebooks.dtype)

    def _latents(self, audio: Tensor) -> Tensor:
        return rearrange(self.encoder(self._encoder_input(audio)), "b d n -> b n d")

    def _audio(self, latents: Tensor) -> Tensor:
        return self.decoder(rearrange(latents, "b n d -> b d n"))

    def encode_latents(
        self, audio: Tensor, lengths: Tensor | None = None, *, sample_rate: int | None = None
    ) -> Tensor:
        """Audio ``(b, c, t)`` -> continuous latents ``(b, ceil(t / hop_length), d)`` before quantization.

        ``lengths`` as in :meth:`encode`: frames past an item's own are 0.
        """
        self.check_audio(audio, sample_rate)
        with torch.inference_mode():
            return encode_ragged(self._latents, audio, lengths, num_frames=self.num_frames)

    def quantize_latents(self, latents: Tensor, *, bandwidth: float | None = None) -> Tensor:
        """Latents ``(b, n, d)`` -> codes ``(b, n, q)`` at ``bandwidth`` (default: the model's)."""
        n_q = self.config.quantizers_for(self._check_bandwidth(bandwidth))
        with torch.inference_mode():
            return self.quantizer.encode(latents, n_q)

    def encode(
        self,
        audio: Tensor,
        lengths: Tensor | None = None,
        *,
        bandwidth: float | None = None,
        sample_rate: int | None = None,
    ) -> Tensor:
        """Audio ``(b, c, t)`` in [-1, 1] -> codes ``(b, ceil(t / hop_length), q)`` long.

        Args:
            audio: waveform at ``self.sample_rate`` with ``self.channels`` channels.
            lengths: ``(b,)`` real samples per item (None: all ``t``); item ``i`` gets
                :meth:`num_frames` ``(lengths[i])`` frames, those it would get alone, then 0.
            bandwidth: kbps, one of ``config.target_bandwidths`` (default: ``self.bandwidth``);
                sets ``q``.
            sample_rate: the rate of ``audio``, checked against the model's when given.
        """
        self.check_audio(audio, sample_rate)
        n_q = self.config.quantizers_for(self._check_bandwidth(bandwidth))

        def encode(x: Tensor) -> Tensor:
            return self.quantizer.encode(self._latents(x), n_q)

        with torch.inference_mode():
            return encode_ragged(encode, audio, lengths, num_frames=self.num_frames)

    def codes_to_latents(self, codes: Tensor) -> Tensor:
        """Codes ``(b, n, q)`` -> quantized latents ``(b, n, d)`` (sum of the codebook vectors)."""
        check_codes(codes, codebook_size=self.codebook_size, max_quantizers=self.config.n_codebooks)
        with torch.inference_mode():
            return self.quantizer.decode(codes)

    def decode_latents(self, latents: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Latents ``(b, n, d)`` (quantized or not) -> audio ``(b, c, n * hop_length)``.

        ``lengths`` ``(b,)``: real frames per item (None: all ``n``); audio past
        ``lengths[i] * hop_length`` is 0.
        """
        if latents.ndim != 3 or latents.shape[-1] != self.latent_dim:
            raise ValueError(
                f"latents must have shape (b, n, {self.latent_dim}), got {tuple(latents.shape)}"
            )
        with torch.inference_mode():
            return decode_ragged(self._audio, latents, lengths, hop_length=self.hop_length)

    def decode(self, codes: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Codes ``(b, n, q)``, any ``q <= config.n_codebooks`` -> audio ``(b, c, n * hop_length)``.

        The output may be up to ``hop_length - 1`` samples longer than the encoded audio
        (the encoder pads the last frame); trim it to the input length. ``lengths`` ``(b,)``:
        real frames per item (None: all ``n``); audio past ``lengths[i] * hop_length`` is 0
        and the padding frames are never read.
        """
        with torch.inference_mode():
            # codes_to_latents checks the codes of each item's real frames
            return decode_ragged(self._decode_codes, codes, lengths, hop_length=self.hop_length)

    def _decode_codes(self, codes: Tensor) -> Tensor:
        return self._audio(self.codes_to_latents(codes))

    def forward(self, audio: Tensor, *, bandwidth: float | None = None) -> Tensor:
        """Encode and decode, trimmed to the input length."""
        return self.decode(self.encode(audio, bandwidth=bandwidth))[..., : audio.shape[-1]]

    # -- streaming (causal models) ------------------------------------------------------------

    def fold_weight_norm(self) -> EnCodec:
        """Fold weight normalisation into plain conv weights, in place, for faster inference.

        Outputs are unchanged (the same kernels, computed once instead of at every call).
        A folded model cannot be saved in the checkpoint format: save before folding.
        Returns ``self``: ``EnCodec.from_official(path).fold_weight_norm()``.
        """
        fold_weight_norm(self)
        self._weight_norm_folded = True
        return self

    def save_pretrained(self, directory, **kwargs):
        if getattr(self, "_weight_norm_folded", False):
            raise CheckpointError(
                "this EnCodec's weight norm was folded for inference (fold_weight_norm), so its "
                "weights no longer match the checkpoint format; save the model before folding"
            )
        return super().save_pretrained(directory, **kwargs)

    def stream_encoder(self, *, bandwidth: float | None = None) -> StreamingEncoder:
        """A stateful chunk-by-chunk encoder; its codes equal :meth:`encode`'s (causal models only)."""
        from .streaming import StreamingEncoder

        bandwidth = self._check_bandwidth(bandwidth)
        return StreamingEncoder(
            self.encoder,
            lambda latents: self.quantize_latents(latents, bandwidth=bandwidth),
            check=self.check_audio,
        )

    def stream_decoder(self) -> StreamingDecoder:
        """A stateful chunk-by-chunk decoder; its audio equals :meth:`decode`'s (causal models only)."""
        from .streaming import StreamingDecoder

        return StreamingDecoder(self.decoder, self.codes_to_latents)

    # -- official checkpoints -----------------------------------------------------------------

    @classmethod
    def from_official(
        cls, path: str | os.PathLike, *, bandwidth: float = 6.0, device: str | torch.device = "cpu"
    ) -> EnCodec:
        """Load an official EnCodec checkpoint from a local path.

        Args:
            path: the original ``encodec_24khz-d7cc33bc.th`` state dict, or a Hugging Face
                ``facebook/encodec_24khz`` directory (config.json + model.safetensors or
                pytorch_model.bin). The format is detected.
            bandwidth: kbps used by :meth:`encode` (1.5, 3, 6, 12 or 24 for the 24 kHz model).
            device: where the weights go.
        """
        from .encodec_loading import load_official

        return load_official(path, bandwidth=bandwidth, device=device)
