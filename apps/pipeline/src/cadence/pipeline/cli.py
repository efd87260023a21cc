"""The ``cadence`` command line.

A user error (a missing file, audio that cannot be read, a checkpoint of the wrong model, a bad
config) prints one line saying what is wrong and how to fix it, and exits with status 2;
it never shows a traceback. ``CADENCE_DEBUG=1`` shows the traceback anyway.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cadence.core.audio import AudioError, load, save
from cadence.core.checkpoint import CheckpointError
from cadence.core.config import ConfigError
from cadence.core.data import ShardError
from cadence.core.io import write_json

from .components import PipelineError
from .pipeline import PipelineSpec, default_pipeline

app = typer.Typer(
    name="cadence",
    help="Cadence: speech continuation, voice conversion and TTS from composable models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

USER_ERRORS = (
    PipelineError,
    AudioError,
    CheckpointError,
    ConfigError,
    ShardError,
    FileNotFoundError,
)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def _user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a user error into a one-line message and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as err:
            if os.environ.get("CADENCE_DEBUG"):
                raise
            message = (
                str(err)
                if not isinstance(err, FileNotFoundError) or not err.filename
                else f"file not found: {err.filename}"
            )
            errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _output_path(path: Path) -> Path:
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        raise PipelineError(f"output {path} must end in one of {', '.join(AUDIO_SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_audio(path: Path, audio, sample_rate: int) -> None:
    save(path, audio, sample_rate)
    console.print(f"wrote {path} ({audio.shape[-1] / sample_rate:.2f} s)")


def _pipeline_dir(pipeline: Path | None) -> Path:
    return pipeline if pipeline is not None else default_pipeline()


PipelineOption = Annotated[
    Path | None,
    typer.Option("--pipeline", "-p", help="pipeline directory (default: the shipped toy pipeline)"),
]
SeedOption = Annotated[int | None, typer.Option(help="random seed (reproducible output)")]


@app.command()
@_user_errors
def generate(
    prompt: Annotated[
        list[Path], typer.Option("--prompt", help="prompt audio; repeat for a batch")
    ],
    out: Annotated[Path, typer.Option(help="output audio (with several prompts: OUT stem + -<i>)")],
    seconds: Annotated[
        float, typer.Option(help="seconds to add after each prompt (at most, unless --no-eos)")
    ] = 3.0,
    pipeline: PipelineOption = None,
    temperature: Annotated[float, typer.Option(help="semantic LM sampling temperature")] = 0.9,
    top_p: Annotated[float, typer.Option(help="semantic LM nucleus sampling")] = 0.95,
    steps: Annotated[int, typer.Option(help="SoundStorm passes on the first level")] = 16,
    guidance: Annotated[
        float, typer.Option(help="SoundStorm classifier-free guidance (1 = off)")
    ] = 1.0,
    eos: Annotated[bool, typer.Option(help="let the model end the utterance early")] = True,
    include_prompt: Annotated[bool, typer.Option(help="write prompt + continuation")] = False,
    seed: SeedOption = None,
) -> None:
    """Speech continuation: prompt -> semantic tokens -> AudioLM -> SoundStorm -> codec."""
    from cadence.audiolm import SamplingOptions
    from cadence.soundstorm import default_iterations

    from .continuation import SpeechContinuation

    _output_path(out)
    sampling = SamplingOptions(temperature=temperature, top_p=top_p, allow_eos=eos)
    pipe = SpeechContinuation.from_pretrained(_pipeline_dir(pipeline))
    items = [load(p, sample_rate=pipe.sample_rate, what="prompt")[0] for p in prompt]
    with console.status("generating"):
        start = time.perf_counter()
        result = pipe.generate(
            items,
            sample_rate=pipe.sample_rate,
            seconds=seconds,
            sampling=sampling,
            iterations=default_iterations(pipe.soundstorm.config.num_quantizers, first=steps),
            guidance_scale=guidance,
            seed=seed,
        )
        elapsed = time.perf_counter() - start
    paths = (
        [out]
        if len(items) == 1
        else [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(len(items))]
    )
    for i, path in enumerate(paths):
        audio = result.audio[i, :, : int(result.lengths[i])]
        if include_prompt:
            import torch

            audio = torch.cat(
                [result.prompt_audio[i, :, : int(result.prompt_lengths[i])], audio], dim=-1
            )
        _write_audio(path, audio, result.sample_rate)
    total = float(result.lengths.sum()) / result.sample_rate
    console.print(
        f"generated {total:.2f} s of audio in {elapsed:.2f} s (real-time factor {elapsed / max(total, 1e-9):.2f})"
    )


@app.command()
@_user_errors
def convert(
    source: Annotated[Path, typer.Option(help="speech whose words are kept")],
    target_voice: Annotated[
        Path, typer.Option("--target-voice", help="a recording of the voice to use")
    ],
    out: Annotated[Path, typer.Option(help="output audio")],
    method: Annotated[
        str, typer.Option(help="soundstorm or flow (the flow-matching model)")
    ] = "soundstorm",
    steps: Annotated[
        int, typer.Option(help="SoundStorm passes on the first level, or ODE steps of the flow")
    ] = 16,
    guidance: Annotated[float, typer.Option(help="classifier-free guidance (1 = off)")] = 1.0,
    pipeline: PipelineOption = None,
    seed: SeedOption = None,
) -> None:
    """Voice conversion: the content of --source in the voice of --target-voice."""
    from .synthesis import VoiceConversion

    if method not in ("soundstorm", "flow"):
        raise PipelineError(f"--method must be soundstorm or flow, got {method!r}")
    _output_path(out)
    vc = VoiceConversion.from_pretrained(_pipeline_dir(pipeline), method=method)  # type: ignore[arg-type]  # checked above
    src, _ = load(source, sample_rate=vc.sample_rate, what="source")
    tgt, _ = load(target_voice, sample_rate=vc.sample_rate, what="target voice")
    with console.status(f"converting ({method})"):
        audio = vc.convert(
            src, tgt, sample_rate=vc.sample_rate, steps=steps, guidance_scale=guidance, seed=seed
        )
    _write_audio(out, audio, vc.sample_rate)


@app.command()
@_user_errors
def tts(
    text: Annotated[str, typer.Argument(help="the sentence to say")],
    prompt: Annotated[Path, typer.Option(help="a recording of the voice to use")],
    out: Annotated[Path, typer.Option(help="output audio")],
    steps: Annotated[int, typer.Option(help="diffusion sampling steps (DPM-Solver++)")] = 32,
    guidance: Annotated[float, typer.Option(help="classifier-free guidance scale")] = 1.5,
    pipeline: PipelineOption = None,
    seed: SeedOption = None,
) -> None:
    """Text to speech with NaturalSpeech 2, in the voice of --prompt."""
    from .synthesis import TextToSpeech

    _output_path(out)
    model = TextToSpeech.from_pretrained(_pipeline_dir(pipeline))
    voice, rate = load(prompt, sample_rate=model.sample_rate, what="voice prompt")
    with console.status("synthesizing"):
        audio = model.synthesize(
            text, voice, sample_rate=rate, steps=steps, guidance_scale=guidance, seed=seed
        )
    _write_audio(out, audio, model.sample_rate)


@app.command()
@_user_errors
def tokenize(
    data: Annotated[Path, typer.Argument(help="a JSONL manifest or a folder of audio")],
    out: Annotated[Path, typer.Option(help="shard directory to write")],
    codec: Annotated[Path | None, typer.Option(help="codec checkpoint (codes)")] = None,
    tokenizer: Annotated[
        Path | None, typer.Option(help="semantic tokenizer checkpoint (tokens)")
    ] = None,
    latents: Annotated[
        bool, typer.Option(help="also store the codec's continuous latents")
    ] = False,
    pipeline: Annotated[
        Path | None, typer.Option(help="take --codec and --tokenizer from a pipeline")
    ] = None,
    batch_size: int = 8,
) -> None:
    """Precompute token shards (codec codes, semantic tokens, latents) of a dataset (resumable; split across processes under accelerate launch)."""
    from .training import tokenize_corpus

    if pipeline is not None:
        spec = PipelineSpec.read(pipeline)
        codec = codec or spec.path("codec")
        tokenizer = tokenizer or spec.path("semantic_tokenizer")
    accelerator = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        accelerator = PartialState()
    path = tokenize_corpus(
        data,
        out,
        codec=codec,
        tokenizer=tokenizer,
        latents=latents,
        batch_size=batch_size,
        accelerator=accelerator,
    )
    console.print(f"wrote shards to {path}")


@app.command()
@_user_errors
def train(
    stage: Annotated[
        str,
        typer.Argument(
            help="codec, semantic_tokenizer, semantic_lm, soundstorm, naturalspeech2, flowmatching or phoneme_recognizer"
        ),
    ],
    config: Annotated[Path, typer.Option(help="the job's TOML file (see docs/pipeline.md)")],
) -> None:
    """Train one model from a TOML job file (works under accelerate launch)."""
    from .training import TrainJob, run_job

    job = TrainJob.from_toml(config, stage=stage)
    metrics = run_job(job)
    if int(os.environ.get("RANK", "0")) == 0:
        console.print(f"{stage}: wrote {job.output}")
        if metrics:
            console.print(", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))


@app.command()
@_user_errors
def recipe(
    name: Annotated[str, typer.Argument(help="the recipe: toy")],
    out: Annotated[Path, typer.Option(help="where jobs, runs, shards and the pipeline go")] = Path(
        "runs/toy"
    ),
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="train on this corpus (train.jsonl + valid.jsonl) instead of synthesizing the recipe's own into OUT/corpus"
        ),
    ] = None,
    steps_scale: Annotated[
        float, typer.Option(help="multiply every model's steps (e.g. 0.01 for a smoke run)")
    ] = 1.0,
    only: Annotated[
        list[str] | None, typer.Option(help="run only these stages (repeatable)")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(help="run independent stages at once, one thread each (2 suits a 2-core CPU)"),
    ] = 1,
    assemble: Annotated[bool, typer.Option(hidden=True)] = True,
) -> None:
    """Train the whole chain: synthesize a corpus (or use --corpus), then codec, tokenizer, semantic LM, SoundStorm, NaturalSpeech 2, flow matching and the evaluation's phoneme recognizer."""
    from .recipe import ORDER, run_toy_recipe

    if name != "toy":
        raise PipelineError(f"unknown recipe {name!r}; available: toy")
    if only:
        unknown = sorted(set(only) - set(ORDER))
        if unknown:
            raise PipelineError(f"unknown stages {unknown}; the stages are {', '.join(ORDER)}")
    if steps_scale <= 0:
        raise PipelineError("--steps-scale must be > 0")
    if workers < 1:
        raise PipelineError("--workers must be >= 1")
    pipeline_dir = run_toy_recipe(
        out,
        corpus,
        steps_scale=steps_scale,
        only=tuple(only) if only else None,
        workers=workers,
        assemble=assemble,
        console=console,
    )
    console.print(f"done: {pipeline_dir}")


