"""Semantic tokenizers: features at 50 Hz -> nearest k-means centroid.

Two implementations of :class:`cadence.core.interfaces.SemanticTokenizer`, with the same
file format (a Cadence checkpoint holding the feature config and ``kmeans.centroids``) and
the same calls:

* :class:`HubertKMeansTokenizer`: HuBERT layer-``L`` features (AudioLM / SoundStorm
  recipes: HuBERT base, layer 9, 500 clusters). A clip of ``t`` samples at 16 kHz gives
  ``floor((t - 400) / 320) + 1`` tokens, HuBERT's own frame count (49 per second).
* :class:`MFCCKMeansTokenizer`: no pretrained model: k-means over MFCCs with deltas (HuBERT's
  first-iteration targets) or log-mels, at exactly ``floor(t / 320)`` tokens.

Items of a batch are tokenized as if each ran alone: ``lengths`` (valid samples per item)
make the result independent of padding and batch size.
"""

# b batch | c audio channels | t samples | s semantic frames (50 Hz; runs of equal tokens after deduplication) | d feature dim | k analysis frames per token

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from cadence.core.audio import EmptyAudioError, check_audio, resample
from cadence.core.checkpoint import PretrainedMixin, load_pretrained
from cadence.core.config import Config, ConfigError
from cadence.core.data import lengths_to_mask
from cadence.core.features import mel_spectrogram, mfcc
from cadence.core.validation import check_lengths

from .hubert import Hubert, HubertConfig, conv_output_length
from .kmeans import KMeans, KMeansConfig, KMeansTrainConfig, collect_features, fit_kmeans

if TYPE_CHECKING:
    from .phonetic_tokenizer import PhoneticKMeansTokenizerConfig

__all__ = [
    "DedupedTokens",
    "HubertKMeansTokenizer",
    "HubertKMeansTokenizerConfig",
    "MFCCFeatureConfig",
    "MFCCKMeansTokenizer",
    "MFCCKMeansTokenizerConfig",
    "SemanticTokens",
    "deduplicate",
    "spectral_features",
]


@dataclass
class DedupedTokens:
    """Runs of repeated tokens collapsed.

    Attributes:
        tokens: ``(b, s')`` one token per run, padded with 0.
        durations: ``(b, s')`` frames in each run (0 on padding); sums to each item's length.
        mask: ``(b, s')`` True = a real run.
    """

    tokens: Tensor
    durations: Tensor
    mask: Tensor


def deduplicate(tokens: Tensor, mask: Tensor | None = None) -> DedupedTokens:
    """Collapse runs of equal tokens: ``(b, s)`` -> tokens and durations ``(b, s')``."""
    if mask is None:
        mask = torch.ones_like(tokens, dtype=torch.bool)
    rows = []
    for row, keep in zip(tokens, mask, strict=True):
        values, counts = torch.unique_consecutive(row[keep], return_counts=True)
        rows.append((values, counts))
    m = max((len(v) for v, _ in rows), default=0)
    out = tokens.new_zeros(len(rows), m)
    durations = torch.zeros(len(rows), m, dtype=torch.long, device=tokens.device)
    out_mask = torch.zeros(len(rows), m, dtype=torch.bool, device=tokens.device)
    for i, (values, counts) in enumerate(rows):
        out[i, : len(values)] = values
        durations[i, : len(values)] = counts
        out_mask[i, : len(values)] = True
    return DedupedTokens(tokens=out, durations=durations, mask=out_mask)


@dataclass
class SemanticTokens:
    """Tokens of a batch with their padding mask.

    Attributes:
        tokens: ``(b, s)`` long; padded frames are 0.
        mask: ``(b, s)`` True = a real frame.
        lengths: ``(b,)`` real frames per item.
    """

    tokens: Tensor
    mask: Tensor
    lengths: Tensor

    def deduplicate(self) -> DedupedTokens:
        return deduplicate(self.tokens, self.mask)


