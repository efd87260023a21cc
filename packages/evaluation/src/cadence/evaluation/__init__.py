"""Cadence evaluation: listen-proxies for generated speech (phoneme error rate, CTC recognizer)."""

from .phonemes import edit_distance, normalize_phonemes, phoneme_error_rate
from .recognizer import PhonemeRecognizer, PhonemeRecognizerConfig
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
    "collate_phonemes",
    "ctc_loss",
    "edit_distance",
    "evaluate_per",
    "normalize_phonemes",
    "phoneme_error_rate",
    "recognizer_step",
    "train_phoneme_recognizer",
]
