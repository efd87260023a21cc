"""SpeechTokenizer's RVQ-2..q as a codec of their own: SpeechGPT-Gen's perceptual stream.

SpeechGPT-Gen's Chain-of-Information Generation (CoIG) splits SpeechTokenizer's codes in two:
RVQ-1, distilled from HuBERT, is the semantic stream (:class:`SpeechTokenizerSemantic`), and
RVQ-2..q carry what remains (voice, prosody, detail). Its perceptual model generates the second
from the first. :class:`SpeechTokenizerAcoustic` presents the second as a ``Codec`` and a
``LatentCodec`` so that SoundStorm (on codes) and the hierarchical flow matcher (on latents)
train and sample it as they would any codec; :meth:`~SpeechTokenizerAcoustic.decode_with_semantic`
and :meth:`~SpeechTokenizerAcoustic.decode_latents_with_semantic` put RVQ-1 back before the
decoder. Its own :meth:`~SpeechTokenizerAcoustic.decode` decodes the acoustic levels alone
(the reference's ``st=1``: voice without content), as the ``Codec`` protocol asks.
"""

# b batch | c audio channels | t samples | n frames | q quantizer levels | d latent dim

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from cadence.core.data import lengths_to_mask

from .speechtokenizer import SpeechTokenizer

__all__ = ["SpeechTokenizerAcoustic"]


class SpeechTokenizerAcoustic(nn.Module):
    """Levels 2..q of a :class:`SpeechTokenizer` (``q - 1`` levels). Implements ``Codec`` and ``LatentCodec``.

    Latents are the sum of the acoustic levels' codebook vectors (what SpeechGPT-Gen's flow
    matching models: the quantized residual after RVQ-1). Holds the codec it reads (not a copy).

    Example:
        >>> st = SpeechTokenizer(SpeechTokenizerConfig.tiny()).eval()
        >>> acoustic = SpeechTokenizerAcoustic(st)
        >>> audio = torch.randn(1, 1, 800) * 0.1
        >>> tuple(acoustic.encode(audio).shape)  # (b, n, q - 1)
        (1, 20, 3)
        >>> full = acoustic.decode_with_semantic(st.semantic_tokenizer().tokenize(audio), acoustic.encode(audio))
        >>> torch.allclose(full, st.decode(st.encode(audio)))
        True
    """

    def __init__(self, codec: SpeechTokenizer):
        super().__init__()
        if codec.num_quantizers < 2:
            raise ValueError(
                "SpeechTokenizerAcoustic needs a SpeechTokenizer with >= 2 levels (RVQ-1 is "
                f"the semantic stream), this one has {codec.num_quantizers}"
            )
        self.codec = codec

    # -- Codec attributes ---------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def channels(self) -> int:
        return self.codec.channels

    @property
    def hop_length(self) -> int:
        return self.codec.hop_length

    @property
    def frame_rate(self) -> float:
        return self.codec.frame_rate

    @property
    def num_quantizers(self) -> int:
        return self.codec.num_quantizers - 1

    @property
    def codebook_size(self) -> int:
        return self.codec.codebook_size

    @property
    def latent_dim(self) -> int:
        return self.codec.latent_dim

    def num_frames(self, samples: int) -> int:
        return self.codec.num_frames(samples)

    # -- the acoustic stream ------------------------------------------------------------------

    def encode(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Audio ``(b, c, t)`` -> RVQ-2..q codes ``(b, n, q - 1)``, 0 past each item's frames."""
        return self.codec.encode(audio, lengths)[..., 1:]

    def codes_to_latents(self, codes: Tensor) -> Tensor:
        """RVQ-2.. codes ``(b, n, q')`` -> the sum of their codebook vectors ``(b, n, d)``."""
        return self.codec.codes_to_latents(codes, first_level=1)

    def encode_latents(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Audio ``(b, c, t)`` -> acoustic latents ``(b, n, d)`` (RVQ-2..q summed), 0 past each item."""
        codes = self.encode(audio, lengths)
        latents = self.codes_to_latents(codes)
        if lengths is None:
            return latents
        # the codes past an item are 0, which is a codebook entry, not silence: zero them
        frames = torch.tensor([self.num_frames(int(t)) for t in lengths], dtype=torch.long)
        mask = lengths_to_mask(frames.to(codes.device), codes.shape[1])
        return latents * rearrange(mask, "b n -> b n 1")

    def decode(self, codes: Tensor, lengths: Tensor | None = None) -> Tensor:
        """RVQ-2.. codes ``(b, n, q')`` alone -> audio ``(b, c, n * hop_length)`` (no content)."""
        return self.codec.decode(codes, lengths, first_level=1)

    def decode_latents(self, latents: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Acoustic latents ``(b, n, d)`` alone -> audio (no content; see :meth:`decode_latents_with_semantic`)."""
        return self.codec.decode_latents(latents, lengths)

    # -- with the semantic stream put back ----------------------------------------------------

    def _check_frames(self, tokens: Tensor, other: Tensor, what: str) -> None:
        if tokens.ndim != 2 or tokens.shape != other.shape[:2]:
            raise ValueError(
                f"RVQ-1 tokens (b, n) and {what} (b, n, ...) must cover the same frames, got "
                f"{tuple(tokens.shape)} and {tuple(other.shape)}"
            )

    def compose(self, tokens: Tensor, codes: Tensor) -> Tensor:
        """RVQ-1 tokens ``(b, n)`` + RVQ-2.. codes ``(b, n, q')`` -> all codes ``(b, n, q' + 1)``."""
        self._check_frames(tokens, codes, "acoustic codes")
        return torch.cat([rearrange(tokens, "b n -> b n 1"), codes], dim=-1)

    def decode_with_semantic(
        self, tokens: Tensor, codes: Tensor, lengths: Tensor | None = None
    ) -> Tensor:
        """RVQ-1 tokens ``(b, n)`` + RVQ-2.. codes ``(b, n, q')`` -> audio ``(b, c, n * hop_length)``."""
        return self.codec.decode(self.compose(tokens, codes), lengths)

    def decode_latents_with_semantic(
        self, tokens: Tensor, latents: Tensor, lengths: Tensor | None = None
    ) -> Tensor:
        """RVQ-1 tokens ``(b, n)`` + acoustic latents ``(b, n, d)`` -> audio ``(b, c, n * hop_length)``.

        The decoder reads RVQ-1's codebook vector plus the acoustic latent of each frame
        (SpeechGPT-Gen: semantic + perceptual representations).
        """
        self._check_frames(tokens, latents, "acoustic latents")
        semantic = self.codec.codes_to_latents(rearrange(tokens, "b n -> b n 1"))
        return self.codec.decode_latents(semantic + latents.to(semantic.dtype), lengths)
