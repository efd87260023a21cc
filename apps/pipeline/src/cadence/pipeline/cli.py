"""The ``cadence`` command line.

A user error (a missing file, audio that cannot be read, a checkpoint of the wrong model, a bad
config) prints one line saying what is wrong and how to fix it, and exits with status 2;
it never shows a traceback. ``CADENCE_DEBUG=1`` shows the traceback anyway.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cadence.core.audio import AudioError, load, save
from cadence.core.checkpoint import CheckpointError
from cadence.core.config import ConfigError
from cadence.core.data import ShardError
from cadence.core.io import write_json

from .components import PipelineError
from .guidance import FLOW_GUIDANCE, SOUNDSTORM_GUIDANCE
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
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")

# Bounds of the options (shown in --help). The continuation's comes from the pipeline.
MAX_SECONDS = 60.0  # = continuation.MAX_SECONDS (not imported: that loads the models' packages)
MAX_STEPS = 1000  # sampling steps / passes: the toy models saturate far below
MAX_TEXT_CHARACTERS = 1000  # tts: about a minute of speech; split longer text into sentences


def _number(
    help_text: str,
    low: float | None = None,
    high: float | None = None,
    *,
    above: bool = False,
    names: Sequence[str] = (),
) -> Any:
    """A float option in ``[low, high]`` (``(low, high]`` when ``above``), never NaN or inf.

    The range is checked at parse time (exit status 2, click's usage message) and shown in
    --help; click's own FloatRange would let NaN through.
    """
    bounds = range_text(low, high, above=above)

    def check(value: float | None) -> float | None:
        problem = None if value is None else range_problem(value, low, high, above=above)
        if problem:
            raise typer.BadParameter(problem)
        return value

    return typer.Option(*names, help=f"{help_text} [{bounds}]", callback=check)


def range_text(low: float | None, high: float | None, *, above: bool = False) -> str:
    """The range of an option as --help shows it: ``0<x<=60``."""
    sign = "<" if above else "<="
    if low is not None and high is not None:
        return f"{low:g}{sign}x<={high:g}"
    if low is not None:
        return f"{low:g}{sign}x"  # not "x>=0": rich would read "[x>=0]" as a style tag
    return f"-inf<x<={high:g}" if high is not None else "-inf<x<inf"


def range_problem(
    value: float, low: float | None, high: float | None, *, above: bool = False
) -> str | None:
    """The message for a number outside its range (None when it is inside); NaN and inf never are."""
    ok = (
        math.isfinite(value)
        and (low is None or (value > low if above else value >= low))
        and (high is None or value <= high)
    )
    return None if ok else f"{value:g} is not in the range {range_text(low, high, above=above)}."


def _choice(*allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}.")
        return value

    return check


def _notice(message: str) -> None:
    errors.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _show_warning(previous: Callable[..., None]) -> Callable[..., None]:
    """Cadence's own warnings (a truncated file, unreadable text) as one line, no source."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if category.__module__.startswith("cadence."):
            _notice(str(message))
        else:
            previous(message, category, filename, lineno, file, line)

    return show


def _user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a user error into a one-line message and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning(warnings.showwarning)
                return command(*args, **kwargs)
        except USER_ERRORS as err:
            if os.environ.get("CADENCE_DEBUG"):
                raise
            message = user_message(err)
            # escape: a message may hold [brackets] (a TOML table name), which rich would eat
            errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def user_message(err: BaseException) -> str:
    """The one line a user error is shown as (here and in ``cadence serve``)."""
    if isinstance(err, FileNotFoundError) and err.filename:
        return f"file not found: {err.filename}"
    if isinstance(err, OSError) and not isinstance(err, AudioError) and err.filename:
        return f"{err.strerror or err}: {err.filename}"
    return str(err)


# -------------------------------------------------------------------------- outputs


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _writable_folder(folder: Path, what: str) -> None:
    """Create ``folder`` if needed and check a file can be made in it (before any work)."""
    if folder.exists() and not folder.is_dir():
        raise PipelineError(f"cannot write {what}: {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PipelineError(
            f"cannot write {what}: the folder {folder} cannot be created ({err.strerror or err})"
        ) from None
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".cadence-write-test-")
    except OSError as err:
        raise PipelineError(
            f"cannot write {what}: {folder} is not writable ({err.strerror or err}); "
            "choose another folder"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _output_file(
    path: Path,
    *,
    inputs: Sequence[Path] = (),
    suffixes: Sequence[str] | None = AUDIO_SUFFIXES,
    what: str = "output",
) -> Path:
    """Refuse an output that cannot be written, or that is an input, before any work."""
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise PipelineError(f"{what} {path} must end in one of {', '.join(suffixes)}")
    if path.is_dir():
        raise PipelineError(f"{what} {path} is a folder; give a file name inside it")
    for source in inputs:
        if _same_file(path, source):
            raise PipelineError(
                f"{what} {path} is also an input ({source}); writing it would destroy the "
                "input: choose another output name"
            )
    if path.exists() and not path.stat().st_mode & 0o222:
        raise PipelineError(f"{what} {path} is read-only; choose another name or remove it")
    _writable_folder(path.parent, f"{what} {path}")
    return path


def _output_folder(path: Path, *, inputs: Sequence[Path] = (), what: str = "output") -> Path:
    for source in inputs:
        if _same_file(path, source):
            raise PipelineError(f"{what} {path} is also an input ({source}); choose another folder")
    _writable_folder(path, f"{what} {path}")
    return path


def _write_audio(path: Path, audio, sample_rate: int) -> None:
    try:
        save(path, audio, sample_rate)  # atomic: an existing file is replaced whole or kept
    except (OSError, RuntimeError) as err:  # soundfile's LibsndfileError is a RuntimeError
        reason = getattr(err, "strerror", None) or getattr(err, "error_string", None) or err
        raise PipelineError(
            f"cannot write {path} ({reason}); check that its folder is writable and the disk "
            "has room"
        ) from None
    console.print(f"wrote {path} ({audio.shape[-1] / sample_rate:.2f} s)")


def _pipeline_dir(pipeline: Path | None) -> Path:
    return pipeline if pipeline is not None else default_pipeline()


def crop_message(name: object, audio, rate: int, limit: float, which: str) -> str | None:
    """The notice for a prompt longer than the models use (None when it is not)."""
    seconds = audio.shape[-1] / rate
    if seconds > limit:
        return f"{name} is {seconds:.1f} s long; the models use its {which} {limit:g} s"
    return None


def _crop_notice(path: Path, audio, rate: int, limit: float, which: str) -> None:
    message = crop_message(path, audio, rate, limit, which)
    if message:
        _notice(message)


PipelineOption = Annotated[
    Path | None,
    typer.Option("--pipeline", "-p", help="pipeline directory (default: the shipped toy pipeline)"),
]
SeedOption = Annotated[
    int | None,
    typer.Option(help="random seed (reproducible output)", min=0, max=2**32 - 1),
]


def _guidance(help_text: str) -> Any:
    return _number(help_text, 0, names=("--guidance-scale", "--guidance"))


@app.command()
@_user_errors
def generate(
    prompt: Annotated[
        list[Path], typer.Option("--prompt", help="prompt audio; repeat for a batch")
    ],
    out: Annotated[Path, typer.Option(help="output audio (with several prompts: OUT stem + -<i>)")],
    seconds: Annotated[
        float,
        _number(
            "seconds to add after each prompt (fewer only with --eos)",
            0,
            MAX_SECONDS,
            above=True,
        ),
    ] = 3.0,
    pipeline: PipelineOption = None,
    temperature: Annotated[
        float,
        _number("semantic LM sampling temperature (0 = greedy)", 0),
    ] = 0.9,
    top_p: Annotated[
        float,
        _number("semantic LM nucleus sampling", 0, 1, above=True),
    ] = 0.95,
    steps: Annotated[
        int, typer.Option(min=1, max=MAX_STEPS, help="SoundStorm passes on the first level")
    ] = 16,
    guidance: Annotated[
        float, _guidance("SoundStorm classifier-free guidance (1 = off, about half the work)")
    ] = SOUNDSTORM_GUIDANCE,
    eos: Annotated[
        bool,
        typer.Option(help="stop when the semantic LM ends the utterance (may be shorter)"),
    ] = False,
    include_prompt: Annotated[bool, typer.Option(help="write prompt + continuation")] = False,
    seed: SeedOption = None,
    stream: Annotated[
        bool,
        typer.Option(help="write the WAV as it is made, chunk by chunk (--out - : to stdout)"),
    ] = False,
    chunk_seconds: Annotated[
        float, _number("with --stream: seconds generated per chunk", 0, 10, above=True)
    ] = 1.0,
    left_context: Annotated[
        float,
        _number(
            "with --stream: seconds of codes before a chunk that prompt SoundStorm",
            0,
            10,
            above=True,
        ),
    ] = 2.0,
    lookahead: Annotated[
        float | None,
        _number(
            "with --stream: at most this many seconds of codes after a sample before it is "
            "written (less starts sooner, changes samples slightly; default: exact)",
            0,
            10,
        ),
    ] = None,
    play: Annotated[
        bool, typer.Option(help="play while generating (implies --stream; extra 'play')")
    ] = False,
) -> None:
    """Speech continuation: prompt -> semantic tokens -> AudioLM -> SoundStorm -> codec.

    Only the end of a long prompt is used (the last 10 s with the toy pipeline); a longer
    prompt is cropped to it before anything runs, with a notice.
    """
    if stream or play:
        _generate_stream(
            prompt, out, seconds=seconds, pipeline=pipeline, temperature=temperature,
            top_p=top_p, steps=steps, guidance=guidance, eos=eos,
            include_prompt=include_prompt, seed=seed, chunk_seconds=chunk_seconds,
            left_context=left_context, lookahead=lookahead, play=play,
        )  # fmt: skip
        return
    paths = [_output_file(path, inputs=prompt) for path in _batch_outputs(out, len(prompt))]
    from cadence.audiolm import SamplingOptions
    from cadence.soundstorm import default_iterations

    from .continuation import SpeechContinuation

    sampling = SamplingOptions(temperature=temperature, top_p=top_p, allow_eos=eos)
    pipe = SpeechContinuation.from_pretrained(_pipeline_dir(pipeline))
    items = [load(p, sample_rate=pipe.sample_rate, what="prompt")[0] for p in prompt]
    for path, item in zip(prompt, items):
        _crop_notice(path, item, pipe.sample_rate, pipe.prompt_seconds, "last")
    start = time.perf_counter()
    result = pipe.generate(
        items,
        sample_rate=pipe.sample_rate,
        seconds=seconds,
        sampling=sampling,
        iterations=default_iterations(pipe.soundstorm.config.num_quantizers, first=steps),
        guidance_scale=guidance,
        seed=seed,
        progress=lambda stage: errors.print(f"[dim]{escape(stage)}[/]", highlight=False),
    )
    elapsed = time.perf_counter() - start
    for i, path in enumerate(paths):
        _write_audio(path, _generated(result, i, include_prompt=include_prompt), result.sample_rate)
        _short_notice(path, float(result.lengths[i]) / result.sample_rate, seconds, eos=eos)
    total = float(result.lengths.sum()) / result.sample_rate
    console.print(
        f"generated {total:.2f} s of audio in {elapsed:.2f} s (real-time factor {elapsed / max(total, 1e-9):.2f})"
    )


def check_text(text: str) -> None:
    """Refuse a TTS text longer than :data:`MAX_TEXT_CHARACTERS`."""
    if len(text) > MAX_TEXT_CHARACTERS:
        raise PipelineError(
            f"the text has {len(text)} characters; say at most {MAX_TEXT_CHARACTERS} at once "
            "(split it into sentences)"
        )


def _generate_stream(prompt: list[Path], out: Path, *, pipeline: Path | None, temperature: float, top_p: float, steps: int, guidance: float, eos: bool, include_prompt: bool, chunk_seconds: float, left_context: float, lookahead: float | None, play: bool, seed: int | None, seconds: float) -> None:  # fmt: skip
    """``generate --stream``: one prompt, written (and played) chunk by chunk."""
    if len(prompt) != 1:
        raise PipelineError("--stream takes one --prompt; run one command per prompt")
    to_stdout = str(out) == "-"
    if not to_stdout:
        _output_file(out, inputs=prompt, suffixes=(".wav",), what="--stream output")
    from cadence.audiolm import SamplingOptions
    from cadence.soundstorm import default_iterations

    from .continuation import SpeechContinuation
    from .stream_output import stream_to

    pipe = SpeechContinuation.from_pretrained(_pipeline_dir(pipeline))
    item = load(prompt[0], sample_rate=pipe.sample_rate, what="prompt")[0]
    _crop_notice(prompt[0], item, pipe.sample_rate, pipe.prompt_seconds, "last")
    chunks = pipe.stream(
        item, sample_rate=pipe.sample_rate, seconds=seconds, chunk_seconds=chunk_seconds,
        left_context_seconds=left_context, lookahead_seconds=lookahead,
        sampling=SamplingOptions(temperature=temperature, top_p=top_p, allow_eos=eos),
        iterations=default_iterations(pipe.soundstorm.config.num_quantizers, first=steps),
        guidance_scale=guidance, seed=seed,
    )  # fmt: skip
    start = time.perf_counter()
    first: list[float] = []
    lead = item if include_prompt else None

    def seen(_: int) -> None:
        if not first:
            first.append(time.perf_counter() - start)

    kwargs = dict(sample_rate=pipe.sample_rate, channels=pipe.channels, play=play, lead=lead, on_chunk=seen)  # fmt: skip
    if to_stdout:
        written = stream_to(chunks, sink=sys.stdout.buffer, **kwargs)  # type: ignore[arg-type]
    else:
        with open(out, "wb") as sink:  # grows in place on purpose (see stream_output)
            written = stream_to(chunks, sink=sink, **kwargs)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    total = (written - (0 if lead is None else lead.shape[-1])) / pipe.sample_rate
    where = "stdout" if to_stdout else str(out)
    errors.print(
        f"streamed {total:.2f} s to {escape(where)} in {elapsed:.2f} s (first audio after "
        f"{first[0] if first else elapsed:.2f} s, real-time factor {elapsed / max(total, 1e-9):.2f})",
        highlight=False,
    )
    _short_notice(out, total, seconds, eos=eos)


def _short_notice(path: Path, got: float, asked: float, *, eos: bool) -> None:
    """Say so when a continuation is shorter than asked (one frame of slack)."""
    if got < asked - 0.05:
        why = "the semantic LM ended the utterance (--eos)" if eos else "the model's context"
        errors.print(
            f"[yellow]note:[/] {escape(str(path))}: {got:.2f} s, shorter than the {asked:g} s "
            f"asked: {why}",
            highlight=False,
        )


def _batch_outputs(out: Path, count: int) -> list[Path]:
    """``out`` for one prompt; ``out``'s stem + ``-<i>`` for several."""
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(count)]


