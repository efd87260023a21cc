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

    @app.command(name="plan")
    @user_errors
    def plan(
        recipe: Annotated[str, typer.Argument(help="libritts, librispeech, ljspeech or vctk")],
        hours: Annotated[
            float | None,
            typer.Option(min=0.001, help="hours of training audio (default: the full corpus)"),
        ] = None,
        corpus: Annotated[
            Path | None,
            typer.Option(help="a corpus from `cadence corpus`: its hours and utterance length"),
        ] = None,
        gpu: Annotated[str, typer.Option(help="h100, h200 or a100 (dense bf16 peak)")] = "h100",
        mfu: Annotated[
            float, typer.Option(min=0.01, max=1.0, help="assumed model FLOPs utilization")
        ] = 0.35,
        num_processes: Annotated[int, typer.Option(min=1, help="GPUs in all")] = 1,
        override: Annotated[Path | None, typer.Option(help="the recipe's --override TOML")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    ) -> None:
        """Each stage's parameters, FLOPs per step, activation memory and GPU-hours, before starting."""
        plan_command(recipe, hours, corpus, gpu, mfu, num_processes, override, as_json, console)


def _corpus_hours(corpus: Path) -> tuple[float, float]:
    from .components import PipelineError

    summary_file = corpus / "corpus.json"
    if not summary_file.is_file():
        raise PipelineError(
            f"{summary_file} not found: give a corpus written by `cadence corpus` (or use --hours)"
        )
    train = json.loads(summary_file.read_text())["train"]
    if not train.get("utterances"):
        raise PipelineError(f"{summary_file}: the train split is empty")
    return float(train["hours"]), float(train["hours"]) * 3600 / int(train["utterances"])


def _read_override(override: Path | None) -> dict[str, Any]:
    import tomllib

    from .components import PipelineError

    if override is None:
        return {}
    if not override.is_file():
        raise PipelineError(f"override file not found: {override}")
    try:
        return tomllib.loads(override.read_text())
    except tomllib.TOMLDecodeError as err:
        raise PipelineError(f"{override} is not valid TOML: {err}") from err


def plan_command(
    name: str,
    hours: float | None,
    corpus: Path | None,
    gpu: str,
    mfu: float,
    num_processes: int,
    override: Path | None,
    as_json: bool,
    console: Console,
) -> None:
    """Print (or dump as JSON) the cost of every stage of a real recipe."""
    from rich.table import Table

    from .plan import human, plan_recipe, plan_table

    mean_seconds = None
    if corpus is not None:
        hours, mean_seconds = _corpus_hours(corpus)
    plans = plan_recipe(name, hours=hours, mean_seconds=mean_seconds, gpu=gpu, mfu=mfu,
                        num_processes=num_processes, override=_read_override(override))  # fmt: skip
    if as_json:
        print(json.dumps({"recipe": name, "gpu": gpu, "mfu": mfu, "num_processes": num_processes,
                          "hours": hours, "stages": plan_table(plans)}, indent=2))  # fmt: skip
        return
    table = Table(title=f"{name}: {gpu.upper()} bf16 at MFU {mfu:g}, {num_processes} process(es)")
    columns = ("stage", "model", "params", "steps", "items", "tokens", "FLOPs/step",
               "act./batch", "GPU-h", "FLOPs")  # fmt: skip
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("stage", "model", "FLOPs") else "right"
        )
    for p in plans:
        table.add_row(p.stage, p.model, human(p.parameters), f"{p.steps:,}", str(p.items_per_step),
                      str(p.tokens_per_item), human(p.flops_per_step), human(p.activation_bytes, "B") if p.trained else "-",
                      f"{p.gpu_hours:.2f}", p.flops_method)  # fmt: skip
    console.print(table)
    console.print(
        "items: per optimizer step and process (batch x accumulation); tokens: per item; "
        "act./batch: activations of one micro-batch (an estimate); codec / semantic_tokenizer: "
        "one forward pass over the corpus (tokenize), FLOPs measured with FlopCounterMode; "
        "trained stages: 6Nn + 12Ln^2d (analytic; aligner and naturalspeech2: 6Nn). "
        "Method: cadence.pipeline.plan's docstring."
    )


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
    from .components import PipelineError
    from .real_recipe import ORDER, run_real_recipe

    if corpus is None:
        raise PipelineError(f"recipe {name} needs --corpus DIR (the corpus as downloaded)")
    if only:
        unknown = sorted(set(only) - set(ORDER))
        if unknown:
            raise PipelineError(f"unknown stages {unknown}; the stages are {', '.join(ORDER)}")
    extra = _read_override(override)
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
