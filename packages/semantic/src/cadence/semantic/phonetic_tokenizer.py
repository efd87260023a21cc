"""Supervised semantic tokens: k-means over a layer of a CTC phoneme encoder, at 50 Hz.

CosyVoice's S3 tokenizer (Du et al. 2024) takes its tokens from inside an encoder trained to
recognize speech, so they follow the phonemes and drop much of the speaker and channel; an
MFCC k-means (HuBERT's first-iteration targets) clusters how frames sound. Here the encoder
is :class:`~cadence.semantic.PhoneticEncoder` (CTC over the corpus's phonemes) and the
quantizer a k-means over one of its blocks' outputs, fitted offline like the other
tokenizers of this package.

A clip of ``t`` samples at 16 kHz gives exactly ``floor(t / 320)`` tokens (50 per second),
aligned with 50 Hz codec frames: each clip is cut to a whole number of tokens before it is
encoded (the encoder itself gives ``ceil``). Items of a batch are tokenized as if each ran
alone.
"""

# b batch | c audio channels | t samples | s semantic frames (50 Hz) | d encoder width

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor

from cadence.core.config import Config, ConfigError
from cadence.core.data import lengths_to_mask

from .kmeans import KMeans, KMeansConfig, KMeansTrainConfig, collect_features, fit_kmeans
from .phonetic import PhoneticEncoder, PhoneticEncoderConfig
from .tokenizer import _TokenizerBase

__all__ = ["PhoneticKMeansTokenizer", "PhoneticKMeansTokenizerConfig"]


@dataclass(frozen=True, kw_only=True)
class PhoneticKMeansTokenizerConfig(Config):
    """A CTC phoneme encoder + k-means over one of its layers.

    Attributes:
        encoder: the encoder (its CTC head is kept, unused by tokenization).
        layer: the tokenized layer: 0 = the front end's output, ``L`` = the output of block
            ``L`` (1-based), at most ``encoder.depth``.
        kmeans: the centroids' shape; ``kmeans.dim`` must equal the encoder's width.
        resample: resample other rates to 16 kHz; False makes another rate an error.
    """

    encoder: PhoneticEncoderConfig
    layer: int
    kmeans: KMeansConfig
    resample: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.layer <= self.encoder.depth:
            raise ConfigError(
                f"PhoneticKMeansTokenizerConfig.layer must be in [0, {self.encoder.depth}] "
                f"(the encoder's blocks), got {self.layer}"
            )
        if self.kmeans.dim != self.encoder.dim:
            raise ConfigError(
                f"k-means dim {self.kmeans.dim} != encoder width {self.encoder.dim}; the "
                "centroids were fitted on other features"
            )
        if self.encoder.frontend.hop_length * 2 * 50 != self.encoder.frontend.sample_rate:
            raise ConfigError(
                "PhoneticKMeansTokenizerConfig: the encoder must run at 50 Hz "
                "(sample_rate == 100 * hop_length), the rate of semantic tokens"
            )

    @classmethod
    def tiny(
        cls, phonemes: tuple[str, ...] = ("a", "b", "k"), num_clusters: int = 16, layer: int = 2
    ) -> PhoneticKMeansTokenizerConfig:
        encoder = PhoneticEncoderConfig.tiny(phonemes)
        return cls(
            encoder=encoder,
            layer=layer,
            kmeans=KMeansConfig(num_clusters=num_clusters, dim=encoder.dim, features="tiny"),
        )