def _generated(result: Any, i: int, *, include_prompt: bool) -> Any:
    """Row ``i`` of a ContinuationOutput: the continuation, after the whole prompt if asked."""
    audio = result.audio[i, :, : int(result.lengths[i])]
    if not include_prompt:
        return audio
    import torch

    return torch.cat([result.prompt_audio[i, :, : int(result.prompt_lengths[i])], audio], dim=-1)


@app.command()
@_user_errors
def convert(
    source: Annotated[Path, typer.Option(help="speech whose words are kept")],
    target_voice: Annotated[
        Path,
        typer.Option("--target-voice", help="a recording of the voice to use (its first 10 s)"),
    ],
    out: Annotated[Path, typer.Option(help="output audio")],
    method: Annotated[
        str,
        typer.Option(
            callback=_choice("soundstorm", "flow"),
            help="soundstorm or flow (the flow-matching model)",
        ),
    ] = "soundstorm",
    steps: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_STEPS,
            help="SoundStorm passes on the first level, or ODE steps of the flow",
        ),
    ] = 16,
    guidance: Annotated[
        float | None,
        _guidance(
            f"classifier-free guidance (1 = off; default {SOUNDSTORM_GUIDANCE:g} for soundstorm, "
            f"{FLOW_GUIDANCE:g} for flow)"
        ),
    ] = None,
    pipeline: PipelineOption = None,
    seed: SeedOption = None,
    stream: Annotated[
        bool,
        typer.Option(
            help="read --source block by block and write the WAV as it is converted "
            "(soundstorm; --out - : to stdout)"
        ),
    ] = False,
    chunk_seconds: Annotated[
        float, _number("with --stream: seconds of source converted per chunk", 0, 10, above=True)
    ] = 1.0,
    play: Annotated[
        bool, typer.Option(help="play while converting (implies --stream; extra 'play')")
    ] = False,
) -> None:
    """Voice conversion: the content of --source in the voice of --target-voice."""
    to_stdout = (stream or play) and str(out) == "-"
    if stream or play:
        if not to_stdout:
            _output_file(out, inputs=[source, target_voice], suffixes=(".wav",), what="--stream output")  # fmt: skip
    else:
        _output_file(out, inputs=[source, target_voice])
    from .synthesis import VOICE_PROMPT_SECONDS, VoiceConversion

    if (stream or play) and method != "soundstorm":
        raise PipelineError(
            "--stream converts with --method soundstorm (the flow needs the whole source)"
        )
    vc = VoiceConversion.from_pretrained(_pipeline_dir(pipeline), method=method)  # type: ignore[arg-type]  # checked by _choice
    if stream or play:
        _convert_stream(vc, source, target_voice, out, to_stdout=to_stdout, steps=steps,
                        guidance=guidance, seed=seed, chunk_seconds=chunk_seconds, play=play)  # fmt: skip
        return
    src, _ = load(source, sample_rate=vc.sample_rate, what="source")
    tgt, _ = load(target_voice, sample_rate=vc.sample_rate, what="target voice")
    _crop_notice(target_voice, tgt, vc.sample_rate, VOICE_PROMPT_SECONDS, "first")
    with console.status(f"converting {src.shape[-1] / vc.sample_rate:.1f} s ({method})"):
        audio = vc.convert(
            src, tgt, sample_rate=vc.sample_rate, steps=steps, guidance_scale=guidance, seed=seed
        )
    _write_audio(out, audio, vc.sample_rate)


