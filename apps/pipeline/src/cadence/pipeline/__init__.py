"""Cadence pipelines: the packages composed into speech continuation, voice conversion and TTS.

* :class:`SpeechContinuation`: prompt -> semantic tokens -> AudioLM semantic stage -> SoundStorm -> codec.
* :class:`VoiceConversion`: SoundStorm or flow-matching voice conversion.
* :class:`TextToSpeech`: NaturalSpeech 2.
* A pipeline is a directory whose ``pipeline.json`` names its checkpoints
  (:class:`PipelineSpec`); :func:`default_pipeline` is the tiny one shipped with the package.
* ``cadence`` (:mod:`cadence.pipeline.cli`): the command line; :mod:`cadence.pipeline.training`
  (TOML jobs), :mod:`cadence.pipeline.recipe` (the toy recipe), :mod:`cadence.pipeline.evaluation`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use, so that `cadence --help` does not load every model package.
_EXPORTS = {
    "ContinuationOutput": "continuation",
    "SpeechContinuation": "continuation",
    # Moved to cadence.evaluation; checkpoints saved before the move name them here.
    "PhonemeRecognizer": "recognizer",
    "PhonemeRecognizerConfig": "recognizer",
    "PipelineError": "components",
    "check_compatible": "components",
    "load_component": "components",
    "PipelineSpec": "pipeline",
    "default_pipeline": "pipeline",
    "write_pipeline": "pipeline",
    "TextToSpeech": "synthesis",
    "VoiceConversion": "synthesis",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