@app.command(name="eval")
@_user_errors
def evaluate(
    pipeline: PipelineOption = None,
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="corpus with valid.jsonl (default: the held-out set shipped with the pipeline)"
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="write the metrics as JSON here")] = None,
    limit: Annotated[
        int | None, typer.Option(help="evaluate on the first N validation utterances")
    ] = None,
    prompt_seconds: Annotated[float, typer.Option(help="SoundStorm / TTS prompt length")] = 3.0,
    seed: int = 0,
) -> None:
    """Objective metrics of every model in a pipeline on held-out speech."""
    from .evaluation import evaluate_pipeline

    if corpus is None:
        corpus = PipelineSpec.read(_pipeline_dir(pipeline)).held_out()
    report = evaluate_pipeline(
        _pipeline_dir(pipeline),
        corpus,
        limit=limit,
        prompt_seconds=prompt_seconds,
        seed=seed,
        progress=True,
    )
    _print_report(report)
    if out is not None:
        write_json(out, report)
        console.print(f"wrote {out}")


def _print_report(report: dict[str, Any]) -> None:
    table = Table(title="evaluation", show_lines=False)
    table.add_column("model")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for model, metrics in report.items():
        if not isinstance(metrics, dict):
            continue
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                table.add_row(model, key, f"{value:.4g}")
    console.print(table)


@app.command()
@_user_errors
def demo(
    out: Annotated[Path, typer.Option(help="output directory")] = Path("outputs/demo"),
    pipeline: PipelineOption = None,
    prompt_seconds: Annotated[
        float, typer.Option(help="seconds of the held-out utterance used as the prompt")
    ] = 2.0,
    seconds: Annotated[float, typer.Option(help="seconds to continue")] = 3.0,
    seed: int = 0,
) -> None:
    """The main job: continue a held-out prompt with the shipped pipeline; writes wavs and a spectrogram PNG (prompt | generated), prints metrics."""
    from .demo import run_demo

    run_demo(
        _pipeline_dir(pipeline),
        out,
        prompt_seconds=prompt_seconds,
        seconds=seconds,
        seed=seed,
        console=console,
    )


def main() -> None:
    """Entry point of the ``cadence`` script."""
    # A dependency still calls torch.jit.script; its deprecation notice means nothing to a user.
    warnings.filterwarnings(
        "ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning
    )
    try:
        app()
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