class _TokenizerBase(PretrainedMixin, nn.Module):
    """Input checks, resampling and the batch plumbing shared by the tokenizers."""

    sample_rate: int = 16000
    kmeans: KMeans
    config: HubertKMeansTokenizerConfig | MFCCKMeansTokenizerConfig | PhoneticKMeansTokenizerConfig
    hop_length: int
    feature_dim: int
    min_samples: int
    _features: Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]

    @property
    def codebook_size(self) -> int:
        return self.kmeans.config.num_clusters

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, *, device: str | torch.device = "cpu"):
        """Load a tokenizer saved with :meth:`save_pretrained`."""
        return load_pretrained(directory, cls, device=device).eval()

    def _prepare(
        self, audio: Tensor, lengths: Tensor | None, sample_rate: int | None
    ) -> tuple[Tensor, Tensor]:
        """Validate, resample to 16 kHz and mix to mono: ``(b, c, t)`` -> ``(b, t)``, lengths."""
        check_audio(audio, what="audio to tokenize")
        b, _, t = audio.shape
        lengths = check_lengths(lengths, b, t)
        if sample_rate is not None and sample_rate != self.sample_rate:
            if not self.config.resample:
                from cadence.core.audio import check_sample_rate

                check_sample_rate(sample_rate, self.sample_rate, what="audio to tokenize")
            # Each item on its own, so that padding never bleeds into its resampled edge.
            items = [
                resample(audio[i, :, : int(lengths[i])], sample_rate, self.sample_rate)
                for i in range(b)
            ]
            lengths = torch.tensor([x.shape[-1] for x in items], dtype=torch.long)
            audio = torch.zeros(
                b, audio.shape[1], int(lengths.max()), dtype=audio.dtype, device=audio.device
            )
            for i, x in enumerate(items):
                audio[i, :, : x.shape[-1]] = x
        if int(lengths.max()) < self.min_samples:
            raise EmptyAudioError(
                f"audio of {int(lengths.max())} samples at {self.sample_rate} Hz is too short: "
                f"one token needs at least {self.min_samples} samples"
            )
        return audio.mean(1), lengths.to(audio.device)

    @torch.inference_mode()
    def tokenize(
        self, audio: Tensor, lengths: Tensor | None = None, *, sample_rate: int | None = None
    ) -> Tensor:
        """``(b, c, t)`` audio -> ``(b, s)`` long tokens (the SemanticTokenizer protocol).

        Args:
            audio: float audio in [-1, 1]; channels are averaged.
            lengths: ``(b,)`` real samples per item (None: all ``t``); item ``i`` gets
                :meth:`num_frames` ``(lengths[i])`` tokens, those it would get alone, then 0.
            sample_rate: the audio's rate if not 16 kHz; it is resampled (unless the
                config's ``resample`` is False, then a SampleRateMismatchError is raised).
        """
        return self.encode(audio, lengths, sample_rate=sample_rate).tokens

    @torch.inference_mode()
    def encode(
        self, audio: Tensor, lengths: Tensor | None = None, *, sample_rate: int | None = None
    ) -> SemanticTokens:
        """Tokens ``(b, s)`` with their mask; ``lengths`` ``(b,)`` are valid samples per item."""
        features, mask, frame_lengths = self.features(audio, lengths, sample_rate=sample_rate)
        tokens = self.kmeans(features) * mask
        return SemanticTokens(tokens=tokens.long(), mask=mask, lengths=frame_lengths)

    def features(
        self, audio: Tensor, lengths: Tensor | None = None, *, sample_rate: int | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(features (b, s, d), mask (b, s), lengths (b,))`` that the k-means assigns."""
        waveform, lengths = self._prepare(audio, lengths, sample_rate)
        return self._features(waveform, lengths)

    def _check_kmeans(self) -> None:
        if self.kmeans.config.dim != self.feature_dim:
            raise ConfigError(
                f"the k-means centroids have width {self.kmeans.config.dim} but the tokenizer's "
                f"features have width {self.feature_dim}; use centroids fitted on these features"
            )


# -- HuBERT ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HubertKMeansTokenizerConfig(Config):
    """HuBERT + k-means.

    Attributes:
        hubert: the encoder (its ``output_layer`` is the tokenized layer).
        kmeans: the centroids' shape; ``kmeans.dim`` must equal ``hubert.dim``.
        resample: resample other rates to 16 kHz; False makes another rate an error.
        frames: ``"hubert"``: HuBERT's own ``floor((t - 400) / 320) + 1`` frames (49 per
            second; tokens equal fairseq's and the peers'); ``"floor"``: each clip is
            extended by ``400 - 320 = 80`` zero samples first, giving Cadence's usual
            ``floor(t / 320)`` frames (50 per second), aligned with 50 Hz codec frames. The
            extra samples change the features slightly (the attention sees one more frame).
    """

    hubert: HubertConfig = field(default_factory=HubertConfig)
    kmeans: KMeansConfig = field(default_factory=KMeansConfig)
    resample: bool = True
    frames: Literal["hubert", "floor"] = "hubert"

    def __post_init__(self) -> None:
        if self.kmeans.dim != self.hubert.dim:
            raise ConfigError(
                f"k-means dim {self.kmeans.dim} != HuBERT dim {self.hubert.dim} (layer "
                f"{self.hubert.output_layer}); the centroids were fitted on other features"
            )

    @classmethod
    def tiny(cls, num_clusters: int = 16, **changes) -> HubertKMeansTokenizerConfig:
        hubert = HubertConfig.tiny()
        return cls(
            hubert=hubert, kmeans=KMeansConfig(num_clusters=num_clusters, dim=hubert.dim), **changes
        )


class HubertKMeansTokenizer(_TokenizerBase):
    """HuBERT layer features -> k-means tokens at 50 Hz (AudioLM / SoundStorm semantic tokens).

    Example:
        >>> tok = HubertKMeansTokenizer.from_parts(Hubert(HubertConfig.tiny()),
        ...                                         KMeans.from_centroids(torch.randn(8, 32)))
        >>> tok.tokenize(torch.zeros(2, 1, 16000)).shape
        torch.Size([2, 49])

    Build from released files with :meth:`from_checkpoints` (a fairseq ``.pt`` or Hugging Face
    directory, and centroids converted with :func:`load_legacy_kmeans` or fitted with
    :meth:`fit`); save with ``save_pretrained`` and reload with :meth:`from_pretrained`.
    """

    config_class = HubertKMeansTokenizerConfig
    config: HubertKMeansTokenizerConfig

    def __init__(self, config: HubertKMeansTokenizerConfig):
        super().__init__()
        self.config = config
        self.hubert = Hubert(config.hubert)
        self.kmeans = KMeans(config.kmeans)
        self.sample_rate = config.hubert.sample_rate
        self.hop_length = config.hubert.hop_length
        self.feature_dim = config.hubert.dim
        # samples added to each clip so that it gives floor(t / hop) frames ("floor" frames)
        self.extra_samples = (
            config.hubert.receptive_field - self.hop_length if config.frames == "floor" else 0
        )
        self.min_samples = config.hubert.receptive_field - self.extra_samples

    @classmethod
    def from_parts(
        cls,
        hubert: Hubert,
        kmeans: KMeans,
        *,
        resample: bool = True,
        frames: Literal["hubert", "floor"] = "hubert",
    ) -> HubertKMeansTokenizer:
        """Wrap a loaded model and centroids (checks that their widths agree)."""
        if kmeans.config.dim != hubert.config.dim:
            raise ConfigError(
                f"the k-means centroids have width {kmeans.config.dim} ({kmeans.config.features or 'unknown features'}) "
                f"but HuBERT layer {hubert.config.output_layer} has width {hubert.config.dim}; "
                "use centroids fitted on this model's features"
            )
        config = HubertKMeansTokenizerConfig(
            hubert=hubert.config, kmeans=kmeans.config, resample=resample, frames=frames
        )
        tokenizer = cls(config)
        tokenizer.hubert.load_state_dict(hubert.state_dict())
        tokenizer.kmeans.load_state_dict(kmeans.state_dict())
        return tokenizer.eval()

    @classmethod
    def from_checkpoints(
        cls,
        hubert_path: str | os.PathLike,
        kmeans_path: str | os.PathLike,
        *,
        output_layer: int = 9,
        allow_unsafe_pickle: bool = False,
    ) -> HubertKMeansTokenizer:
        """HuBERT from a fairseq ``.pt`` / Hugging Face / Cadence path + a Cadence k-means directory."""
        from .loading import load_hubert

        hubert = load_hubert(
            hubert_path, output_layer=output_layer, allow_unsafe_pickle=allow_unsafe_pickle
        )
        return cls.from_parts(hubert, KMeans.load_pretrained(kmeans_path))

    def _features(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.extra_samples:
            # zero each clip's padding, then count extra_samples of it as part of the clip
            keep = lengths_to_mask(lengths, waveform.shape[-1])
            waveform = F.pad(waveform * keep, (0, self.extra_samples))
            lengths = lengths + self.extra_samples
        out = self.hubert(waveform, lengths)
        return out.features, out.mask, out.lengths

    def num_frames(self, samples: int) -> int:
        """Tokens for ``samples`` at 16 kHz."""
        if samples <= 0:
            return 0
        return int(conv_output_length(self.config.hubert, samples + self.extra_samples))

    @classmethod
    def fit(
        cls,
        hubert: Hubert,
        dataset,
        train: KMeansTrainConfig,
        *,
        max_frames: int | None = 100_000,
        state_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> HubertKMeansTokenizer:
        """Fit k-means on HuBERT features of a 16 kHz :class:`AudioDataset` (whole files)."""
        hubert = hubert.eval()
        features = collect_features(
            dataset,
            lambda audio: hubert(audio.mean(1)).features[0],
            max_frames=max_frames,
            seed=train.seed,
            progress=progress,
        )
        layer = hubert.config.output_layer
        kmeans = fit_kmeans(
            features,
            train,
            state_dir=state_dir,
            progress=progress,
            features_description=f"HuBERT dim {hubert.config.dim} layer {layer}",
        )
        return cls.from_parts(hubert, kmeans)


# -- MFCC / log-mel -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class MFCCFeatureConfig(Config):
    """Spectral features at 50 Hz.

    Frames are computed every ``hop_length`` samples (10 ms) over ``n_fft``-sample windows
    (25 ms), like HuBERT's first-iteration MFCC targets, and ``stack`` consecutive frames are
    concatenated into one token frame (2 x 10 ms = 20 ms, HuBERT's 50 Hz).

    Attributes:
        kind: ``"mfcc"`` (``n_mfcc`` cepstra, plus deltas) or ``"log_mel"`` (``n_mels`` bands).
        n_mfcc: cepstral coefficients.
        n_mels: mel bands.
        n_fft: analysis window.
        hop_length: samples between analysis frames.
        stack: analysis frames per token.
        deltas: append first and second time derivatives (5-frame regression).
        normalize: ``"utterance"``: zero mean, unit variance per feature over each clip's
            frames (cepstral mean-variance normalization, which removes much of the speaker
            and channel); ``"none"``.
        sample_rate: audio rate.
    """

    kind: Literal["mfcc", "log_mel"] = "mfcc"
    n_mfcc: int = 13
    n_mels: int = 40
    n_fft: int = 400
    hop_length: int = 160
    stack: int = 2
    deltas: bool = True
    normalize: Literal["utterance", "none"] = "utterance"
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        for name in ("n_mfcc", "n_mels", "n_fft", "hop_length", "stack", "sample_rate"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"MFCCFeatureConfig.{name} must be >= 1, got {getattr(self, name)}"
                )

    @property
    def dim(self) -> int:
        base = self.n_mfcc if self.kind == "mfcc" else self.n_mels
        return base * (3 if self.deltas else 1) * self.stack

    @property
    def token_hop(self) -> int:
        return self.hop_length * self.stack


def _deltas(x: Tensor, width: int = 2) -> Tensor:
    """Regression deltas over the frames of ``(d, frames)``, edge frames repeated (HTK/Kaldi)."""
    n = x.shape[-1]
    padded = (
        F.pad(x[None], (width, width), mode="replicate")[0] if n > 1 else x.repeat(1, 1 + 2 * width)
    )
    num = sum(
        i * (padded[:, width + i : width + i + n] - padded[:, width - i : width - i + n])
        for i in range(1, width + 1)
    )
    return num / (2 * sum(i * i for i in range(1, width + 1)))  # type: ignore[return-value]  # num is a tensor


def spectral_features(audio: Tensor, config: MFCCFeatureConfig) -> Tensor:
    """Features of one mono clip ``(t,)`` -> ``(s, d)``: ``s = floor(t / token_hop)``, ``d = dim``."""
    n_tokens = audio.shape[-1] // config.token_hop
    if n_tokens == 0:
        return audio.new_zeros(0, config.dim)
    # Zero-pad short clips so reflect padding works; the frames kept lie inside the clip.
    x = (
        audio
        if audio.shape[-1] > config.n_fft // 2
        else F.pad(audio, (0, config.n_fft // 2 + 1 - audio.shape[-1]))
    )
    if config.kind == "mfcc":
        feats = mfcc(
            x,
            config.sample_rate,
            n_mfcc=config.n_mfcc,
            n_mels=config.n_mels,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
        )
    else:
        feats = (
            mel_spectrogram(
                x,
                config.sample_rate,
                n_fft=config.n_fft,
                hop_length=config.hop_length,
                n_mels=config.n_mels,
                power=2.0,
            )
            .clamp(min=1e-10)
            .log()
        )
    feats = feats[:, : n_tokens * config.stack]  # (d, s * k); frame j is centered at j * hop
    if config.deltas:
        d1 = _deltas(feats)
        feats = torch.cat([feats, d1, _deltas(d1)])
    if config.normalize == "utterance":
        std = (
            feats.std(-1, keepdim=True, unbiased=False)
            if feats.shape[-1] > 1
            else torch.ones_like(feats[:, :1])
        )
        feats = (feats - feats.mean(-1, keepdim=True)) / (std + 1e-5)
    return rearrange(feats, "d (s k) -> s (k d)", k=config.stack)


@dataclass(frozen=True, kw_only=True)
class MFCCKMeansTokenizerConfig(Config):
    """MFCC / log-mel features + k-means.

    Attributes:
        features: the spectral features.
        kmeans: the centroids' shape; ``kmeans.dim`` must equal ``features.dim``.
        resample: resample other rates to 16 kHz; False makes another rate an error.
    """

    features: MFCCFeatureConfig = field(default_factory=MFCCFeatureConfig)
    kmeans: KMeansConfig = field(
        default_factory=lambda: KMeansConfig(num_clusters=100, dim=78, features="mfcc")
    )
    resample: bool = True

    def __post_init__(self) -> None:
        if self.kmeans.dim != self.features.dim:
            raise ConfigError(
                f"k-means dim {self.kmeans.dim} != feature dim {self.features.dim} "
                f"({self.features.kind}); the centroids were fitted on other features"
            )

    @classmethod
    def tiny(cls, num_clusters: int = 16) -> MFCCKMeansTokenizerConfig:
        features = MFCCFeatureConfig()
        return cls(
            features=features,
            kmeans=KMeansConfig(num_clusters=num_clusters, dim=features.dim, features="mfcc"),
        )


class MFCCKMeansTokenizer(_TokenizerBase):
    """k-means over MFCC (+ deltas) or log-mel frames: semantic-ish tokens with no pretrained model.

    ``t`` samples at 16 kHz give exactly ``floor(t / 320)`` tokens (50 per second).

    Example:
        >>> from cadence.core.data import AudioDataset
        >>> from cadence.core.testing import toy_corpus_dir
        >>> data = AudioDataset(toy_corpus_dir() / "train.jsonl", sample_rate=16000)
        >>> tok = MFCCKMeansTokenizer.fit(data, KMeansTrainConfig(num_clusters=50, batch_size=2048, max_steps=30), progress=False)
        >>> tok.tokenize(data[0]["audio"][None]).shape[-1] == data[0]["audio"].shape[-1] // 320
        True
    """

    config_class = MFCCKMeansTokenizerConfig
    config: MFCCKMeansTokenizerConfig

    def __init__(self, config: MFCCKMeansTokenizerConfig):
        super().__init__()
        self.config = config
        self.kmeans = KMeans(config.kmeans)
        self.sample_rate = config.features.sample_rate
        self.hop_length = config.features.token_hop
        self.feature_dim = config.features.dim
        self.min_samples = self.hop_length

    def num_frames(self, samples: int) -> int:
        return samples // self.hop_length

    def _features(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        frame_lengths = torch.div(lengths, self.hop_length, rounding_mode="floor")
        n = int(frame_lengths.max())
        out = waveform.new_zeros(waveform.shape[0], n, self.feature_dim)
        # Per item: the STFT's edge padding and the per-clip normalization must see only the clip.
        for i in range(waveform.shape[0]):
            feats = spectral_features(waveform[i, : int(lengths[i])], self.config.features)
            out[i, : feats.shape[0]] = feats
        mask = lengths_to_mask(frame_lengths, n)
        return out, mask, frame_lengths

    @classmethod
    def fit(
        cls,
        dataset,
        train: KMeansTrainConfig,
        *,
        features: MFCCFeatureConfig | None = None,
        max_frames: int | None = 200_000,
        state_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> MFCCKMeansTokenizer:
        """Fit the centroids on a 16 kHz audio dataset (an :class:`AudioDataset`, whole files).

        Args:
            dataset: items with ``"audio"`` ``(c, t)`` (and ``"length"``).
            train: k-means settings (``num_clusters`` is the codebook size).
            features: feature settings (default :class:`MFCCFeatureConfig`).
            max_frames: fit on a seeded random subset of at most this many frames.
            state_dir: resumable k-means state (see :func:`fit_kmeans`).
            progress: show progress bars.
        """
        features = features or MFCCFeatureConfig()
        rate = getattr(dataset, "sample_rate", features.sample_rate)
        if rate != features.sample_rate:
            raise ConfigError(
                f"the dataset yields {rate} Hz audio but the features expect {features.sample_rate} Hz; "
                f"build it with AudioDataset(..., sample_rate={features.sample_rate})"
            )
        x = collect_features(
            dataset,
            lambda audio: spectral_features(audio.mean(1)[0], features),
            max_frames=max_frames,
            seed=train.seed,
            progress=progress,
        )
        kmeans = fit_kmeans(
            x, train, state_dir=state_dir, progress=progress, features_description=features.kind
        )
        config = MFCCKMeansTokenizerConfig(features=features, kmeans=kmeans.config)
        tokenizer = cls(config)
        tokenizer.kmeans.load_state_dict(kmeans.state_dict())
        return tokenizer.eval()
