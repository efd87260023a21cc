"""Cadence pipelines: the packages composed into speech continuation, voice conversion and TTS.

* :class:`SpeechContinuation`: prompt -> semantic tokens -> AudioLM semantic stage -> SoundStorm -> codec.
* :class:`VoiceConversion`: SoundStorm or flow-matching voice conversion.
* :class:`TextToSpeech`: NaturalSpeech 2.
* A pipeline is a directory whose ``pipeline.json`` names its checkpoints
  (:class:`PipelineSpec`); :func:`default_pipeline` is the tiny one shipped with the package.
* ``cadence`` (:mod:`cadence.pipeline.cli`): the command line; :mod:`cadence.pipeline.training`
  (TOML jobs), :mod:`cadence.pipeline.recipe` (the toy recipe), :mod:`cadence.pipeline.evaluation`.
"""

from .components import PipelineError, load_component
from .continuation import ContinuationOutput, SpeechContinuation
from .pipeline import PipelineSpec, default_pipeline, write_pipeline
from .recognizer import PhonemeRecognizer, PhonemeRecognizerConfig, phoneme_error_rate
from .synthesis import TextToSpeech, VoiceConversion

__all__ = [
    "ContinuationOutput",
    "PhonemeRecognizer",
    "PhonemeRecognizerConfig",
    "PipelineError",
    "PipelineSpec",
    "SpeechContinuation",
    "TextToSpeech",
    "VoiceConversion",
    "default_pipeline",
    "load_component",
    "phoneme_error_rate",
    "write_pipeline",
]
