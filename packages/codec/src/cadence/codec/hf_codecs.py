"""DAC and Mimi as Cadence codecs: adapters over ``transformers``' ``DacModel`` and ``MimiModel``.

An adapter, not a re-implementation: the official Hugging Face folders (``descript/dac_16khz``,
``kyutai/mimi``) load through ``from_pretrained(path, local_files_only=True)``, and every number
comes from transformers' own modules. The adapters give them Cadence's shapes and rules:
codes ``(b, n, q)``, latents ``(b, n, d)``, padded batches with ``lengths`` whose results do
not depend on the padding, and (Mimi, a causal codec) chunk-by-chunk streaming
(:mod:`cadence.codec.hf_streaming`). Needs the ``hf`` extra (``transformers``).

Audio is zero-padded on the right to whole frames before encoding (DAC's own preprocessing
does the same), so ``encode`` makes ``ceil(t / hop_length)`` frames and a stream reproduces it.
"""

# b batch | c audio channels | t samples | n frames | q quantizer levels | d latent dim

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from cadence.core.audio import check_audio
from cadence.core.checkpoint import CONFIG_NAME, CheckpointError

from .encodec import check_codes
from .official_files import refuse_cadence_dir
from .ragged import decode_ragged, encode_ragged

if TYPE_CHECKING:
    from .hf_streaming import MimiStreamingDecoder, MimiStreamingEncoder

__all__ = ["DacCodec", "HFCodec", "MimiCodec", "load_hf_model"]


def _no_grad() -> torch.no_grad:
    """``no_grad``, not ``inference_mode``: transformers' Mimi caches its codebooks on first use,
    and an inference-mode cache would break every later call made with autograd on."""
    return torch.no_grad()


