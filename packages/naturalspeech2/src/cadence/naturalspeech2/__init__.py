"""Cadence NaturalSpeech 2: zero-shot TTS by latent diffusion over codec latents."""

from .aligner import Aligner, AlignerConfig, AlignerOutput, monotonic_alignment_search
from .diffusion import alphas_cumprod, sample
from .model import (
    GenerateOutput,
    NaturalSpeech2,
    NaturalSpeech2Config,
    NaturalSpeech2Output,
    ce_rvq_loss,
)
from .pitch import PitchTrack, extract_pitch, yin
from .prior import length_regulate
from .text import PhonemeVocabulary, durations_from_starts, phonemize
from .train import (
    NaturalSpeech2TrainStep,
    codebooks_from_codec,
    collate_ns2,
    config_from_shards,
    mel_features,
    preprocess_corpus,
)
from .wavenet import WaveNetDenoiser

__all__ = [
    "Aligner",
    "AlignerConfig",
    "AlignerOutput",
    "GenerateOutput",
    "NaturalSpeech2",
    "NaturalSpeech2Config",
    "NaturalSpeech2Output",
    "NaturalSpeech2TrainStep",
    "PhonemeVocabulary",
    "PitchTrack",
    "WaveNetDenoiser",
    "alphas_cumprod",
    "ce_rvq_loss",
    "codebooks_from_codec",
    "collate_ns2",
    "config_from_shards",
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
