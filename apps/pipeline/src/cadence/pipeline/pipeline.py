"""A pipeline directory: ``pipeline.json`` naming the checkpoint directories of its components.

```json
{
  "format": "cadence-pipeline",
  "version": 1,
  "components": {"codec": "codec", "semantic_tokenizer": "semantic_tokenizer", ...},
  "prompt": "prompts/prompt.flac"
}
```

Component paths are relative to the pipeline directory (or absolute), so a pipeline can
point at checkpoints it shares with others. Which components a use needs is up to the use:
speech continuation needs codec, semantic_tokenizer, semantic_lm and soundstorm; TTS needs
codec and naturalspeech2; evaluation also uses phoneme_recognizer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cadence.core.io import write_json

from .components import PipelineError, load_component

PIPELINE_FILE = "pipeline.json"
FORMAT = "cadence-pipeline"
VERSION = 1
COMPONENTS = (
    "codec",
    "semantic_tokenizer",
    "semantic_lm",
    "soundstorm",
    "naturalspeech2",
    "flowmatching",
    "phoneme_recognizer",
)


def default_pipeline() -> Path:
    """The tiny pipeline shipped with the package (trained by ``cadence recipe toy``; docs/pipeline.md)."""
    return Path(__file__).parent / "pretrained" / "toy"


@dataclass(frozen=True)
class PipelineSpec:
    """The parsed ``pipeline.json`` of ``directory``."""

    directory: Path
    components: dict[str, Path]
    prompt: Path | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def path(self, role: str) -> Path:
        """The checkpoint directory of ``role``; a clear error when the pipeline lacks it."""
        if role not in self.components:
            have = ", ".join(sorted(self.components)) or "nothing"
            raise PipelineError(
                f"the pipeline in {self.directory} has no {role!r} component (it has {have}); "
                f'add "{role}": "<checkpoint dir>" to its {PIPELINE_FILE}'
            )
        return self.components[role]

    def has(self, role: str) -> bool:
        return role in self.components

    def held_out(self) -> Path:
        """The held-out evaluation set shipped with the pipeline (a corpus with ``valid.jsonl``)."""
        name = self.extra.get("held_out")
        if not isinstance(name, str) or not (self.directory / name / "valid.jsonl").is_file():
            raise PipelineError(
                f'the pipeline in {self.directory} ships no held-out set ("held_out" in its {PIPELINE_FILE}); '
                "give one with --corpus DIR (a directory with valid.jsonl)"
            )
        return (self.directory / name).resolve()

    def load(self, role: str, *, device: str | torch.device = "cpu") -> Any:
        """The checkpoint of ``role``, checked to hold what the role needs (``load_component``)."""
        return load_component(self.path(role), role, device=device)

    @classmethod
    def read(cls, directory: str | os.PathLike) -> PipelineSpec:
        directory = Path(directory)
        path = directory / PIPELINE_FILE
        if directory.is_file():
            hint = (
                f"; give the directory that holds it: {directory.parent}"
                if directory.name == PIPELINE_FILE
                else ""
            )
            raise PipelineError(
                f"{directory} is a file, but a pipeline is a directory holding {PIPELINE_FILE}{hint}"
            )
        if not directory.is_dir():
            raise PipelineError(f"pipeline directory not found: {directory}")
        if not path.is_file():
            raise PipelineError(
                f"{directory} has no {PIPELINE_FILE}; a pipeline is a directory whose {PIPELINE_FILE} "
                "names its checkpoints (`cadence recipe toy` writes one)"
            )
        try:
            data = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise PipelineError(f"{path} is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise PipelineError(
                f"{path} must hold a JSON object, not a {type(data).__name__}; see docs/pipeline.md"
            )
        if data.get("format") != FORMAT:
            raise PipelineError(
                f"{path} is not a Cadence pipeline file (format {data.get('format')!r})"
            )
        version = data.get("version", 0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise PipelineError(f"{path}: version must be a whole number, got {version!r}")
        if version > VERSION:
            raise PipelineError(f"{path} has version {version}; upgrade cadence-pipeline")
        components = data.get("components")
        if not isinstance(components, dict) or not components:
            raise PipelineError(f"{path} names no components")
        unknown = sorted(set(components) - set(COMPONENTS))
        if unknown:
            raise PipelineError(
                f"{path}: unknown components {unknown}; known: {', '.join(COMPONENTS)}"
            )
        bad = sorted(
            role for role, value in components.items() if not isinstance(value, str) or not value
        )
        if bad:
            raise PipelineError(
                f"{path}: the components {bad} must name checkpoint directories (strings)"
            )
        resolved = {role: (directory / p).resolve() for role, p in components.items()}
        prompt = data.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise PipelineError(f"{path}: prompt must be a path (a string), got {prompt!r}")
        return cls(
            directory=directory,
            components=resolved,
            prompt=(directory / prompt).resolve() if prompt else None,
            description=data.get("description", ""),
            extra={
                k: v
                for k, v in data.items()
                if k not in ("format", "version", "components", "prompt", "description")
            },
        )


def write_pipeline(
    directory: str | os.PathLike,
    components: dict[str, str],
    *,
    prompt: str | None = None,
    description: str = "",
    **extra: Any,
) -> Path:
    """Write ``directory/pipeline.json`` (paths relative to ``directory``)."""
    unknown = sorted(set(components) - set(COMPONENTS))
    if unknown:
        raise PipelineError(f"unknown components {unknown}; known: {', '.join(COMPONENTS)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "format": FORMAT,
        "version": VERSION,
        "description": description,
        "components": components,
    }
    if prompt:
        data["prompt"] = prompt
    data.update(extra)
    return write_json(directory / PIPELINE_FILE, data)