def load_hf_model(path: str | os.PathLike, model_type: str, class_name: str) -> Any:
    """``transformers.<class_name>.from_pretrained(path, local_files_only=True)``, in eval mode.

    Checks first that ``path`` is a Hugging Face folder of ``model_type`` and says what it
    is otherwise (another model, a Cadence checkpoint, not a folder).
    """
    path = Path(path)
    hint = f"pass a local Hugging Face {model_type} folder (config.json + model.safetensors)"
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory; {hint}")
    refuse_cadence_dir(path)
    config = path / CONFIG_NAME
    if not config.is_file():
        raise CheckpointError(f"{path} has no {CONFIG_NAME}; {hint}")
    try:
        found = json.loads(config.read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise CheckpointError(f"{config} is not a JSON object ({err}); {hint}") from err
    if found != model_type:
        raise CheckpointError(
            f"{path} holds a Hugging Face {found!r} model, not {model_type!r}; {hint}"
        )
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - the extra is installed in the workspace
        raise ImportError(
            f"loading {model_type} needs transformers: pip install 'cadence-codec[hf]'"
        ) from err
    model_class = getattr(transformers, class_name)
    # local_files_only: nothing is downloaded; transformers reads safetensors, or a .bin with
    # torch.load(weights_only=True), so no pickled code runs.
    return model_class.from_pretrained(path, local_files_only=True).eval()


class HFCodec(nn.Module):
    """What DAC and Mimi share: the Codec attributes, padding to frames, ragged batches.

    Subclasses set ``model`` (the transformers model), ``sample_rate``, ``hop_length``,
    ``codebook_size``, ``latent_dim``, ``max_quantizers`` and implement ``_encode_padded``
    (audio of whole frames -> ``(b, q, n)`` codes), ``_latents_padded``, ``_dequantize`` and
    ``_decode_latents``.
    """

    channels = 1
    model: nn.Module
    sample_rate: int
    hop_length: int
    codebook_size: int
    latent_dim: int
    max_quantizers: int
    num_quantizers: int
    name = "codec"

    def __init__(self, model: nn.Module, num_quantizers: int | None):
        super().__init__()
        self.model = model.eval()
        self._num_quantizers = num_quantizers

    def _init_quantizers(self) -> None:
        q = self.max_quantizers if self._num_quantizers is None else self._num_quantizers
        if not 1 <= q <= self.max_quantizers:
            raise ValueError(f"num_quantizers must be in [1, {self.max_quantizers}], got {q}")
        self.num_quantizers = q

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def num_frames(self, samples: int) -> int:
        """Frames :meth:`encode` makes of ``samples`` samples: ``ceil(samples / hop_length)``."""
        return max(0, -(-samples // self.hop_length))

    def _dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def pad_to_frames(self, audio: Tensor) -> Tensor:
        """Zero-pad ``(b, c, t)`` on the right to ``ceil(t / hop_length) * hop_length`` samples."""
        extra = self.num_frames(audio.shape[-1]) * self.hop_length - audio.shape[-1]
        return F.pad(audio.to(self._dtype()), (0, extra))

    def check_audio(self, audio: Tensor, sample_rate: int | None = None) -> Tensor:
        """Validate audio ``(b, c, t)``: mono, finite, non-empty, at the model's rate."""
        return check_audio(
            audio,
            channels=self.channels,
            sample_rate=sample_rate,
            expected_sample_rate=self.sample_rate,
            what=f"{self.name} input",
        )

    def encode(
        self, audio: Tensor, lengths: Tensor | None = None, *, sample_rate: int | None = None
    ) -> Tensor:
        """Audio ``(b, 1, t)`` in [-1, 1] -> codes ``(b, ceil(t / hop_length), num_quantizers)``.

        ``lengths`` ``(b,)``: real samples per item; item ``i`` gets the frames it gets
        alone, then 0.
        """
        self.check_audio(audio, sample_rate)

        def encode(x: Tensor) -> Tensor:
            return rearrange(self._encode_padded(self.pad_to_frames(x)), "b q n -> b n q")

        with _no_grad():
            return encode_ragged(encode, audio, lengths, num_frames=self.num_frames)

    def encode_latents(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Audio ``(b, 1, t)`` -> continuous latents ``(b, n, d)`` before quantization."""
        self.check_audio(audio)

        def latents(x: Tensor) -> Tensor:
            return rearrange(self._latents_padded(self.pad_to_frames(x)), "b d n -> b n d")

        with _no_grad():
            return encode_ragged(latents, audio, lengths, num_frames=self.num_frames)

    def codes_to_latents(self, codes: Tensor) -> Tensor:
        """Codes ``(b, n, q)`` -> quantized latents ``(b, n, d)``, in the space of :meth:`encode_latents`."""
        check_codes(codes, codebook_size=self.codebook_size, max_quantizers=self.max_quantizers)
        with _no_grad():
            return rearrange(self._dequantize(rearrange(codes, "b n q -> b q n")), "b d n -> b n d")

    def _audio(self, latents: Tensor) -> Tensor:
        n = latents.shape[1]
        audio = self._decode_latents(rearrange(latents.to(self._dtype()), "b n d -> b d n"))
        return audio[..., : n * self.hop_length]

    def decode_latents(self, latents: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Latents ``(b, n, d)`` -> audio ``(b, 1, n * hop_length)``; 0 past ``lengths[i]`` frames."""
        if latents.ndim != 3 or latents.shape[-1] != self.latent_dim:
            raise ValueError(
                f"latents must have shape (b, n, {self.latent_dim}), got {tuple(latents.shape)}"
            )
        with _no_grad():
            return decode_ragged(self._audio, latents, lengths, hop_length=self.hop_length)

    def decode(self, codes: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Codes ``(b, n, q)``, any ``q <= max_quantizers`` -> audio ``(b, 1, n * hop_length)``.

        ``lengths`` ``(b,)``: real frames per item; audio past ``lengths[i] * hop_length`` is 0.
        """

        def decode(x: Tensor) -> Tensor:
            return self._audio(self.codes_to_latents(x))

        with _no_grad():
            return decode_ragged(decode, codes, lengths, hop_length=self.hop_length)

    def forward(self, audio: Tensor) -> Tensor:
        """Encode and decode, trimmed to the input length."""
        return self.decode(self.encode(audio))[..., : audio.shape[-1]]

    # -- what each model does -----------------------------------------------------------------

    def _encode_padded(self, audio: Tensor) -> Tensor:
        raise NotImplementedError

    def _latents_padded(self, audio: Tensor) -> Tensor:
        raise NotImplementedError

    def _dequantize(self, codes: Tensor) -> Tensor:
        raise NotImplementedError

    def _decode_latents(self, latents: Tensor) -> Tensor:
        raise NotImplementedError


class DacCodec(HFCodec):
    """Descript Audio Codec (Kumar et al. 2023) through ``transformers.DacModel``.

    Implements ``Codec`` and ``LatentCodec``. Latents are the encoder's output before the
    residual quantizer (``(b, n, hidden_size)``, 1024 wide for the released models); the
    decoder reads them directly. Not causal, so it does not stream.

    Args:
        model: a ``transformers.DacModel`` (e.g. ``DacModel(DacConfig())`` for tests).
        num_quantizers: levels :meth:`encode` returns (default: all ``n_codebooks``).
    """

    name = "DAC"

    def __init__(self, model: nn.Module, *, num_quantizers: int | None = None):
        super().__init__(model, num_quantizers)
        config: Any = model.config
        self.sample_rate = int(config.sampling_rate)
        self.hop_length = int(config.hop_length)
        self.codebook_size = int(config.codebook_size)
        self.latent_dim = int(config.hidden_size)
        self.max_quantizers = int(config.n_codebooks)
        self._init_quantizers()

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        num_quantizers: int | None = None,
        device: str | torch.device = "cpu",
    ) -> DacCodec:
        """Load a local Hugging Face DAC folder (``descript/dac_16khz``, ``_24khz``, ``_44khz``)."""
        model = load_hf_model(path, "dac", "DacModel")
        return cls(model, num_quantizers=num_quantizers).to(device)

    @classmethod
    def tiny(cls) -> DacCodec:
        """A small random DAC for tests: 16 kHz, hop 8 (2 kHz frames), 4 levels of 64 codes."""
        from transformers import DacConfig, DacModel

        config = DacConfig(
            encoder_hidden_size=8,
            downsampling_ratios=[2, 4],
            decoder_hidden_size=32,
            n_codebooks=4,
            codebook_size=64,
            codebook_dim=4,
        )
        return cls(DacModel(config))

    def _encode_padded(self, audio: Tensor) -> Tensor:
        model: Any = self.model
        return model.encode(audio, n_quantizers=self.num_quantizers, return_dict=True).audio_codes

    def _latents_padded(self, audio: Tensor) -> Tensor:
        model: Any = self.model
        return model.encoder(audio)

    def _dequantize(self, codes: Tensor) -> Tensor:
        model: Any = self.model
        return model.quantizer.from_codes(codes)[0]

    def _decode_latents(self, latents: Tensor) -> Tensor:
        model: Any = self.model
        return model.decoder(latents)


class MimiCodec(HFCodec):
    """Kyutai's Mimi (Défossez et al. 2024) through ``transformers.MimiModel``. Streams.

    A causal SEANet + transformer codec at 12.5 frames/s whose first level is distilled
    from WavLM (semantic) and the rest acoustic (split RVQ). Implements ``Codec``,
    ``LatentCodec`` and Cadence's streaming interface (:meth:`stream_encoder`,
    :meth:`stream_decoder`, so :func:`~cadence.codec.streaming.encode_chunked` and friends
    work). Latents are the encoder's output before quantization (``(b, n, hidden_size)``).

    Args:
        model: a ``transformers.MimiModel``.
        num_quantizers: levels :meth:`encode` returns (default all 32; Moshi uses 8).
    """

    name = "Mimi"

    def __init__(self, model: nn.Module, *, num_quantizers: int | None = None):
        super().__init__(model, num_quantizers)
        config: Any = model.config
        self.sample_rate = int(config.sampling_rate)
        self.hop_length = round(config.sampling_rate / config.frame_rate)
        self.codebook_size = int(config.codebook_size)
        self.latent_dim = int(config.hidden_size)
        self.max_quantizers = int(config.num_quantizers)
        self.num_semantic_quantizers = int(config.num_semantic_quantizers)
        self._init_quantizers()
        if self.num_quantizers < self.num_semantic_quantizers:
            raise ValueError(
                f"num_quantizers must be >= the {self.num_semantic_quantizers} semantic level(s)"
            )

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        num_quantizers: int | None = None,
        device: str | torch.device = "cpu",
    ) -> MimiCodec:
        """Load a local Hugging Face Mimi folder (``kyutai/mimi``)."""
        model = load_hf_model(path, "mimi", "MimiModel")
        return cls(model, num_quantizers=num_quantizers).to(device)

    @classmethod
    def tiny(cls, *, sliding_window: int = 5) -> MimiCodec:
        """A small random Mimi for tests: 16 kHz, hop 16 (1 kHz frames), 4 levels of 64 codes.

        Its codebooks are random (an untrained Mimi's are zeros, mapping everything to one
        code); ``sliding_window`` is the transformers' attention span in 2 kHz steps.
        """
        from transformers import MimiConfig, MimiModel

        config = MimiConfig(
            sampling_rate=16000,
            hidden_size=32,
            num_filters=4,
            upsampling_ratios=[4, 2],
            num_hidden_layers=2,
            intermediate_size=64,
            num_attention_heads=2,
            num_key_value_heads=2,
            codebook_size=64,
            codebook_dim=8,
            vector_quantization_hidden_dimension=8,
            num_quantizers=4,
            upsample_groups=32,
            sliding_window=sliding_window,
        )
        model = MimiModel(config)
        quantizer: Any = model.quantizer
        with torch.no_grad():
            for rvq in (
                quantizer.semantic_residual_vector_quantizer,
                quantizer.acoustic_residual_vector_quantizer,
            ):
                for layer in rvq.layers:
                    layer.codebook.embed_sum.normal_()
                    layer.codebook._embed = None  # its cached embed = embed_sum / usage
        return cls(model)

    def _encode_padded(self, audio: Tensor) -> Tensor:
        model: Any = self.model
        return model.encode(audio, num_quantizers=self.num_quantizers).audio_codes

    def _latents_padded(self, audio: Tensor) -> Tensor:
        model: Any = self.model
        return model.encoder(audio).latents

    def _dequantize(self, codes: Tensor) -> Tensor:
        model: Any = self.model
        return model.quantizer.decode(codes)

    def _decode_latents(self, latents: Tensor) -> Tensor:
        model: Any = self.model
        return model.decoder(latents).audio_values

    def stream_encoder(self) -> MimiStreamingEncoder:
        """A stateful chunk-by-chunk encoder; its codes equal :meth:`encode`'s (within float rounding)."""
        from .hf_streaming import MimiStreamingEncoder

        return MimiStreamingEncoder(self)

    def stream_decoder(self) -> MimiStreamingDecoder:
        """A stateful chunk-by-chunk decoder; its audio equals :meth:`decode`'s within 1e-5."""
        from .hf_streaming import MimiStreamingDecoder

        return MimiStreamingDecoder(self)
