"""The ``cadence corpus`` and ``cadence plan`` commands (registered on the app by cli.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

__all__ = ["register"]


def register(app: typer.Typer, user_errors: Callable[..., Any], console: Console) -> None:
    """Add ``corpus`` and ``plan`` to ``app`` (``user_errors`` turns user errors into one line)."""

    @app.command(name="corpus")
    @user_errors
    def corpus(
        layout: Annotated[
            str,
            typer.Argument(
                help="librispeech, libritts, libritts_r, ljspeech, vctk, folder, manifest or lhotse"
            ),
        ],
        source: Annotated[Path, typer.Argument(help="the corpus directory (or manifest file)")],
        out: Annotated[Path, typer.Option(help="where train.jsonl / valid.jsonl go")],
        valid_fraction: Annotated[
            float, typer.Option(min=0.0, max=1.0, help="share of speakers held out")
        ] = 0.05,
        seed: Annotated[int, typer.Option(min=0, help="seed of the speaker split")] = 0,
    ) -> None:
        """Write the manifests of a real corpus (LibriSpeech, LibriTTS, LJSpeech, VCTK, ...) with held-out speakers."""
        from .corpora import prepare_corpus

        directory = prepare_corpus(layout, source, out, valid_fraction=valid_fraction, seed=seed)
        summary = json.loads((directory / "corpus.json").read_text())
        for split in ("train", "valid"):
            part = summary[split]
            console.print(
                f"{split}: {part['utterances']} utterances, {part['hours']:.2f} h, "
                f"{len(part['speakers'])} speakers"
            )
        console.print(f"wrote {directory} (split by {summary['split_by']})")


def _num_processes(launch: str | None) -> int:
    import shlex

    words = shlex.split(launch or "")
    for flag in ("--num_processes", "--num-processes"):
        if flag in words and words.index(flag) + 1 < len(words):
            return int(words[words.index(flag) + 1])
    return 1


def run_real(
    name: str,
    corpus: Path | None,
    out: Path,
    only: list[str] | None,
    override: Path | None,
    launch: str | None,
    write_only: bool,
    console: Console,
) -> None:
    """``cadence recipe NAME --corpus DIR`` for a real recipe (see real_recipe.py)."""
    import tomllib

    from .components import PipelineError
    from .real_recipe import ORDER, run_real_recipe

    if corpus is None:
        raise PipelineError(f"recipe {name} needs --corpus DIR (the corpus as downloaded)")
    if only:
        unknown = sorted(set(only) - set(ORDER))
        if unknown:
            raise PipelineError(f"unknown stages {unknown}; the stages are {', '.join(ORDER)}")
    extra: dict[str, Any] = {}
    if override is not None:
        if not override.is_file():
            raise PipelineError(f"override file not found: {override}")
        try:
            extra = tomllib.loads(override.read_text())
        except tomllib.TOMLDecodeError as err:
            raise PipelineError(f"{override} is not valid TOML: {err}") from err
    result = run_real_recipe(
        name,
        corpus,
        out,
        override=extra,
        only=tuple(only) if only else None,
        launch=launch,
        num_processes=_num_processes(launch),
        write_only=write_only,
        console=console,
    )
    console.print(f"done: {result}")
