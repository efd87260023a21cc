"""The phoneme recognizer moved to ``cadence.evaluation``.

Checkpoints saved before the move record the class as
``cadence.pipeline.recognizer.PhonemeRecognizer``; this alias keeps them loadable.
"""

from cadence.evaluation import PhonemeRecognizer, PhonemeRecognizerConfig

__all__ = ["PhonemeRecognizer", "PhonemeRecognizerConfig"]
