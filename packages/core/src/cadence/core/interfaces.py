"""The boundaries between Cadence packages, as small Protocols.

Anything with the right attributes and methods conforms, including an adapter around an
outside model, so packages never import each other: AudioLM and SoundStorm take "a Codec",
NaturalSpeech 2 takes "a LatentCodec", and apps wire concrete ones in.

Shapes (see docs/conventions.md):
    audio   (b, c, t) float in [-1, 1], at ``sample_rate``
    codes   (b, n, q) long in [0, codebook_size), at ``frame_rate``
    tokens  (b, n)    long in [0, codebook_size), at ``frame_rate``
    latents (b, n, d) float, at ``frame_rate``
    masks   (b, n)    bool, True = keep (a real frame, not padding)

Batches of different lengths are padded once, at the edge, and travel with ``lengths``
(``(b,)`` real samples or frames per item). Every call that takes ``lengths`` gives each item
what it would give that item alone, whatever the padding, and zeros past its end: the
padding never leaks into a result.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["Codec", "LatentCodec", "SemanticTokenizer", "frame_lengths"]


@runtime_checkable
class Codec(Protocol):
    """Waveform <-> residual codes.

    Attributes:
        sample_rate: audio samples per second the codec expects and returns.
        channels: audio channels the codec expects (1 for speech codecs).
        frame_rate: code frames per second, ``sample_rate / hop_length``.
        num_quantizers: residual levels ``q`` in the codes.
        codebook_size: entries per codebook; codes lie in ``[0, codebook_size)``.
    """

    sample_rate: int
    channels: int
    frame_rate: float
    num_quantizers: int
    codebook_size: int

    def num_frames(self, samples: int) -> int:
        """Code frames that :meth:`encode` makes of ``samples`` samples."""
        ...

    def encode(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``(b, c, t)`` float audio and ``(b,)`` real samples (None: all ``t``) -> ``(b, n, q)`` codes.

        Item ``i`` has ``num_frames(lengths[i])`` real frames, 0 after them.
        """
        ...

    def decode(self, codes: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``(b, n, q')`` codes, ``q' <= num_quantizers``, and ``(b,)`` real frames -> ``(b, c, t')`` audio.

        Item ``i``'s audio past ``lengths[i] * sample_rate / frame_rate`` samples is 0.
        """
        ...


@runtime_checkable
class LatentCodec(Codec, Protocol):
    """A codec whose continuous latents are exposed (NaturalSpeech 2, flow matching).

    Attributes:
        latent_dim: ``d``, the width of a latent frame.
    """

    latent_dim: int

    def encode_latents(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``(b, c, t)`` audio -> ``(b, n, d)`` continuous latents, before quantization."""
        ...

    def decode_latents(self, latents: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``(b, n, d)`` latents -> ``(b, c, t')`` audio (quantizing first where the codec must)."""
        ...

    def codes_to_latents(self, codes: Tensor) -> Tensor:
        """``(b, n, q)`` codes -> ``(b, n, d)`` quantized latents (the sum over levels)."""
        ...


@runtime_checkable
class SemanticTokenizer(Protocol):
    """Waveform -> discrete semantic tokens (e.g. HuBERT layer-9 features + k-means).

    Attributes:
        sample_rate: audio samples per second the tokenizer expects.
        frame_rate: tokens per second.
        codebook_size: number of clusters; tokens lie in ``[0, codebook_size)``.
    """

    sample_rate: int
    frame_rate: float
    codebook_size: int

    def num_frames(self, samples: int) -> int:
        """Tokens that :meth:`tokenize` makes of ``samples`` samples."""
        ...

    def tokenize(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``(b, c, t)`` audio and ``(b,)`` real samples (None: all ``t``) -> ``(b, n)`` long tokens.

        Item ``i`` has ``num_frames(lengths[i])`` real tokens, 0 after them.
        """
        ...


def frame_lengths(model: Codec | SemanticTokenizer, lengths: Tensor) -> Tensor:
    """``(b,)`` real samples -> ``(b,)`` real frames (or tokens) of ``model``, on the host."""
    return torch.tensor([model.num_frames(int(n)) for n in lengths], dtype=torch.long)
