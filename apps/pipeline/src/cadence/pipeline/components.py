"""Loading the checkpoints a pipeline is made of, and checking that they fit together.

A pipeline's parts are named by role ("codec", "semantic_lm", ...). Each role has one
expected type: a core Protocol for the roles any implementation may fill (a codec, a
semantic tokenizer), a class for the models (SoundStorm). :func:`load_component` refuses a
checkpoint that does not hold one, naming both; :func:`check_compatible` refuses parts that
were not trained together, naming every mismatch. Both raise :class:`PipelineError`, which
the command line prints as one line.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, cast

import torch

from cadence.core.checkpoint import CheckpointError, load_pretrained, read_checkpoint_config
from cadence.core.config import ConfigError

from .official import load_official

__all__ = ["ROLE_TYPES", "PipelineError", "check_compatible", "expected_type", "load_component"]


class PipelineError(ValueError):
    """A pipeline, one of its checkpoints or one of its inputs is unusable (the message says how to fix it)."""


# role -> "module:name" of the type its checkpoint must hold (imported on use, so that a
# pipeline that has no flow matcher never imports cadence.flowmatching).
ROLE_TYPES: dict[str, str] = {
    "codec": "cadence.core.interfaces:Codec",
    "semantic_tokenizer": "cadence.core.interfaces:SemanticTokenizer",
    "semantic_lm": "cadence.audiolm:SemanticTransformer",
    "soundstorm": "cadence.soundstorm:SoundStorm",
    "naturalspeech2": "cadence.naturalspeech2:NaturalSpeech2",
    "flowmatching": "cadence.flowmatching:HierarchicalConditionalFlowMatcher",
    "phoneme_recognizer": "cadence.evaluation:PhonemeRecognizer",
}


def expected_type(role: str) -> type:
    """The Protocol or class a ``role``'s checkpoint must hold."""
    if role not in ROLE_TYPES:
        raise PipelineError(f"unknown role {role!r}; the roles are {', '.join(ROLE_TYPES)}")
    module, name = ROLE_TYPES[role].split(":")
    return getattr(importlib.import_module(module), name)


def load_component(
    directory: str | os.PathLike,
    role: str,
    expected: type | None = None,
    *,
    device: str | torch.device = "cpu",
) -> Any:
    """Load the Cadence checkpoint in ``directory`` for ``role`` (e.g. "codec"), in eval mode.

    ``expected`` is the Protocol or class the role needs (default: :func:`expected_type`);
    a checkpoint holding anything else is refused with a message naming both.
    """
    directory = Path(directory)
    expected = expected or expected_type(role)
    try:
        # a publisher's own layout (official SpeechTokenizer, Hugging Face DAC / Mimi) first
        model: Any = load_official(directory, device=device)
        if model is None:
            held = read_checkpoint_config(directory)["class"]
            model = load_pretrained(directory, device=device)
        else:
            held = type(model).__name__
    except (CheckpointError, ConfigError, ImportError) as err:
        raise PipelineError(f"{role}: {err}") from err
    semantic_view = getattr(model, "semantic_tokenizer", None)
    if role == "semantic_tokenizer" and not isinstance(model, expected) and callable(semantic_view):
        # a codec whose first level is semantic (SpeechTokenizer's RVQ-1) is its own tokenizer
        model = semantic_view()
    if not isinstance(model, expected):
        what = (
            "a "
            + expected.__name__
            + (" (anything with its attributes)" if _is_protocol(expected) else "")
        )
        raise PipelineError(
            f"{role}: {directory} holds a {held}, but the {role} must be {what}; "
            "point the pipeline at the right checkpoint directory"
        )
    return cast(torch.nn.Module, model).eval()  # every loader gives a module


def _is_protocol(cls: type) -> bool:
    return bool(getattr(cls, "_is_protocol", False))


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1.0)