def _convert_stream(vc: Any, source: Path, target_voice: Path, out: Path, *, to_stdout: bool, steps: int, guidance: float | None, seed: int | None, chunk_seconds: float, play: bool) -> None:  # fmt: skip
    """``convert --stream``: the source read in blocks, the output written as it comes."""
    from cadence.core.audio import blocks

    from .stream_output import stream_to
    from .synthesis import VOICE_PROMPT_SECONDS

    tgt, _ = load(target_voice, sample_rate=vc.sample_rate, what="target voice")
    _crop_notice(target_voice, tgt, vc.sample_rate, VOICE_PROMPT_SECONDS, "first")
    reader, rate = blocks(source, what="source")
    if rate != vc.sample_rate:
        from cadence.core.audio import resample

        tgt = resample(tgt, vc.sample_rate, rate)  # stream() takes one rate for both
    chunks = vc.stream(reader, tgt, sample_rate=rate, chunk_seconds=chunk_seconds,
                       steps=steps, guidance_scale=guidance, seed=seed)  # fmt: skip
    start = time.perf_counter()
    first: list[float] = []

    def seen(_: int) -> None:
        if not first:
            first.append(time.perf_counter() - start)

    kwargs = dict(sample_rate=vc.sample_rate, channels=vc.codec.channels, play=play, on_chunk=seen)  # fmt: skip
    if to_stdout:
        written = stream_to(chunks, sink=sys.stdout.buffer, **kwargs)  # type: ignore[arg-type]
    else:
        with open(out, "wb") as sink:  # grows in place on purpose (see stream_output)
            written = stream_to(chunks, sink=sink, **kwargs)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    total = written / vc.sample_rate
    errors.print(
        f"converted {total:.2f} s to {escape('stdout' if to_stdout else str(out))} in "
        f"{elapsed:.2f} s (first audio after {first[0] if first else elapsed:.2f} s)",
        highlight=False,
    )


