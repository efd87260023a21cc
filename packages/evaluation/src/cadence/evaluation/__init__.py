"""Cadence evaluation: listen-proxies for generated speech (phoneme error rate, speaker similarity)."""

from .phonemes import edit_distance, normalize_phonemes, phoneme_error_rate
from .recognizer import PhonemeRecognizer, PhonemeRecognizerConfig
from .speaker import (
    SpeakerEncoder,
    SpeakerPairSimilarity,
    pairwise_similarity,
    similarity,
    speaker_pair_similarity,
    speaker_similarity_report,
)
from .train import (
    PhonemeDataset,
    collate_phonemes,
    ctc_loss,
    evaluate_per,
    recognizer_step,
    train_phoneme_recognizer,
)

__all__ = [
    "PhonemeDataset",
    "PhonemeRecognizer",
    "PhonemeRecognizerConfig",
    "SpeakerEncoder",
    "SpeakerPairSimilarity",
    "collate_phonemes",
    "ctc_loss",
    "edit_distance",
    "evaluate_per",
    "normalize_phonemes",
    "pairwise_similarity",
    "phoneme_error_rate",
    "recognizer_step",
    "similarity",
    "speaker_pair_similarity",
    "speaker_similarity_report",
    "train_phoneme_recognizer",
]