def check_compatible(
    *,
    codec: Any = None,
    tokenizer: Any = None,
    semantic_lm: Any = None,
    soundstorm: Any = None,
    naturalspeech2: Any = None,
    flowmatching: Any = None,
) -> None:
    """Refuse components that were not trained together, naming every mismatch.

    One check for every pipeline (continuation, voice conversion, TTS): pass the parts it
    uses. The codec and the tokenizer are the reference; every model trained on their
    outputs must agree with them on vocabulary sizes, levels and rates.
    """
    problems: list[str] = []
    if codec is not None and tokenizer is not None and codec.sample_rate != tokenizer.sample_rate:
        # Both see the same prompt; one rate keeps their frames aligned without resampling twice.
        problems.append(
            f"the tokenizer runs at {tokenizer.sample_rate} Hz and the codec at {codec.sample_rate} Hz"
        )
    if semantic_lm is not None and tokenizer is not None:
        lm = semantic_lm.config
        if lm.codebook_size != tokenizer.codebook_size:
            problems.append(
                f"semantic_lm has {lm.codebook_size} semantic tokens, the tokenizer {tokenizer.codebook_size}"
            )
        if not _close(lm.frame_rate, tokenizer.frame_rate):
            problems.append(
                f"semantic_lm runs at {lm.frame_rate} tokens/s, the tokenizer at {tokenizer.frame_rate}"
            )
    if soundstorm is not None and tokenizer is not None:
        ss = soundstorm.config
        if ss.semantic_codebook_size != tokenizer.codebook_size:
            problems.append(
                f"soundstorm expects {ss.semantic_codebook_size} semantic tokens, the tokenizer has {tokenizer.codebook_size}"
            )
        if not _close(ss.semantic_frame_rate, tokenizer.frame_rate):
            problems.append(
                f"soundstorm expects {ss.semantic_frame_rate} semantic tokens/s, the tokenizer makes {tokenizer.frame_rate}"
            )
    if soundstorm is not None and codec is not None:
        ss = soundstorm.config
        if (ss.num_quantizers, ss.codebook_size) != (codec.num_quantizers, codec.codebook_size):
            # a model of the levels after a semantic first one (the tokenizer is the codec's RVQ-1)
            coig = hasattr(tokenizer, "codec") and ss.num_quantizers == codec.num_quantizers - 1
            problems.append(
                f"soundstorm models {ss.num_quantizers} x {ss.codebook_size} codes, the codec makes {codec.num_quantizers} x {codec.codebook_size}"
                + (
                    ' (a CoIG model of RVQ-2..: add "conversion": "coig" to pipeline.json)'
                    if coig
                    else ""
                )
            )
        if not _close(ss.frame_rate, codec.frame_rate):
            problems.append(
                f"soundstorm runs at {ss.frame_rate} frames/s, the codec at {codec.frame_rate}"
            )
    latents = codec is not None and hasattr(codec, "latent_dim")
    for name, model in (("naturalspeech2", naturalspeech2), ("flowmatching", flowmatching)):
        if model is not None and codec is not None and not latents:
            problems.append(
                f"{name} models codec latents, but the codec exposes none (it is not a LatentCodec)"
            )
    if naturalspeech2 is not None and latents:
        cfg = naturalspeech2.config
        if cfg.latent_dim != codec.latent_dim or not _close(cfg.frame_rate, codec.frame_rate):
            problems.append(
                f"naturalspeech2 models {cfg.latent_dim}-dim latents at {cfg.frame_rate} frames/s, the codec has {codec.latent_dim} at {codec.frame_rate}"
            )
    if flowmatching is not None:
        cfg = flowmatching.config
        if tokenizer is not None and (
            cfg.codebook_size != tokenizer.codebook_size
            or not _close(cfg.semantic_frame_rate, tokenizer.frame_rate)
        ):
            problems.append(
                f"flowmatching reads {cfg.codebook_size} semantic tokens at {cfg.semantic_frame_rate}/s, the tokenizer makes {tokenizer.codebook_size} at {tokenizer.frame_rate}/s"
            )
        if latents and (
            cfg.flow.latent_dim != codec.latent_dim
            or not _close(cfg.latent_frame_rate, codec.frame_rate)
        ):
            problems.append(
                f"flowmatching makes {cfg.flow.latent_dim}-dim latents at {cfg.latent_frame_rate} frames/s, the codec has {codec.latent_dim} at {codec.frame_rate}"
            )
    if problems:
        raise PipelineError(
            "components do not fit together: "
            + "; ".join(problems)
            + ". Use checkpoints trained on the same codec and tokenizer."
        )