@app.command()
@_user_errors
def tts(
    text: Annotated[
        str, typer.Argument(help=f"the sentence to say (at most {MAX_TEXT_CHARACTERS} characters)")
    ],
    prompt: Annotated[Path, typer.Option(help="a recording of the voice to use (its first 10 s)")],
    out: Annotated[Path, typer.Option(help="output audio")],
    steps: Annotated[
        int, typer.Option(min=1, max=MAX_STEPS, help="diffusion sampling steps (DPM-Solver++)")
    ] = 32,
    guidance: Annotated[float, _guidance("classifier-free guidance scale (1 = off)")] = 1.5,
    accent: Annotated[
        str | None,
        typer.Option(
            help="espeak-ng voice that reads the text, e.g. en-gb-x-rp or en-us (default: the model's)"
        ),
    ] = None,
    pipeline: PipelineOption = None,
    seed: SeedOption = None,
) -> None:
    """Text to speech with NaturalSpeech 2, in the voice of --prompt."""
    check_text(text)
    _output_file(out, inputs=[prompt])
    from .synthesis import VOICE_PROMPT_SECONDS, TextToSpeech

    model = TextToSpeech.from_pretrained(_pipeline_dir(pipeline))
    voice, rate = load(prompt, sample_rate=model.sample_rate, what="voice prompt")
    _crop_notice(prompt, voice, rate, VOICE_PROMPT_SECONDS, "first")
    with console.status("synthesizing"):
        audio = model.synthesize(
            text,
            voice,
            sample_rate=rate,
            steps=steps,
            guidance_scale=guidance,
            seed=seed,
            accent=accent,
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
    batch_size: Annotated[int, typer.Option(min=1, max=1024, help="items per model call")] = 8,
    min_seconds: Annotated[
        float,
        _number("skip (and list in the manifest) shorter items", 0, 60),
    ] = 0.1,
) -> None:
    """Precompute token shards (codec codes, semantic tokens, latents) of a dataset (resumable; split across processes under accelerate launch).

    Unreadable, truncated and too short files are skipped and listed under "skipped" in
    the manifest.
    """
    from .training import tokenize_corpus

    _output_folder(out, inputs=[data], what="shard folder")
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
        min_seconds=min_seconds,
    )
    console.print(f"wrote shards to {path}")


