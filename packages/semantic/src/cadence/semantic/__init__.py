"""Cadence semantic tokens: HuBERT (fairseq and Hugging Face checkpoints, no fairseq) + k-means, offline MFCC tokenizer."""

from .hubert import Hubert, HubertConfig, HubertOutput, conv_output_length
from .kmeans import (
    KMeans,
    KMeansConfig,
    KMeansTrainConfig,
    UntrustedPickleError,
    collect_features,
    fit_kmeans,
    kmeans_plus_plus,
    load_legacy_kmeans,
)
from .loading import UnsafeCheckpointError, load_hubert, read_fairseq_checkpoint
from .tokenizer import (
    DedupedTokens,
    HubertKMeansTokenizer,
    HubertKMeansTokenizerConfig,
    MFCCFeatureConfig,
    MFCCKMeansTokenizer,
    MFCCKMeansTokenizerConfig,
    SemanticTokens,
    deduplicate,
    spectral_features,
)

__all__ = [
    "DedupedTokens",
    "Hubert",
    "HubertConfig",
    "HubertKMeansTokenizer",
    "HubertKMeansTokenizerConfig",
    "HubertOutput",
    "KMeans",
    "KMeansConfig",
    "KMeansTrainConfig",
    "MFCCFeatureConfig",
    "MFCCKMeansTokenizer",
    "MFCCKMeansTokenizerConfig",
    "SemanticTokens",
    "UnsafeCheckpointError",
    "UntrustedPickleError",
    "collect_features",
    "conv_output_length",
    "deduplicate",
    "fit_kmeans",
    "kmeans_plus_plus",
    "load_hubert",
    "load_legacy_kmeans",
    "read_fairseq_checkpoint",
    "spectral_features",
]