class PhoneticKMeansTokenizer(_TokenizerBase):
    """CTC phoneme-encoder layer -> k-means tokens at 50 Hz (S3-style supervised semantic tokens).

    Build with :meth:`fit` from a trained :class:`PhoneticEncoder` (see
    :func:`~cadence.semantic.train_phonetic_encoder`) or :meth:`from_parts`; save with
    ``save_pretrained`` and reload with :meth:`from_pretrained`.
    """

    config_class = PhoneticKMeansTokenizerConfig
    config: PhoneticKMeansTokenizerConfig

    def __init__(self, config: PhoneticKMeansTokenizerConfig):
        super().__init__()
        self.config = config
        self.encoder = PhoneticEncoder(config.encoder).eval()  # always: see train()
        self.kmeans = KMeans(config.kmeans)
        self.sample_rate = config.encoder.frontend.sample_rate
        self.hop_length = 2 * config.encoder.frontend.hop_length
        self.feature_dim = config.encoder.dim
        self.min_samples = self.hop_length

    def train(self, mode: bool = True) -> PhoneticKMeansTokenizer:
        """Set the mode; the encoder stays in eval mode: tokens never see dropout or SpecAugment."""
        super().train(mode)
        self.encoder.eval()
        return self

    def num_frames(self, samples: int) -> int:
        """Tokens for ``samples`` at 16 kHz: ``floor(samples / 320)``."""
        return max(samples, 0) // self.hop_length

    def _features(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        frame_lengths = torch.div(lengths, self.hop_length, rounding_mode="floor")
        # Cut each clip to whole tokens: ceil(floor(t / hop) / 2) frames become floor(t / 320).
        features, _ = self.encoder.hidden_states(
            waveform[:, None], frame_lengths * self.hop_length, layer=self.config.layer
        )
        n = int(frame_lengths.max())
        return features[:, :n], lengths_to_mask(frame_lengths, n), frame_lengths

    @classmethod
    def from_parts(
        cls, encoder: PhoneticEncoder, kmeans: KMeans, *, layer: int, resample: bool = True
    ) -> PhoneticKMeansTokenizer:
        """Wrap a trained encoder and centroids fitted on its layer ``layer``."""
        config = PhoneticKMeansTokenizerConfig(
            encoder=encoder.config, layer=layer, kmeans=kmeans.config, resample=resample
        )
        tokenizer = cls(config)
        tokenizer.encoder.load_state_dict(encoder.state_dict())
        tokenizer.kmeans.load_state_dict(kmeans.state_dict())
        return tokenizer.eval()

    @classmethod
    def fit(
        cls,
        encoder: PhoneticEncoder,
        dataset,
        train: KMeansTrainConfig,
        *,
        layer: int,
        max_frames: int | None = 200_000,
        state_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> PhoneticKMeansTokenizer:
        """Fit k-means on layer ``layer`` of ``encoder`` over a 16 kHz audio dataset.

        Args:
            encoder: a trained :class:`PhoneticEncoder`.
            dataset: items with ``"audio"`` ``(c, t)`` (and ``"length"``): an
                :class:`~cadence.core.data.AudioDataset` of whole files.
            train: k-means settings (``num_clusters`` is the codebook size).
            layer: the encoder layer to tokenize (see :class:`PhoneticKMeansTokenizerConfig`).
            max_frames: fit on a seeded random subset of at most this many frames.
            state_dir: resumable k-means state (see :func:`fit_kmeans`).
            progress: show progress bars.
        """
        rate = getattr(dataset, "sample_rate", encoder.sample_rate)
        if rate != encoder.sample_rate:
            raise ConfigError(
                f"the dataset yields {rate} Hz audio but the encoder expects "
                f"{encoder.sample_rate} Hz; build it with AudioDataset(..., sample_rate="
                f"{encoder.sample_rate})"
            )
        # The tokenizer's own feature path (cut to whole tokens), with placeholder centroids.
        placeholder = KMeans(KMeansConfig(num_clusters=train.num_clusters, dim=encoder.config.dim))
        probe = cls.from_parts(encoder, placeholder, layer=layer)
        features = collect_features(
            dataset,
            lambda audio: probe.features(audio)[0][0],
            max_frames=max_frames,
            seed=train.seed,
            progress=progress,
        )
        kmeans = fit_kmeans(
            features,
            train,
            state_dir=state_dir,
            progress=progress,
            features_description=f"phonetic encoder dim {encoder.config.dim} layer {layer}",
        )
        return cls.from_parts(encoder, kmeans, layer=layer)