@app.command()
@_user_errors
def train(
    stage: Annotated[
        str,
        typer.Argument(
            help="codec, semantic_tokenizer, semantic_lm, soundstorm, naturalspeech2, flowmatching, phoneme_recognizer or aligner"
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
    name: Annotated[
        str,
        typer.Argument(
            help="the recipe: toy, coig, hierarchical, or libritts/librispeech/ljspeech/vctk"
        ),
    ],
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
        float,
        _number("multiply every model's steps (e.g. 0.01 for a smoke run)", 0, 100, above=True),
    ] = 1.0,
    only: Annotated[
        list[str] | None, typer.Option(help="run only these stages (repeatable)")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="run independent stages at once, one thread each (2 suits a 2-core CPU)",
        ),
    ] = 1,
    assemble: Annotated[bool, typer.Option(hidden=True)] = True,
    override: Annotated[
        Path | None, typer.Option(help="real recipes: a TOML merged over the recipe's jobs")
    ] = None,
    launch: Annotated[
        str | None,
        typer.Option(
            help='real recipes: run stages under accelerate launch with these arguments, e.g. "--num_processes 8"'
        ),
    ] = None,
    write_only: Annotated[
        bool, typer.Option(help="real recipes: write the manifests and job files, train nothing")
    ] = False,
) -> None:
    """Train the whole chain: synthesize a corpus (or use --corpus), then codec, tokenizer, semantic LM, SoundStorm, NaturalSpeech 2, flow matching and the evaluation's phoneme recognizer.

    The recipes coig and hierarchical build SpeechGPT-Gen's voice-conversion pipelines instead
    (docs/pipeline.md, "The seeds' pipelines"); libritts, librispeech, ljspeech and vctk train
    on a real corpus (docs/real_recipe.md).
    """
    from .real_recipe import REAL_RECIPES
    from .recipe import ORDER, run_toy_recipe
    from .seed_recipes import SEED_RECIPES, run_seed_recipe

    if name in REAL_RECIPES:  # real corpora: real_cli.py (--override, --launch, --write-only)
        from .real_cli import run_real

        run_real(name, corpus, out, only, override, launch, write_only, console)
        return
    if name in SEED_RECIPES:
        if only or workers != 1:
            raise PipelineError(f"--only and --workers are options of the toy recipe, not {name}")
        _output_folder(out, inputs=[corpus] if corpus is not None else [], what="recipe folder")
        pipeline_dir = run_seed_recipe(name, out, corpus, steps_scale=steps_scale, console=console)
        console.print(f"done: {pipeline_dir}")
        return
    if name != "toy":
        available = ", ".join(["toy", *SEED_RECIPES, *REAL_RECIPES])
        raise PipelineError(f"unknown recipe {name!r}; available: {available}")
    if only:
        unknown = sorted(set(only) - set(ORDER))
        if unknown:
            raise PipelineError(f"unknown stages {unknown}; the stages are {', '.join(ORDER)}")
    _output_folder(out, inputs=[corpus] if corpus is not None else [], what="recipe folder")
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
        int | None, typer.Option(min=1, help="evaluate on the first N validation utterances")
    ] = None,
    prompt_seconds: Annotated[
        float,
        _number("SoundStorm / TTS prompt length", 0, MAX_SECONDS, above=True),
    ] = 3.0,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1)] = 0,
    report_dir: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="also write a static page to listen to every system (index.html, audio, spectrograms, curves)",
        ),
    ] = None,
) -> None:
    """Objective metrics of every model in a pipeline on held-out speech."""
    from .evaluation import evaluate_pipeline

    if out is not None:
        _output_file(out, suffixes=None, what="metrics file")
    if corpus is None:
        corpus = PipelineSpec.read(_pipeline_dir(pipeline)).held_out()
    if report_dir is not None:
        report = _write_report(pipeline, corpus, report_dir, limit, prompt_seconds, seed)
    else:
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
        try:
            write_json(out, report)
        except OSError as err:
            raise PipelineError(f"cannot write {out} ({err.strerror or err})") from None
        console.print(f"wrote {out}")


