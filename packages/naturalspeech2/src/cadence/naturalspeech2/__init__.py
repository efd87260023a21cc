"""Cadence NaturalSpeech 2: zero-shot TTS by latent diffusion over codec latents."""

from .align_train import AlignerDataset, AlignerTrainConfig, AlignerTrainStep, collate_aligner
from .aligner import Aligner, AlignerConfig, AlignerOutput, monotonic_alignment_search
from .data import (
    codebooks_from_codec,
    collate_ns2,
    config_from_shards,
    mel_features,
    preprocess_corpus,
)
from .diffusion import alphas_cumprod, sample
from .espeak import EspeakError, EspeakNotFoundError
from .losses import ce_rvq_loss
from .model import (
    NaturalSpeech2,
    NaturalSpeech2Config,
    NaturalSpeech2Output,
    NaturalSpeech2Predictions,
    TrainingDraw,
)
from .pitch import PitchTrack, extract_pitch, yin
from .prior import length_regulate
from .text import PhonemeVocabulary, durations_from_starts, phonemize
from .train import NaturalSpeech2TrainConfig, NaturalSpeech2TrainStep, draw_training
from .wavenet import WaveNetDenoiser

__all__ = [
    "Aligner",
    "AlignerConfig",
    "AlignerDataset",
    "AlignerOutput",
    "AlignerTrainConfig",
    "AlignerTrainStep",
    "EspeakError",
    "EspeakNotFoundError",
    "NaturalSpeech2",
    "NaturalSpeech2Config",
    "NaturalSpeech2Output",
    "NaturalSpeech2Predictions",
    "NaturalSpeech2TrainConfig",
    "NaturalSpeech2TrainStep",
    "PhonemeVocabulary",
    "PitchTrack",
    "TrainingDraw",
    "WaveNetDenoiser",
    "alphas_cumprod",
    "ce_rvq_loss",
    "codebooks_from_codec",
    "collate_aligner",
    "collate_ns2",
    "config_from_shards",
    "draw_training",
    "durations_from_starts",
    "extract_pitch",
    "length_regulate",
    "mel_features",
    "monotonic_alignment_search",
    "phonemize",
    "preprocess_corpus",
    "sample",
    "yin",
]
