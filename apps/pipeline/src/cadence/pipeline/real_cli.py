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