def _write_report(
    pipeline: Path | None, corpus: Path, folder: Path, limit: int | None, prompt: float, seed: int
) -> dict[str, Any]:
    from .report import DEFAULT_LIMIT, write_report

    _output_folder(folder, inputs=[corpus, _pipeline_dir(pipeline)], what="report folder")
    rows = (corpus / "valid.jsonl").read_text().splitlines() if corpus.is_dir() else []
    if limit is None and sum(1 for row in rows if row.strip()) > DEFAULT_LIMIT:
        _notice(
            f"the report shows at most {DEFAULT_LIMIT} utterances; --limit N for another number"
        )
    result = write_report(_pipeline_dir(pipeline), corpus, folder, limit=limit,
                          prompt_seconds=prompt, seed=seed)  # fmt: skip
    console.print(f"wrote {result.index}")
    return result.report


def _print_report(report: dict[str, Any]) -> None:
    table = Table(title="evaluation", show_lines=False)
    table.add_column("model")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for model, metrics in report.items():
        if not isinstance(metrics, dict):
            continue
        for key, value in metrics.items():
            if isinstance(value, list):  # per level, e.g. SoundStorm's guidance
                table.add_row(model, key, " ".join(f"{v:.4g}" for v in value))
            elif isinstance(value, (int, float)):
                table.add_row(model, key, f"{value:.4g}")
    console.print(table)


@app.command()
@_user_errors
def demo(
    out: Annotated[Path, typer.Option(help="output directory")] = Path("outputs/demo"),
    pipeline: PipelineOption = None,
    prompt_seconds: Annotated[
        float,
        _number("seconds of the held-out utterance used as the prompt", 0, MAX_SECONDS, above=True),
    ] = 2.0,
    seconds: Annotated[
        float,
        _number("seconds to continue", 0, MAX_SECONDS, above=True),
    ] = 3.0,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1)] = 0,
) -> None:
    """The main job: continue a held-out prompt with the shipped pipeline; writes wavs and a spectrogram PNG (prompt | generated), prints metrics."""
    from .demo import run_demo

    _output_folder(out, what="demo folder")
    run_demo(
        _pipeline_dir(pipeline),
        out,
        prompt_seconds=prompt_seconds,
        seconds=seconds,
        seed=seed,
        console=console,
    )


@app.command()
@_user_errors
def serve(
    pipeline: PipelineOption = None,
    host: Annotated[
        str, typer.Option(help="address to bind (0.0.0.0 exposes the app to the network)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 7860,
) -> None:
    """A local web app (Gradio) for continuation, voice conversion and TTS; needs the `serve` extra."""
    from .serve import serve as run_app

    console.print(f"serving {_pipeline_dir(pipeline)} on http://{host}:{port} (Ctrl+C stops)")
    run_app(_pipeline_dir(pipeline), host=host, port=port)


def _register_real() -> None:
    from .real_cli import register

    register(app, _user_errors, console)


_register_real()  # cadence corpus / cadence plan (real_cli.py)


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
